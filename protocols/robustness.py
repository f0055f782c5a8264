"""Robustness: does an embedding keep what matters when the image changes in ways that do not?

- ``robustness`` (task ``TASK@perturbation=all``, :mod:`tasks.perturbations`): the same cells clean and under each
  perturbation of :mod:`tasks.transforms` (stain, blur, JPEG, rescale). Per split of the task, the paper's linear
  probe (:mod:`protocols.linear`) is trained once on the clean training cells and tested on the test cells clean
  and in every version: ``clean_f1``, ``perturbed_f1`` (the mean over perturbations; the main metric) and
  ``f1_drop`` (clean minus perturbed). ``invariance``: each test cell's feature against its clean feature, cosine
  similarity, averaged over cells and perturbations (1: the feature does not move). Per perturbation under
  ``perturbations`` in each split's entry; every cell's cosine in ``robustness.cells.csv``.
- ``robustness-index`` (task ``A+B+C``: data sets from different sites): PathoROB's robustness index (Kömen et al.,
  2025; de Jong et al., 2025) in its normalised form. Among each cell's k nearest neighbours (Euclidean, the cell
  left out), count those of the same class from another data set (SO: what biology should bring together) and
  those of another class from the same data set (OS: what a site signature brings together); the index is
  SO / (SO + OS) over all cells: 1, neighbourhoods are organised by cell type; 0, by site. The data sets are
  balanced per shared class first, as for the batch effect (:mod:`protocols.batch_effect`), ``repeats`` draws.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from bench.core.errors import DataError, UsageError
from bench.core.metrics import (
    CLEAN_F1,
    F1_DROP,
    INVARIANCE,
    PERTURBED_F1,
    ROBUSTNESS_INDEX,
    ROBUSTNESS_METRICS,
    WEIGHTED_F1,
    label_metrics,
)
from protocols.base import Evaluation, Protocol, _check_kind, report_split


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity (0 where a row is all zeros)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide((a * b).sum(axis=1), norms, out=np.zeros(len(a)), where=norms > 0)


@dataclass(frozen=True)
class Robustness(Protocol):
    """Settings (recorded): the probe (a registered cell protocol's name; the paper's ``linear``)."""

    probe: str = "linear"
    kind = "perturbations"
    kinds: ClassVar[tuple[str, ...]] = ("perturbations",)
    main_metric: ClassVar[str | None] = PERTURBED_F1

    def evaluate(self, features: np.ndarray, design) -> Evaluation:
        from protocols import get_protocol

        _check_kind(self, design)
        t0 = time.perf_counter()
        probe = get_protocol(self.probe)
        if getattr(probe, "kind", None) != "cells":
            raise UsageError(f"robustness: probe {self.probe!r} is not a cell protocol")
        labels, n_classes, versions = design.labels, len(design.classes), design.domains[1:]
        per_fold, frames, notes = [], [], []
        report_split(0, len(design.splits), f"fold {design.splits[0][0]}" if design.splits else "")
        for number, (fold, train, test) in enumerate(design.splits, 1):
            if len(train) == 0 or len(test) == 0:
                raise DataError(f"split {fold!r} has {len(train)} training and {len(test)} test samples")
            # one fit, tested on the test cells in every version at once
            tested = np.concatenate([design.version_rows(test, v) for v in range(len(design.domains))])
            prediction = probe.fit_predict(features[train], labels[train], features[tested], n_classes)
            notes.extend(f"fold {fold}: {note}" for note in prediction.notes)
            predicted = prediction.labels.reshape(len(design.domains), len(test))
            clean = label_metrics(labels[test], predicted[0])[WEIGHTED_F1]
            by_version = {}
            for v, name in enumerate(versions, 1):
                similarity = cosine(features[test], features[design.version_rows(test, v)])
                f1 = label_metrics(labels[test], predicted[v])[WEIGHTED_F1]
                by_version[name] = {PERTURBED_F1: f1, F1_DROP: clean - f1, INVARIANCE: float(similarity.mean())}
                frames.append(pd.DataFrame({"row": test, "fold": fold, "perturbation": name, "cosine": similarity,
                                            "label": labels[test], "prediction_clean": predicted[0],
                                            "prediction": predicted[v]}))
            per_fold.append({"fold": fold, "n_train": int(len(train)), "n_test": int(len(test)), CLEAN_F1: clean,
                             **{m: float(np.mean([s[m] for s in by_version.values()]))
                                for m in (PERTURBED_F1, F1_DROP, INVARIANCE)},
                             "perturbations": by_version})
            report_split(number, len(design.splits), f"fold {fold}", [])
        mean = {m: float(np.mean([f[m] for f in per_fold])) for m in ROBUSTNESS_METRICS}
        std = {m: float(np.std([f[m] for f in per_fold])) for m in ROBUSTNESS_METRICS}
        cells = pd.concat(frames, ignore_index=True)
        for column in ("label", "prediction_clean", "prediction"):
            cells[column] = [design.classes[i] for i in cells[column]]
        return Evaluation(per_fold, mean, std, None, sorted(set(notes)), time.perf_counter() - t0, cells=cells)


def robustness_index(features: np.ndarray, domains: np.ndarray, labels: np.ndarray, k: int) -> tuple[float, dict]:
    """(SO / (SO + OS), the counts) over the k nearest neighbours of every cell (itself left out)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(features) - 1)
    neighbours = NearestNeighbors(n_neighbors=k).fit(features).kneighbors(return_distance=False)
    same_class = labels[neighbours] == labels[:, None]
    same_domain = domains[neighbours] == domains[:, None]
    so, os_ = int((same_class & ~same_domain).sum()), int((~same_class & same_domain).sum())
    index = so / (so + os_) if so + os_ else float("nan")
    return index, {"same_class_other_site": so, "other_class_same_site": os_, "k": k}


