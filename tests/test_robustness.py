"""Robustness: the perturbations (seeded, the same pixels for every model), `TASK@perturbation=...` names, the
`robustness` protocol (a planted perturbation-sensitive feature scores lower than an invariant one) and PathoROB's
robustness index on a hand-computed case."""

from __future__ import annotations

import gzip
import hashlib
import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from bench.cli import app
from bench.core.design import PerturbationDesign
from bench.core.errors import UsageError
from bench.core.record import ResultRecord
from protocols.robustness import Robustness, RobustnessIndex, cosine, robustness_index
from tasks import get_task
from tasks.transforms import PERTURBATIONS, HedJitter, Perturbed, PreResize


def _image(seed: int, size: int = 32) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(40, 250, (size, size, 3)).astype(np.uint8))


def test_perturbations_are_seeded_by_the_image_and_keep_its_size():
    a, b = _image(0), _image(1)
    for name, perturbation in PERTURBATIONS.items():
        once, again = np.asarray(perturbation(a)), np.asarray(perturbation(a.copy()))
        assert once.shape == (32, 32, 3) and (once == again).all(), name  # the same image, the same pixels
        assert (once != np.asarray(a)).any(), name
    # the stain draw depends on the image: two images get other factors (their ratios to the original differ)
    assert not np.allclose(np.asarray(HedJitter()(a), float) / np.asarray(a, float),
                           np.asarray(HedJitter()(b), float) / np.asarray(b, float), atol=0.02)


def test_hed_jitter_without_jitter_gives_the_image_back():
    """sigma 0: densities x 1 + 0, deconvolved and convolved again: the same pixels (to rounding)."""
    image = _image(2)
    assert np.abs(np.asarray(HedJitter(sigma=0.0)(image), int) - np.asarray(image, int)).max() <= 1


def test_a_perturbed_task_transforms_first_and_is_named_so():
    blurred = get_task("acevedo@perturbation=blur")
    transform = blurred.prepared_transform()
    assert isinstance(transform, Perturbed) and transform.then == PreResize(224)  # then Acevedo's pre-resize
    assert transform.identity() == {"perturbation": {"blur": {"gaussian_blur": {"radius": 1.5}}},
                                    "pre_resize": [224, 224, "bicubic"]}
    assert get_task("acevedo").prepared_transform() == PreResize(224)
    every = get_task("acevedo@folds=authors@perturbation=all")
    assert every.name == "acevedo@folds=authors@perturbation=all" and every.protocols == ("robustness",)
    assert [m.name for m in every.members] == ["acevedo@folds=authors"] + [
        f"acevedo@folds=authors@perturbation={p}" for p in PERTURBATIONS]
    assert {m.fold_scheme for m in every.members} == {"authors"}
    with pytest.raises(UsageError, match="name one task"):
        get_task("acevedo=>bmc@perturbation=all")
    with pytest.raises(UsageError, match="must be one of"):
        get_task("acevedo@perturbation=fog")


