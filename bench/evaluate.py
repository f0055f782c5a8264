"""Run one protocol over a task's splits: per-fold metrics, mean ± std, per-sample predictions, warnings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.metrics import METRICS, classification_metrics
from bench.protocols.base import Protocol


@dataclass
class Evaluation:
    per_fold: list[dict]
    mean: dict
    std: dict
    predictions: pd.DataFrame  # row, fold, label, prediction (+ proba_<class>)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def evaluate(
    protocol: Protocol,
    features: np.ndarray,
    labels: np.ndarray,
    splits: list[tuple[str, np.ndarray, np.ndarray]],
    classes: list[str],
) -> Evaluation:
    """``labels`` index ``classes`` (the label map); ``splits``: (fold name, train rows, test rows)."""
    t0 = time.perf_counter()
    n_classes = len(classes)
    per_fold, frames, notes = [], [], []
    for fold, train, test in splits:
        if len(train) == 0 or len(test) == 0:
            raise ValueError(f"split {fold!r} has {len(train)} training and {len(test)} test samples; both must be > 0")
        prediction = protocol.fit_predict(features[train], labels[train], features[test], n_classes)
        metrics = classification_metrics(labels[test], prediction.labels, prediction.proba, n_classes)
        per_fold.append({"fold": fold, "n_train": int(len(train)), "n_test": int(len(test)), **metrics})
        notes.extend(f"fold {fold}: {note}" for note in prediction.notes)
        predicted = np.unique(prediction.labels)
        if len(predicted) == 1 and len(np.unique(labels[test])) > 1:
            notes.append(
                f"fold {fold}: predictions collapsed to one class ({classes[predicted[0]]!r}) although the test "
                "split holds several; for `linear`, try `linear-std` (the paper's probe is not scale-invariant)"
            )
        frame = pd.DataFrame(
            {"row": test, "fold": fold, "label": labels[test], "prediction": prediction.labels.astype(np.int64)}
        )
        if prediction.proba is not None:
            for j, name in enumerate(classes):
                frame[f"proba_{name}"] = prediction.proba[:, j]
        frames.append(frame)
    mean, std = {}, {}
    for metric in METRICS:
        values = [fold[metric] for fold in per_fold if fold[metric] is not None]
        mean[metric] = float(np.mean(values)) if len(values) == len(per_fold) else None
        std[metric] = float(np.std(values)) if len(values) == len(per_fold) else None  # population std (ddof=0)
    return Evaluation(per_fold, mean, std, pd.concat(frames, ignore_index=True), notes, time.perf_counter() - t0)
