"""The accelerator kNN path (protocols.knn_device) against scikit-learn's KNeighborsClassifier and against the
exact CPU path (protocols.knn.knn_scores), on CPU tensors; one test runs on CUDA where there is a device."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from bench.core.errors import DataError
from protocols.knn import as_scored, knn_scores
from protocols.knn_device import (
    DeviceKNNStats,
    _operands,
    _scores32,
    _Settings,
    _upload_train,
    knn_scores_device,
    score_error_bound,
)


def _random_problem(seed=0, n_train=400, n_test=150, dim=64, n_classes=5, offset=0.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim)) + offset * rng.normal(size=dim)
    y_train = rng.integers(0, n_classes, n_train)
    y_test = rng.integers(0, n_classes, n_test)
    x_train = (centers[y_train] + rng.normal(scale=2.0, size=(n_train, dim))).astype(np.float32)
    x_test = (centers[y_test] + rng.normal(scale=2.0, size=(n_test, dim))).astype(np.float32)
    return x_train, y_train, x_test, n_classes


def _duplicate_problem(n_distinct, n_test, seed):
    """Integer features, every training row four times with random labels: exact distance ties everywhere."""
    rng = np.random.default_rng(seed)
    distinct = rng.integers(0, 3, size=(n_distinct, 20)).astype(np.float32)
    x_train = np.repeat(distinct, 4, axis=0)
    y_train = rng.integers(0, 4, len(x_train))
    x_test = rng.integers(0, 3, size=(n_test, 20)).astype(np.float32)
    return x_train, y_train, x_test, 4


def _assert_like_sklearn(scores, x_train, y_train, x_test, k):
    """What KNNProtocol.fit_predict makes of the votes, against KNeighborsClassifier's predictions."""
    reference = KNeighborsClassifier(n_neighbors=k).fit(x_train, y_train)
    np.testing.assert_array_equal(scores.argmax(axis=1), reference.predict(x_test))
    np.testing.assert_allclose(scores / scores.sum(axis=1, keepdims=True), reference.predict_proba(x_test))


@pytest.mark.parametrize("k", [1, 20])
def test_equals_sklearn_and_knn_scores_on_random_features(k):
    x_train, y_train, x_test, n_classes = _random_problem(offset=3.0)
    stats = DeviceKNNStats()
    ours = knn_scores_device(x_train, y_train, x_test, n_classes, k, sklearn_ties=True, stats=stats)
    _assert_like_sklearn(ours, x_train, y_train, x_test, k)
    np.testing.assert_array_equal(ours, knn_scores(x_train, y_train, x_test, n_classes, k, sklearn_ties=True))
    assert stats.n_fallback == 0 and stats.n_rows == len(x_test)


@pytest.mark.parametrize("n_distinct,n_test", [(30, 200), (300, 1000), (300, 1500), (300, 3000)])
@pytest.mark.parametrize("k", [1, 2, 5, 20])
def test_equals_sklearn_with_distance_and_vote_ties(n_distinct, n_test, k):
    """The duplicate-row cases of test_knn.py: ties at the k-th neighbour that mix labels are replayed over
    the full row. scikit-learn parallelises on the test rows when there are more test than training rows
    (test_knn.py's sizes) and on the training rows otherwise ((300, 1000): 1200 training rows, and fewer test
    rows than 4 x 256 x its thread count)."""
    x_train, y_train, x_test, n_classes = _duplicate_problem(n_distinct, n_test, seed=k)
    stats = DeviceKNNStats()
    ours = knn_scores_device(x_train, y_train, x_test, n_classes, k, sklearn_ties=True, stats=stats)
    _assert_like_sklearn(ours, x_train, y_train, x_test, k)
    np.testing.assert_array_equal(ours, knn_scores(x_train, y_train, x_test, n_classes, k, sklearn_ties=True))
    assert stats.n_fallback > 0


