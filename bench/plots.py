"""``bench plot``: the embeddings as pictures, from the feature cache (a cached pair needs no forward pass).

- :func:`umap_scatter`: cells (or patients, for bag tasks: the mean of each patient's cell embeddings) of one or
  more tasks in one UMAP, fitted on the first task's training rows (its first split) and with every other row
  embedded into that map, as the paper's Fig. 2; or fitted on everything (``fit_on="all"``).
- :func:`patch_pca`: the first three PCA components of a ViT's patch tokens over a few images, as RGB (Fig. 3).

The drawing is :mod:`leaderboard.figures`; this module gets the features and labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from bench.core.errors import UsageError
from bench.runner import RunOptions, build_extractor, load_pair, resolve_entry

COLOR_BY = ("class", "domain", "patient", "fold")
FIT_ON = ("train", "all")


def umap_scatter(extractor: str, tasks: list[str], options: RunOptions, *, color_by: str = "class",
                 fit_on: str = "train", seed: int = 0, log: Callable[[str], None] = print):
    """The :class:`leaderboard.figures.Scatter` of ``extractor``'s embeddings of ``tasks``."""
    from leaderboard.figures import Scatter, umap_coordinates

    if color_by not in COLOR_BY:
        raise UsageError(f"--color-by must be one of {', '.join(COLOR_BY)}, got {color_by!r}")
    if fit_on not in FIT_ON:
        raise UsageError(f"--fit-on must be one of {', '.join(FIT_ON)}, got {fit_on!r}")
    parts = []
    for number, task in enumerate(tasks):
        pair = load_pair(extractor, task, options if number == 0 else _default_folder(options), log)
        parts.append(_points(pair, task, first=number == 0, fit_on=fit_on, color_by=color_by))
    features = np.concatenate([p["features"] for p in parts])
    fitted = np.concatenate([p["fitted"] for p in parts])
    log(f"UMAP of {len(features)} {'patients' if parts[0]['bags'] else 'cells'} (fitted on {int(fitted.sum())}, "
        f"seed {seed})")
    xy = umap_coordinates(features, fitted, seed)
    what = "patients (mean of their cells)" if parts[0]["bags"] else "cells"
    return Scatter(xy, np.concatenate([p["groups"] for p in parts]), fitted,
                   [h for p in parts for h in p["hover"]], [i for p in parts for i in p["images"]],
                   f"{extractor}: {what} of {', '.join(tasks)}", color_by)


def _default_folder(options: RunOptions) -> RunOptions:
    from dataclasses import replace

    return replace(options, data_root=None, split_file=None)  # --data-root names the first task's folder


def _points(pair, task: str, *, first: bool, fit_on: str, color_by: str) -> dict:
    """One task's points: features, whether the map is fitted on each, colour group, hover text, image path."""
    dataset, keep = pair.dataset, pair.keep
    samples = dataset.samples
    design = dataset.design(keep, dataset.classes)
    if design.kind == "bags":
        features = np.stack([pair.features[rows].mean(axis=0) for rows in design.bag_rows])
        fitted = np.full(len(features), fit_on == "all")
        if fit_on == "train" and first:
            fitted[design.splits[0][2]] = True  # the training patients of the first seed's first fold
        labels = [design.classes[i] for i in design.bag_labels]
        if color_by == "patient":
            raise UsageError("--color-by patient colours cells; for a bag task every point is a patient")
        fold_of = {bag: "train" for bag in design.splits[0][2]} | {bag: "test" for bag in design.splits[0][3]}
        groups = {"class": labels, "domain": [task] * len(labels),
                  "fold": [fold_of.get(b, "-") for b in range(len(labels))]}[color_by]
        hover = [f"patient {p} · {lab} · {len(r)} cells" for p, lab, r in zip(design.bag_ids, labels, design.bag_rows)]
        return {"features": features, "fitted": fitted, "groups": np.array(groups, dtype=object), "hover": hover,
                "images": [None] * len(labels), "bags": True}
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
    built = build_extractor(resolve_entry(extractor, options.pooling), options, log)
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
    originals = [np.asarray(p.resize((size, size), Image.BILINEAR)) for p in pictures]
    grid = rgb.shape[1]
    log(f"{len(images)} image(s), {grid}x{grid} patches of {size // grid} px; foreground "
        f"{100 * foreground.mean():.0f} % of patches")
    return patch_pca_png(originals, rgb, [Path(p).name for p in images],
                         f"{built.entry.name}: first 3 PCA components of its patch tokens (background removed)", out)
