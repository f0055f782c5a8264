"""Batch effect: do embeddings of several data sets (domains) mix on the cell types they share, or cluster by
data set? The scores of scIB (Luecken et al., Nat. Methods 2022) that need only embeddings and labels, on
scikit-learn's silhouette and nearest neighbours:

- ``domain_asw`` (scIB's batch ASW): within each shared class, the silhouette of every cell with the domains as
  clusters, ``1 - |s|``, averaged per class, then over classes. 1: the domains interleave; 0: they separate.
- ``knn_mixing``: the inverse Simpson index of the domains among each cell's k nearest neighbours (scIB's iLISI,
  with uniform neighbour weights instead of a perplexity-calibrated kernel), averaged over cells, minus 1, and
  divided by the same number with the domain labels randomly permuted over the same cells (the value of perfect
  mixing at this k and these domain sizes); clipped to [0, 1]. 1: neighbours as mixed as chance; 0: all from the
  cell's own domain.
- ``class_asw`` (scIB's cell-type ASW): ``(s + 1) / 2`` of the silhouette with the classes as clusters, over all
  cells of all domains. High: the cell types stay apart; an embedding that mixes domains by collapsing everything
  scores low here.
- ``integration_score``: scIB's overall weighting, ``0.6 x class_asw + 0.4 x mean(domain_asw, knn_mixing)``.

The domains are balanced first: per shared class, each domain contributes the same number of cells (the smallest
domain's count, at most ``max_per_class``), drawn at random per repeat, so that a difference in class mix is
never read as a batch effect. ``repeats`` draws give a mean and std; when no class needs drawing, one is enough.
The silhouettes are scikit-learn's (Euclidean, on the features as extracted), never re-implemented.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np
import pandas as pd

from bench.core.errors import DataError
from bench.core.metrics import BATCH_METRICS, CLASS_ASW, DOMAIN_ASW, INTEGRATION, KNN_MIXING
from protocols.base import Evaluation, Protocol


@dataclass
class BatchEffectScores:
    per_repeat: list[dict]  # repeat, n_cells, the four scores, domain_asw per class
    mean: dict
    std: dict
    # repeat, row (index into the inputs), domain, label, domain_silhouette (its silhouette within its class with
    # the domains as clusters), neighbour_domains (inverse Simpson index of the domains among its k neighbours)
    cells: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class BatchEffect(Protocol):
    """A protocol of several domains (``A+B``): settings (all recorded) neighbours ``k``, cells per (domain,
    class) at most, draws, seed. Its result holds the scores per draw (as folds) and the per-cell scores."""

    k: int = 15
    max_per_class: int = 500
    repeats: int = 5
    seed: int = 0
    kind = "domains"
    kinds: ClassVar[tuple[str, ...]] = ("domains",)

    def __post_init__(self) -> None:
        from bench.core.errors import UsageError

        for what, value, least in (("--k", self.k, 1), ("--max-per-class", self.max_per_class, 2),
                                   ("--repeats", self.repeats, 1)):
            if value < least:
                raise UsageError(f"{what} must be at least {least}, got {value}")

    def evaluate(self, features: np.ndarray, design) -> Evaluation:
        """The scores of the design's readable cells (:meth:`score`), draws as folds; the per-cell scores'
        ``row`` indexes ``features``."""
        from protocols.base import _check_kind, report_split

        _check_kind(self, design)
        rows = np.flatnonzero(design.usable)
        domains = np.asarray(design.domains)[design.domain_of[rows]]
        labels = np.asarray(design.classes)[design.labels[rows]]
        scores = self.score(features[rows], domains, labels,
                            lambda done, total: report_split(done, total, f"draw {done}"))
        cells = scores.cells.assign(row=rows[scores.cells["row"]])
        return Evaluation(scores.per_repeat, scores.mean, scores.std, None, list(scores.notes), scores.seconds,
                          cells=cells)

    def score(self, features: np.ndarray, domains: np.ndarray, labels: np.ndarray,
              on_repeat: Callable[[int, int], None] | None = None) -> BatchEffectScores:
        """``features`` (n, d); ``domains`` and ``labels`` (n,) names. Only classes present in every domain
        with at least 2 cells each are scored; the others are named in ``notes``. ``on_repeat(done, total)``
        is called before the first draw and after each (a progress bar)."""
        t0 = time.perf_counter()
        domains, labels = np.asarray(domains).astype(str), np.asarray(labels).astype(str)
        names, take, drawn, notes = shared_classes(domains, labels, self.max_per_class)
        per_repeat, frames = [], []
        total = self.repeats if drawn else 1
        if on_repeat:
            on_repeat(0, total)
        for repeat in range(total):
            rows = balanced_rows(domains, labels, names, take, np.random.default_rng([self.seed, repeat]))
            scores, cells = _scores(np.asarray(features[rows], dtype=np.float64), domains[rows], labels[rows],
                                    self.k, np.random.default_rng([self.seed, repeat, 1]))
            per_repeat.append({"repeat": repeat, "n_cells": int(len(rows)), **scores})
            frames.append(cells.assign(repeat=repeat, row=rows)[["repeat", "row", "domain", "label",
                                                                  "domain_silhouette", "neighbour_domains"]])
            if on_repeat:
                on_repeat(repeat + 1, total)
        mean = {m: float(np.mean([r[m] for r in per_repeat])) for m in BATCH_METRICS}
        std = {m: float(np.std([r[m] for r in per_repeat])) for m in BATCH_METRICS}
        return BatchEffectScores(per_repeat, mean, std, pd.concat(frames, ignore_index=True), notes,
                                 time.perf_counter() - t0)


def shared_classes(domains: np.ndarray, labels: np.ndarray, max_per_class: int) -> tuple[list, dict, bool, list]:
    """(domain names, cells to take per shared class, whether any class needs drawing, notes): the classes every
    domain holds with at least 2 cells, each taking the smallest domain's count (at most ``max_per_class``)."""
    names = sorted(set(domains))
    if len(names) < 2:
        raise DataError(f"data sets side by side need at least 2 domains, got {names}")
    counts = pd.crosstab(labels, domains).reindex(columns=names, fill_value=0)
    smallest = counts.min(axis=1)
    shared = [str(c) for c in counts.index[smallest >= 2]]
    notes = []
    if len(smallest[(smallest > 0) & (smallest < 2)]):
        notes.append(f"classes with fewer than 2 cells in some domain, left out: "
                     f"{sorted(map(str, smallest[(smallest > 0) & (smallest < 2)].index))}")
    if len(shared) < 2:
        raise DataError(f"data sets side by side are scored on the classes every domain holds (at least 2 cells "
                        f"each), and need 2 of them; these domains share {shared or 'none'}. Classes per domain: "
                        + "; ".join(f"{d}: {sorted(map(str, counts.index[counts[d] > 0]))}" for d in names)
                        + ". Name the classes alike in every data set (folder names are the class names)")
    take = {c: min(int(smallest[c]), max_per_class) for c in shared}
    drawn = any(int(counts.loc[c, d]) > take[c] for c in shared for d in names)  # pyright: ignore[reportArgumentType]  # a count
    return names, take, drawn, notes