@pytest.mark.parametrize("k", [2, 20])
def test_equals_sklearn_with_duplicated_continuous_rows(k):
    """Exact duplicates of non-integer rows (the same image twice) with different labels: the float64 re-rank
    must score copies identically for the tie to be seen and replayed (1,200 training rows, 300 test rows:
    scikit-learn parallelises on the training rows)."""
    rng = np.random.default_rng(k)
    base = rng.normal(size=(400, 48)).astype(np.float32)
    x_train, y_train = np.repeat(base, 3, axis=0), rng.integers(0, 3, 1200)
    x_test = (base[rng.integers(0, 400, 300)] + rng.normal(scale=0.3, size=(300, 48))).astype(np.float32)
    stats = DeviceKNNStats()
    ours = knn_scores_device(x_train, y_train, x_test, 3, k, sklearn_ties=True, stats=stats)
    assert stats.n_replayed > 0
    _assert_like_sklearn(ours, x_train, y_train, x_test, k)
    np.testing.assert_array_equal(ours, knn_scores(x_train, y_train, x_test, 3, k, sklearn_ties=True))


def test_cosine_weighted_equals_knn_scores():
    x_train, y_train, x_test, n_classes = _random_problem(seed=4, offset=1.0)
    x_train[7] = 0.0  # a zero row: knn_scores' 1e-12 floor on the norm
    settings = {"metric": "cosine", "temperature": 0.07}
    ours = knn_scores_device(x_train * 1000, y_train, x_test, n_classes, 20, **settings)
    exact = knn_scores(x_train * 1000, y_train, x_test, n_classes, 20, **settings)
    np.testing.assert_allclose(ours, exact, rtol=1e-10, atol=0)
    np.testing.assert_array_equal(ours.argmax(axis=1), exact.argmax(axis=1))


def test_failed_certificate_falls_back_and_still_matches():
    """No slack beyond k: no row can be certified, every row takes the exact path."""
    x_train, y_train, x_test, n_classes = _random_problem(seed=1)
    stats = DeviceKNNStats()
    ours = knn_scores_device(x_train, y_train, x_test, n_classes, 5, sklearn_ties=True, extra_candidates=0,
                             stats=stats)
    assert stats.n_uncertain == len(x_test)
    _assert_like_sklearn(ours, x_train, y_train, x_test, 5)


@pytest.mark.parametrize("copies", [40, 80])
def test_near_equal_distances_still_match(copies):
    """Groups of training rows that differ by float32-ulp-sized steps: float64 tells them apart, float32 scores
    cannot. 40 per group fit in the k + 32 candidates (certified, all re-ranked in float64); with 80 the
    certificate fails and the rows take the exact path."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=(60, 32)).astype(np.float32)
    x_train = np.repeat(base, copies, axis=0)
    x_train[:, 0] += np.tile(np.arange(copies, dtype=np.float32) * 2e-6, 60)
    y_train = rng.integers(0, 3, len(x_train))
    x_test = base[rng.integers(0, 60, 200)] + rng.normal(scale=1e-3, size=(200, 32)).astype(np.float32)
    stats = DeviceKNNStats()
    ours = knn_scores_device(x_train, y_train, x_test, 3, 20, sklearn_ties=True, stats=stats)
    if copies < 20 + 32:
        assert stats.n_uncertain == 0 and stats.n_reranked_pairs >= copies * len(x_test)
    else:
        assert stats.n_uncertain == len(x_test)
    _assert_like_sklearn(ours, x_train, y_train, x_test, 20)
    np.testing.assert_array_equal(ours, knn_scores(x_train, y_train, x_test, 3, 20, sklearn_ties=True))


def test_float64_input_equals_knn_scores():
    """Inputs that float32 cannot hold: the bound's input-rounding term at work."""
    x_train, y_train, x_test, n_classes = _random_problem(seed=6)
    x_train, x_test = x_train + np.pi * 1e-4, x_test.astype(np.float64) / 3
    ours = knn_scores_device(x_train.astype(np.float64), y_train, x_test, n_classes, 5, sklearn_ties=True)
    _assert_like_sklearn(ours, x_train.astype(np.float64), y_train, x_test, 5)


def test_training_set_smaller_than_the_candidate_count():
    """k + extra_candidates >= n_train: every training row is a candidate, only finiteness is checked."""
    x_train, y_train, x_test, n_classes = _random_problem(seed=8, n_train=30, n_test=40)
    stats = DeviceKNNStats()
    ours = knn_scores_device(x_train, y_train, x_test, n_classes, 5, sklearn_ties=True, stats=stats)
    assert stats.n_candidates == 30 and stats.n_uncertain == 0
    _assert_like_sklearn(ours, x_train, y_train, x_test, 5)


