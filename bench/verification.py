"""What ``bench verify`` derives again itself instead of trusting a submission (issue 26).

The digests inside a submission travel with its files, so they only show that the files agree with each other. A
submission (format 2) also carries its features (``features.npz``: every sample's feature minus the mean feature as
float16, the mean as float32, with their paths, self-reported labels and image sha256s: float16 of the raw values
would erase features that differ little between images, such as a randomly initialised ViT's, where a kNN run
again on them fell from 57.5 to 51.6 weighted F1), and the verification derives four things again:

- **labels**: from the task's pinned canonical split shipped with hemabench (``Task.canonical_split``), never from
  the submission; a submitted label that differs is refused, naming the image;
- **folds**: the canonical split's where the submission holds exactly its images, else the task's own split rule
  applied to the submitted images (``Task.assign``: the same rule ``bench run`` applies to a copy), compared with
  the submitted folds;
- **protocol**: the registered protocol run again on the submitted features, with those labels and folds; its
  metrics are the ones the board shows, and the record's must agree with them within :data:`RERUN_TOLERANCE`
  (float16 features move an unconverged probe slightly). A few-shot protocol's episodes are seeded draws over
  the same rows, so they are run again as they were: the record's means and every point of its curve must agree
  with CI's (a few-shot submission has no predictions: its folds must be derivable, else it is self-reported);
- **features**: for a built-in extractor whose weights are here and are the ones the record names (the published
  file, or a seeded or weight-free built-in), a random sample of :data:`SAMPLE` images is extracted again from the
  images on this machine and compared with the submitted rows within the precision's tolerance (relative to each
  image's departure from the mean feature, or within the precision's rounding at the feature's length for a row
  nearest its own image's: :func:`compare_rows`).

A robustness submission (``TASK@perturbation=all``) carries the features of every version of the images: the
labels and folds are those of the clean images, the protocol runs on all versions together
(:func:`derive_perturbed`), and a sample of each version is extracted again with its perturbation.

What could not be derived (no canonical split, a plugin or trainer export whose weights are not public, images not
here, a domain-shift or bag result) is named in :class:`Checks` and badged "self-reported", never "verified".
"""

from __future__ import annotations

import hashlib
import io
import secrets
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench.core.design import CellDesign, PerturbationDesign
from bench.core.errors import HemabenchError
from bench.core.files import atomic_write_bytes, digest, sha256_file
from bench.core.metrics import INVARIANCE, LABEL_METRICS, LABELS, PERTURBED_F1
from bench.core.record import ExtractorInfo, ResultRecord, Scores

FEATURES_FILE = "features.npz"
SAMPLE = 64  # images extracted again per submission
RERUN_TOLERANCE = 0.01  # |record - CI's re-run| per mean label metric (1 point): float16 features, other BLAS
# largest relative L2 difference of a re-extracted feature row (CI: fp32 on the CPU) from the submitted float16 row,
# by the precision the submission was computed in
FEATURE_TOLERANCE = {"fp32": 2e-3, "tf32": 1e-2, "fp16": 1e-2, "bf16": 5e-2}
# A feature is only known to its precision's rounding at its own size: a randomly initialised ViT-S/14's features
# are ~20 long and differ from the mean feature by ~5e-4 (the 5th significant digit), so fp32 on another CPU moves
# them by up to 0.73 ulps of their length (measured on 600 Acevedo images), up to 0.55 % of that departure: 29 of
# the 4,000 rows of our own submission exceed the relative tolerance, so CI refused it on 37 % of its 64-image
# draws. A row within ROUNDING_ULPS such ulps passes, provided it is nearer to its own image's submitted row than
# to any other image's (the nearest other row was 11.6 ulps away at the least): the rounding allowance can never
# let one image's features pass as another's.
ROUNDING_ULPS = 4
PRECISION_EPS = {"fp32": 2.0 ** -23, "tf32": 2.0 ** -10, "fp16": 2.0 ** -10, "bf16": 2.0 ** -7}
SELF_REPORTED = "self-reported"


