"""Linear probes and metrics against scikit-learn used directly on the same features."""

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench.core.metrics import classification_metrics
from protocols import get_protocol
from protocols.base import CellProtocol, Prediction
from protocols.evaluate import evaluate

# built-ins through the registry, which names them (their module objects carry no name)
LINEAR, LINEAR_STD = get_protocol("linear"), get_protocol("linear-std")


def _problem(seed=0, n=300, dim=24, n_classes=4, scale=1.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim))
    y = rng.integers(0, n_classes, n)
    x = ((centers[y] + rng.normal(size=(n, dim))) * scale).astype(np.float32)
    return x[:200], y[:200], x[200:], y[200:], n_classes


def test_linear_equals_a_float64_sklearn_fit_with_the_papers_c():
    x_train, y_train, x_test, _, n_classes = _problem()
    ours = LINEAR.fit_predict(x_train, y_train, x_test, n_classes)
    x64 = x_train.astype(np.float64)  # the authors' features reach scikit-learn as float64 arrays
    reference = LogisticRegression(C=x_train.shape[1] * n_classes / 100, max_iter=1000).fit(x64, y_train)
    np.testing.assert_array_equal(ours.labels, reference.predict(x_test.astype(np.float64)))
    np.testing.assert_allclose(ours.proba, reference.predict_proba(x_test.astype(np.float64)), rtol=1e-12)


def test_unconverged_probe_is_the_float64_iterate_and_says_so():
    """Where L-BFGS stops at max_iter, float32 and float64 fits differ: ours is the float64 one."""
    from protocols.linear import LinearProbe

    x_train, y_train, x_test, _, n_classes = _problem(seed=0, scale=50.0)
    ours = LinearProbe("linear-short", max_iter=30).fit_predict(x_train, y_train, x_test, n_classes)
    c = x_train.shape[1] * n_classes / 100
    with pytest.warns(ConvergenceWarning):
        fit64 = LogisticRegression(C=c, max_iter=30).fit(x_train.astype(np.float64), y_train)
        fit32 = LogisticRegression(C=c, max_iter=30).fit(x_train, y_train)
    np.testing.assert_allclose(ours.proba, fit64.predict_proba(x_test.astype(np.float64)), atol=1e-9)
    assert np.abs(ours.proba - fit32.predict_proba(x_test)).max() > 0.1  # measured 0.74: the case discriminates
    assert any("did not converge in 30 iterations" in note for note in ours.notes)


def test_c_counts_the_classes_in_the_training_labels_not_the_label_map():
    x_train, y_train, x_test, _, _ = _problem()
    y_train = np.where(y_train == 3, 0, y_train)  # 3 classes present; the label map has 6
    ours = LINEAR.fit_predict(x_train, y_train, x_test, 6)
    reference = LogisticRegression(C=x_train.shape[1] * 3 / 100, max_iter=1000)
    reference.fit(x_train.astype(np.float64), y_train)
    np.testing.assert_allclose(ours.proba[:, :3], reference.predict_proba(x_test.astype(np.float64)), rtol=1e-12)


def test_linear_std_equals_standardised_pipeline():
    x_train, y_train, x_test, _, n_classes = _problem(scale=1000.0)
    ours = LINEAR_STD.fit_predict(x_train, y_train, x_test, n_classes)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=x_train.shape[1] * n_classes / 100, max_iter=1000))
    pipe.fit(x_train.astype(np.float64), y_train)
    np.testing.assert_array_equal(ours.labels, pipe.predict(x_test.astype(np.float64)))


def test_probability_columns_follow_the_label_map_when_a_class_is_missing_in_training():
    x_train, y_train, x_test, _, _ = _problem()
    y_train = np.where(y_train == 1, 0, y_train)  # class 1 never seen in training; the label map has 4 classes
    ours = LINEAR.fit_predict(x_train, y_train, x_test, 4)
    assert ours.proba.shape == (len(x_test), 4)
    assert np.all(ours.proba[:, 1] == 0)
    np.testing.assert_allclose(ours.proba.sum(axis=1), 1.0, rtol=1e-6)


def test_metrics_equal_sklearn():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 3, 50)
    proba = rng.dirichlet([1, 1, 1], 50)
    y_pred = proba.argmax(1)
    m = classification_metrics(y_true, y_pred, proba, 3)
    assert m["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert m["macro_auroc"] == pytest.approx(roc_auc_score(y_true, proba, multi_class="ovr", average="macro"))


def test_auroc_over_present_classes_only():
    y_true = np.array([0, 0, 2, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.5, 0.1, 0.4]])
    m = classification_metrics(y_true, proba.argmax(1), proba, 3)
    assert m["macro_auroc"] == pytest.approx(1.0)


class _Constant(CellProtocol):
    def fit_predict(self, x_train, y_train, x_test, n_classes):
        return Prediction(labels=np.zeros(len(x_test), dtype=np.int64))


