"""Run a protocol over a design's splits: per-split metrics, mean ± std, per-sample predictions, warnings."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from bench.core.design import BagDesign
from bench.core.errors import DataError
from bench.core.metrics import METRICS, classification_metrics
from bench.core.rescore import COLLAPSED
from protocols.base import CellProtocol, Evaluation, Prediction, report_split


def evaluate(
    protocol: CellProtocol,
    features: np.ndarray,
    labels: np.ndarray,
    splits: list[tuple[str, np.ndarray, np.ndarray]],
    classes: list[str],
    predictable: list[int] | None = None,
) -> Evaluation:
    """``labels`` index ``classes`` (the label map); ``splits``: (fold name, train rows, test rows).
    ``predictable``: the classes a prediction may take (``restrict``); None: all."""
    t0 = time.perf_counter()
    n_classes = len(classes)
    per_fold, frames, notes = [], [], []
    report_split(0, len(splits), f"fold {splits[0][0]}" if splits else "")
    for number, (fold, train, test) in enumerate(splits, 1):
        if len(train) == 0 or len(test) == 0:
            raise DataError(f"split {fold!r} has {len(train)} training and {len(test)} test samples; both must be > 0")
        prediction = protocol.fit_predict(features[train], labels[train], features[test], n_classes)
        if predictable is not None:
            prediction = restrict(prediction, predictable, protocol.name)
        metrics = classification_metrics(labels[test], prediction.labels, prediction.proba, n_classes)
        per_fold.append({"fold": fold, "n_train": int(len(train)), "n_test": int(len(test)), **metrics})
        notes.extend(f"fold {fold}: {note}" for note in prediction.notes)
        report_split(number, len(splits), f"fold {fold}", [f"fold {fold}: {note}" for note in prediction.notes])
        notes.extend(collapse_notes(f"fold {fold}", labels[test], prediction.labels, classes,
                                    "for `linear`, try `linear-std` (the paper's probe is not scale-invariant)"))
        frame = pd.DataFrame(
            {"row": test, "fold": fold, "label": labels[test], "prediction": prediction.labels.astype(np.int64)}
        )
        _proba_columns(frame, prediction.proba, classes)
        frames.append(frame)
    mean, std = aggregate(per_fold)
    return Evaluation(per_fold, mean, std, pd.concat(frames, ignore_index=True), notes, time.perf_counter() - t0)


def restrict(prediction: Prediction, predictable: list[int], protocol: str) -> Prediction:
    """The prediction among ``predictable`` classes only: the most probable of them (the lowest on ties, as the
    protocols' argmax), probabilities renormalised over them. The classifier is the same; only what it may answer
    changes (a domain shift scored on the classes both data sets hold)."""
    if prediction.proba is None:
        raise DataError(f"protocol {protocol!r} gives no class probabilities, so its predictions cannot be "
                        "restricted to the shared classes; name the task without @classes=shared")
    allowed = np.asarray(sorted(predictable), dtype=np.int64)
    kept = prediction.proba[:, allowed]
    proba = np.zeros_like(prediction.proba)
    total = kept.sum(axis=1, keepdims=True)
    proba[:, allowed] = np.divide(kept, total, out=np.full_like(kept, 1.0 / len(allowed)), where=total > 0)
    labels = allowed[np.argmax(kept, axis=1)]
    return Prediction(labels=labels, proba=proba, notes=prediction.notes)


def collapse_notes(where: str, true: np.ndarray, predicted: np.ndarray, classes: list[str], hint: str) -> list[str]:
    """A warning when a split's predictions collapsed to one class although its test labels hold several."""
    shown = np.unique(predicted)
    if len(shown) == 1 and len(np.unique(true)) > 1:
        return [f"{where}: {COLLAPSED} ({classes[shown[0]]!r}) although the test split holds "
                f"several; {hint}"]
    return []


def dominance_notes(true: np.ndarray, predicted: np.ndarray, classes: list[str], hint: str,
                    share: float = 0.8) -> list[str]:
    """A warning when, over all splits, one class takes at least ``share`` of the predictions but at most half of
    the labels (e.g. 34 of 40 patients predicted "control", 10 of them control): the model mostly predicts one
    class, whatever a single split shows."""
    values, counts = np.unique(predicted, return_counts=True)
    if not len(values):
        return []
    top = int(np.argmax(counts))
    label, n = int(values[top]), int(counts[top])
    actual = int(np.sum(true == label))
    if n >= share * len(predicted) and actual <= 0.5 * len(true) and len(np.unique(true)) > 1:
        return [f"predictions are dominated by one class: {n} of {len(predicted)} predicted {classes[label]!r}, "
                f"while {actual} are {classes[label]!r}; {hint}"]
    return []


def aggregate(per_fold: list[dict]) -> tuple[dict, dict]:
    """Mean and population std (ddof=0) of each metric over folds; None where any fold lacks it."""
    mean, std = {}, {}
    for metric in METRICS:
        values = [fold[metric] for fold in per_fold if fold[metric] is not None]
        mean[metric] = float(np.mean(values)) if len(values) == len(per_fold) else None
        std[metric] = float(np.std(values)) if len(values) == len(per_fold) else None
    return mean, std


def _proba_columns(frame: pd.DataFrame, proba, classes: list[str]) -> None:
    if proba is not None:
        for j, name in enumerate(classes):
            frame[f"proba_{name}"] = proba[:, j]


BAG_HINT = ("the attention model learned little beyond the majority class: too few patients or epochs, or features "
            "that do not separate the diagnoses")


def evaluate_bags(protocol, features: np.ndarray, design: BagDesign) -> Evaluation:
    """Patient-level cross-validation of a bag protocol over the design's (seed, fold) splits.

    The protocol gets each split's seed too (its validation split and initialisation). Metrics per
    (seed, fold); mean and std over all of them. The attention of every cell of every test bag is kept.
    """
    t0 = time.perf_counter()
    classes, bag_ids, bag_labels, bag_rows = design.classes, design.bag_ids, design.bag_labels, design.bag_rows
    n_classes = len(classes)
    bags = [np.asarray(features[rows], dtype=np.float32) for rows in bag_rows]
    per_fold, frames, attention_frames, notes = [], [], [], []
    report_split(0, len(design.splits), "seed and fold 1")
    for number, (seed, fold, train, test) in enumerate(design.splits, 1):
        prediction = protocol.fit_predict_bags(
            [bags[i] for i in train], bag_labels[train], [bags[i] for i in test], n_classes, seed
        )
        metrics = classification_metrics(bag_labels[test], prediction.labels, prediction.proba, n_classes)
        per_fold.append({"seed": seed, "fold": str(fold), "n_train": int(len(train)), "n_test": int(len(test)), **metrics})
        notes.extend(f"seed {seed} fold {fold}: {note}" for note in prediction.notes)
        report_split(number, len(design.splits), f"seed {seed} fold {fold}",
                     [f"seed {seed} fold {fold}: {note}" for note in prediction.notes])
        notes.extend(collapse_notes(f"seed {seed} fold {fold}", bag_labels[test], prediction.labels, classes,
                                    BAG_HINT))
        frame = pd.DataFrame({"bag": [bag_ids[i] for i in test], "seed": seed, "fold": fold,
                              "label": bag_labels[test], "prediction": prediction.labels.astype(np.int64)})
        _proba_columns(frame, prediction.proba, classes)
        frames.append(frame)
        for i, weights in zip(test, prediction.attention or []):
            weights = np.asarray(weights)
            cells = pd.DataFrame({"row": bag_rows[i], "bag": bag_ids[i], "seed": seed, "fold": fold})
            if weights.ndim == 1:
                cells["attention"] = weights
            else:
                for j, name in enumerate(classes):
                    cells[f"attention_{name}"] = weights[:, j]
            attention_frames.append(cells)
    if frames:
        predicted = pd.concat(frames, ignore_index=True)
        notes.extend(dominance_notes(predicted["label"].to_numpy(), predicted["prediction"].to_numpy(), classes,
                                     BAG_HINT))
    mean, std = aggregate(per_fold)
    return Evaluation(
        per_fold,
        mean,
        std,
        pd.concat(frames, ignore_index=True),
        notes,
        time.perf_counter() - t0,
        pd.concat(attention_frames, ignore_index=True) if attention_frames else None,
    )