@dataclass
class Checks:
    """What was derived again, one phrase each; a phrase starting "self-reported" was taken from the submission."""

    labels: str
    folds: str
    protocol: str
    features: str

    def items(self) -> list[tuple[str, str]]:
        return [("labels", self.labels), ("folds", self.folds), ("protocol", self.protocol),
                ("features", self.features)]

    @property
    def verified(self) -> bool:
        return not any(value.startswith(SELF_REPORTED) for _, value in self.items())

    @property
    def badge(self) -> str:
        return "verified" if self.verified else SELF_REPORTED

    def summary(self) -> str:
        return "; ".join(f"{name}: {value}" for name, value in self.items())

    def as_dict(self) -> dict:
        return dict(self.items())


@dataclass
class Derived:
    """The outcome for one submission: failures (refused), else what was checked, CI's record and predictions."""

    failures: list[str]
    checks: Checks | None = None
    record: ResultRecord | None = None
    predictions: pd.DataFrame | None = None


# -- the submitted features ---------------------------------------------------------------------------------
@dataclass
class Features:
    values: np.ndarray  # (n, dim) float32 (read from float16)
    paths: np.ndarray
    labels: np.ndarray  # self-reported
    sha256: np.ndarray  # self-reported, checked on the re-extracted sample
    digest: str = ""  # the features file's sha256
    center: np.ndarray | None = None  # the mean feature: differences are measured from it


def features_entry(path: Path, table: pd.DataFrame, values: np.ndarray) -> dict:
    """Write ``features.npz`` (``values`` minus their mean as float16, the mean as float32, ``table``'s path, label
    and sha256 per row) and return the entry a submission.json names it with."""
    values = np.asarray(values, dtype=np.float32)
    center = values.mean(axis=0) if len(values) else np.zeros(values.shape[1], dtype=np.float32)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, features=(values - center).astype(np.float16), center=center.astype(np.float32),
                        path=table["path"].to_numpy(dtype=str), label=table["label"].to_numpy(dtype=str),
                        sha256=table["sha256"].to_numpy(dtype=str))
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return {"file": f"../{path.name}", "sha256": hashlib.sha256(data).hexdigest(),
            "dtype": "float16 around a float32 center", "rows": int(len(table)), "dim": int(values.shape[1])}


def read_features(folder: Path, top: Path, entry: dict, dim: int | None) -> tuple[Features | None, list[str]]:
    """The features a submission.json names (``entry``), read without pickles from a plain file inside ``top``;
    (None, failures) when they cannot be used."""
    name = entry.get("file") if isinstance(entry, dict) else None
    if not isinstance(name, str):
        return None, [f"submission.json features.file: {name!r}, expected the path of {FEATURES_FILE}"]
    path = folder / name
    if path.is_symlink() or not path.resolve().is_relative_to(top.resolve()):
        return None, [f"submission.json features.file: {name} is a symbolic link or lies outside the submissions "
                      "folder; a submission is read only from plain files inside it"]
    if not path.is_file():
        return None, [f"{FEATURES_FILE}: {path} is missing; `bench submit` writes it beside the protocols"]
    if sha256_file(path) != entry.get("sha256"):
        return None, [f"{FEATURES_FILE}: its content differs from the features.sha256 written at submission"]
    try:
        with np.load(path, allow_pickle=False) as npz:
            values, center, paths, labels, shas = (npz[k] for k in ("features", "center", "path", "label", "sha256"))
    except (OSError, ValueError, KeyError) as exc:
        return None, [f"{FEATURES_FILE}: cannot be read ({type(exc).__name__}: {exc})"]
    n = len(paths)
    if values.ndim != 2 or values.shape[0] != n or len(labels) != n or len(shas) != n:
        return None, [f"{FEATURES_FILE}: features {values.shape}, {n} paths, {len(labels)} labels and {len(shas)} "
                      "sha256s do not line up"]
    if dim is not None and values.shape[1] != dim or center.shape != (values.shape[1],):
        return None, [f"{FEATURES_FILE}: {values.shape[1]}-d features around a center of shape {center.shape}, the "
                      f"record's extractor has dim {dim}"]
    if len(set(paths.tolist())) != n:
        return None, [f"{FEATURES_FILE}: a path is listed more than once"]
    values = values.astype(np.float32) + center.astype(np.float32)
    if not np.isfinite(values).all():
        return None, [f"{FEATURES_FILE}: holds non-finite values"]
    return Features(values, paths.astype(str), labels.astype(str), shas.astype(str), entry["sha256"],
                    center.astype(np.float32)), []


