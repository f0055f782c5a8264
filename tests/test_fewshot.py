"""Few-shot protocols (`fewshot-simpleshot`, `fewshot-linear`): SimpleShot against a hand-computed case, the linear
variant against scikit-learn's LogisticRegression on the same support sets, the curve against scipy's t interval,
and the record through `bench run`, the board and a tampered file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from bench.cli import app
from bench.core.curves import curve_problems, episode_curve
from bench.core.design import CellDesign
from bench.core.errors import DataError, UsageError
from bench.core.record import ResultRecord
from protocols.fewshot import FewShot, draw_support, simpleshot


def test_simpleshot_of_a_hand_computed_case():
    """Support: class 0 at (4, 0), (6, 0); class 1 at (0, 1), (0, 3). Their mean is (2.5, 1); centred and
    L2-normalised they are (0.832, -0.555), (0.962, -0.275), (-1, 0), (-0.781, 0.625), so the prototypes are
    (0.897, -0.415) and (-0.890, 0.312). (5, 7) centred is (2.5, 6), normalised (0.385, 0.923): squared distances
    2.05 to prototype 0 and 2.00 to prototype 1, so class 1, although the raw class means (5, 0) and (0, 2) are at
    49 and 50 (class 0 for a plain nearest centroid). (6, 1) -> (1, 0): class 0; (1, 4) -> (-0.447, 0.894): class 1."""
    support = np.array([[4, 0], [6, 0], [0, 1], [0, 3]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    assert simpleshot(support, labels, np.array([[5, 7], [6, 1], [1, 4]])).tolist() == [1, 0, 1]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # its unused shrinkage statistics, at 1 shot
def test_simpleshot_equals_scikit_learns_pipeline():
    from sklearn.neighbors import NearestCentroid
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    features, labels = _clusters(30, n_classes=5, dim=16, seed=3)
    for n in (1, 3, 10):
        support = np.concatenate([np.flatnonzero(labels == c)[:n] for c in range(5)])
        reference = make_pipeline(StandardScaler(with_std=False), Normalizer(), NearestCentroid()).fit(
            features[support].astype(np.float64), labels[support])
        assert simpleshot(features[support], labels[support], features).tolist() == \
            reference.predict(features.astype(np.float64)).tolist()


def _clusters(per_class: int, n_classes: int = 3, dim: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (n_classes, dim))
    labels = np.repeat(np.arange(n_classes), per_class)
    return (centres[labels] + rng.normal(0, 1.5, (len(labels), dim))).astype(np.float32), labels


def _design(labels: np.ndarray, n_folds: int = 2) -> CellDesign:
    fold = np.arange(len(labels)) % n_folds
    splits = [(str(f), np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(n_folds)]
    return CellDesign([f"c{i}" for i in range(labels.max() + 1)], labels, splits)


def test_linear_few_shot_equals_logistic_regression_on_the_documented_draws():
    features, labels = _clusters(20)
    design = _design(labels)
    protocol = FewShot(name="fewshot-linear", classifier="linear", shots=(1, 4), episodes=4, seed=7)
    evaluation = protocol.evaluate(features, design)
    assert [e["split"] for e in evaluation.per_fold] == ["0", "1", "0", "1"]  # episode e on split e mod 2
    for e, episode in enumerate(evaluation.per_fold):
        _, train, test = design.splits[e % 2]
        for n in (1, 4):
            rng = np.random.default_rng([7, e, n])  # the documented draw: n per class, in label order
            support = np.concatenate([np.sort(rng.choice(train[labels[train] == c], n, replace=False))
                                      for c in range(3)])
            model = LogisticRegression(C=features.shape[1] * 3 / 100, max_iter=1000).fit(
                features[support].astype(np.float64), labels[support])
            expected = f1_score(labels[test], model.predict(features[test].astype(np.float64)), average="weighted")
            assert episode["shots"][str(n)]["weighted_f1"] == pytest.approx(expected, abs=1e-12)
            assert episode["shots"][str(n)]["n_train"] == 3 * n
        assert episode["weighted_f1"] == pytest.approx(np.mean([episode["shots"][s]["weighted_f1"] for s in ("1", "4")]))
    scores = [e["weighted_f1"] for e in evaluation.per_fold]
    assert evaluation.mean["weighted_f1"] == pytest.approx(np.mean(scores))
    assert evaluation.std["weighted_f1"] == pytest.approx(np.std(scores))
    assert evaluation.predictions is None and evaluation.curve is not None


def test_the_curve_is_the_t_interval_over_episodes():
    features, labels = _clusters(20)
    evaluation = FewShot(name="fewshot-simpleshot", shots=(1, 2, 8), episodes=6).evaluate(features, _design(labels))
    curve = evaluation.curve
    assert curve is not None and [p["shots"] for p in curve["points"]] == [1, 2, 8]
    for point in curve["points"]:
        values = [e["shots"][str(point["shots"])]["accuracy"] for e in evaluation.per_fold]
        low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
        assert point["mean"]["accuracy"] == pytest.approx(np.mean(values))
        assert (point["ci_low"]["accuracy"], point["ci_high"]["accuracy"]) == pytest.approx((low, high))
        assert point["episodes"] == 6
    assert point["mean"]["macro_auroc"] is None  # SimpleShot gives labels, no probabilities


def test_draws_differ_between_episodes_and_are_the_same_for_every_model():
    labels = np.repeat([0, 1], 10)
    train = np.arange(20)
    first, _ = draw_support(train, labels, 3, np.random.default_rng([0, 0, 3]))
    again, _ = draw_support(train, labels, 3, np.random.default_rng([0, 0, 3]))
    other, _ = draw_support(train, labels, 3, np.random.default_rng([0, 1, 3]))
    assert first.tolist() == again.tolist() and first.tolist() != other.tolist()
    assert np.bincount(labels[first]).tolist() == [3, 3]


def test_short_classes_and_too_large_shot_counts_are_said():
    features, labels = _clusters(10)
    labels[:7] = 1  # class 0 keeps 3 cells
    evaluation = FewShot(name="fewshot-simpleshot", shots=(1, 2, 4, 64), episodes=2).evaluate(features,
                                                                                            _design(labels))
    assert [p["shots"] for p in evaluation.curve["points"]] == [1, 2, 4]  # pyright: ignore[reportOptionalSubscript]
    text = " ".join(evaluation.warnings)
    assert "shot counts [64] not evaluated" in text and "2-shot: classes with fewer than 2" in text
    assert "c0 (1" in text  # class 0 holds 1 or 2 training cells per split
    with pytest.raises(DataError, match="every shot count"):
        FewShot(shots=(64,), episodes=1).evaluate(features, _design(labels))
    with pytest.raises(UsageError, match="classifier"):
        FewShot(classifier="svm")


def test_run_board_and_a_tampered_record(tmp_path, image_folder):
    """Through `bench run` on a small image folder (3 classes x 12: 9 or 10 training cells per class per fold), with
    a few-shot protocol in a plugin file (10 episodes, to keep the test short)."""
    plugin = tmp_path / "small_fewshot.py"
    plugin.write_text("from protocols.fewshot import FewShot\n"
                      "SMALL = FewShot(name='fewshot-small', shots=(1, 4, 16, 64), episodes=10)\n")
    results = tmp_path / "results"
    task = f"imagefolder:{image_folder}"
    run = ["run", "-e", "color-histogram", "-t", task, "-p", f"{plugin}:SMALL", "--results", str(results),
           "--no-progress"]
    done = CliRunner().invoke(app, run)
    assert done.exit_code == 0, done.output
    (path,) = results.glob("color-histogram/*/fewshot-small.json")
    record = ResultRecord.read(path)
    assert len(record.metrics.per_fold) == 10 and record.curve is not None
    assert [p["shots"] for p in record.curve["points"]] == [1, 4]  # 9 or 10 training cells per class
    assert any("shot counts [16, 64] not evaluated" in w for w in record.warnings)
    assert record.curve == episode_curve(record.metrics.per_fold) and not curve_problems(record)
    assert not path.with_name("fewshot-small.predictions.csv").exists()
    board = CliRunner().invoke(app, ["leaderboard", "--results", str(results), "--format", "md"])
    assert board.exit_code == 0, board.output
    assert "Few-shot: label efficiency" in board.output and "| 4 " in board.output and "n per class" in board.output
    html = CliRunner().invoke(app, ["leaderboard", "--results", str(results), "--format", "html"])
    assert 'id="few-shot"' in html.output and "<polyline" in html.output
    # a kept result is current; a tampered one is refused by the board and recomputed by the run
    again = CliRunner().invoke(app, run)
    assert again.exit_code == 0 and "kept" in again.output, again.output
    payload = json.loads(path.read_text())
    payload["metrics"]["per_fold"][3]["shots"]["4"]["weighted_f1"] += 0.1
    path.write_text(json.dumps(payload))
    board = CliRunner().invoke(app, ["leaderboard", "--results", str(results), "--format", "md"])
    assert "does not agree with its episodes" in board.output and "per_fold[3].weighted_f1" in board.output
    rerun = CliRunner().invoke(app, [*run, "--overwrite", "only-missing"])
    assert rerun.exit_code == 0 and "does not agree with its episodes" in rerun.output, rerun.output
    assert not curve_problems(ResultRecord.read(path))


def test_counted_label_metrics_equal_scikit_learns():
    from bench.core.metrics import LABEL_METRICS, counted_label_metrics, metric_value

    rng = np.random.default_rng(0)
    cases = [(rng.integers(0, k, n), rng.integers(0, k, n)) for k, n in ((2, 5), (5, 40), (13, 300), (8, 1))]
    cases += [(np.array([0, 0, 1]), np.array([2, 2, 2])),  # a predicted class absent from the labels
              (np.array([3, 3, 3]), np.array([3, 3, 3])), (np.array([0, 4, 4, 1]), np.array([4, 4, 0, 1]))]
    for y_true, y_pred in cases:
        counted = counted_label_metrics(y_true, y_pred)
        for metric in LABEL_METRICS:
            assert counted[metric] == pytest.approx(metric_value(y_true, y_pred, metric), abs=1e-12), (metric, y_true)
