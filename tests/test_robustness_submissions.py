"""Robustness results as submissions (issue 29): the per-cell table in place of predictions and the features of
every version of the images; CI re-scores the record from the table, runs the protocol again on the features and
extracts a sample of every version again. Forged invariance, swapped versions and fold scores that are not the
means of their perturbations are refused, each by name."""

from __future__ import annotations

import gzip
import hashlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from bench.core.metrics import INVARIANCE, PERTURBED_F1
from tests.test_hostile import _bench, _resign, _verify, copy_submissions

TASK = "synthetic-wbc@perturbation=all"


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    """Colour histograms on the embedded task clean and under every perturbation: run and submitted once."""
    root = tmp_path_factory.mktemp("robust")
    home = root / "home"
    done = _bench("run", "-e", "color-histogram", "-t", TASK, "--results", root / "results", "--no-progress", home=home)
    assert done.exit_code == 0, done.output
    done = _bench("submit", "--results", root / "results", "--out", root / "submissions", home=home)
    assert done.exit_code == 0 and "300 x 96 features in 5 versions packaged" in done.output, done.output
    return root


def _cells(folder) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(gzip.decompress((folder / "cells.csv.gz").read_bytes())), dtype=str,
                       keep_default_na=False)


def _resign_cells(folder, cells: pd.DataFrame) -> None:
    raw = cells.to_csv(index=False).encode()
    (folder / "cells.csv.gz").write_bytes(gzip.compress(raw))
    info = json.loads((folder / "submission.json").read_text())
    (folder / "submission.json").write_text(json.dumps({**info, "cells_sha256": hashlib.sha256(raw).hexdigest()}))


def test_a_robustness_submission_is_verified_with_cis_own_run(honest, tmp_path):
    folder = next((honest / "submissions").rglob("robustness"))
    assert sorted(p.name for p in folder.parent.iterdir()) == [
        "features.blur.npz", "features.jpeg.npz", "features.npz", "features.rescale.npz", "features.stain.npz",
        "robustness"]
    assert sorted(p.name for p in folder.iterdir()) == ["cells.csv.gz", "record.json", "submission.json"]
    done = _verify(honest / "submissions", honest / "home")
    assert done.exit_code == 0 and "1 submission(s) accepted: 1 verified, 0 self-reported" in done.output, done.output
    assert "protocol: robustness run again by CI on the submitted float16 features of every version" in done.output
    assert "and under each of blur, jpeg, rescale, stain, within it" in done.output
    board = tmp_path / "board.csv"
    assert _bench("leaderboard", "--results", tmp_path / "none", "--submissions", honest / "submissions", "--format",
                  "csv", "--out", board, "--bootstrap", "0", home=honest / "home").exit_code == 0
    row = pd.read_csv(board).iloc[0]
    assert row["source"] == "submission" and row["main_metric"] == PERTURBED_F1
    # CI's number: the linear probe trained on the clean float16 features of the canonical training folds, scored on
    # the test cells of each perturbed version (scikit-learn's weighted F1 as the reference)
    from sklearn.metrics import f1_score

    from protocols.linear import LINEAR
    from tasks import get_task

    npz = {}
    for version in ("", ".blur", ".jpeg", ".rescale", ".stain"):
        with np.load(folder.parent / f"features{version}.npz") as data:
            npz[version] = data["features"].astype(np.float32) + data["center"]
            paths = data["path"]
    canonical = get_task("synthetic-wbc").canonical_split().set_index("path").loc[paths]
    classes = sorted(set(canonical["label"]))
    labels = np.searchsorted(classes, canonical["label"].to_numpy())
    per_fold = []
    for fold in sorted(set(canonical["fold"].astype(str))):
        test = (canonical["fold"].astype(str) == fold).to_numpy()
        scores = []
        for version in (".blur", ".jpeg", ".rescale", ".stain"):
            predicted = LINEAR.fit_predict(npz[""][~test], labels[~test], npz[version][test], len(classes)).labels
            scores.append(f1_score(labels[test], predicted, average="weighted"))
        per_fold.append(np.mean(scores))
    assert row["perturbed_f1_mean"] == pytest.approx(np.mean(per_fold), abs=1e-9)
    submitted = json.loads(next((honest / "results").rglob("robustness.json")).read_text())
    assert abs(row["perturbed_f1_mean"] - submitted["metrics"]["mean"][PERTURBED_F1]) < 0.01


def test_forged_perfect_invariance_that_agrees_with_its_cells_is_refused_by_running_it_again(honest, tmp_path):
    target, folder = copy_submissions(honest, tmp_path, "robustness")
    cells = _cells(folder)
    cells["cosine"] = "1.0"
    _resign_cells(folder, cells)
    record = json.loads((folder / "record.json").read_text())
    for fold in record["metrics"]["per_fold"]:
        fold[INVARIANCE] = 1.0
        for scores in fold["perturbations"].values():
            scores[INVARIANCE] = 1.0
    record["metrics"]["mean"][INVARIANCE], record["metrics"]["std"][INVARIANCE] = 1.0, 0.0
    _resign(folder, record=record)
    done = _verify(target, honest / "home")
    assert done.exit_code == 1, done.output
    assert "record.json metrics.mean.invariance: 1.0, robustness run again by CI on the submitted features gives" in \
        done.output
    assert "record.json metrics.mean.perturbations.stain.invariance: 1.0" in done.output


def test_features_of_one_version_passed_off_as_another_are_caught_by_extracting_again(honest, tmp_path):
    target, folder = copy_submissions(honest, tmp_path, "robustness")
    blur, stain = folder.parent / "features.blur.npz", folder.parent / "features.stain.npz"
    blur_bytes, stain_bytes = blur.read_bytes(), stain.read_bytes()
    blur.write_bytes(stain_bytes), stain.write_bytes(blur_bytes)
    info = json.loads((folder / "submission.json").read_text())
    versions = info["features"]["versions"]
    versions["blur"]["sha256"], versions["stain"]["sha256"] = versions["stain"]["sha256"], versions["blur"]["sha256"]
    (folder / "submission.json").write_text(json.dumps(info))
    done = _verify(target, honest / "home")
    assert done.exit_code == 1, done.output
    assert "blur: features.blur.npz: 64 of 64 images extracted again differ from the submitted features" in done.output


def test_a_fold_score_that_is_not_the_mean_of_its_perturbations_is_refused(honest, tmp_path):
    """The main metric is each fold's mean over its perturbations: raising it (and the record's mean) alone is
    refused by re-scoring, before anything is run again."""
    target, folder = copy_submissions(honest, tmp_path, "robustness")
    record = json.loads((folder / "record.json").read_text())
    for fold in record["metrics"]["per_fold"]:
        fold[PERTURBED_F1] = 0.99
    record["metrics"]["mean"][PERTURBED_F1], record["metrics"]["std"][PERTURBED_F1] = 0.99, 0.0
    _resign(folder, record=record)
    done = _verify(target, honest / "home")
    assert done.exit_code == 1 and "metrics.per_fold[0].perturbed_f1: 0.99, the mean over its perturbations is" in \
        done.output, done.output
    record["metrics"]["per_fold"] = [{"fold": "0"}]  # no perturbations at all
    _resign(folder, record=record)
    done = _verify(target, honest / "home")
    assert done.exit_code == 1 and "metrics.per_fold[0]: no per-perturbation scores" in done.output, done.output