# -- labels and folds ---------------------------------------------------------------------------------------
def _task_of(record: ResultRecord):
    """The registered task the record was computed on, configured as the record says (fold scheme,
    preprocessing); None for a domain shift, a fixed split file or an unknown task."""
    from tasks import TASKS, get_task

    settings = record.task.model_extra or {}
    base = record.task.name.split("@", 1)[0]
    if "=>" in record.task.name or settings.get("split_file") or base not in TASKS.names():
        return None
    task = get_task(base)
    if task.kind != "cells":
        return None
    changes = {}
    if settings.get("folds") not in (None, getattr(task, "fold_scheme", None)):
        changes["fold_scheme"] = settings["folds"]
    if settings.get("preprocessing") not in (None, task.preprocessing):
        changes["preprocessing"] = settings["preprocessing"]
    return replace(task, **changes) if changes else task


def labels_and_folds(record: ResultRecord, features: Features, predictions: pd.DataFrame | None):
    """(labels, folds, labels check, folds check, failures) per feature row. Labels from the canonical split, folds
    from it or from the task's rule; what cannot be derived is taken from the submission and said so.
    ``predictions`` None (a few-shot record): folds that cannot be derived are None (nothing to take them from)."""
    failures: list[str] = []
    task = _task_of(record)
    rows = pd.DataFrame({"path": features.paths, "label": features.labels, "sha256": features.sha256})
    submitted = {} if predictions is None else dict(zip(predictions["path"], predictions["fold"].astype(str)))
    canonical = task.canonical_split() if task is not None else None
    labels, labels_check = rows["label"].to_numpy(), f"{SELF_REPORTED} (the task ships no canonical split)"
    if task is not None and canonical is not None:
        truth = dict(zip(canonical["path"], canonical["label"]))
        unknown = [p for p in rows["path"] if p not in truth]
        if unknown:
            return None, None, "", "", [f"{FEATURES_FILE} path {unknown[0]} is not in the canonical split of "
                                        f"{task.name}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")]
        labels = rows["path"].map(truth).to_numpy()
        for what, table in (("features.npz", rows), ("predictions.csv.gz", predictions)):
            if table is None:
                continue
            wrong = table[table["label"].to_numpy() != table["path"].map(truth).to_numpy()]
            if len(wrong):
                failures.append(f"{what} label of {wrong['path'].iat[0]}: {wrong['label'].iat[0]!r}, the canonical "
                                f"split of {task.name} says {truth[wrong['path'].iat[0]]!r}"
                                + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""))
        labels_check = f"the canonical split of {task.name}"
    kind = (record.task.model_extra or {}).get("split_kind")
    folds, folds_check = None, f"{SELF_REPORTED} (no split rule of a registered cell task applies)"
    if task is not None and canonical is not None and kind == "kfold" and \
            set(rows["path"]) == set(canonical["path"]) and getattr(task, "fold_scheme", "portable") == "portable":
        folds = rows["path"].map(dict(zip(canonical["path"], canonical["fold"]))).to_numpy()
        folds_check = f"the canonical split of {task.name}"
    elif record.skipped_images:
        folds_check = (f"{SELF_REPORTED} (the split rule ran over {len(record.skipped_images)} unreadable image(s) the "
                       "submission does not hold)")
    elif task is not None:
        try:
            assigned, assigned_kind = task.assign(rows.assign(label=labels))
            if assigned_kind == kind:
                folds = np.asarray(assigned).astype(str)
                folds_check = f"{task.name}'s split rule on the submitted images"
        except HemabenchError as exc:
            folds_check = f"{SELF_REPORTED} (the task's split rule does not apply: {exc})"
    if folds is None and predictions is None:
        return labels, None, labels_check, folds_check, failures
    if folds is None:  # the submission's own: k-fold rows from the predictions, a fixed split's rest trains
        default = "train" if kind == "fixed" else None
        folds = np.array([submitted.get(p, default) for p in rows["path"]], dtype=object)
        if kind != "fixed" and any(f is None for f in folds):
            failures.append(f"predictions.csv.gz: {sum(f is None for f in folds)} image(s) of {FEATURES_FILE} have "
                            "no prediction, though every image of a k-fold result is predicted once")
    else:
        for path, fold in zip(rows["path"], folds):
            if path in submitted and submitted[path] != str(fold):
                failures.append(f"predictions.csv.gz fold of {path}: {submitted[path]}, {folds_check} gives {fold}")
                break
        test = {p for p, f in zip(rows["path"], folds) if str(f) != "train"}
        if kind == "fixed" and predictions is not None and set(submitted) != test:
            failures.append(f"predictions.csv.gz: {len(set(submitted) ^ test)} image(s) differ from the test images "
                            f"{folds_check} gives")
    return labels, np.asarray(folds).astype(str), labels_check, folds_check, failures


