"""k-nearest-neighbour protocols, computed in chunks of test rows so that the full n_test x n_train distance
matrix never exists in memory.

``knn-1``/``knn-20`` reproduce scikit-learn's ``KNeighborsClassifier`` defaults exactly as the DinoBloom
authors used them: Euclidean distance on unnormalised features, uniform votes, distances in float64 (as
scikit-learn computes them for float32 input), a vote tie going to the lowest class index. Ties in distance
at the k-th neighbour (duplicate images!) are where a re-implementation usually departs from scikit-learn:
its brute-force search keeps the neighbours in a fixed-size max-heap whose final content depends on the
push order, which depends on how it splits the work over threads. Rows where such a tie mixes labels are
recomputed by replaying that heap (``_sklearn_heap_neighbours``); all other rows take the vectorised path.
``knn-cosine`` is DINOv2's variant: L2-normalised features, cosine similarity, votes weighted by
exp(similarity / temperature).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.core.errors import DataError
from protocols.base import CellProtocol, Prediction, current_evaluation_device


def _select_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k smallest scores per row, ties at the boundary going to the lowest column index."""
    kth = np.partition(scores, k - 1, axis=1)[:, k - 1 : k]
    selected = scores < kth
    at = scores == kth
    need = k - selected.sum(axis=1)
    simple = at.sum(axis=1) == need  # all tied values fit: the common case, no ranking needed
    selected |= at & simple[:, None]
    for row in np.flatnonzero(~simple):  # more tied values than slots: the lowest indices win
        selected[row, np.flatnonzero(at[row])[: need[row]]] = True
    return selected


def _heap_push(values: list, indices: list, k: int, value: float, index: int) -> None:
    """scikit-learn's ``utils/_heap.pyx:heap_push`` (fixed-size max-heap; equal values do not enter)."""
    if value >= values[0]:
        return
    current = 0
    while True:
        left = 2 * current + 1
        right = left + 1
        if left >= k:
            break
        if right >= k:
            if values[left] > value:
                swap = left
            else:
                break
        elif values[left] >= values[right]:
            if value < values[left]:
                swap = left
            else:
                break
        elif value < values[right]:
            swap = right
        else:
            break
        values[current], indices[current] = values[swap], indices[swap]
        current = swap
    values[current], indices[current] = value, index


def _sklearn_threads() -> int:
    try:  # the thread count scikit-learn's pairwise reductions use (private helper, stable since 1.1)
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        return int(_openmp_effective_n_threads())
    except Exception:
        import os

        return os.cpu_count() or 1


def _sklearn_heap_neighbours(scores: np.ndarray, k: int, n_test: int, n_threads: int, chunk: int = 256) -> list[int]:
    """Replay scikit-learn's ArgKmin (brute force, default chunk size 256) for one test row.

    parallel_on_X: one heap fed in training-row order. parallel_on_Y: the training chunks are dealt to threads
    in contiguous blocks (OpenMP static schedule), each thread fills its own heap, then the thread heaps are
    pushed, in thread order and heap-array order, into the final heap.
    """
    n = len(scores)
    if n < n_test or 4 * chunk * n_threads < n_test:
        values, indices = [np.inf] * k, [-1] * k
        for j, value in enumerate(scores.tolist()):
            _heap_push(values, indices, k, value, j)
        return indices
    y_chunk = min(n, chunk)
    bounds = list(range(0, n, y_chunk)) + [n]  # full chunks, then the remainder as its own chunk
    n_chunks = len(bounds) - 1
    threads = min(n_chunks, n_threads)
    per, extra = divmod(n_chunks, threads)
    values, indices = [np.inf] * k, [-1] * k
    first = 0
    for t in range(threads):
        count = per + (1 if t < extra else 0)
        t_values, t_indices = [np.inf] * k, [-1] * k
        for j in range(bounds[first], bounds[first + count]):
            _heap_push(t_values, t_indices, k, float(scores[j]), j)
        first += count
        for value, index in zip(t_values, t_indices):
            _heap_push(values, indices, k, value, index)
    return indices


