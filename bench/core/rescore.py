"""A result record re-scored from its own predictions: what ``--overwrite only-missing`` keeps, what the board shows
and what ``bench verify`` accepts must agree with the predictions stored beside it.

A record written since issue 26 stores the sha256 and the row count of its predictions file
(``predictions_sha256``, ``n_predictions``). :func:`rescore` checks, one line per disagreement naming the field and
what the predictions give:

- the predictions file is the one written with the record (sha256, rows), where the record says;
- every fold (or seed and fold) of the record has its predictions, as many as its ``n_test``;
- each label metric of each fold equals the one computed again from that fold's predictions
  (:func:`bench.core.metrics.label_metrics`, what the protocols score with; equal to scikit-learn's to 1e-12);
- each mean and std of the record is the mean and population std of its folds.

It also says which folds collapsed to one predicted class although their labels hold several
(:attr:`Rescored.collapsed`): such a result is a warning everywhere, never the best of a column.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.core.files import sha256_file
from bench.core.metrics import LABEL_METRICS, label_metrics

TOLERANCE = 1e-9  # re-scored metrics must equal the record's (older records were scored by scikit-learn: 1e-12 apart)
# The words of a split's collapse warning (protocols.evaluate.collapse_notes), by which a record says it collapsed
COLLAPSED = "predictions collapsed to one class"


@dataclass
class Rescored:
    problems: list[str] = field(default_factory=list)  # one line each: field, stored value, what the predictions give
    collapsed: list[str] = field(default_factory=list)  # folds ("fold 2", "seed 0 fold 1") predicting one class

    @property
    def ok(self) -> bool:
        return not self.problems


def read_predictions(source: Path | bytes) -> pd.DataFrame:
    """A predictions table (a path, or the bytes of one) with every value as written (text, nothing parsed)."""
    data = io.BytesIO(source) if isinstance(source, bytes) else source
    return pd.read_csv(data, dtype=str, keep_default_na=False)


def rescore(record, predictions: pd.DataFrame, sha256: str | None = None) -> Rescored:
    """``record`` (a :class:`~bench.core.record.ResultRecord`) against ``predictions`` (:func:`read_predictions`);
    ``sha256``: the predictions file's digest, compared with the record's where it stores one."""
    out = Rescored()
    stored_sha, stored_rows = getattr(record, "predictions_sha256", None), getattr(record, "n_predictions", None)
    if stored_rows is not None and stored_rows != len(predictions):
        out.problems.append(f"n_predictions: {stored_rows}, the predictions file has {len(predictions)} row(s)")
    if sha256 is not None and stored_sha and sha256 != stored_sha:
        out.problems.append(f"predictions_sha256: {stored_sha[:12]}..., the predictions file has {sha256[:12]}... "
                            "(it is not the file written with this record)")
    missing = [c for c in ("fold", "label", "prediction") if c not in predictions]
    if missing:
        out.problems.append(f"predictions: no column(s) {missing}")
        return out
    keys = ("seed", "fold") if "seed" in predictions else ("fold",)
    groups = {tuple(str(k) for k in (key if isinstance(key, tuple) else (key,))): rows
              for key, rows in predictions.groupby(list(keys), sort=False)}
    per_fold = record.metrics.per_fold
    for number, fold in enumerate(per_fold):
        name = tuple(str(fold[k]) for k in keys if k in fold)
        label = " ".join(f"{k} {v}" for k, v in zip(keys, name)) or f"#{number}"
        rows = groups.get(name)
        if rows is None:
            out.problems.append(f"metrics.per_fold[{number}] ({label}): no predictions for it")
            continue
        if "n_test" in fold and len(rows) != fold["n_test"]:
            out.problems.append(f"metrics.per_fold[{number}].n_test: {fold['n_test']}, {label} has {len(rows)} "
                                "prediction(s)")
        scored = label_metrics(rows["label"], rows["prediction"])
        for metric in LABEL_METRICS:
            if fold.get(metric) is None:
                continue
            again = scored[metric]
            if not _same(fold[metric], again):
                out.problems.append(f"metrics.per_fold[{number}].{metric}: {fold[metric]!r}, the predictions of "
                                    f"{label} give {again!r}")
        if rows["prediction"].nunique() == 1 and rows["label"].nunique() > 1:
            out.collapsed.append(label)
    out.problems.extend(summary_problems(record))
    return out


def summary_problems(record) -> list[str]:
    """Where the record's mean or std of a metric is not the mean or std of its per-fold entries."""
    problems = []
    scores, per_fold = record.metrics, record.metrics.per_fold
    for metric in sorted(set(scores.mean) | set(scores.std)):
        values = [fold.get(metric) for fold in per_fold]
        if not values or None in values or not all(_number(v) for v in values):
            continue
        mean = sum(values) / len(values)
        ddof = scores.std_ddof if len(values) > scores.std_ddof else 0
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - ddof))
        for what, stored, again in (("mean", scores.mean.get(metric), mean), ("std", scores.std.get(metric), std)):
            if stored is not None and not _same(stored, again, 1e-7):
                problems.append(f"metrics.{what}.{metric}: {stored!r}, its folds give {again!r}")
    return problems