def design_of(labels: np.ndarray, folds: np.ndarray, kind: str) -> CellDesign:
    classes = sorted(set(labels))
    if kind == "fixed":
        splits = [("test", np.flatnonzero(folds == "train"), np.flatnonzero(folds == "test"))]
    else:
        splits = [(name, np.flatnonzero(folds != name), np.flatnonzero(folds == name)) for name in sorted(set(folds))]
    return CellDesign(classes, np.searchsorted(classes, labels), splits)


# -- the protocol, run again --------------------------------------------------------------------------------
def rerun(record: ResultRecord, features: Features, design: CellDesign | PerturbationDesign, log,
          values: np.ndarray | None = None) -> tuple[Derived | None, list[str]]:
    """The registered protocol of the record's name on the submitted features (``values``: every row of the
    design, where it holds more than ``features``, e.g. the perturbed versions): (CI's record and predictions,
    failures where the record's metrics disagree)."""
    from protocols import PROTOCOLS, get_protocol

    name = record.protocol.name
    if name not in PROTOCOLS.names():
        return None, []
    protocol = get_protocol(name)
    if protocol.kind != design.kind:
        return None, []
    values = features.values if values is None else values
    log(f"verify: re-running {name} on {len(values)} submitted features")
    evaluation = protocol.evaluate(values, design)
    robust = record.metrics.main == PERTURBED_F1
    stored_means, our_means = dict(record.metrics.mean), dict(evaluation.mean)
    if robust:  # and each perturbation's, over folds
        stored_means.update(_per_perturbation(record.metrics.per_fold))
        our_means.update(_per_perturbation(evaluation.per_fold))
    failures = []
    for metric in sorted(our_means) if robust else LABEL_METRICS:  # (CI's names: a forger cannot drop one)
        stored, again = stored_means.get(metric), our_means.get(metric)
        if again is not None and (not isinstance(stored, (int, float)) or abs(stored - again) > RERUN_TOLERANCE):
            failures.append(f"record.json metrics.mean.{metric}: {stored!r}, {name} run again by CI on the submitted "
                            f"features gives {again!r} (tolerance {RERUN_TOLERANCE})")
    if evaluation.curve is not None:  # few-shot: the same seeded episodes, shot count by shot count
        failures.extend(_curve_differences(record.curve or {}, evaluation.curve, name))
    ours = record.model_copy(update={
        "metrics": Scores(per_fold=evaluation.per_fold, mean=evaluation.mean, std=evaluation.std,
                          main=record.metrics.main),
        "warnings": evaluation.warnings, "predictions_sha256": None, "n_predictions": None,
        "curve": evaluation.curve})
    predictions = evaluation.predictions
    if predictions is not None:
        predictions.insert(0, "path", features.paths[predictions.pop("row").to_numpy()])
        predictions["label"] = [design.classes[i] for i in predictions["label"]]
        predictions["prediction"] = [design.classes[i] for i in predictions["prediction"]]
    return Derived([], record=ours, predictions=predictions), failures


