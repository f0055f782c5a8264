"""The kNN votes of :func:`protocols.knn.knn_scores` with the distance work on an accelerator, and predictions
identical to scikit-learn's ``KNeighborsClassifier`` (its tie rules included).

Why not simply run ``knn_scores`` on the GPU: its answer is defined by float64 distances (what scikit-learn
computes for float32 features) and by exact ties among them (duplicate images), and float32 matmuls, the fast
path of an accelerator, round differently. So float32 only *proposes* candidates and proves that it missed
nothing; every decision is taken on float64 scores:

1. Candidates (``device``, float32, TF32 off): per test row the ``k + extra_candidates`` smallest float32
   scores, ``|y'|^2 - 2 x'.y'`` with x' = x - mu, y' = y - mu, mu the training mean (Euclidean: the row
   constant ``|x'|^2`` cannot change the order, and the shift makes float32's error scale with the spread of
   the features rather than with their offset), or ``-x.y`` on rows L2-normalised in float64 (cosine).
2. Certificate (CPU): ``|score32 - (score64 - c_row)| <= delta`` for every training row (:func:`score_error_bound`).
   With ``t`` the k-th and ``u`` the last float32 candidate score, every training row whose float64 score is
   <= the exact k-th score has ``score32 <= t + 2 delta``; if ``u > t + 2 delta`` they are all candidates.
   Rows where that fails, or where something is not finite, take the exact path (step 4): correctness never
   depends on the bound being tight, a loose bound only costs exact rows.
3. Re-rank (float64): the candidates with ``score32 <= t + 2 delta`` (usually exactly k), ordered by training
   index so that ``_select_k``'s lowest-column rule is its lowest-training-index rule, scored with
   ``knn_scores``' formula (cosine: its normalisation, then ``-x.y``; Euclidean ``-2 x.y + |y|^2 + |x|^2`` in that
   order) from the rows as given. The gather and the dot products run on ``device``: a BMC-size re-rank reads
   ~4 GB of candidate rows, 5-8 s for numpy on a 2-core host, a small fraction of a second from GPU memory.
   The selection, the mixed-tie test and the votes (``exp(sim / T)`` from these float64 scores) run on the
   CPU with ``knn.py``'s helpers.
4. Exact rows: ``knn_scores`` itself on the uncertain rows and, with ``sklearn_ties``, on the rows whose
   k-th-neighbour tie mixes labels (scikit-learn's heap replayed over the whole row), told the size of the whole
   test set (``n_test``), from which scikit-learn picks its parallel strategy and so its tie-breaking.

Float64 dot products are not bit-reproducible across summation orders (``knn_scores`` uses a GEMM, step 3 a
per-pair reduction), so vote masses agree to ~1e-15, not bit for bit, and two training rows whose float64
scores differ by a few ulps could rank differently here than in ``knn_scores``. Identical training rows get
identical scores on every path (the same reduction for every pair), so duplicate ties are found alike.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch

from bench.core.errors import DataError
from protocols.knn import _select_k, add_votes, knn_scores, mixed_tie_rows

U32 = 2.0**-24  # unit roundoff of float32 (round to nearest)
U64 = 2.0**-53
FLOAT32_GUARD = 1e37  # float32 operand magnitudes^2 above this could overflow (max 3.4e38): no certificate
FLOAT64_GUARD = 1e300


@dataclass
class DeviceKNNStats:
    """What one call did, for benchmarks and logs; pass one as ``stats=`` and read it afterwards."""

    n_rows: int = 0
    n_candidates: int = 0  # per row, from the device
    n_uncertain: int = 0  # rows the float32 certificate could not settle: exact float64 path
    n_replayed: int = 0  # rows with a mixed-label tie at the k-th neighbour: exact path + scikit-learn heap replay
    n_reranked_pairs: int = 0  # (test row, training row) pairs re-scored in float64 by the re-rank
    seconds: dict = field(default_factory=dict)  # upload / candidates / rerank / exact

    @property
    def n_fallback(self) -> int:
        """Rows computed over the whole training set on the CPU (the expensive ones)."""
        return self.n_uncertain + self.n_replayed


@dataclass(frozen=True)
class _Settings:
    k: int
    metric: str
    temperature: float | None
    sklearn_ties: bool
    memory_bytes: int


@dataclass(frozen=True)
class _Train:
    """The training rows on the device: as given (``raw``: float32, or float64 when the input is not float32;
    exact either way) for the re-rank, and as float32 operands of step 1 with what the bound needs."""

    raw: torch.Tensor
    ops: torch.Tensor  # float32 y' (Euclidean) or normalised y (cosine)
    ops_sq: torch.Tensor  # (1, n) float32 |y'|^2, the addmm's bias (Euclidean)
    shift: torch.Tensor | None  # float64 mu (Euclidean)
    y_max: float  # max |ops row| (float64 sums)
    y_max_ref: float  # max |raw row|


@dataclass(frozen=True)
class _Candidates:
    values: np.ndarray  # (n_test, n_cand) float32 scores, ascending
    indices: np.ndarray  # (n_test, n_cand) training indices
    x_norm: np.ndarray  # |ops row| of each test row
    x_norm_ref: np.ndarray  # |raw row|


def knn_scores_device(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    n_classes: int,
    k: int,
    *,
    metric: str = "euclidean",
    temperature: float | None = None,
    sklearn_ties: bool = False,
    device: str | torch.device = "cpu",
    memory_bytes: int = 2**30,
    extra_candidates: int = 32,
    stats: DeviceKNNStats | None = None,
) -> np.ndarray:
    """(n_test, n_classes) vote mass of the k nearest training rows, as :func:`protocols.knn.knn_scores`.

    ``device`` runs steps 1 and 3 (module docstring); the rest runs on the CPU. ``memory_bytes`` bounds the
    score block and the re-rank block on the device and the float64 blocks of the exact rows on the host.
    ``extra_candidates``: candidates beyond k per row, the certificate's slack (more: fewer exact rows, a larger
    top-k). ``stats``, when given, is filled in (rows that took the exact path, seconds per step).
    """
    n_train = len(x_train)
    if k > n_train:
        raise DataError(f"k={k} neighbours requested but the training split has only {n_train} rows")
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    settings = _Settings(k, metric, temperature, sklearn_ties, memory_bytes)
    x_train, y_train, x_test = np.asarray(x_train), np.asarray(y_train), np.asarray(x_test)
    stats = stats if stats is not None else DeviceKNNStats()
    stats.n_rows, stats.n_candidates = len(x_test), min(k + extra_candidates, n_train)
    stats.n_uncertain = stats.n_replayed = stats.n_reranked_pairs = 0
    stats.seconds = {}
    out = np.zeros((len(x_test), n_classes))
    if len(x_test) == 0:
        return out

    with _ieee_fp32_matmul(), torch.no_grad():
        clock = time.perf_counter()
        train = _upload_train(x_train, torch.device(device), settings)
        stats.seconds["upload"] = time.perf_counter() - clock

        clock = time.perf_counter()
        cand = _candidates(train, x_test, stats.n_candidates, settings)
        stats.seconds["candidates"] = time.perf_counter() - clock

        clock = time.perf_counter()
        delta = score_error_bound(cand.x_norm, train.y_max, cand.x_norm_ref, train.y_max_ref, x_train.shape[1], metric)
        width = _certified_width(cand.values, k, delta, all_candidates=stats.n_candidates == n_train)
        replay = _rerank(out, train, x_test, y_train, width, cand.indices, settings, stats)
        stats.n_uncertain, stats.n_replayed = int(np.sum(width == 0)), len(replay)
        stats.seconds["rerank"] = time.perf_counter() - clock
        del train

    clock = time.perf_counter()
    _exact_rows(out, x_train, y_train, x_test, np.union1d(np.flatnonzero(width == 0), replay), settings)
    stats.seconds["exact"] = time.perf_counter() - clock
    return out


# --- step 2: the bound ---------------------------------------------------------------------------------------


def _gamma(n: int, u: float) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of n roundings (inf where n u >= 1)."""
    return n * u / (1.0 - n * u) if n * u < 1.0 else math.inf


