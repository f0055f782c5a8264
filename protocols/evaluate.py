"""Run a protocol over a design's splits: per-split metrics, mean ± std, per-sample predictions, warnings."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from bench.core.design import BagDesign
from bench.core.errors import DataError
from bench.core.metrics import METRICS, classification_metrics
from protocols.base import CellProtocol, Evaluation, report_split


def evaluate(
    protocol: CellProtocol,
    features: np.ndarray,
    labels: np.ndarray,
    splits: list[tuple[str, np.ndarray, np.ndarray]],
    classes: list[str],
) -> Evaluation:
    """``labels`` index ``classes`` (the label map); ``splits``: (fold name, train rows, test rows)."""
    t0 = time.perf_counter()
    n_classes = len(classes)
    per_fold, frames, notes = [], [], []
    report_split(0, len(splits), f"fold {splits[0][0]}" if splits else "")
    for number, (fold, train, test) in enumerate(splits, 1):
        if len(train) == 0 or len(test) == 0:
            raise DataError(f"split {fold!r} has {len(train)} training and {len(test)} test samples; both must be > 0")
        prediction = protocol.fit_predict(features[train], labels[train], features[test], n_classes)
        metrics = classification_metrics(labels[test], prediction.labels, prediction.proba, n_classes)
        per_fold.append({"fold": fold, "n_train": int(len(train)), "n_test": int(len(test)), **metrics})
        notes.extend(f"fold {fold}: {note}" for note in prediction.notes)
        report_split(number, len(splits), f"fold {fold}", [f"fold {fold}: {note}" for note in prediction.notes])
        predicted = np.unique(prediction.labels)
        if len(predicted) == 1 and len(np.unique(labels[test])) > 1:
            notes.append(
                f"fold {fold}: predictions collapsed to one class ({classes[predicted[0]]!r}) although the test "
                "split holds several; for `linear`, try `linear-std` (the paper's probe is not scale-invariant)"
            )
        frame = pd.DataFrame(
            {"row": test, "fold": fold, "label": labels[test], "prediction": prediction.labels.astype(np.int64)}
        )
        _proba_columns(frame, prediction.proba, classes)
        frames.append(frame)
    mean, std = _aggregate(per_fold)
    return Evaluation(per_fold, mean, std, pd.concat(frames, ignore_index=True), notes, time.perf_counter() - t0)


def _aggregate(per_fold: list[dict]) -> tuple[dict, dict]:
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
    mean, std = _aggregate(per_fold)
    return Evaluation(
        per_fold,
        mean,
        std,
        pd.concat(frames, ignore_index=True),
        notes,
        time.perf_counter() - t0,
        pd.concat(attention_frames, ignore_index=True) if attention_frames else None,
    )