def _design(n_per_class: int = 30, n_folds: int = 3):
    labels = np.repeat([0, 1, 2], n_per_class)
    n = len(labels)
    fold = np.arange(n) % n_folds
    splits = [(str(f), np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(n_folds)]
    names = ["none", "blur", "stain"]
    return PerturbationDesign(["a", "b", "c"], np.tile(labels, 3), names, np.repeat(np.arange(3), n),
                              np.ones(3 * n, bool), splits, n_cells=n), labels


def test_a_perturbation_sensitive_feature_scores_lower_than_an_invariant_one():
    design, labels = _design()
    rng = np.random.default_rng(0)
    n = len(labels)
    signal = np.eye(3)[labels] * 2 + rng.normal(0, 1, (n, 3))
    invariant = np.concatenate([np.hstack([signal, np.zeros((n, 2))])] * 3)
    # a second, stronger class signal (say, colour) that the perturbations replace by noise
    colour = np.array([[0, 0], [6, 0], [0, 6]])[labels] + rng.normal(0, 0.5, (n, 2))
    sensitive = np.concatenate([np.hstack([signal, colour])] + [np.hstack([signal, rng.normal(0, 6, (n, 2))])] * 2)
    steady = Robustness(name="robustness").evaluate(invariant, design)
    shaken = Robustness(name="robustness").evaluate(sensitive, design)
    assert steady.mean["invariance"] == pytest.approx(1.0) and steady.mean["f1_drop"] == pytest.approx(0.0)
    assert shaken.mean["invariance"] < 0.9 and shaken.mean["perturbed_f1"] < steady.mean["perturbed_f1"]
    assert shaken.mean["clean_f1"] >= steady.mean["clean_f1"]  # better on clean cells, and it does not last
    assert shaken.mean["f1_drop"] > 0.2
    # against scikit-learn: the clean probe (the paper's C) on split 0, tested on the blurred test cells
    _, train, test = design.splits[0]
    model = LogisticRegression(C=5 * 3 / 100, max_iter=1000).fit(sensitive[train], labels[train])
    blurred = f1_score(labels[test], model.predict(sensitive[test + n]), average="weighted")
    assert shaken.per_fold[0]["perturbations"]["blur"]["perturbed_f1"] == pytest.approx(blurred)
    assert shaken.per_fold[0]["perturbations"]["blur"]["invariance"] == pytest.approx(
        cosine(sensitive[test], sensitive[test + n]).mean())
    assert set(shaken.cells["perturbation"]) == {"blur", "stain"} and len(shaken.cells) == 2 * n


def test_robustness_index_of_a_hand_computed_case():
    """1-D cells, k = 1. Site A: class x at 0, y at 10; site B: x at 1, y at 11. Each cell's nearest neighbour
    is the same class at the other site (SO = 4, OS = 0): index 1. Moving B's cells to 22 and 32, A's x's nearest
    is A's y (OS), A's y's is A's x (10 against 12: OS), B's x's is B's y (OS), B's y's is B's x (OS): index 0."""
    labels, sites = np.array(list("xyxy")), np.array(list("AABB"))
    index, counts = robustness_index(np.array([[0.0], [10], [1], [11]]), sites, labels, k=1)
    assert index == 1.0 and counts["same_class_other_site"] == 4 and counts["other_class_same_site"] == 0
    index, counts = robustness_index(np.array([[0.0], [10], [22], [32]]), sites, labels, k=1)
    assert index == 0.0 and counts["other_class_same_site"] == 4
    with pytest.raises(UsageError):
        RobustnessIndex(k=0)


def test_run_and_board(tmp_path, image_folder):
    results, task = tmp_path / "results", f"imagefolder:{image_folder}"
    done = CliRunner().invoke(app, ["run", "-e", "color-histogram", "-t", f"{task}@perturbation=all",
                                    "--results", str(results), "--no-progress"])
    assert done.exit_code == 0, done.output
    (path,) = results.glob("color-histogram/*/robustness.json")
    record = ResultRecord.read(path)
    assert record.task.name == f"{task}@perturbation=all" and record.metrics.main == "perturbed_f1"
    assert set(record.metrics.per_fold[0]["perturbations"]) == set(PERTURBATIONS)
    assert set(record.timings["tasks"]) == {task, *(f"{task}@perturbation={p}" for p in PERTURBATIONS)}
    # every perturbation moves the colour histograms of these noisy cells (blur removes their noise)
    per = {p: np.mean([f["perturbations"][p]["invariance"] for f in record.metrics.per_fold]) for p in PERTURBATIONS}
    assert all(0 < v < 1 for v in per.values()), per
    board = CliRunner().invoke(app, ["leaderboard", "--results", str(results), "--format", "md"])
    assert board.exit_code == 0 and "Robustness to perturbations" in board.output, board.output
    # submitted with its per-cell table as evidence, self-reported (no features: CI would need every perturbed
    # version's); a table edited after submission (its digest re-signed) is refused by re-scoring it
    submissions = tmp_path / "submissions"
    submitted = CliRunner().invoke(app, ["submit", "--results", str(results), "--out", str(submissions)])
    assert submitted.exit_code == 0 and "wrote 1 submission(s)" in submitted.output, submitted.output
    (folder,) = submissions.glob("*/*/robustness")
    assert sorted(p.name for p in folder.iterdir()) == ["cells.csv.gz", "record.json", "submission.json"]
    verified = CliRunner().invoke(app, ["verify", str(submissions), "--seed", "0"])
    assert verified.exit_code == 0 and "0 verified, 1 self-reported" in verified.output, verified.output
    table = pd.read_csv(io.BytesIO(gzip.decompress((folder / "cells.csv.gz").read_bytes())), dtype=str,
                        keep_default_na=False)
    table.loc[0, "cosine"] = "0.5"
    raw = table.to_csv(index=False).encode()
    (folder / "cells.csv.gz").write_bytes(gzip.compress(raw))
    info = json.loads((folder / "submission.json").read_text())
    (folder / "submission.json").write_text(json.dumps({**info, "cells_sha256": hashlib.sha256(raw).hexdigest()}))
    refused = CliRunner().invoke(app, ["verify", str(submissions), "--seed", "0"])
    assert refused.exit_code == 1 and "invariance" in refused.output, refused.output
    assert "a robustness record must agree with its per-cell table" in refused.output
    # the per-cell table is the record's evidence: an edited cell is refused by the board, recomputed by the run
    cells = path.with_name("robustness.cells.csv")
    lines = cells.read_text().splitlines()
    header, first = lines[0].split(","), lines[1].split(",")
    first[header.index("cosine")] = "0.5"
    cells.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    board = CliRunner().invoke(app, ["leaderboard", "--results", str(results), "--format", "md"])
    assert "does not agree with its per-cell table" in board.output and "invariance" in board.output, board.output
    again = CliRunner().invoke(app, ["run", "-e", "color-histogram", "-t", f"{task}@perturbation=all", "--results",
                                     str(results), "--no-progress"])
    assert again.exit_code == 0 and "does not agree with its per-cell table" in again.output, again.output
    wrong = CliRunner().invoke(app, ["run", "-e", "color-histogram", "-t", f"{task}@perturbation=all", "-p",
                                     "knn-20", "--results", str(results), "--no-progress"])
    assert wrong.exit_code == 2 and "robustness" in wrong.output
