"""``bench plot``: the embeddings as pictures, from the feature cache (a cached pair needs no forward pass).

- :func:`umap_scatter`: cells (or patients, for bag tasks: the mean of each patient's cell embeddings) of one or
  more tasks in one UMAP, fitted on the first task's training rows (its first split) and with every other row
  embedded into that map, as the paper's Fig. 2; or fitted on everything (``fit_on="all"``).
- :func:`patch_pca`: the first three PCA components of a ViT's patch tokens over a few images, as RGB (Fig. 3).

The drawing is :mod:`leaderboard.figures`; this module gets the features and labels.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np

from bench.core.errors import UsageError
from bench.runner import RunOptions, build_extractor, load_pair, resolve_entry

COLOR_BY = ("class", "domain", "patient", "fold")
FIT_ON = ("train", "all")


def umap_scatter(extractor: str, tasks: list[str], options: RunOptions, *, color_by: str = "class",
                 fit_on: str = "train", seed: int = 0, pool: str = "mean", log: Callable[[str], None] = print,
                 busy=None):
    """The :class:`leaderboard.figures.Scatter` of ``extractor``'s embeddings of ``tasks``. ``pool``: a
    patient's point for bag tasks, ``mean`` or a bag protocol whose stored attention weighs the cells
    (:func:`attention_pooled`). ``busy(text)``: a context manager shown while the map is fitted (a spinner)."""
    from leaderboard.figures import Scatter, umap_coordinates

    if color_by not in COLOR_BY:
        raise UsageError(f"--color-by must be one of {', '.join(COLOR_BY)}, got {color_by!r}")
    if fit_on not in FIT_ON:
        raise UsageError(f"--fit-on must be one of {', '.join(FIT_ON)}, got {fit_on!r}")
    parts, pairs = [], []
    for number, task in enumerate(tasks):
        pair = load_pair(extractor, task, options if number == 0 else _default_folder(options), log)
        pairs.append(pair)
        parts.append(_points(pair, task, first=number == 0, fit_on=fit_on, color_by=color_by, pool=pool,
                             results_dir=options.results_dir))
    features = np.concatenate([p["features"] for p in parts])
    fitted = np.concatenate([p["fitted"] for p in parts])
    log(f"UMAP of {len(features)} {'patients' if parts[0]['bags'] else 'cells'} (fitted on {int(fitted.sum())}, "
        f"seed {seed})")
    with busy("fitting the UMAP (umap-learn compiles its kernels on a process's first map)") if busy \
            else nullcontext():
        xy = umap_coordinates(features, fitted, seed)
    what = ("patients (mean of their cells)" if pool == "mean" else f"patients (cells attention-pooled by {pool})") \
        if parts[0]["bags"] else "cells"
    one = pairs[0] if len(pairs) == 1 else None
    return Scatter(xy, np.concatenate([p["groups"] for p in parts]), fitted,
                   [h for p in parts for h in p["hover"]], [i for p in parts for i in p["images"]],
                   f"{extractor}: {what} of {', '.join(tasks)}", color_by,
                   extractor=one and one.extractor.entry.name, task=one and one.task.name)


def keep_for_board(scatter, results_dir: Path, *, seed: int, fit_on: str) -> Path | None:
    """A one-task map's copy beside the extractor's results on that task, for the HTML leaderboard
    (:mod:`leaderboard.maps`); None for a map of several tasks."""
    from bench.core.record import now_utc, result_paths
    from leaderboard.maps import save_map

    if scatter.task is None:
        return None
    folder = result_paths(results_dir, scatter.extractor, scatter.task, "umap")[0].parent
    meta = {"extractor": scatter.extractor, "task": scatter.task, "seed": seed, "fit_on": fit_on,
            "created": now_utc()}
    return save_map(scatter, folder, meta, seed=seed)


def _default_folder(options: RunOptions) -> RunOptions:
    from dataclasses import replace

    return replace(options, data_root=None, split_file=None)  # --data-root names the first task's folder


def _points(pair, task: str, *, first: bool, fit_on: str, color_by: str, pool: str = "mean",
            results_dir: Path = Path("results")) -> dict:
    """One task's points: features, whether the map is fitted on each, colour group, hover text, image path."""
    dataset, keep = pair.dataset, pair.keep
    samples = dataset.samples
    design = dataset.design(keep, dataset.classes)
    if design.kind == "bags":
        if pool == "mean":
            features = np.stack([pair.features[rows].mean(axis=0) for rows in design.bag_rows])
        else:
            features = attention_pooled(pair, design, pool, results_dir)
        fitted = np.full(len(features), fit_on == "all")
        if fit_on == "train" and first:
            fitted[design.splits[0][2]] = True  # the training patients of the first seed's first fold
        labels = [design.classes[i] for i in design.bag_labels]
        if color_by == "patient":
            raise UsageError("--color-by patient colours cells; for a bag task every point is a patient")
        fold_of = {bag: "train" for bag in design.splits[0][2]} | {bag: "test" for bag in design.splits[0][3]}
        groups = {"class": labels, "domain": [task] * len(labels),
                  "fold": [fold_of.get(b, "-") for b in range(len(labels))]}[color_by]
        how = "mean of its cells" if pool == "mean" else f"attention-pooled by {pool}"
        hover = [f"patient {p} · {lab} · {len(r)} cells · {how}"
                 for p, lab, r in zip(design.bag_ids, labels, design.bag_rows)]
        return {"features": features, "fitted": fitted, "groups": np.array(groups, dtype=object), "hover": hover,
                "images": [None] * len(labels), "bags": True}
    if pool != "mean":
        raise UsageError(f"--pool {pool} weighs a patient's cells; task {task!r} has no patients (--pool mean)")
    rows = np.flatnonzero(keep)
    fitted = np.full(len(samples), fit_on == "all")
    if fit_on == "train" and first:
        fitted[design.splits[0][1]] = True  # the training rows of the first split
    if color_by == "patient" and "patient" not in samples:
        raise UsageError(f"task {task!r} has no patients; --color-by class, domain or fold")
    column = {"class": "label", "patient": "patient", "fold": "fold"}.get(color_by)
    groups = samples[column].astype(str).to_numpy() if column else np.array([task] * len(samples))
    paths = pair.dataset.absolute_paths()
    labels = samples["label"].astype(str).to_numpy()
    hover = [f"{paths[i]} · {labels[i]}" + (f" · patient {samples['patient'].iat[i]}" if "patient" in samples else "")
             for i in rows]
    return {"features": pair.features[rows], "fitted": fitted[rows], "groups": groups[rows].astype(object),
            "hover": hover, "images": [str(paths[i]) for i in rows], "bags": False}


