"""Batch effect (`bench run -t A+B`, `bench batch-effect`): scIB's silhouettes and a kNN mixing score on the classes
several data sets share, written as a result record the leaderboard ranks."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.core.errors import DataError, UsageError
from bench.core.record import ResultRecord, cells_path
from bench.runner import RunOptions, run_pair
from leaderboard.tables import ranking, read_results, render
from protocols.batch_effect import BatchEffect, _inverse_simpson
from tests.conftest import TINY


def test_domain_silhouette_of_a_hand_computed_case():
    """1-D cells. Class x: domain A at 0, 1 and B at 10, 11 (apart); class y: A at 100, 102 and B at 101, 103
    (interleaved). Silhouettes by hand: x: 9.5/10.5, 8.5/9.5, 8.5/9.5, 9.5/10.5; y: 0, -0.5, -0.5, 0."""
    features = np.array([0, 1, 10, 11, 100, 102, 101, 103], dtype=float)[:, None]
    domains = np.array(list("AABBAABB"))
    labels = np.array(list("xxxxyyyy"))
    scores = BatchEffect(k=3).score(features, domains, labels)
    x = 1 - np.mean([9.5 / 10.5, 8.5 / 9.5, 8.5 / 9.5, 9.5 / 10.5])
    y = np.mean([1, 0.5, 0.5, 1])
    (repeat,) = scores.per_repeat  # nothing to draw: one repeat
    assert repeat["domain_asw_per_class"] == pytest.approx({"x": x, "y": y})
    assert scores.mean["domain_asw"] == pytest.approx((x + y) / 2)
    # class ASW by hand: each cell's mean distance to its own class against the other class
    cells = list(zip(features[:, 0], labels))
    a = np.array([np.mean([abs(f - g) for g in features[labels == c, 0] if g != f]) for f, c in cells])
    b = np.array([np.mean(np.abs(f - features[labels != c, 0])) for f, c in cells])
    assert scores.mean["class_asw"] == pytest.approx((np.mean((b - a) / np.maximum(a, b)) + 1) / 2)
    silhouettes = scores.cells["domain_silhouette"].to_numpy()
    assert silhouettes[:4] == pytest.approx([9.5 / 10.5, 8.5 / 9.5, 8.5 / 9.5, 9.5 / 10.5])


def test_inverse_simpson_of_neighbour_domains():
    codes = np.array([[0, 0, 0, 0], [0, 1, 0, 1], [0, 1, 1, 1]])
    assert _inverse_simpson(codes, 2) == pytest.approx([1.0, 2.0, 1 / (1 / 16 + 9 / 16)])


def test_knn_mixing_is_zero_for_separate_domains_and_near_one_for_identical_ones():
    rng = np.random.default_rng(0)
    cells = np.concatenate([rng.normal(0, 1, (30, 8)), rng.normal(0, 1, (30, 8)) + 20])  # two classes
    labels = np.repeat(["p", "q"], 30)
    same = BatchEffect().score(np.concatenate([cells, cells + 1e-6]), np.repeat(["A", "B"], 60), np.tile(labels, 2))
    apart = BatchEffect().score(np.concatenate([cells, cells + 100]), np.repeat(["A", "B"], 60), np.tile(labels, 2))
    assert apart.mean["knn_mixing"] == 0.0 and apart.mean["domain_asw"] < 0.1
    assert same.mean["knn_mixing"] > 0.9
    # each cell's twin in the other domain: b = 29/30 of a, so s = -1/30 for every cell
    assert same.mean["domain_asw"] == pytest.approx(1 - 1 / 30, abs=1e-6)
    assert same.mean["integration_score"] > apart.mean["integration_score"]


def test_domains_are_balanced_per_class_and_draws_are_seeded():
    rng = np.random.default_rng(1)
    labels = np.array(["p"] * 50 + ["q"] * 40 + ["r"] * 5 + ["p"] * 20 + ["q"] * 30 + ["s"] * 9)
    domains = np.array(["A"] * 95 + ["B"] * 59)
    features = rng.normal(0, 1, (len(labels), 6))
    scorer = BatchEffect(max_per_class=25, repeats=3, seed=4)
    first, again = scorer.score(features, domains, labels), scorer.score(features, domains, labels)
    assert [r["n_cells"] for r in first.per_repeat] == [2 * (20 + 25)] * 3  # p: 20 per domain, q: 25 (the cap)
    assert first.mean == again.mean and first.std["domain_asw"] > 0  # seeded draws, and they differ
    assert set(first.cells["label"]) == {"p", "q"}  # r and s are not in both domains
    counts = first.cells[first.cells["repeat"] == 0].groupby(["label", "domain"]).size()
    assert counts.to_dict() == {("p", "A"): 20, ("p", "B"): 20, ("q", "A"): 25, ("q", "B"): 25}


def test_too_few_shared_classes_and_too_few_tasks_are_refused():
    with pytest.raises(DataError, match=r"share \['p'\].*A: \['p', 'q'\]; B: \['p', 'r'\]"):
        BatchEffect().score(np.zeros((12, 2)), np.repeat(["A", "B"], 6), np.array(list("ppqqqq" "pprrrr")))
    done = CliRunner().invoke(app, ["batch-effect", "-e", TINY, "-t", "synthetic-wbc", "--no-progress"])
    assert done.exit_code == 2 and "at least two different tasks" in done.output
    with pytest.raises(UsageError, match="--max-per-class must be at least 2"):
        BatchEffect(max_per_class=1)


def test_the_planted_stain_shift_scores_below_an_unshifted_split_and_is_ranked(synthetic_root, tmp_path):
    """synthetic-wbc against synthetic-wbc-shifted (the same cells under another stain) mixes less than two
    halves of synthetic-wbc, for a tiny ViT and for colour histograms; the records are on the leaderboard."""
    for half in (0, 1):  # even and odd image numbers of every class
        for image in sorted(synthetic_root.rglob("*.png")):
            if int(image.stem.rsplit("_", 1)[1]) % 2 == half:
                (tmp_path / f"half{half}" / image.parent.name).mkdir(parents=True, exist_ok=True)
                shutil.copy(image, tmp_path / f"half{half}" / image.parent.name / image.name)
    results = tmp_path / "results"
    cli = CliRunner().invoke(app, ["batch-effect", "-e", TINY, "-e", "color-histogram", "-t",
                                   "synthetic-wbc,synthetic-wbc-shifted", "--results", str(results), "--no-progress"])
    assert cli.exit_code == 0, cli.output
    options = RunOptions(results_dir=results, progress=False)
    halves = [f"imagefolder:{tmp_path / 'half0'}", f"imagefolder:{tmp_path / 'half1'}"]
    for extractor in (TINY, "color-histogram"):
        outcome = run_pair(extractor, "+".join(halves), ["batch-effect"], options, log=print)
        (unshifted,) = outcome.records
        (path,) = results.glob(f"*{'TinyViT' if extractor == TINY else extractor}*/"
                               "synthetic-wbc+synthetic-wbc-shifted/batch-effect.json")
        shifted = ResultRecord.read(path)
        for metric in ("integration_score", "domain_asw", "knn_mixing"):
            assert shifted.metrics.mean[metric] < unshifted.metrics.mean[metric] - 0.1, (extractor, metric)
        assert unshifted.metrics.mean["knn_mixing"] > 0.8 and shifted.metrics.mean["knn_mixing"] < 0.5
        assert shifted.task.shared_classes == sorted(p.name for p in synthetic_root.iterdir() if p.is_dir())
        assert len(shifted.metrics.per_fold) == 1  # 50 cells per class in both: nothing to draw
        cells = pd.read_csv(cells_path(path))
        assert len(cells) == 600 and cells["path"].str.endswith(".png").all()
    board = read_results(results)
    assert set(board["protocol"]) == {"batch-effect"} and len(board) == 4
    table = ranking(board, "batch-effect")
    assert table["ranked"].all() and set(table.columns) >= {"synthetic-wbc+synthetic-wbc-shifted", "borda"}
    assert "integration score" in render(board, "md", n_boot=0)
    submitted = CliRunner().invoke(app, ["submit", "--results", str(results), "--out", str(tmp_path / "submissions")])
    assert submitted.exit_code == 1 and "a batch-effect result is not packaged" in submitted.output, submitted.output