def knn_scores(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    n_classes: int,
    k: int,
    *,
    metric: str = "euclidean",
    temperature: float | None = None,
    sklearn_ties: bool = False,
    memory_bytes: int = 256 * 2**20,
    n_test: int | None = None,
) -> np.ndarray:
    """(n_test, n_classes) vote mass of the k nearest training rows (uniform, or exp(sim/T) weighted).

    ``n_test``: the size of the whole test set when ``x_test`` is part of it (scikit-learn picks its parallel
    strategy, and so its tie-breaking, from the whole set: :func:`_sklearn_heap_neighbours`)."""
    n_train = len(x_train)
    if k > n_train:
        raise DataError(f"k={k} neighbours requested but the training split has only {n_train} rows")
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    train, test = as_scored(x_train, metric), as_scored(x_test, metric)
    train_sq = np.einsum("ij,ij->i", train, train)
    # bytes per (test row, training row) alive at once: float64 scores, the partition's float64 copy, two masks
    rows_per_chunk = max(1, memory_bytes // (n_train * 18))
    out = np.zeros((len(test), n_classes))
    for start in range(0, len(test), rows_per_chunk):
        chunk = test[start : start + rows_per_chunk]
        scores = chunk @ train.T
        if metric == "cosine":
            np.negative(scores, out=scores)  # smaller is nearer
        else:  # squared Euclidean distance, |x|^2 - 2 x.y + |y|^2, in place
            scores *= -2.0
            scores += train_sq[None, :]
            scores += np.einsum("ij,ij->i", chunk, chunk)[:, None]
        selected = _select_k(scores, k)
        if sklearn_ties:
            _replay_mixed_ties(selected, scores, y_train, k, len(test) if n_test is None else n_test)
        add_votes(out, np.arange(start, start + len(chunk)), selected, scores, y_train, temperature)
    return out


def as_scored(x: np.ndarray, metric: str) -> np.ndarray:
    """float64 rows as the kNN scores them: L2-normalised for cosine, row by row (so a subset of rows is scored
    as it is within the whole set)."""
    x = np.asarray(x, dtype=np.float64)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def add_votes(out: np.ndarray, rows: np.ndarray, selected: np.ndarray, scores: np.ndarray, labels: np.ndarray,
              temperature: float | None) -> None:
    """Add the votes of the ``selected`` columns of each row of ``scores`` to ``out[rows]``: 1 each, or
    exp(-score / T). ``labels``: the label of each column, per row (n_rows, n_cols) or shared (n_cols,)."""
    r, c = np.nonzero(selected)  # in increasing column order per row: the same float sums on every path
    labels = np.broadcast_to(labels, scores.shape)
    weights = 1.0 if temperature is None else np.exp(-scores[r, c] / temperature)
    np.add.at(out, (rows[r], labels[r, c]), weights)


def mixed_tie_rows(selected: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rows whose k-th-neighbour tie decides the votes: more columns tied at the k-th selected score than slots
    left for them, with more than one label among them (else whichever is kept, the votes are the same).
    ``labels`` as in :func:`add_votes`."""
    labels = np.broadcast_to(labels, scores.shape)
    kth = np.where(selected, scores, -np.inf).max(axis=1, keepdims=True)
    tied = scores == kth
    over = tied.sum(axis=1) > (selected & tied).sum(axis=1)
    mixed = np.zeros(len(scores), dtype=bool)
    for row in np.flatnonzero(over):
        mixed[row] = len(np.unique(labels[row][tied[row]])) > 1
    return mixed


def _replay_mixed_ties(selected: np.ndarray, scores: np.ndarray, y_train: np.ndarray, k: int, n_test: int) -> None:
    """In place: rows whose k-th-neighbour tie spans several labels take scikit-learn's heap result."""
    threads = None
    for row in np.flatnonzero(mixed_tie_rows(selected, scores, y_train)):
        threads = threads or _sklearn_threads()
        selected[row] = False
        selected[row, _sklearn_heap_neighbours(scores[row], k, n_test, threads)] = True


@dataclass(frozen=True)
class KNNProtocol(CellProtocol):
    k: int = 20
    metric: str = "euclidean"
    weighting: str = "uniform"  # uniform | exp-similarity
    temperature: float | None = None

    def fit_predict(self, x_train, y_train, x_test, n_classes) -> Prediction:
        """Votes of the k nearest training rows; on a CUDA evaluation device (``protocols.base.evaluation_device``)
        the distances run there (:mod:`protocols.knn_device`: float32 candidates, float64 decisions, the same
        predictions)."""
        device = current_evaluation_device()
        kwargs: dict[str, Any] = dict(metric=self.metric, temperature=self.temperature,
                                      sklearn_ties=self.metric == "euclidean" and self.weighting == "uniform")
        notes = []
        scores = None
        if device.startswith("cuda"):
            import torch

            from protocols.knn_device import knn_scores_device

            try:
                scores = knn_scores_device(x_train, y_train, x_test, n_classes, self.k, device=device, **kwargs)
            except torch.cuda.OutOfMemoryError:  # e.g. a trainer's models still hold the GPU: same answer on the CPU
                torch.cuda.empty_cache()
                notes.append(f"kNN ran on the CPU: {device} ran out of memory (the predictions are the same)")
        if scores is None:
            scores = knn_scores(x_train, y_train, x_test, n_classes, self.k, **kwargs)
        proba = scores / scores.sum(axis=1, keepdims=True)
        return Prediction(labels=scores.argmax(axis=1), proba=proba, notes=notes)  # argmax: lowest class on ties


KNN_1 = KNNProtocol(k=1)
KNN_20 = KNNProtocol(k=20)
KNN_COSINE = KNNProtocol(
    k=20,
    metric="cosine",
    weighting="exp-similarity",
    temperature=0.07,
)
