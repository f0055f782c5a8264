"""Leaderboard statistics from stored per-sample predictions: bootstrap confidence intervals, paired bootstrap of
the difference between two extractors, and ranks across tasks (Borda), never averaging over what happens to be
there (a mean over tasks is missing when any task is missing), and never counting Borda points over different task
sets (only the extractors with every task of a table are ranked)."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from bench.core.errors import ResultsError
from bench.core.metrics import ACCURACY, MAIN_METRIC, WEIGHTED_F1, check_metric


def _units(predictions: pd.DataFrame) -> str:
    """The resampling unit: the patient (``bag``) for MIL results, the image (``path``) otherwise."""
    for column in ("bag", "path"):
        if column in predictions:
            return column
    raise ResultsError("predictions need a 'path' or 'bag' column")


def _draws(units: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, len(units), size=(n_boot, len(units)))


# -- resampled metrics in bulk ------------------------------------------------------------------------------
# Every label metric is a function of the confusion matrix, and a resample's confusion matrix is the sum of its
# units' confusion counts weighted by how often each unit was drawn. So the n_boot resamples become one product,
# (multiplicities: n_boot x units) @ (per-unit counts, sparse: units x K*K), and one vectorised metric, instead of
# n_boot scikit-learn calls on concatenated rows (1-3 ms each: minutes for a table of results). The draws depend
# only on (units, n_boot, seed), so every result of a task shares them: the multiplicities are made once. The
# metric formulas are scikit-learn's (tests check them against ``metric_value`` on every resample); the draws are
# the same as before, so the intervals are too.
@functools.lru_cache(maxsize=2)
def _multiplicities(n_units: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_units, n_boot) int32, C order: how often each unit is drawn in each resample of ``_draws``."""
    draws = _draws(np.arange(n_units), n_boot, seed)
    out = np.empty((n_units, n_boot), dtype=np.int32)
    for b in range(n_boot):
        out[:, b] = np.bincount(draws[b], minlength=n_units)
    out.setflags(write=False)
    return out


def _resampled_confusions(units: pd.Series, labels: np.ndarray, predictions: list[np.ndarray], n_boot: int,
                          seed: int):
    """(n_sets, n_boot + 1, K, K) confusion matrices of each prediction set: on every resample of the units
    (``units``: the unit of each row), then (last) on all rows; and the number of units."""
    from scipy import sparse

    unit_of_row, unit_names = pd.factorize(units, sort=True)  # units in sorted order, as ``_draws`` indexes them
    n_units = len(unit_names)
    classes = np.unique(np.concatenate([labels.astype(str)] + [p.astype(str) for p in predictions]))
    k = len(classes)
    y = np.searchsorted(classes, labels.astype(str))
    weights = _multiplicities(n_units, n_boot, seed)
    out = []
    for prediction in predictions:
        cell = y * k + np.searchsorted(classes, prediction.astype(str))
        counts = sparse.csr_matrix((np.ones(len(cell), dtype=np.int64), (cell, unit_of_row)), shape=(k * k, n_units))
        resampled = np.asarray(counts @ weights).T  # (n_boot, K*K), exact integer counts
        whole = np.asarray(counts.sum(axis=1)).T  # (1, K*K)
        out.append(np.concatenate([resampled, whole]).reshape(n_boot + 1, k, k).astype(np.float64))
    return np.stack(out), n_units


def metric_from_confusions(confusions: np.ndarray, metric: str) -> np.ndarray:
    """The label metric of each confusion matrix in ``confusions`` (..., K, K; rows = true, columns = predicted),
    as scikit-learn computes it from the labels: weighted F1 with zero_division=0 over the classes present in
    either, accuracy, and balanced accuracy as the mean recall over the classes present in the labels."""
    check_metric(metric)
    tp = np.diagonal(confusions, axis1=-2, axis2=-1)
    support = confusions.sum(axis=-1)
    total = support.sum(axis=-1)
    if metric == ACCURACY:
        return tp.sum(axis=-1) / total
    if metric == WEIGHTED_F1:
        predicted = confusions.sum(axis=-2)
        denominator = support + predicted  # 2tp + fp + fn
        f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
        return (f1 * support).sum(axis=-1) / total
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    return recall.sum(axis=-1) / present.sum(axis=-1)


