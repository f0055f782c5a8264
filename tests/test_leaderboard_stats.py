import numpy as np
import pandas as pd
import pytest

from leaderboard.stats import bootstrap_ci, metric_value, paired_bootstrap, rank_table


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