def _per_perturbation(per_fold: list[dict]) -> dict[str, float | None]:
    """"perturbations.<name>.<metric>" -> its mean over folds, for a robustness record's perturbed F1 and
    invariance (None where a fold lacks it)."""
    names = sorted({n for fold in per_fold for n in (fold.get("perturbations") or {})})
    out: dict[str, float | None] = {}
    for name in names:
        for metric in (PERTURBED_F1, INVARIANCE):
            values = [((fold.get("perturbations") or {}).get(name) or {}).get(metric) for fold in per_fold]
            numbers = [float(v) for v in values if isinstance(v, (int, float))]
            out[f"perturbations.{name}.{metric}"] = float(np.mean(numbers)) if numbers and len(numbers) == len(values) \
                else None
    return out


def _curve_differences(stored: dict, again: dict, name: str) -> list[str]:
    """Where a few-shot record's curve (``stored``) is not the one CI's run of the same episodes gives (``again``):
    the same shot counts and episodes, and each point's mean label metrics within :data:`RERUN_TOLERANCE`."""
    points = {p.get("shots"): p for p in stored.get("points") or [] if isinstance(p, dict)}
    ours = {p["shots"]: p for p in again["points"]}
    if sorted(points, key=str) != sorted(ours, key=str):
        return [f"record.json curve.points: shot counts {sorted(points, key=str)}, {name} run again by CI on the "
                f"submitted features evaluates {sorted(ours)}"]
    out = []
    for n, point in ours.items():
        if points[n].get("episodes") != point["episodes"]:
            out.append(f"record.json curve.points[shots={n}].episodes: {points[n].get('episodes')!r}, CI ran "
                       f"{point['episodes']}")
        for metric in LABEL_METRICS:
            theirs, mine = (points[n].get("mean") or {}).get(metric), point["mean"].get(metric)
            if mine is not None and (not isinstance(theirs, (int, float)) or abs(theirs - mine) > RERUN_TOLERANCE):
                out.append(f"record.json curve.points[shots={n}].mean.{metric}: {theirs!r}, {name} run again by CI "
                           f"on the submitted features gives {mine!r} (tolerance {RERUN_TOLERANCE})")
    return out