@dataclass(frozen=True)
class RobustnessIndex(Protocol):
    """Settings (recorded): neighbours ``k``, cells per (data set, class) at most, draws, seed."""

    k: int = 10
    max_per_class: int = 500
    repeats: int = 5
    seed: int = 0
    kind = "domains"
    kinds: ClassVar[tuple[str, ...]] = ("domains",)
    main_metric: ClassVar[str | None] = ROBUSTNESS_INDEX

    def __post_init__(self) -> None:
        if self.k < 1 or self.max_per_class < 2 or self.repeats < 1:
            raise UsageError(f"robustness-index: k >= 1, max_per_class >= 2 and repeats >= 1, got {self.k}, "
                             f"{self.max_per_class}, {self.repeats}")

    def evaluate(self, features: np.ndarray, design) -> Evaluation:
        from protocols.batch_effect import balanced_rows, shared_classes

        _check_kind(self, design)
        if getattr(design, "kind", None) != "domains" or design.splits:
            raise UsageError("robustness-index scores data sets side by side (A+B+C), not a domain shift")
        t0 = time.perf_counter()
        rows = np.flatnonzero(design.usable)
        domains = np.asarray(design.domains)[design.domain_of[rows]].astype(str)
        labels = np.asarray(design.classes)[design.labels[rows]].astype(str)
        names, take, drawn, notes = shared_classes(domains, labels, self.max_per_class)
        per_repeat = []
        total = self.repeats if drawn else 1
        report_split(0, total, "draw 1")
        for repeat in range(total):
            chosen = balanced_rows(domains, labels, names, take, np.random.default_rng([self.seed, repeat]))
            index, counts = robustness_index(np.asarray(features[rows[chosen]], dtype=np.float64), domains[chosen],
                                             labels[chosen], self.k)
            per_repeat.append({"repeat": repeat, "n_cells": int(len(chosen)), ROBUSTNESS_INDEX: index, **counts})
            report_split(repeat + 1, total, f"draw {repeat + 1}")
        values = [r[ROBUSTNESS_INDEX] for r in per_repeat]
        mean, std = {ROBUSTNESS_INDEX: float(np.mean(values))}, {ROBUSTNESS_INDEX: float(np.std(values))}
        return Evaluation(per_repeat, mean, std, None, notes, time.perf_counter() - t0)


ROBUSTNESS = Robustness()
ROBUSTNESS_INDEX_PROTOCOL = RobustnessIndex()
