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
from tests.conftest import ACEVEDO_FULL, TINY, complete_copy_absent, make_image_folder


@pytest.fixture(scope="module")
def submitted(tmp_path_factory):
    """Two protocols of the tiny ViT on a small image folder, run and submitted once for the module."""
    root = tmp_path_factory.mktemp("sub")
    cells = make_image_folder(root / "cells", {"a": 10, "b": 10, "c": 10})
    runner = CliRunner()
    done = runner.invoke(app, ["run", "-e", TINY, "-t", f"imagefolder:{cells}", "-p", "knn-1,knn-20", "--results",
                               str(root / "results"), "--no-progress"], env={"BENCH_HOME": str(root / "home")})
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["submit", "--results", str(root / "results"), "--out", str(root / "submissions")],
                         env={"BENCH_HOME": str(root / "home")})
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
    # a plugin's weights are not public and an image folder has no canonical split: accepted, self-reported
    assert done.exit_code == 0 and "2 submission(s) accepted: 0 verified, 2 self-reported" in done.output, done.output
    assert "features: self-reported (tiny_vit.py:TinyViT is not a built-in extractor" in done.output
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
    assert "the predictions of fold" in done.output


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
    assert done.exit_code == 1 and f"fold {fold} has {(table['fold'] == fold).sum() - 1} prediction(s)" in done.output
    assert ".n_test: " in done.output
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
    assert done.exit_code == 1 and "labels_sha256" in done.output and ".n_test: " in done.output


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


def _resign(folder, table: pd.DataFrame) -> None:
    """Write predictions and the digests that match them (what a careful forger would do)."""
    from bench.submissions import labels_digest

    raw = table.to_csv(index=False, lineterminator="\n").encode()
    (folder / "predictions.csv.gz").write_bytes(gzip.compress(raw))
    info = json.loads((folder / "submission.json").read_text())
    info["predictions_sha256"] = __import__("hashlib").sha256(raw).hexdigest()
    info["labels_sha256"] = labels_digest(table)
    (folder / "submission.json").write_text(json.dumps(info))


def test_predictions_of_other_samples_than_the_records_split_are_refused(submitted, tmp_path):
    target, folder = _copy(submitted, tmp_path)
    table = pd.read_csv(io.BytesIO(gzip.decompress((folder / "predictions.csv.gz").read_bytes())), dtype=str,
                        keep_default_na=False)
    table.loc[0, "path"] = "a/not_in_the_data_set.png"  # same counts, labels and scores: only the split differs
    _resign(folder, table)
    done = _verify(target)
    assert done.exit_code == 1 and "task.split_sha256" in done.output, done.output
    assert "predictions_sha256" not in done.output and "n_test" not in done.output


def test_protocol_settings_other_than_the_registered_ones_are_refused(submitted, tmp_path):
    target, folder = _copy(submitted, tmp_path)
    folder = target / folder.relative_to(target).parent / "knn-20"
    record = json.loads((folder / "record.json").read_text())
    record["protocol"]["settings"]["k"] = 10
    (folder / "record.json").write_text(json.dumps(record))
    done = _verify(target)
    assert done.exit_code == 1 and "protocol.settings.k: 10, the registered knn-20 has 20" in done.output


@pytest.fixture(scope="module")
def synthetic_submission(tmp_path_factory):
    """The tiny ViT on the embedded task, whose canonical split is pinned: run, submitted."""
    root = tmp_path_factory.mktemp("synthetic")
    runner = CliRunner()
    env = {"BENCH_HOME": str(root / "home")}
    done = runner.invoke(app, ["run", "-e", TINY, "-t", "synthetic-wbc", "-p", "knn-20", "--results",
                               str(root / "results"), "--no-progress"], env=env)
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["submit", "--results", str(root / "results"), "--out", str(root / "submissions")],
                         env=env)
    assert done.exit_code == 0, done.output
    return root


def test_the_embedded_task_runs_on_its_pinned_canonical_split(synthetic_submission):
    from tasks import get_task

    record = json.loads(next((synthetic_submission / "submissions").rglob("record.json")).read_text())
    assert record["task"]["split_sha256"] == get_task("synthetic-wbc").card.canonical_split_sha256
    assert record["task"]["canonical_split_sha256"] == record["task"]["split_sha256"]


def test_task_split_settings_other_than_the_registered_ones_are_refused(synthetic_submission, tmp_path):
    target = tmp_path / "s"
    shutil.copytree(synthetic_submission / "submissions", target)
    folder = next(target.rglob("record.json")).parent
    record = json.loads((folder / "record.json").read_text())
    record["task"]["split_seed"] = 7
    (folder / "record.json").write_text(json.dumps(record))
    done = _verify(target)
    assert done.exit_code == 1 and "task.split_seed: 7, the registered synthetic-wbc has 0" in done.output