# -- the features, extracted again --------------------------------------------------------------------------
def reextract(record: ResultRecord, features: Features, data_root: Path | None, sample: int, seed: int,
              log, perturbation: str | None = None) -> tuple[str, list[str]]:
    """(features check, failures): ``sample`` rows extracted again from the images here and compared with the
    submitted ones, where the extractor is a built-in whose weights are here and are the record's; ``perturbation``:
    the version of the images the features are of (a robustness record's), applied as the run applied it."""
    from bench.core import settings
    from bench.runner import RunOptions, build_extractor, preprocessed
    from extractors import EXTRACTORS

    name = record.extractor.name
    task = _task_of(record)
    submitted_file = FEATURES_FILE if perturbation is None else f"features.{perturbation}.npz"
    if task is not None and perturbation is not None:
        task = replace(task, perturbation=perturbation)
    if name not in EXTRACTORS.names():
        return f"{SELF_REPORTED} ({name} is not a built-in extractor: its weights are not public)", []
    if task is None:
        return f"{SELF_REPORTED} (not a registered cell task on its own split)", []
    if sample <= 0:
        return f"{SELF_REPORTED} (no images were extracted again: --sample 0)", []
    root = task.resolve_root(data_root, settings.data_dir())
    try:
        root = task.existing_root(data_root, settings.data_dir())  # the embedded tasks generate theirs
    except HemabenchError:
        return (f"{SELF_REPORTED} (the {task.name} images are not at {root}: pass --data-root "
                f"{task.name}=DIR to extract a sample again)"), []
    chosen = np.sort(np.random.default_rng(seed).choice(len(features.paths), min(sample, len(features.paths)),
                                                       replace=False))
    files = [root / p for p in features.paths[chosen]]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        return f"{SELF_REPORTED} ({len(absent)} sampled image(s) are not in {root}, e.g. {absent[0]})", []
    for file, sha in zip(files, features.sha256[chosen]):
        here = sha256_file(file)
        if here != sha:
            return "", [f"{submitted_file} sha256 of {file.relative_to(root)}: {sha[:12]}..., the image at {file} has "
                        f"{here[:12]}...: the submission was not computed on these images"]
    entry = _entry_as_recorded(record)
    with tempfile.TemporaryDirectory(prefix="hemabench-verify-") as cache:
        options = RunOptions(device="cpu", precision="fp32", offline=True, progress=False, cache_root=Path(cache),
                             batch_size=16, num_workers=0)
        try:
            built = build_extractor(entry, options, lambda line: log(f"verify: {line}"))
        except HemabenchError as exc:
            return f"{SELF_REPORTED} (its weights are not here: {exc})", []
        ours = ExtractorInfo(name=name, fingerprint=built.fingerprint).weights_sha256
        if ours != record.extractor.weights_sha256:
            return (f"{SELF_REPORTED} (the {name} weights here ({str(ours)[:12]}...) are not the ones the record "
                    f"names ({str(record.extractor.weights_sha256)[:12]}...))"), []
        built = preprocessed(built, task)
        log(f"verify: extracting {len(files)} sampled image(s) again with {name} (fp32, CPU)")
        from bench.extract import cached_features

        try:
            cached, _ = cached_features(built.entry, built.model, built.fingerprint, files,
                                        digest([str(f) for f in files]), options.extraction(), log=lambda line: None)
        except HemabenchError as exc:  # an image here that cannot be read: not the submission's fault
            return f"{SELF_REPORTED} (the sampled images could not be extracted here: {exc})", []
        assert cached is not None  # finalise (the default): the features, or an error
        again = np.asarray(cached.features, dtype=np.float32)
    precision = record.extractor.precision or "fp32"
    return compare_rows(again, features, chosen, precision, seed, submitted_file, name)


def compare_rows(again: np.ndarray, features: Features, chosen: np.ndarray, precision: str, seed: int,
                 submitted_file: str, name: str) -> tuple[str, list[str]]:
    """(features check, failures) of the rows ``chosen`` of ``features`` against ``again``, CI's extraction of the
    same images. A row passes within the precision's tolerance relative to its image's own departure from the mean
    feature (a model whose features share a large common part, a randomly initialised ViT, would otherwise pass with
    any image's features in place of another's), or within :data:`ROUNDING_ULPS` of its precision's rounding at
    the feature's length when it is nearer to its own submitted row than to any other image's."""
    submitted = features.values[chosen]
    center = features.center if features.center is not None else features.values.mean(axis=0)
    distance = np.linalg.norm(again - submitted, axis=1)
    difference = distance / np.maximum(np.linalg.norm(again - center, axis=1), 1e-12)
    tolerance = FEATURE_TOLERANCE.get(precision, FEATURE_TOLERANCE["bf16"])
    rounding = ROUNDING_ULPS * PRECISION_EPS.get(precision, PRECISION_EPS["bf16"]) * np.linalg.norm(again, axis=1)
    within = difference <= tolerance
    near = ~within & (distance <= rounding)
    if near.any():
        near[near] = _nearest_is_own(again[near], features, chosen[near])
    passed = within | near
    worst = float(difference.max())
    if not passed.all():
        bad = int((~passed).sum())
        return "", [f"{submitted_file}: {bad} of {len(chosen)} images extracted again differ from the submitted "
                    f"features (largest relative difference {worst:.3g}, tolerance {tolerance:g} for {precision}, "
                    f"or {ROUNDING_ULPS} {precision} ulps of the feature's length for a row nearest its own image's):"
                    f" they are not {name}'s features of these images"]
    rounded = (f"; {int(near.sum())} within {ROUNDING_ULPS} {precision} ulps of the feature's length, each nearest "
               f"its own image's row") if near.any() else ""
    return (f"{len(chosen)} of {len(features.paths)} images extracted again (seed {seed}; largest relative "
            f"difference {worst:.1e}, tolerance {tolerance:g} for {precision}{rounded})"), []