def score_error_bound(
    x_norm: np.ndarray, y_max: float, x_norm_ref: np.ndarray, y_max_ref: float, dim: int, metric: str
) -> np.ndarray:
    """Per test row, ``delta`` with |score32(x, y) - (score64(x, y) - c_x)| <= delta for every training row y.

    score32 is step 1's float32 score, score64 the float64 score the decisions are taken on (step 3's, or
    ``knn_scores``'), c_x a constant of the row (Euclidean: |x - mu|^2, since |x - y|^2 = |y'|^2 - 2 x'.y' +
    |x'|^2 exactly; cosine: 0). Notation: u = 2^-24, d = dim; x~, y~ the float32 operands, fl32 of float64
    x' = x - mu (Euclidean) or of the float64-normalised row (cosine), so x~_i = x'_i (1 + e_i) with
    |e_i| <= u (1 + 2^-28); X = |x~| (``x_norm``), Y = max |y~| (``y_max``).

    - The dot product, in any summation order (cuBLAS tiles and split-K included, FMA or not), by Higham:
      |fl(x~.y~) - x~.y~| <= gamma_d sum |x~_i y~_i| <= gamma_d X Y (Cauchy-Schwarz).
    - Input rounding: |x~.y~ - x'.y'| <= 2.01 u X Y; the addmm's bias fl32(|y~|^2) is within 3.01 u Y^2 of
      |y'|^2; the addmm's epilogue rounds once more (or starts its accumulator from the bias: gamma_{d+1}
      over the d + 1 terms). Cosine: the device's and knn_scores' float64 normalisations differ by O(d 2^-53).

    Summed: e32 <= gamma_{d+4} (1 + 2^-20) (Y^2 + 2 X Y) (cosine: X Y). The float64 side (dot products, norms,
    normalisation, two additions, in both score64s; u = 2^-53, X_ref, Y_ref the norms of the rows as given):
    e64 <= gamma_{2d+8} (X_ref + Y_ref)^2. An absolute 2^-120 (d + 4)(1 + X + Y) covers underflow, even with
    float32 denormals flushed to zero. The returned delta is twice e32 + e64 + that (roundings in evaluating
    this formula and the norms it is given, anything the model misses); inf where float32 could overflow or an
    input is not finite. It is a worst case, about 2 d u relative to Y^2 + 2 X Y (1.8e-4 at d = 1536); the
    errors observed on random features are 100-1000 times smaller.
    """
    x_norm, x_norm_ref = np.asarray(x_norm, dtype=np.float64), np.asarray(x_norm_ref, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        scale32 = y_max * y_max + 2.0 * x_norm * y_max if metric == "euclidean" else x_norm * y_max
        scale64 = (x_norm_ref + y_max_ref) ** 2
        e32 = _gamma(dim + 4, U32) * (1 + 2.0**-20) * scale32
        e64 = _gamma(2 * dim + 8, U64) * scale64
        tiny = 2.0**-120 * (dim + 4) * (1.0 + x_norm + y_max)
        delta = 2.0 * (e32 + e64 + tiny)
        safe = ((x_norm + y_max) ** 2 < FLOAT32_GUARD) & (scale64 < FLOAT64_GUARD)  # NaN compares False
        return np.where(safe, delta, np.inf)


def _certified_width(values: np.ndarray, k: int, delta: np.ndarray, all_candidates: bool) -> np.ndarray:
    """Per row, how many leading candidates (score32 <= t + 2 delta) hold every training row that can be among
    the exact k nearest or tied with the k-th; 0 where the certificate fails (the last candidate is not beyond
    t + 2 delta, or something is not finite). With ``all_candidates`` every training row is a candidate and
    only finiteness is needed."""
    t = values[:, k - 1].astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        limit = t + 2.0 * delta
        ok = np.isfinite(limit)
        if not all_candidates:
            ok &= values[:, -1] > limit
        width = np.sum(values <= limit[:, None], axis=1)
    return np.where(ok, width, 0)


# --- step 1: candidates on the device ------------------------------------------------------------------------


@contextmanager
def _ieee_fp32_matmul():
    """float32 matmuls in IEEE float32 (no TF32 on CUDA, no bfloat16 on CPU), which the bound assumes; the
    caller's settings are restored afterwards."""
    precision, tf32 = torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cuda.matmul.allow_tf32 = tf32


def _raw_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows as given on ``device``: float32 stays float32, anything else becomes float64 (both exact). On the
    CPU a float32 input is shared, not copied; read-only inputs (memory-mapped caches) are never written."""
    x = np.ascontiguousarray(x, dtype=np.float32 if x.dtype == np.float32 else np.float64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(x).to(device)


def _operands(raw: torch.Tensor, shift: torch.Tensor | None, metric: str):
    """(float32 operands, float64 |operand|^2, float64 |raw|^2) of a block of rows: float64 until one final
    rounding to float32, so each operand element is its float64 value times (1 + e), |e| <= u (1 + 2^-28)."""
    raw64 = raw.double()
    raw_sq = (raw64 * raw64).sum(1)
    if metric == "cosine":
        ops64 = raw64 / raw_sq.sqrt().clamp_min(1e-12)[:, None]  # knn_scores' normalisation
    else:
        assert shift is not None  # euclidean: the training rows' mean
        ops64 = raw64 - shift
    ops = ops64.float()
    ops_exact = ops.double()
    return ops, (ops_exact * ops_exact).sum(1), raw_sq


def _upload_train(x_train: np.ndarray, device: torch.device, s: _Settings) -> _Train:
    """The training rows on the device, once: as given, and as float32 operands (shifted by the float64 mean
    for Euclidean), in blocks so that the float64 intermediates stay within memory_bytes."""
    raw = _raw_tensor(x_train, device)
    n, dim = raw.shape
    rows = max(1, s.memory_bytes // (32 * max(1, dim)))
    shift = None
    if s.metric == "euclidean":
        shift = cast(torch.Tensor, sum(raw[a : a + rows].double().sum(0) for a in range(0, n, rows))) / n
    ops = torch.empty((n, dim), dtype=torch.float32, device=device)
    ops_sq = torch.empty(n, dtype=torch.float64, device=device)
    raw_sq = torch.empty(n, dtype=torch.float64, device=device)
    for a in range(0, n, rows):
        ops[a : a + rows], ops_sq[a : a + rows], raw_sq[a : a + rows] = _operands(raw[a : a + rows], shift, s.metric)
    y_max, y_max_ref = ops_sq.max().sqrt().item(), raw_sq.max().sqrt().item()
    return _Train(raw, ops, ops_sq.float()[None, :], shift, y_max, y_max_ref)


def _scores32(train: _Train, ops: torch.Tensor, metric: str) -> torch.Tensor:
    """Step 1's float32 scores of a block of test operands against every training row (the bound's score32)."""
    if metric == "cosine":
        return torch.mm(ops, train.ops.T).neg_()
    return torch.addmm(train.ops_sq, ops, train.ops.T, alpha=-2.0)


def _candidates(train: _Train, x_test: np.ndarray, n_cand: int, s: _Settings) -> _Candidates:
    """Step 1: the n_cand smallest float32 scores per test row (ascending) and their training indices, test
    rows going up in chunks whose float32 score block (plus top-k workspace) fits memory_bytes."""
    n_train, n_test = len(train.raw), len(x_test)
    values, indices = np.empty((n_test, n_cand), dtype=np.float32), np.empty((n_test, n_cand), dtype=np.int64)
    x_sq, x_sq_ref = np.empty(n_test), np.empty(n_test)
    rows = max(1, s.memory_bytes // (8 * n_train))
    for a in range(0, n_test, rows):
        ops, ops_sq, raw_sq = _operands(_raw_tensor(x_test[a : a + rows], train.raw.device), train.shift, s.metric)
        scores = _scores32(train, ops, s.metric)
        top = torch.topk(scores, n_cand, dim=1, largest=False, sorted=True)
        values[a : a + rows], indices[a : a + rows] = top.values.cpu().numpy(), top.indices.cpu().numpy()
        x_sq[a : a + rows], x_sq_ref[a : a + rows] = ops_sq.cpu().numpy(), raw_sq.cpu().numpy()
        del scores, top  # free the block before the next one is allocated
    return _Candidates(values, indices, np.sqrt(x_sq), np.sqrt(x_sq_ref))


# --- step 3: float64 re-rank of the certified rows -----------------------------------------------------------


def _rerank(out, train: _Train, x_test, y_train, width, indices, s: _Settings, stats: DeviceKNNStats) -> np.ndarray:
    """Step 3 for the certified rows, grouped by width so that each group is a dense (rows, width) block. Adds
    their votes to ``out``; returns the rows that need scikit-learn's heap replay instead."""
    replay = []
    for w in np.unique(width[width > 0]).tolist():
        group = np.flatnonzero(width == w)
        block = max(1, s.memory_bytes // (24 * w * x_test.shape[1]))  # float64 rows, their products, squares
        for start in range(0, len(group), block):
            rows = group[start : start + block]
            cols = np.sort(indices[rows, :w], axis=1)  # training-index order: _select_k's tie rule
            scores = _candidate_scores(train, x_test[rows], cols, s.metric)
            selected = _select_k(scores, s.k)
            labels = y_train[cols]
            mixed = mixed_tie_rows(selected, scores, labels) if s.sklearn_ties else np.zeros(len(rows), bool)
            add_votes(out, rows[~mixed], selected[~mixed], scores[~mixed], labels[~mixed], s.temperature)
            replay.extend(rows[mixed].tolist())
            stats.n_reranked_pairs += len(rows) * w
    return np.asarray(replay, dtype=np.int64)


def _candidate_scores(train: _Train, x_rows: np.ndarray, cols: np.ndarray, metric: str) -> np.ndarray:
    """float64 scores of each test row against its candidate columns, with knn_scores' formula and operation
    order, on the device. Every pair goes through the same reduction, so identical training rows tie."""
    device = train.raw.device
    y = train.raw.index_select(0, torch.from_numpy(cols.reshape(-1)).to(device)).double().reshape(*cols.shape, -1)
    x = _raw_tensor(x_rows, device).double()
    if metric == "cosine":
        y = y / (y * y).sum(-1, keepdim=True).sqrt().clamp_min(1e-12)
        x = x / (x * x).sum(-1, keepdim=True).sqrt().clamp_min(1e-12)
    scores = (y * x[:, None, :]).sum(-1)
    if metric == "cosine":
        return scores.neg_().cpu().numpy()
    scores *= -2.0
    scores += (y * y).sum(-1)
    scores += (x * x).sum(-1)[:, None]
    return scores.cpu().numpy()


# --- step 4: exact rows on the CPU ---------------------------------------------------------------------------


def _exact_rows(out, x_train, y_train, x_test, rows: np.ndarray, s: _Settings) -> None:
    """Step 4: ``knn_scores`` on the given rows over the whole training set (numpy, float64), its mixed-tie
    replay told the real number of test rows."""
    if len(rows):
        out[rows] += knn_scores(x_train, y_train, x_test[rows], out.shape[1], s.k, metric=s.metric,
                                temperature=s.temperature, sklearn_ties=s.sklearn_ties, memory_bytes=s.memory_bytes,
                                n_test=len(x_test))