def test_chunking_does_not_change_results():
    x_train, y_train, x_test, n_classes = _duplicate_problem(30, 200, seed=3)
    whole = knn_scores_device(x_train, y_train, x_test, n_classes, 5, sklearn_ties=True)
    chunked = knn_scores_device(x_train, y_train, x_test, n_classes, 5, sklearn_ties=True, memory_bytes=1)
    np.testing.assert_array_equal(whole, chunked)


@pytest.mark.parametrize("metric,offset", [("euclidean", 0.0), ("euclidean", 30.0), ("cosine", 3.0)])
def test_error_bound_holds(metric, offset):
    """|score32 - (score64 - row constant)| <= delta on every pair, score32 from the device path's own code
    (the slack is large: the bound is a worst case)."""
    x_train, _, x_test, _ = _random_problem(seed=7, n_train=2000, n_test=200, dim=384, offset=offset)
    train = _upload_train(x_train, torch.device("cpu"), _Settings(1, metric, None, False, 2**30))
    ops, ops_sq, raw_sq = _operands(torch.from_numpy(x_test), train.shift, metric)
    score32 = _scores32(train, ops, metric).double().numpy()
    a, b = as_scored(x_test, metric), as_scored(x_train, metric)
    if metric == "cosine":
        score64 = -(a @ b.T)
    else:  # knn_scores' |x|^2 - 2 x.y + |y|^2, less the row constant |x - mu|^2
        row_constant = np.sum((a - train.shift.numpy()) ** 2, axis=1)
        score64 = np.sum(a * a, axis=1)[:, None] - 2 * (a @ b.T) + np.sum(b * b, axis=1)[None, :]
        score64 -= row_constant[:, None]
    delta = score_error_bound(np.sqrt(ops_sq.numpy()), train.y_max, np.sqrt(raw_sq.numpy()), train.y_max_ref,
                              x_train.shape[1], metric)
    assert np.all(np.abs(score32 - score64) <= delta[:, None])


def test_k_larger_than_training_set_is_the_same_data_error():
    with pytest.raises(DataError, match="only 3 rows"):
        knn_scores_device(np.zeros((3, 2)), np.array([0, 1, 0]), np.zeros((1, 2)), 2, 20)
    with pytest.raises(ValueError, match="metric"):
        knn_scores_device(np.zeros((3, 2)), np.array([0, 1, 0]), np.zeros((1, 2)), 2, 1, metric="manhattan")


def test_matmul_precision_settings_are_restored():
    before = torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32
    try:
        torch.set_float32_matmul_precision("high")
        torch.backends.cuda.matmul.allow_tf32 = True
        x_train, y_train, x_test, n_classes = _random_problem(n_train=50, n_test=5)
        knn_scores_device(x_train, y_train, x_test, n_classes, 3)
        assert torch.get_float32_matmul_precision() == "high"
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cuda.matmul.allow_tf32 = before[1]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_sklearn():
    for k, (x_train, y_train, x_test, n_classes) in [
        (20, _random_problem(n_train=5000, n_test=2000, dim=384, offset=3.0)),
        (5, _duplicate_problem(300, 3000, seed=5)),
    ]:
        stats = DeviceKNNStats()
        ours = knn_scores_device(x_train, y_train, x_test, n_classes, k, sklearn_ties=True, device="cuda",
                                 stats=stats)
        _assert_like_sklearn(ours, x_train, y_train, x_test, k)
        np.testing.assert_array_equal(ours, knn_scores(x_train, y_train, x_test, n_classes, k, sklearn_ties=True))
    cosine = {"metric": "cosine", "temperature": 0.07}
    x_train, y_train, x_test, n_classes = _random_problem(n_train=5000, n_test=2000, dim=384, offset=1.0)
    np.testing.assert_allclose(knn_scores_device(x_train, y_train, x_test, n_classes, 20, device="cuda", **cosine),
                               knn_scores(x_train, y_train, x_test, n_classes, 20, **cosine), rtol=1e-10, atol=0)
