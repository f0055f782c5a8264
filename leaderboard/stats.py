"""Leaderboard statistics from stored per-sample predictions: bootstrap confidence intervals, paired bootstrap of
the difference between two extractors, and ranks across tasks (Borda), never averaging over what happens to be
there (a mean over tasks is missing when any task is missing), and never counting Borda points over different task
sets (only the extractors with every task of a table are ranked)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.core.errors import ResultsError
from bench.core.metrics import MAIN_METRIC, metric_value


def _units(predictions: pd.DataFrame) -> str:
    """The resampling unit: the patient (``bag``) for MIL results, the image (``path``) otherwise."""
    for column in ("bag", "path"):
        if column in predictions:
            return column
    raise ResultsError("predictions need a 'path' or 'bag' column")


def _draws(units: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, len(units), size=(n_boot, len(units)))


def bootstrap_ci(predictions: pd.DataFrame, metric: str = MAIN_METRIC, *, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """(point estimate, low, high): the metric over all predictions, and the percentile interval of the metric
    over ``n_boot`` resamples of the units (images, or patients with all their rows, e.g. one per seed)."""
    unit = _units(predictions)
    rows_of = predictions.groupby(unit).indices
    units = np.array(sorted(rows_of))
    labels, preds = predictions["label"].to_numpy(), predictions["prediction"].to_numpy()
    point = metric_value(labels, preds, metric)
    values = np.empty(n_boot)
    for b, draw in enumerate(_draws(units, n_boot, seed)):
        rows = np.concatenate([rows_of[units[i]] for i in draw])
        values[b] = metric_value(labels[rows], preds[rows], metric)
    tail = (1 - level) / 2
    return point, float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


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
    rows_of = merged.groupby(unit).indices
    units = np.array(sorted(rows_of))
    y, pa, pb = merged["label_a"].to_numpy(), merged["prediction_a"].to_numpy(), merged["prediction_b"].to_numpy()
    point = metric_value(y, pa, metric) - metric_value(y, pb, metric)
    diffs = np.empty(n_boot)
    for i, draw in enumerate(_draws(units, n_boot, seed)):
        rows = np.concatenate([rows_of[units[j]] for j in draw])
        diffs[i] = metric_value(y[rows], pa[rows], metric) - metric_value(y[rows], pb[rows], metric)
    tail = (1 - level) / 2
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    return {"difference": point, "low": float(np.quantile(diffs, tail)), "high": float(np.quantile(diffs, 1 - tail)),
            "p_value": float(p), "n_units": int(len(units)), "n_boot": n_boot}


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