def patch_pca(extractor: str, images: list[Path], options: RunOptions, out: Path, *, threshold: float = 0.5,
              seed: int = 0, log: Callable[[str], None] = print) -> Path:
    """Patch-PCA picture of ``images`` (Fig. 3): one forward pass of the extractor over them."""
    import torch
    from PIL import Image

    from bench.core.images import decode_rgb
    from bench.extract import pick_device
    from leaderboard.figures import patch_pca_png, patch_pca_rgb

    if not images:
        raise UsageError("--images: name at least one image file")
    missing = [str(p) for p in images if not Path(p).is_file()]
    if missing:
        raise UsageError(f"--images: no such file(s): {', '.join(missing[:5])}")
    built = build_extractor(resolve_entry(extractor), options, log)
    transform = built.entry.transform()
    pictures = [decode_rgb(Path(p)) for p in images]
    batch = torch.stack([transform(p) for p in pictures])
    device = pick_device(options.device)
    model = built.model.to(device).eval()
    with torch.inference_mode():
        try:
            tokens = model.patch_tokens(batch.to(device)).float().cpu().numpy()
        except UsageError:
            raise UsageError(f"extractor {built.entry.name!r} gives no patch tokens: patch-PCA needs a ViT "
                             "(dinov2-*, dinobloom-*, phikon, vit-*-random, timm:<any ViT>)") from None
    rgb, foreground = patch_pca_rgb(tokens, threshold=threshold, seed=seed)
    size = built.entry.input_size
    originals = [np.asarray(p.resize((size, size), Image.Resampling.BILINEAR)) for p in pictures]
    grid = rgb.shape[1]
    log(f"{len(images)} image(s), {grid}x{grid} patches of {size // grid} px; foreground "
        f"{100 * foreground.mean():.0f} % of patches")
    return patch_pca_png(originals, rgb, [Path(p).name for p in images],
                         f"{built.entry.name}: first 3 PCA components of its patch tokens (background removed)", out)


def attention_pooled(pair, design, protocol: str, results_dir: Path) -> np.ndarray:
    """Each patient's cells weighted by the attention of a bag protocol's stored result (``bench run -p
    abmil-gated``), as the paper's patient embeddings: in every seed a patient is a test bag once, scored by a
    model trained on other patients; its embedding is the attention-weighted sum of its cells' features (for
    per-class attention, the column of the class predicted for it), averaged over the seeds."""
    import pandas as pd

    from bench.core.record import ResultRecord, attention_path, predictions_path, result_paths

    record_path = result_paths(results_dir, pair.extractor.entry.name, pair.task.name, protocol)[0]
    attention_file = attention_path(record_path)
    run_it = (f"run `bench run -e {pair.extractor.entry.name} -t {pair.task.name} -p {protocol} --results "
              f"{results_dir}` first, or --pool mean")
    if not attention_file.is_file():
        raise UsageError(f"--pool {protocol}: no attention of {protocol} at {attention_file}; {run_it}")
    record = ResultRecord.read(record_path)
    if record.extractor.feature_key != pair.cached.manifest["key"]:
        raise UsageError(f"--pool {protocol}: the result at {record_path} was computed on other features than "
                         f"these (another weight file, precision or data); {run_it}")
    attention = pd.read_csv(attention_file, dtype={"bag": str})
    predicted = pd.read_csv(predictions_path(record_path), dtype={"bag": str}).set_index(["bag", "seed", "fold"])
    row_of = {path: row for row, path in enumerate(pair.dataset.samples["path"])}
    features = np.zeros((len(design.bag_ids), pair.features.shape[1]))
    for i, bag in enumerate(design.bag_ids):
        runs = attention[attention["bag"] == str(bag)]
        if runs.empty:
            raise UsageError(f"--pool {protocol}: patient {bag} has no attention in {attention_file}; {run_it}")
        pooled = []
        for (seed, fold), cells in runs.groupby(["seed", "fold"], sort=True):
            column = "attention"
            if column not in cells:  # per-class attention: the column of the class predicted for the patient
                # (pandas-stubs has no overload for a MultiIndex row and a column in one .loc)
                column = f"attention_{predicted.loc[(str(bag), seed, fold), 'prediction']}"  # pyright: ignore[reportCallIssue, reportArgumentType]
            weights = cells[column].to_numpy(dtype=np.float64)
            rows = [row_of[path] for path in cells["path"]]
            pooled.append((weights / weights.sum()) @ pair.features[rows])
        features[i] = np.mean(pooled, axis=0)
    return features