def test_collapse_to_one_class_is_recorded_and_folds_aggregate():
    x_train, y_train, x_test, y_test, n_classes = _problem()
    x = np.concatenate([x_train, x_test])
    y = np.concatenate([y_train, y_test])
    splits = [("0", np.arange(0, 200), np.arange(200, 300)), ("1", np.arange(100, 300), np.arange(0, 100))]
    result = evaluate(_Constant("constant", ""), x, y, splits, ["a", "b", "c", "d"])
    assert len(result.warnings) == 2 and "collapsed to one class ('a')" in result.warnings[0]
    f1s = [fold["weighted_f1"] for fold in result.per_fold]
    assert result.mean["weighted_f1"] == pytest.approx(np.mean(f1s))
    assert result.std["weighted_f1"] == pytest.approx(np.std(f1s))
    assert result.mean["macro_auroc"] is None  # no probabilities from this protocol
    assert sorted(result.predictions["row"]) == list(range(100)) + list(range(200, 300))


def test_linear_std_is_invariant_to_feature_scale_and_offset():
    x_train, y_train, x_test, _, n_classes = _problem()
    plain = LINEAR_STD.fit_predict(x_train, y_train, x_test, n_classes)
    scaled = LINEAR_STD.fit_predict(x_train * 1e4 + 1e5, y_train, x_test * 1e4 + 1e5, n_classes)
    assert np.mean(plain.labels == scaled.labels) > 0.97


def test_each_split_reports_its_progress_and_its_warnings_as_it_ends():
    """The harness hears of every split as it ends (its progress bar), with that split's warnings: a probe
    that did not converge is said after its first fold, not only in the result file at the end."""
    import dataclasses

    from protocols.base import evaluation_progress

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (60, 20)) * 50
    y = np.arange(60) % 3
    splits = [(str(k), np.flatnonzero(np.arange(60) % 3 != k), np.flatnonzero(np.arange(60) % 3 == k)) for k in range(3)]
    heard = []
    with evaluation_progress(lambda done, total, what, notes: heard.append((done, total, what, notes))):
        evaluate(dataclasses.replace(LINEAR, max_iter=1), x, y, splits, ["a", "b", "c"])
    assert [(d, t) for d, t, _, _ in heard] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert heard[1][2] == "fold 0" and any("did not converge in 1 iterations" in n for n in heard[1][3])
    assert "score is that of an unfinished fit" in heard[1][3][0]


def test_expected_calibration_error_of_a_hand_computed_case():
    """Confidences 0.9, 0.9 (one right) and 0.6, 0.6 (both right), 15 bins: |0.5 - 0.9| x 2/4 + |1 - 0.6| x 2/4."""
    from bench.core.metrics import ECE, classification_metrics, expected_calibration_error

    proba = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    y_pred = np.array([0, 1, 0, 1])
    y_true = np.array([0, 0, 0, 1])
    assert expected_calibration_error(y_true, y_pred, proba) == pytest.approx(0.4)
    assert expected_calibration_error(y_true, y_pred, proba, bins=1) == pytest.approx(abs(0.75 - 0.75))  # one bin
    assert classification_metrics(y_true, y_pred, proba, 2)[ECE] == pytest.approx(0.4)
    assert classification_metrics(y_true, y_pred, None, 2)[ECE] is None  # no probabilities: no calibration
    rng = np.random.default_rng(0)  # calibrated by construction: right with the probability it states
    confidence = rng.uniform(0.5, 1.0, 20000)
    right = rng.uniform(size=20000) < confidence
    proba = np.stack([confidence, 1 - confidence], axis=1)
    assert expected_calibration_error(np.where(right, 0, 1), np.zeros(20000, dtype=int), proba) < 0.02


def test_label_metrics_of_text_labels_equal_sklearn_and_refuse_unequal_columns():
    """label_metrics codes any labels (text here, pandas columns as the re-scoring reads them) and counts: equal
    to scikit-learn's f1 / accuracy / balanced accuracy on the same text labels."""
    import pandas as pd

    from bench.core.metrics import LABEL_METRICS, label_metrics, metric_value

    rng = np.random.default_rng(1)
    names = np.array(["blast", "eosinophil", "lymphocyte", "monocyte", "neutrophil"])
    for n in (1, 7, 250):
        y_true, y_pred = names[rng.integers(0, 5, n)], names[rng.integers(0, 3, n)]  # two classes never predicted
        for columns in ((y_true, y_pred), (pd.Series(y_true), pd.Series(y_pred))):
            counted = label_metrics(*columns)
            for metric in LABEL_METRICS:
                assert counted[metric] == pytest.approx(metric_value(y_true, y_pred, metric), abs=1e-12), (metric, n)
    assert label_metrics(["b", "b"], ["a", "a"]) == {"weighted_f1": 0.0, "accuracy": 0.0, "balanced_accuracy": 0.0}
    with pytest.raises(ValueError, match="one length"):
        label_metrics(["a", "b"], ["a"])