def rescore_file(record, predictions_path: Path) -> Rescored:
    """:func:`rescore` against the predictions file at ``predictions_path``; a missing or unreadable file is the
    one problem."""
    path = Path(predictions_path)
    if path.is_symlink() or not path.is_file():
        what = "is a symbolic link (predictions are read from plain files only)" if path.is_symlink() else "is missing"
        return Rescored([f"predictions file {path} {what}"])
    try:
        return rescore(record, read_predictions(path), sha256_file(path))
    except (OSError, ValueError, UnicodeDecodeError) as exc:  # pandas' parse errors are ValueErrors
        return Rescored([f"predictions file {path} cannot be read ({type(exc).__name__}: {exc})"])


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _same(stored, again: float, tolerance: float = TOLERANCE) -> bool:
    return _number(stored) and abs(stored - again) <= tolerance


def rescore_robustness(record, cells_file: Path | bytes, name: str | None = None) -> list[str]:
    """A robustness record (:mod:`protocols.robustness`) against its per-cell table (``<protocol>.cells.csv``: fold,
    perturbation, cosine, label, prediction_clean, prediction; a path, or the bytes of one called ``name``): per
    fold, the clean F1 and each perturbation's F1 and invariance computed again from the cells, then the means and
    stds from the folds. One line per disagreement; a missing or unreadable table is the one problem."""
    from bench.core.metrics import CLEAN_F1, F1_DROP, INVARIANCE, PERTURBED_F1, ROBUSTNESS_METRICS, WEIGHTED_F1

    if isinstance(cells_file, bytes):
        path, source = Path(name or "cells.csv"), io.BytesIO(cells_file)
    else:
        path = source = Path(cells_file)
        if path.is_symlink() or not path.is_file():
            return [f"per-cell table {path} is {'a symbolic link' if path.is_symlink() else 'missing'}"]
    try:
        cells = pd.read_csv(source, dtype={"fold": str, "label": str, "prediction": str, "prediction_clean": str},
                            keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return [f"per-cell table {path} cannot be read ({type(exc).__name__}: {exc})"]
    missing = [c for c in ("fold", "perturbation", "cosine", "label", "prediction_clean", "prediction")
               if c not in cells]
    if missing:
        return [f"per-cell table {path}: no column(s) {missing}"]
    problems = []
    groups = {key: rows for key, rows in cells.groupby(["fold", "perturbation"], sort=False)}
    claimed = set()
    for number, fold in enumerate(record.metrics.per_fold):
        where_fold = f"metrics.per_fold[{number}]"
        perturbations = fold.get("perturbations")
        if not isinstance(perturbations, dict) or not perturbations:
            problems.append(f"{where_fold}: no per-perturbation scores ('perturbations')")
            continue
        for name, scores in perturbations.items():
            claimed.add((str(fold.get("fold")), name))
            rows = groups.get((str(fold.get("fold")), name))
            where = f"{where_fold}.perturbations.{name}"
            if rows is None or not isinstance(scores, dict):
                problems.append(f"{where}: no cells for it in {path.name}")
                continue
            again = {PERTURBED_F1: label_metrics(rows["label"], rows["prediction"])[WEIGHTED_F1],
                     INVARIANCE: float(rows["cosine"].mean()),
                     CLEAN_F1: label_metrics(rows["label"], rows["prediction_clean"])[WEIGHTED_F1]}
            again[F1_DROP] = again[CLEAN_F1] - again[PERTURBED_F1]
            stored = {**scores, CLEAN_F1: fold.get(CLEAN_F1)}
            problems.extend(f"{where}.{metric}: {stored.get(metric)!r}, its cells give {value!r}"
                            for metric, value in again.items() if not _same(stored.get(metric), value, 1e-7))
        # the fold's own scores are the means over its perturbations (the main metric among them)
        for metric in (PERTURBED_F1, F1_DROP, INVARIANCE):
            values = [v for s in perturbations.values() if isinstance(s, dict)
                      for v in [s.get(metric)] if isinstance(v, (int, float)) and _number(v)]
            if len(values) == len(perturbations) and not _same(fold.get(metric), sum(values) / len(values), 1e-9):
                problems.append(f"{where_fold}.{metric}: {fold.get(metric)!r}, the mean over its perturbations is "
                                f"{sum(values) / len(values)!r}")
    unclaimed = sorted(set(groups) - claimed)
    if unclaimed:
        problems.append(f"{path.name}: cells of {len(unclaimed)} (fold, perturbation) pair(s) the record does not "
                        f"score, e.g. fold {unclaimed[0][0]} / {unclaimed[0][1]}")
    missing = [m for m in ROBUSTNESS_METRICS if not _number(record.metrics.mean.get(m))
               or not all(_number(f.get(m)) for f in record.metrics.per_fold)]
    if missing or not record.metrics.per_fold:
        problems.append(f"metrics: {missing or list(ROBUSTNESS_METRICS)} missing from the mean or a fold; a "
                        "robustness record scores every fold")
    return problems + summary_problems(record)
