import numpy as np
import pandas as pd
import pytest

from bench.core.metrics import metric_value
from leaderboard.stats import bootstrap_ci, paired_bootstrap, rank_table


def _predictions(n, error_rate, seed=0, n_classes=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    wrong = rng.random(n) < error_rate
    preds = np.where(wrong, (labels + 1) % n_classes, labels)
    return pd.DataFrame({"path": [f"img{i}.png" for i in range(n)], "label": labels, "prediction": preds})


def test_ci_contains_the_point_and_shrinks_with_more_samples():
    small = bootstrap_ci(_predictions(100, 0.2), "accuracy", n_boot=400)
    large = bootstrap_ci(_predictions(3000, 0.2), "accuracy", n_boot=400)
    for point, low, high in (small, large):
        assert low <= point <= high
    assert (large[2] - large[1]) < 0.5 * (small[2] - small[1])
    assert bootstrap_ci(_predictions(50, 0.0), "weighted_f1", n_boot=50) == (1.0, 1.0, 1.0)


def test_bags_are_resampled_as_units_with_all_their_seed_rows():
    rows = [{"bag": f"P{i}", "seed": s, "label": i % 2, "prediction": i % 2} for i in range(10) for s in (0, 1, 2)]
    point, low, high = bootstrap_ci(pd.DataFrame(rows), "balanced_accuracy", n_boot=50)
    assert point == low == high == 1.0


def test_paired_bootstrap():
    a = _predictions(500, 0.1, seed=1)
    assert paired_bootstrap(a, a, "accuracy", n_boot=200) == pytest.approx(
        {"difference": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0, "n_units": 500, "n_boot": 200})
    worse = a.copy()
    flip = np.arange(len(a)) % 4 == 0
    worse.loc[flip, "prediction"] = (worse.loc[flip, "label"] + 1) % 3
    result = paired_bootstrap(a, worse, "accuracy", n_boot=300)
    assert result["difference"] == pytest.approx(metric_value(a.label, a.prediction, "accuracy")
                                                 - metric_value(worse.label, worse.prediction, "accuracy"))
    assert 0 < result["low"] <= result["difference"] <= result["high"] and result["p_value"] < 0.01
    with pytest.raises(ValueError, match="same samples"):
        paired_bootstrap(a, a.iloc[:-1], "accuracy")


def test_ranks_borda_and_the_missing_task_rule():
    scores = pd.DataFrame({"t1": [0.9, 0.8, 0.7], "t2": [0.5, 0.6, np.nan]}, index=["a", "b", "c"])
    table = rank_table(scores)
    assert np.isnan(table.loc["c", "mean"])  # c lacks t2: no mean over tasks
    assert table.loc["a", "mean"] == pytest.approx(0.7)
    # Borda among a and b only (c lacks t2): a beats b on t1, b beats a on t2; c gets no Borda count
    assert table.loc[["a", "b"], "borda"].to_dict() == {"a": 1.0, "b": 1.0} and np.isnan(table.loc["c", "borda"])
    assert table["ranked"].to_dict() == {"a": True, "b": True, "c": False}
    assert table.loc["a", "rank t1"] == 1 and table.loc["b", "rank t2"] == 1 and table.loc["c", "rank t1"] == 3


def test_an_extractor_with_fewer_tasks_gets_no_borda_points_over_the_others():
    # "only" ran the easy task and is best there; it must not rank above extractors that ran both
    scores = pd.DataFrame({"acevedo": [0.9, 0.8, np.nan], "synthetic-wbc": [0.5, 0.55, 0.99]},
                          index=["best-acevedo", "second", "only"])
    table = rank_table(scores)
    assert list(table.index) == ["best-acevedo", "second", "only"]  # ranked rows first, the rest after
    assert table.loc["best-acevedo", "borda"] == 1 and table.loc["second", "borda"] == 1
    assert np.isnan(table.loc["only", "borda"]) and table.loc["only", "rank synthetic-wbc"] == 1


def _loop_bootstrap(predictions, metric, n_boot, seed=0):
    """The reference: every resample's rows concatenated and scored by scikit-learn (``metric_value``)."""
    unit = "bag" if "bag" in predictions else "path"
    rows_of = predictions.groupby(unit).indices
    units = np.array(sorted(rows_of))
    labels, preds = predictions["label"].to_numpy(), predictions["prediction"].to_numpy()
    draws = np.random.default_rng(seed).integers(0, len(units), size=(n_boot, len(units)))
    values = []
    for draw in draws:
        rows = np.concatenate([rows_of[units[i]] for i in draw])
        values.append(metric_value(labels[rows], preds[rows], metric))
    return np.array(values)


@pytest.mark.parametrize("metric", ["weighted_f1", "accuracy", "balanced_accuracy"])
@pytest.mark.parametrize("layout", ["images", "bags"])
def test_bulk_resampled_metrics_equal_scikit_learn_on_every_resample(metric, layout):
    from leaderboard.stats import _resampled_metrics

    rng = np.random.default_rng(3)
    if layout == "images":  # 7 classes, two rare, one never predicted, one predicted but absent from the labels
        labels = rng.choice(list("ABCDEFG"), size=300, p=[0.3, 0.25, 0.2, 0.15, 0.06, 0.02, 0.02])
        preds = np.where(rng.random(300) < 0.3, rng.choice(list("ABCDH"), size=300), labels)
        preds[labels == "G"] = "A"
        frame = pd.DataFrame({"path": [f"{i}.png" for i in range(300)], "label": labels, "prediction": preds})
    else:  # MIL: every bag appears once per seed, resampled as one unit
        bags = [f"P{i:02d}" for i in range(40)]
        labels = rng.choice(["inv16", "npm1", "pml"], size=40)
        rows = [{"bag": b, "seed": s, "label": y, "prediction": y if rng.random() < 0.7 else "pml"}
                for b, y in zip(bags, labels) for s in (0, 1, 2)]
        frame = pd.DataFrame(rows)
    reference = _loop_bootstrap(frame, metric, 200, seed=5)
    unit = "bag" if layout == "bags" else "path"
    (bulk,), (whole,), n_units = _resampled_metrics(frame[unit], frame["label"].to_numpy(),
                                                    [frame["prediction"].to_numpy()], metric, 200, 5)
    np.testing.assert_allclose(bulk, reference, rtol=0, atol=1e-12)
    assert n_units == (40 if layout == "bags" else 300)
    point, low, high = bootstrap_ci(frame, metric, n_boot=200, seed=5)
    assert point == whole == pytest.approx(metric_value(frame["label"], frame["prediction"], metric), abs=1e-12)
    assert low == pytest.approx(np.quantile(reference, 0.025), abs=1e-12)
    assert high == pytest.approx(np.quantile(reference, 0.975), abs=1e-12)


def test_intervals_are_kept_beside_the_predictions_and_recomputed_when_they_change(tmp_path, monkeypatch):
    import leaderboard.stats as stats
    from leaderboard.tables import cached_interval, intervals_path

    path = tmp_path / "knn-20.predictions.csv"
    _predictions(400, 0.2).to_csv(path, index=False)
    first = cached_interval(path, "accuracy", 300)
    assert first == bootstrap_ci(pd.read_csv(path), "accuracy", n_boot=300)
    assert intervals_path(path).is_file()
    calls = []
    monkeypatch.setattr(stats, "bootstrap_ci", lambda *a, **k: calls.append(1) or (0.0, 0.0, 0.0))
    assert cached_interval(path, "accuracy", 300) == first and not calls  # read, not recomputed
    _predictions(400, 0.5).to_csv(path, index=False)  # other predictions: the cache no longer matches
    assert cached_interval(path, "accuracy", 300) == (0.0, 0.0, 0.0) and calls == [1]
