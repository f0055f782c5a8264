"""Submissions (issue 17, first slice): run -> submit -> verify, and each kind of tampering refused with its field."""

from __future__ import annotations

import gzip
import io
import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.cli import app
from tests.conftest import TINY, make_image_folder


@pytest.fixture(scope="module")
def submitted(tmp_path_factory):
    """Two protocols of the tiny ViT on a small image folder, run and submitted once for the module."""
    root = tmp_path_factory.mktemp("sub")
    cells = make_image_folder(root / "cells", {"a": 10, "b": 10, "c": 10})
    runner = CliRunner()
    done = runner.invoke(app, ["run", "-e", TINY, "-t", f"imagefolder:{cells}", "-p", "knn-1,knn-20", "--results",
                               str(root / "results"), "--no-progress"], env={"BENCH_HOME": str(root / "home")})
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["submit", "--results", str(root / "results"), "--out", str(root / "submissions")])
    assert done.exit_code == 0 and "wrote 2 submission(s)" in done.output, done.output
    return root / "submissions"


def _copy(submitted, tmp_path):
    target = tmp_path / "submissions"
    shutil.copytree(submitted, target)
    return target, sorted(target.rglob("submission.json"))[0].parent


def _verify(folder):
    return CliRunner().invoke(app, ["verify", str(folder)])


def _predictions(folder) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(gzip.decompress((folder / "predictions.csv.gz").read_bytes())))


def _write_predictions(folder, table: pd.DataFrame) -> None:
    (folder / "predictions.csv.gz").write_bytes(gzip.compress(table.to_csv(index=False).encode()))


def test_a_round_trip_verifies_and_is_small(submitted):
    done = _verify(submitted)
    assert done.exit_code == 0 and "2 submission(s) verified" in done.output, done.output
    info = json.loads(next(submitted.rglob("submission.json")).read_text())
    assert info["extractor"]["name"] == "tiny_vit.py:TinyViT" and info["extractor"]["dim"] == 32
    assert info["n_predictions"] == 30 and len(info["labels_sha256"]) == 64
    assert sum(f.stat().st_size for f in submitted.rglob("*")) < 100_000


def test_a_tampered_metric_is_refused_with_its_field(submitted, tmp_path):
    target, folder = _copy(submitted, tmp_path)
    record = json.loads((folder / "record.json").read_text())
    record["metrics"]["per_fold"][0]["weighted_f1"] += 0.1
    (folder / "record.json").write_text(json.dumps(record))
    done = _verify(target)
    assert done.exit_code == 1 and "metrics.per_fold[0].weighted_f1" in done.output
    assert "the predictions give" in done.output


def test_a_changed_label_is_refused(submitted, tmp_path):
    target, folder = _copy(submitted, tmp_path)
    table = _predictions(folder)
    table.loc[0, "label"] = "c" if table.loc[0, "label"] != "c" else "a"
    _write_predictions(folder, table)
    done = _verify(target)
    assert done.exit_code == 1 and "predictions_sha256" in done.output and "labels_sha256" in done.output


def test_a_missing_prediction_is_refused(submitted, tmp_path):
    target, folder = _copy(submitted, tmp_path)
    table = _predictions(folder)
    info = json.loads((folder / "submission.json").read_text())
    _write_predictions(folder, table.iloc[1:])
    done = _verify(target)
    fold = table["fold"].iloc[0]
    assert done.exit_code == 1 and f"predictions fold {fold}" in done.output and "n_test = " in done.output
    assert info["n_predictions"] == len(table)


def test_a_duplicate_is_refused(submitted, tmp_path):
    target, folder = _copy(submitted, tmp_path)
    shutil.copytree(folder, target / "copy" / folder.name)
    done = _verify(target)
    assert done.exit_code == 1 and "duplicate of" in done.output and "submitted twice" in done.output


def test_a_wrong_fold_assignment_is_refused(submitted, tmp_path):
    target, folder = _copy(submitted, tmp_path)
    table = _predictions(folder)
    folds = sorted(table["fold"].unique())
    table.loc[0, "fold"] = folds[1] if table.loc[0, "fold"] == folds[0] else folds[0]
    _write_predictions(folder, table)
    done = _verify(target)
    assert done.exit_code == 1 and "labels_sha256" in done.output and "n_test = " in done.output


def test_a_builtin_name_with_other_weights_is_refused(submitted, tmp_path):
    target, folder = _copy(submitted, tmp_path)
    record = json.loads((folder / "record.json").read_text())
    record["extractor"]["name"] = "dinobloom-s"
    record["extractor"]["fingerprint"]["weights"] = {"kind": "file", "sha256": "0" * 64}
    (folder / "record.json").write_text(json.dumps(record))
    info = json.loads((folder / "submission.json").read_text())
    info["extractor"]["name"] = "dinobloom-s"
    (folder / "submission.json").write_text(json.dumps(info))
    done = _verify(target)
    assert done.exit_code == 1 and "extractor.fingerprint.weights.sha256: 0000" in done.output
    assert "the published dinobloom-s weights have c2f7990b" in done.output
