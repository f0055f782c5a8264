"""kNN protocols against scikit-learn's KNeighborsClassifier (the authors' implementation) and hand cases."""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from protocols import get_protocol
from protocols.knn import KNNProtocol, knn_scores

# built-ins through the registry, which names them (their module objects carry no name)
KNN_1, KNN_20, KNN_COSINE = (get_protocol(name) for name in ("knn-1", "knn-20", "knn-cosine"))


def _random_problem(seed=0, n_train=400, n_test=150, dim=64, n_classes=5):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim))
    y_train = rng.integers(0, n_classes, n_train)
    y_test = rng.integers(0, n_classes, n_test)
    x_train = (centers[y_train] + rng.normal(scale=2.0, size=(n_train, dim))).astype(np.float32)
    x_test = (centers[y_test] + rng.normal(scale=2.0, size=(n_test, dim))).astype(np.float32)
    return x_train, y_train, x_test, n_classes


@pytest.mark.parametrize("protocol,k", [(KNN_1, 1), (KNN_20, 20)])
def test_equals_sklearn_on_random_features(protocol, k):
    x_train, y_train, x_test, n_classes = _random_problem()
    ours = protocol.fit_predict(x_train, y_train, x_test, n_classes)
    reference = KNeighborsClassifier(n_neighbors=k).fit(x_train, y_train)
    np.testing.assert_array_equal(ours.labels, reference.predict(x_test))
    np.testing.assert_allclose(ours.proba, reference.predict_proba(x_test))


@pytest.mark.parametrize("n_distinct,n_test", [(30, 200), (300, 1500), (300, 3000)])
@pytest.mark.parametrize("k", [1, 2, 5, 20])
def test_equals_sklearn_with_distance_and_vote_ties(n_distinct, n_test, k):
    """Duplicated training rows with different labels and integer features: many exact distance ties at the
    k-th neighbour and many vote ties. Sizes cover both of scikit-learn's parallel strategies."""
    rng = np.random.default_rng(k)
    distinct = rng.integers(0, 3, size=(n_distinct, 20)).astype(np.float32)
    x_train = np.repeat(distinct, 4, axis=0)
    y_train = rng.integers(0, 4, len(x_train))
    x_test = rng.integers(0, 3, size=(n_test, 20)).astype(np.float32)
    ours = KNNProtocol("t", "", k=k).fit_predict(x_train, y_train, x_test, 4)
    reference = KNeighborsClassifier(n_neighbors=k).fit(x_train, y_train)
    np.testing.assert_array_equal(ours.labels, reference.predict(x_test))
    np.testing.assert_allclose(ours.proba, reference.predict_proba(x_test))


def test_vote_tie_goes_to_lowest_class_hand_case():
    x_train = np.array([[0.0], [1.0], [-1.0], [2.0]], dtype=np.float32)
    y_train = np.array([2, 1, 2, 1])
    ours = KNNProtocol("t", "", k=4).fit_predict(x_train, y_train, np.array([[0.0]], dtype=np.float32), 3)
    assert ours.labels.tolist() == [1]  # 2 votes each for classes 1 and 2
    np.testing.assert_allclose(ours.proba, [[0.0, 0.5, 0.5]])


def test_chunking_does_not_change_results():
    x_train, y_train, x_test, n_classes = _random_problem(seed=3)
    whole = knn_scores(x_train, y_train, x_test, n_classes, 20)
    chunked = knn_scores(x_train, y_train, x_test, n_classes, 20, memory_bytes=1)  # one test row at a time
    np.testing.assert_array_equal(whole, chunked)


def test_knn_cosine_hand_computed():
    x_train = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]], dtype=np.float32)
    y_train = np.array([0, 1, 1])
    x_test = np.array([[2.0, 1.0]], dtype=np.float32)
    protocol = KNNProtocol("t", "", k=2, metric="cosine", weighting="exp-similarity", temperature=0.07)
    # cosine similarities: train0 = 2/sqrt5, train1 = 1/sqrt5, train2 = 3/sqrt10; the 2 nearest are 0 and 2
    w0, w2 = np.exp(2 / np.sqrt(5) / 0.07), np.exp(3 / np.sqrt(10) / 0.07)
    expected = np.array([[w0, w2]]) / (w0 + w2)
    result = protocol.fit_predict(x_train, y_train, x_test, 2)
    np.testing.assert_allclose(result.proba, expected, rtol=1e-9)
    assert result.labels.tolist() == [int(w2 > w0)]


def test_knn_cosine_is_scale_invariant():
    x_train, y_train, x_test, n_classes = _random_problem(seed=4)
    a = KNN_COSINE.fit_predict(x_train, y_train, x_test, n_classes)
    b = KNN_COSINE.fit_predict(x_train * 1000, y_train, x_test * 0.01, n_classes)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_k_larger_than_training_set_is_a_clear_error():
    with pytest.raises(ValueError, match="only 3 rows"):
        KNN_20.fit_predict(np.zeros((3, 2)), np.array([0, 1, 0]), np.zeros((1, 2)), 2)


def test_a_cuda_evaluation_device_routes_knn_to_the_device_path(monkeypatch):
    """Under ``evaluation_device("cuda")`` the protocols call protocols.knn_device (run here on CPU tensors);
    the predictions are scikit-learn's either way."""
    import protocols.knn_device as knn_device
    from protocols.base import evaluation_device

    calls = []
    real = knn_device.knn_scores_device

    def spy(*args, device, **kwargs):
        calls.append(device)
        return real(*args, device="cpu", **kwargs)

    monkeypatch.setattr(knn_device, "knn_scores_device", spy)
    x_train, y_train, x_test, n_classes = _random_problem(seed=5)
    on_cpu = KNN_20.fit_predict(x_train, y_train, x_test, n_classes)
    with evaluation_device("cuda:1"):
        on_device = KNN_20.fit_predict(x_train, y_train, x_test, n_classes)
    assert calls == ["cuda:1"]
    np.testing.assert_array_equal(on_device.labels, on_cpu.labels)
    reference = KNeighborsClassifier(n_neighbors=20).fit(x_train, y_train)
    np.testing.assert_array_equal(on_device.labels, reference.predict(x_test))


def test_cuda_out_of_memory_falls_back_to_the_cpu_path_with_a_note(monkeypatch):
    import torch

    import protocols.knn_device as knn_device
    from protocols.base import evaluation_device

    def no_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(knn_device, "knn_scores_device", no_memory)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    x_train, y_train, x_test, n_classes = _random_problem(seed=6)
    with evaluation_device("cuda"):
        prediction = KNN_20.fit_predict(x_train, y_train, x_test, n_classes)
    reference = KNeighborsClassifier(n_neighbors=20).fit(x_train, y_train)
    np.testing.assert_array_equal(prediction.labels, reference.predict(x_test))
    assert prediction.notes and "ran out of memory" in prediction.notes[0]