def _nearest_is_own(again: np.ndarray, features: Features, rows: np.ndarray) -> np.ndarray:
    """Per row of ``again`` (CI's features of the images of submitted ``rows``): whether its own submitted row is
    at least as near as every submitted row of another image (rows of byte-identical images, by sha256, tie)."""
    out = np.empty(len(rows), dtype=bool)
    for i, (vector, row) in enumerate(zip(again, rows)):
        distances = np.linalg.norm(features.values - vector, axis=1)
        others = features.sha256 != features.sha256[row]
        out[i] = not others.any() or distances[row] <= distances[others].min()
    return out


def _entry_as_recorded(record: ResultRecord):
    from extractors import get_extractor

    entry = get_extractor(record.extractor.name)
    pooling = record.extractor.fingerprint.get("pooling")
    return entry.with_pooling(pooling) if pooling and pooling != entry.pooling else entry


# -- all of it ----------------------------------------------------------------------------------------------
def derive(record: ResultRecord, predictions: pd.DataFrame | None, features: Features | None, data_root: Path | None,
           sample: int, seed: int | None, log, extracted: dict | None = None,
           versions: dict[str, Features] | None = None) -> Derived:
    """Everything above for one submission whose files agree with each other. ``extracted``: the features checks
    made so far, by features file (the protocols of one (extractor, task) share theirs: extracted again once).
    ``versions``: a robustness submission's features of each perturbed version (:func:`derive_perturbed`)."""
    if features is None:
        return Derived([], Checks(f"{SELF_REPORTED} (the submission carries no features)",
                                  f"{SELF_REPORTED}", f"{SELF_REPORTED} (no features to run it on)", SELF_REPORTED),
                       record, predictions)
    if record.metrics.main == PERTURBED_F1:
        return derive_perturbed(record, features, versions or {}, data_root, sample, seed, log, extracted)
    if predictions is not None and "path" not in predictions:
        return Derived([f"predictions.csv.gz: no path column ({FEATURES_FILE} goes with cell results)"])
    labels, folds, labels_check, folds_check, failures = labels_and_folds(record, features, predictions)
    if labels is None or failures:
        return Derived(failures)
    kind = (record.task.model_extra or {}).get("split_kind")
    rerun_failures: list[str] = []
    derived = None
    if kind in ("kfold", "fixed") and folds is not None:  # (folds None: a few-shot record on folds not derivable)
        derived, rerun_failures = rerun(record, features, design_of(labels, folds, kind), log)
    if derived is None:
        protocol_check = (f"{SELF_REPORTED} (CI re-runs registered cell protocols on k-fold or fixed splits only"
                          + ("; a few-shot submission's folds must be derivable again)" if folds is None else ")"))
        derived = Derived([], record=record, predictions=predictions)
    else:
        assert derived.record is not None  # rerun's outcome carries CI's record
        main = record.metrics.main
        ours, theirs = derived.record.metrics.mean.get(main), record.metrics.mean.get(main)
        scores = (f" ({LABELS[main]} {100 * ours:.1f}; submitted {100 * theirs:.1f})"
                  if ours is not None and theirs is not None else "")
        protocol_check = f"{record.protocol.name} run again by CI on the submitted float16 features{scores}"
    seed = secrets.randbits(31) if seed is None else seed
    memo = {} if extracted is None else extracted
    key = (features.digest, record.extractor.name, record.task.name)
    if key not in memo:
        memo[key] = reextract(record, features, data_root, sample, seed, log)
    features_check, extract_failures = memo[key]
    failures = rerun_failures + extract_failures
    if failures:
        return Derived(failures)
    derived.checks = Checks(labels_check, folds_check, protocol_check, features_check)
    return derived