def test_board_shows_verified_submissions_with_their_badge_and_lists_refused_ones(synthetic_submission, submitted,
                                                                                  tmp_path):
    """run -> submit -> verify -> board row: the verified submission is a row of the board, badged; a tampered
    one is not shown and is listed as a problem; the intervals of submissions are never written beside them."""
    target = tmp_path / "subs"
    shutil.copytree(synthetic_submission / "submissions", target / "synthetic")
    shutil.copytree(submitted, target / "tiny")
    tampered = next((target / "tiny").rglob("knn-20/record.json"))
    record = json.loads(tampered.read_text())
    record["metrics"]["per_fold"][0]["accuracy"] += 0.5
    tampered.write_text(json.dumps(record))
    env = {"BENCH_HOME": str(tmp_path / "home")}
    html, md = tmp_path / "index.html", tmp_path / "board.md"
    for fmt, out in (("html", html), ("md", md)):
        done = CliRunner().invoke(app, ["leaderboard", "--results", str(tmp_path / "no-runs"), "--submissions",
                                        str(target), "--format", fmt, "--out", str(out), "--bootstrap", "20"], env=env)
        assert done.exit_code == 0, done.output
    page = html.read_text()
    # a plugin extractor's features cannot be extracted again (its weights are not public): self-reported, with
    # what was derived (its labels and folds from the canonical split) on hover
    assert page.count(">self-reported submission</span>") >= 2  # the grid and All results
    assert "verified submission</span>" not in page.split("<h2>")[0].split("</p>", 1)[1]
    assert "labels: the canonical split of synthetic-wbc" in page
    assert "synthetic-wbc" in page and "submission not shown: tiny/" in page and "metrics.per_fold[0].accuracy" in page
    board = md.read_text()
    assert "Self-reported submissions" in board and "tiny_vit.py:TinyViT / synthetic-wbc / knn-20" in board
    listed = board.split("Self-reported submissions")[1].split("\n")[0]
    assert "/ knn-1" in listed and "/ imagefolder:" in listed and "cells / knn-20" not in listed
    assert not list(target.rglob("*.intervals.json"))
    assert list((tmp_path / "home").rglob("intervals/*.json"))


def test_a_run_reproducing_a_submission_is_shown_once_with_both_sources(synthetic_submission, tmp_path):
    done = CliRunner().invoke(app, ["leaderboard", "--results", str(synthetic_submission / "results"),
                                    "--submissions", str(synthetic_submission / "submissions"), "--format", "csv",
                                    "--bootstrap", "0", "--runs-badge", "reproduced by CI"],
                              env={"BENCH_HOME": str(tmp_path / "home")})
    assert done.exit_code == 0, done.output
    table = pd.read_csv(io.StringIO(done.output))
    assert len(table) == 1 and table.loc[0, "source"] == "run, self-reported"


def test_data_split_names_the_files_a_copy_lacks_or_relabels(tmp_path):
    """A damaged copy of a task with a pinned split: `bench data split` says which files differ from it."""
    from tasks import get_task

    home = {"BENCH_HOME": str(tmp_path / "home"), "COLUMNS": "400"}
    root = get_task("synthetic-wbc").existing_root(None, tmp_path / "home" / "data")
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    files = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*.png"))
    gone = files[5:8]
    for name in gone:
        (copy / name).unlink()
    done = CliRunner().invoke(app, ["data", "split", "synthetic-wbc", "--data-root", str(copy)], env=home)
    assert done.exit_code == 0, done.output
    assert "297 samples" in done.output and "NOT the pinned canonical split" in done.output
    assert f"3 of its 300 files are not in this copy: {', '.join(gone)}" in done.output
    assert "fall in another fold, as the folds are dealt over the files present" in done.output
    # a file moved to another class folder: named with both labels
    moved = files[0]
    other = sorted(p.name for p in copy.iterdir() if p.is_dir() and p.name != moved.split("/")[0])[0]
    for name in gone:
        shutil.copyfile(root / name, copy / name)
    shutil.move(copy / moved, copy / other / moved.split("/")[-1])
    done = CliRunner().invoke(app, ["data", "split", "synthetic-wbc", "--data-root", str(copy)], env=home)
    assert "1 of its 300 files are not in this copy: " + moved in done.output
    assert f"1 file(s) here are not in it: {other}/{moved.split('/')[-1]}" in done.output


@pytest.mark.skipif(ACEVEDO_FULL is None, reason=complete_copy_absent())
def test_data_split_on_the_complete_acevedo_copy(tmp_path):
    """On the complete public copy: the pinned canonical split, for both label sets; with 3 files missing (a copy
    of links to the others), those 3 by name."""
    for task in ("acevedo", "acevedo-11"):
        done = CliRunner().invoke(app, ["data", "split", task, "--data-root", str(ACEVEDO_FULL)],
                                  env={"BENCH_HOME": str(tmp_path / "home")})
        assert done.exit_code == 0 and ": the pinned canonical split" in done.output, done.output
    copy = tmp_path / "PBC_dataset_normal_DIB"
    files = sorted(p.relative_to(ACEVEDO_FULL).as_posix() for p in ACEVEDO_FULL.rglob("*") if p.is_file())
    gone = files[100::5000][:3]
    for name in files:
        if name not in gone:
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            (copy / name).symlink_to(ACEVEDO_FULL / name)
    done = CliRunner().invoke(app, ["data", "split", "acevedo", "--data-root", str(copy)],
                              env={"BENCH_HOME": str(tmp_path / "home"), "COLUMNS": "400"})
    assert "17,089 samples" in done.output and "NOT the pinned canonical split" in done.output
    assert f"3 of its 17,092 files are not in this copy: {', '.join(gone)}" in done.output


def test_data_split_gives_the_pinned_digest_and_writes_the_split(tmp_path):
    """`bench data split`: the tool that freezes a canonical split (the digest to pin, the file to ship)."""
    from bench.core.files import split_digest
    from tasks import get_task

    out = tmp_path / "split.csv.gz"
    done = CliRunner().invoke(app, ["data", "split", "synthetic-wbc", "--out", str(out)])
    assert done.exit_code == 0 and "300 samples" in done.output and "the pinned canonical split" in done.output
    table = pd.read_csv(out)
    assert list(table.columns) == ["path", "label", "fold"] and len(table) == 300
    assert split_digest(table["path"], table["label"], table["fold"]) == \
        get_task("synthetic-wbc").card.canonical_split_sha256
