"""The metrics, written once: their names, their labels, and their scikit-learn implementations.

Everything that scores predictions (the protocols per fold, the leaderboard's bootstrap, ``bench compare``)
calls :func:`label_metrics` (a count, checked against scikit-learn), :func:`metric_value` (scikit-learn's
implementations, the reference) or :func:`classification_metrics`; everything that shows a metric takes its name
from :data:`METRICS` and its label from :data:`LABELS`.
"""

from __future__ import annotations

import warnings

import numpy as np

WEIGHTED_F1, ACCURACY, BALANCED_ACCURACY, MACRO_AUROC = "weighted_f1", "accuracy", "balanced_accuracy", "macro_auroc"
ECE = "ece"  # expected calibration error of the predicted class's probability (lower is better)
METRICS = (WEIGHTED_F1, ACCURACY, BALANCED_ACCURACY, MACRO_AUROC, ECE)
ECE_BINS = 15  # equal-width confidence bins, as Guo et al. (ICML 2017) report it
LABEL_METRICS = (WEIGHTED_F1, ACCURACY, BALANCED_ACCURACY)  # computable from predicted labels alone
MAIN_METRIC = WEIGHTED_F1  # the paper's main score
LABELS = {
    WEIGHTED_F1: "weighted F1",
    ACCURACY: "accuracy",
    BALANCED_ACCURACY: "balanced acc.",
    MACRO_AUROC: "macro AUROC",
    ECE: "ECE",
}

# Batch-effect scores (`bench batch-effect`, protocols/batch_effect.py): how embeddings of several data sets
# mix on the cell types they share. Each in [0, 1], higher is better (domains mixed, classes apart).
DOMAIN_ASW, CLASS_ASW, KNN_MIXING, INTEGRATION = "domain_asw", "class_asw", "knn_mixing", "integration_score"
BATCH_METRICS = (INTEGRATION, DOMAIN_ASW, KNN_MIXING, CLASS_ASW)
LABELS.update({
    DOMAIN_ASW: "domain ASW",
    CLASS_ASW: "class ASW",
    KNN_MIXING: "kNN mixing",
    INTEGRATION: "integration score",
})
# Robustness (protocols/robustness.py): a probe trained on clean cells, tested on perturbed ones, and how far each
# cell's feature moves. In [0, 1]; higher is better except the drop.
PERTURBED_F1, CLEAN_F1, F1_DROP, INVARIANCE = "perturbed_f1", "clean_f1", "f1_drop", "invariance"
ROBUSTNESS_INDEX = "robustness_index"  # PathoROB's, on data sets from several sites (protocols/robustness.py)
ROBUSTNESS_METRICS = (PERTURBED_F1, CLEAN_F1, F1_DROP, INVARIANCE)
LABELS.update({
    PERTURBED_F1: "weighted F1, perturbed",
    CLEAN_F1: "weighted F1, clean",
    F1_DROP: "F1 drop",
    INVARIANCE: "feature invariance",
    ROBUSTNESS_INDEX: "robustness index",
})
SCORES = METRICS + BATCH_METRICS + ROBUSTNESS_METRICS + (ROBUSTNESS_INDEX,)  # every name a result record may hold


def check_metric(metric: str, allowed: tuple[str, ...] = LABEL_METRICS) -> str:
    if metric not in allowed:
        from bench.core.errors import UsageError

        raise UsageError(f"metric {metric!r} is not one of {', '.join(allowed)}")
    return metric


def metric_value(y_true, y_pred, metric: str) -> float:
    """One label metric (weighted F1, accuracy or balanced accuracy) in [0, 1]."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    check_metric(metric)
    if metric == WEIGHTED_F1:
        # (scikit-learn is untyped: pyright takes zero_division's type from its default, "warn")
        return float(f1_score(y_true, y_pred, average="weighted", zero_division=0))  # pyright: ignore[reportArgumentType]
    if metric == ACCURACY:
        return float(accuracy_score(y_true, y_pred))
    with warnings.catch_warnings():
        # balanced accuracy warns when a predicted class is absent from y_true; the value is still defined
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(y_true, y_pred))


def expected_calibration_error(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """Top-label ECE (Guo et al., ICML 2017): the predicted class's probability (its confidence) binned into
    ``bins`` equal-width bins of (0, 1], then sum over bins of |bin| / n x |accuracy - mean confidence|. Written
    here because scikit-learn has no multi-class ECE (its ``calibration_curve`` is binary)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    confidence = np.asarray(proba, dtype=np.float64)[np.arange(len(y_pred)), y_pred]
    correct = (y_true == y_pred).astype(np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in np.unique(which):
        rows = which == b
        total += rows.sum() / len(y_pred) * abs(correct[rows].mean() - confidence[rows].mean())
    return float(total)


def counted_label_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Weighted F1, accuracy and balanced accuracy from one count of (true, predicted) pairs: the values
    :func:`metric_value` gives (scikit-learn's, ``zero_division=0``; tests/test_fewshot.py checks them equal to
    1e-12 on random and degenerate cases). Written out because each scikit-learn call spends ~4 ms validating
    its inputs, 12 ms for the three, more than a few-shot episode's fit; a few-shot task makes 800 of them.
    Labels are non-negative integers."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    k = int(max(y_true.max(initial=0), y_pred.max(initial=0))) + 1
    counts = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    tp, support, predicted = np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)
    held = support > 0
    n = int(support.sum())
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros(k), where=(support + predicted) > 0)
    return {WEIGHTED_F1: float(np.average(f1, weights=support)) if n else 0.0,
            ACCURACY: float(tp.sum() / n) if n else 0.0,
            BALANCED_ACCURACY: float(np.mean(tp[held] / support[held])) if n else 0.0}


def label_metrics(y_true, y_pred) -> dict:
    """:func:`counted_label_metrics` for labels of any kind (text or integers, arrays or pandas columns), coded
    over the labels of both: what the protocols, the re-scoring of stored records and the robustness tables use,
    so that checking a record costs a count rather than three scikit-learn calls per fold (tests/test_fewshot.py
    checks it equal to :func:`metric_value`)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"labels and predictions must be two columns of one length, got shapes {y_true.shape} "
                         f"and {y_pred.shape}")
    _, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    return counted_label_metrics(codes[:len(y_true)], codes[len(y_true):])


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, n_classes: int) -> dict:
    """Metric name -> value in [0, 1] for every name in :data:`METRICS` (None where it cannot be computed)."""
    from sklearn.metrics import roc_auc_score

    result: dict = label_metrics(y_true, y_pred)
    result[MACRO_AUROC] = None
    result[ECE] = None if proba is None or not len(y_pred) else expected_calibration_error(y_true, y_pred, proba)
    present = np.unique(y_true)
    if proba is not None and len(present) >= 2:
        # one-vs-rest AUROC over the classes present in this test split, probabilities renormalised over them
        sub = proba[:, present]
        total = sub.sum(axis=1, keepdims=True)
        sub = np.divide(sub, total, out=np.full_like(sub, 1.0 / len(present)), where=total > 0)
        if len(present) == 2:
            result[MACRO_AUROC] = float(roc_auc_score(y_true == present[1], sub[:, 1]))
        else:
            result[MACRO_AUROC] = float(roc_auc_score(y_true, sub, multi_class="ovr", average="macro", labels=present))
    return result