def _resampled_metrics(units: pd.Series, labels: np.ndarray, predictions: list[np.ndarray], metric: str, n_boot: int,
                       seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """((n_sets, n_boot) metric of each prediction set on the same resamples of the units, (n_sets,) the metric
    on all rows, the number of units)."""
    confusions, n_units = _resampled_confusions(units, labels, predictions, n_boot, seed)
    values = metric_from_confusions(confusions, metric)
    return values[:, :-1], values[:, -1], n_units


def bootstrap_ci(predictions: pd.DataFrame, metric: str = MAIN_METRIC, *, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """(point estimate, low, high): the metric over all predictions, and the percentile interval of the metric
    over ``n_boot`` resamples of the units (images, or patients with all their rows, e.g. one per seed)."""
    unit = _units(predictions)
    labels, preds = predictions["label"].to_numpy(), predictions["prediction"].to_numpy()
    (values,), (point,), _ = _resampled_metrics(predictions[unit], labels, [preds], metric, n_boot, seed)
    tail = (1 - level) / 2
    return float(point), float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def paired_bootstrap(a: pd.DataFrame, b: pd.DataFrame, metric: str = MAIN_METRIC, *, n_boot: int = 1000,
                     seed: int = 0, level: float = 0.95) -> dict:
    """Difference metric(a) - metric(b) on the same units (aligned by path/bag and, for MIL, seed), resampled
    together: point difference, percentile interval and a two-sided bootstrap p-value."""
    unit = _units(a)
    keys = [unit] + (["seed"] if "seed" in a and "seed" in b else [])
    merged = a[keys + ["label", "prediction"]].merge(b[keys + ["label", "prediction"]], on=keys, suffixes=("_a", "_b"))
    if len(merged) != len(a) or len(merged) != len(b):
        raise ResultsError(f"the two prediction sets do not cover the same samples ({len(a)} vs {len(b)}, {len(merged)} shared)")
    if not (merged["label_a"] == merged["label_b"]).all():
        raise ResultsError("the two prediction sets disagree on labels: not the same task")
    y, pa, pb = merged["label_a"].to_numpy(), merged["prediction_a"].to_numpy(), merged["prediction_b"].to_numpy()
    (va, vb), (whole_a, whole_b), n_units = _resampled_metrics(merged[unit], y, [pa, pb], metric, n_boot, seed)
    point, diffs = float(whole_a - whole_b), va - vb
    tail = (1 - level) / 2
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    return {"difference": point, "low": float(np.quantile(diffs, tail)), "high": float(np.quantile(diffs, 1 - tail)),
            "p_value": float(p), "n_units": int(n_units), "n_boot": n_boot}


def rank_table(scores: pd.DataFrame) -> pd.DataFrame:
    """``scores``: extractors x tasks (NaN = not run). Adds per-task ranks among the extractors with a result on
    that task (1 = best, ties share the best rank); and, only among the extractors with a result on every task
    (``ranked``), the ``mean`` over tasks and a Borda count (for each task, the number of those extractors with a
    strictly lower score). The others get neither (NaN): a Borda count over different task sets would reward
    running fewer, easier tasks, and a mean over what happens to be there is no mean over the tasks. Sorted:
    the ranked extractors by Borda count, then mean, then name; then the others by name."""
    scores = scores.sort_index()
    ranks = scores.rank(axis=0, ascending=False, method="min")
    complete = scores.notna().all(axis=1)
    beaten = scores[complete].rank(axis=0, ascending=True, method="min") - 1  # complete rows with a lower score
    out = scores.copy()
    out["mean"] = scores.mean(axis=1, skipna=False)
    out["borda"] = beaten.sum(axis=1).reindex(scores.index)  # NaN where incomplete
    out["ranked"] = complete
    for task in scores.columns:
        out[f"rank {task}"] = ranks[task]
    ranked = out[complete].sort_values(["borda", "mean"], ascending=False, kind="stable")
    return pd.concat([ranked, out[~complete]])
