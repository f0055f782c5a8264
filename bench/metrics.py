"""Classification metrics (scikit-learn's implementations): weighted F1, accuracy, balanced accuracy, macro AUROC."""

from __future__ import annotations

import warnings

import numpy as np

METRICS = ("weighted_f1", "accuracy", "balanced_accuracy", "macro_auroc")


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, n_classes: int) -> dict:
    """Metric name -> value in [0, 1] (None where it cannot be computed; see ``notes``)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

    with warnings.catch_warnings():
        # balanced accuracy warns when a predicted class is absent from y_true; the value is still defined
        warnings.simplefilter("ignore", UserWarning)
        result = {
            "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_auroc": None,
        }
    present = np.unique(y_true)
    if proba is not None and len(present) >= 2:
        # one-vs-rest AUROC over the classes present in this test split, probabilities renormalised over them
        sub = proba[:, present]
        total = sub.sum(axis=1, keepdims=True)
        sub = np.divide(sub, total, out=np.full_like(sub, 1.0 / len(present)), where=total > 0)
        if len(present) == 2:
            result["macro_auroc"] = float(roc_auc_score(y_true == present[1], sub[:, 1]))
        else:
            result["macro_auroc"] = float(roc_auc_score(y_true, sub, multi_class="ovr", average="macro", labels=present))
    return result
