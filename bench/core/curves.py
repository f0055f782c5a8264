"""Label-efficiency curves: a few-shot result's metrics per number of labelled cells, from its episodes.

A few-shot protocol (:mod:`protocols.fewshot`) records one entry per *episode* in ``metrics.per_fold``: its
metrics at every shot count (``episode["shots"]["8"] = {"weighted_f1": ..., "n_train": ...}``) and, as its own
metrics, their mean over the shot counts (the area under the label-efficiency curve, shot counts evenly spaced on
a log2 axis). The record's mean and std are then those of every result: over its per-fold entries, here the
episodes. The curve (:func:`episode_curve`) is derived from the same entries, so a record agrees with itself in
a way anyone can check again (:func:`curve_problems`), without per-cell predictions (100 episodes x 8 shot
counts x the test set would be millions of rows).

The interval is Student's t over episodes: mean ± t(0.975, E - 1) x s / sqrt(E), s the sample std (ddof 1):
the uncertainty of the mean over episode draws, not the spread of single episodes (the std says that).
"""

from __future__ import annotations

import math
from typing import Any

from bench.core.metrics import METRICS

LEVEL = 0.95
INTERVAL = "Student's t over episodes, 95 %"


def t_interval(values: list[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) of ``values``: mean ± t(level, n - 1) x s / sqrt(n); one value: its own interval."""
    from scipy.stats import t

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, mean, mean
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * s / math.sqrt(n)
    return mean, mean - half, mean + half


def _summary(values_per_metric: dict[str, list]) -> dict[str, dict[str, float | None]]:
    """mean, population std and the t interval of each metric's values (None where an episode lacks it)."""
    out: dict[str, dict[str, float | None]] = {"mean": {}, "std": {}, "ci_low": {}, "ci_high": {}}
    for metric, values in values_per_metric.items():
        if not values or any(v is None for v in values):
            for key in out:
                out[key][metric] = None
            continue
        mean, low, high = t_interval(values)
        out["mean"][metric] = mean
        out["std"][metric] = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        out["ci_low"][metric], out["ci_high"][metric] = low, high
    return out


def episode_curve(per_fold: list[dict]) -> dict[str, Any]:
    """The label-efficiency curve of a few-shot result's episodes: one point per shot count (its number of
    episodes and training cells, and per metric the mean, population std and t interval over episodes), and
    ``overall``, the same of the episodes' own metrics (their mean over shot counts)."""
    shots = sorted({int(n) for episode in per_fold for n in episode.get("shots", {})})
    points = []
    for n in shots:
        held = [episode["shots"][str(n)] for episode in per_fold if str(n) in episode.get("shots", {})]
        point: dict[str, Any] = {"shots": n, "episodes": len(held),
                                 "n_train_mean": sum(h["n_train"] for h in held) / len(held)}
        point.update(_summary({m: [h.get(m) for h in held] for m in METRICS}))
        points.append(point)
    overall = {"episodes": len(per_fold), **_summary({m: [e.get(m) for e in per_fold] for m in METRICS})}
    return {"x": "shots", "interval": INTERVAL, "points": points, "overall": overall}


def curve_problems(record, tolerance: float = 1e-9) -> list[str]:
    """Where a few-shot record disagrees with its episodes: each episode's metric must be the mean of its shot
    counts', the record's mean and std those of its episodes, and the stored curve the one its episodes give
    (:func:`episode_curve`). One line per disagreement, naming the key."""
    problems = []
    per_fold = record.metrics.per_fold
    for number, episode in enumerate(per_fold):
        shots = episode.get("shots")
        if not isinstance(shots, dict) or not shots:
            problems.append(f"metrics.per_fold[{number}]: no per-shot metrics ('shots')")
            continue
        for metric in METRICS:
            values = [s.get(metric) for s in shots.values()]
            if any(v is None for v in values) or episode.get(metric) is None:
                continue
            again = sum(values) / len(values)
            if abs(episode[metric] - again) > tolerance:
                problems.append(f"metrics.per_fold[{number}].{metric}: {episode[metric]!r}, the mean over its shot "
                                f"counts is {again!r}")
    if problems:
        return problems
    from bench.core.rescore import summary_problems

    problems.extend(summary_problems(record))
    again = episode_curve(per_fold)
    stored = record.curve or {}
    problems.extend(_differences(stored.get("points"), again["points"], "curve.points", tolerance))
    problems.extend(_differences(stored.get("overall"), again["overall"], "curve.overall", tolerance))
    return problems


def _differences(stored, again, where: str, tolerance: float) -> list[str]:
    if isinstance(again, dict):
        if not isinstance(stored, dict):
            return [f"{where}: {stored!r}, its episodes give a table"]
        return [line for key in again for line in _differences(stored.get(key), again[key], f"{where}.{key}", tolerance)]
    if isinstance(again, list):
        if not isinstance(stored, list) or len(stored) != len(again):
            return [f"{where}: {len(stored) if isinstance(stored, list) else stored!r} entries, its episodes give "
                    f"{len(again)}"]
        return [line for i, (s, a) in enumerate(zip(stored, again)) for line in _differences(s, a, f"{where}[{i}]",
                                                                                             tolerance)]
    if again is None or stored is None:
        return [] if again is stored else [f"{where}: {stored!r}, its episodes give {again!r}"]
    if isinstance(again, float) or isinstance(stored, float):
        ok = isinstance(stored, (int, float)) and abs(float(stored) - float(again)) <= tolerance * max(1.0, abs(again))
        return [] if ok else [f"{where}: {stored!r}, its episodes give {again!r}"]
    return [] if stored == again else [f"{where}: {stored!r}, its episodes give {again!r}"]