def balanced_rows(domains, labels, names, take: dict, rng: np.random.Generator) -> np.ndarray:
    """``take[c]`` rows of class c from every domain, drawn without replacement (all of them where that is all)."""
    rows = []
    for c in sorted(take):
        for d in names:
            pool = np.flatnonzero((labels == c) & (domains == d))
            rows.append(pool if len(pool) == take[c] else np.sort(rng.choice(pool, take[c], replace=False)))
    return np.concatenate(rows)


def _scores(x: np.ndarray, domains: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator):
    from sklearn.metrics import silhouette_samples, silhouette_score
    from sklearn.neighbors import NearestNeighbors

    domain_sil = np.zeros(len(x))
    per_class = {}
    for c in sorted(set(labels)):
        rows = np.flatnonzero(labels == c)
        domain_sil[rows] = silhouette_samples(x[rows], domains[rows])
        per_class[c] = float(np.mean(1 - np.abs(domain_sil[rows])))
    class_asw = (float(silhouette_score(x, labels)) + 1) / 2
    k = min(k, len(x) - 1)
    # kneighbors() without X leaves each cell out of its own neighbours
    neighbours = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(return_distance=False)
    codes = np.unique(domains, return_inverse=True)[1]
    observed = _inverse_simpson(codes[neighbours], codes.max() + 1)
    chance = _inverse_simpson(rng.permutation(codes)[neighbours], codes.max() + 1).mean()
    domain_asw = float(np.mean(list(per_class.values())))
    knn_mixing = float(np.clip((observed.mean() - 1) / max(chance - 1, 1e-12), 0.0, 1.0))
    scores = {DOMAIN_ASW: domain_asw, KNN_MIXING: knn_mixing, CLASS_ASW: class_asw,
              INTEGRATION: 0.6 * class_asw + 0.4 * (domain_asw + knn_mixing) / 2,
              "domain_asw_per_class": per_class}
    cells = pd.DataFrame({"domain": domains, "label": labels, "domain_silhouette": domain_sil,
                          "neighbour_domains": observed})
    return scores, cells


def _inverse_simpson(neighbour_domains: np.ndarray, n_domains: int) -> np.ndarray:
    """Per row of domain codes: 1 / sum of squared domain proportions (1 = one domain, n_domains = even)."""
    counts = np.stack([(neighbour_domains == d).sum(axis=1) for d in range(n_domains)], axis=1)
    proportions = counts / neighbour_domains.shape[1]
    return 1.0 / (proportions ** 2).sum(axis=1)


BATCH_EFFECT = BatchEffect()