def derive_perturbed(record: ResultRecord, clean: Features, versions: dict[str, Features], data_root: Path | None,
                     sample: int, seed: int | None, log, extracted: dict | None = None) -> Derived:
    """:func:`derive` for a robustness record (``TASK@perturbation=all``): the labels and folds of the clean images
    as for a cell task, the protocol run again on the clean and perturbed features together, and a sample of every
    version extracted again (each perturbation applied as the run applied it: seeded by the image)."""
    from tasks.transforms import CLEAN

    names = sorted({n for fold in record.metrics.per_fold for n in (fold.get("perturbations") or {})})
    if sorted(versions) != names:
        return Derived([f"submission.json features.versions: {sorted(versions)}, the record's perturbations are "
                        f"{names}; a robustness submission carries the features of every version"])
    for name, version in versions.items():
        if not (np.array_equal(version.paths, clean.paths) and np.array_equal(version.sha256, clean.sha256)):
            return Derived([f"features.{name}.npz: its images (paths and sha256, in order) are not those of "
                            f"{FEATURES_FILE}: every version holds the same images in the same order"])
    labels, folds, labels_check, folds_check, failures = labels_and_folds(record, clean, None)
    if labels is None or failures:
        return Derived(failures)
    kind = (record.task.model_extra or {}).get("split_kind")
    derived, rerun_failures = None, []
    if folds is not None and kind in ("kfold", "fixed"):
        cell, n, count = design_of(labels, folds, kind), len(clean.paths), 1 + len(names)
        design = PerturbationDesign(cell.classes, np.tile(cell.labels, count), [CLEAN, *names],
                                    np.repeat(np.arange(count), n), np.ones(n * count, dtype=bool), cell.splits,
                                    n_cells=n)
        values = np.vstack([clean.values, *(versions[name].values for name in names)])
        derived, rerun_failures = rerun(record, clean, design, log, values=values)
    if derived is None:
        derived = Derived([], record=record)
        protocol_check = f"{SELF_REPORTED} (the folds of the clean images could not be derived again)"
    else:
        assert derived.record is not None  # rerun's outcome carries CI's record
        ours, theirs = derived.record.metrics.mean.get(PERTURBED_F1), record.metrics.mean.get(PERTURBED_F1)
        protocol_check = (f"{record.protocol.name} run again by CI on the submitted float16 features of every version "
                          f"(perturbed F1 {100 * (ours or 0):.1f}; submitted {100 * (theirs or 0):.1f})")
    seed = secrets.randbits(31) if seed is None else seed
    memo = {} if extracted is None else extracted
    checks, extract_failures = [], []
    for version, features in [(None, clean), *((n, versions[n]) for n in names)]:
        key = (features.digest, record.extractor.name, record.task.name, version)
        if key not in memo:
            memo[key] = reextract(record, features, data_root, sample, seed, log, perturbation=version)
        check, problems = memo[key]
        checks.append(check)
        extract_failures.extend(f"{'clean' if version is None else version}: {line}" for line in problems)
    failures = rerun_failures + extract_failures
    if failures:
        return Derived(failures)
    trusted = [c for c in checks if c.startswith(SELF_REPORTED)]
    features_check = trusted[0] if trusted else f"{checks[0]}; and under each of {', '.join(names)}, within it"
    derived.checks = Checks(labels_check, folds_check, protocol_check, features_check)
    return derived
