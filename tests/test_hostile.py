"""Issue 26, tried as a hostile user would: forged submissions, damaged results that were kept and ranked, a split
file with one image on both sides, an empty board over a real one, JSON that is no record, symbolic links out of
the results folder, and files only their owner could read. Each was accepted before; each is refused here, by name."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.cli import app
from tests.conftest import TINY


def _bench(*args, home=None):
    env = {"BENCH_HOME": str(home)} if home is not None else None
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


# -- submissions ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    """The weight-free colour histograms on the embedded task (pinned canonical split shipped with hemabench): run
    and submitted once; CI can derive everything again, so it is verifiable."""
    return run_and_submit(tmp_path_factory.mktemp("honest"), "knn-20")


def run_and_submit(root, protocol: str):
    """``bench run`` of colour histograms on synthetic-wbc with ``protocol``, then ``bench submit``, under ``root``
    (its own BENCH_HOME in root/home)."""
    home = root / "home"
    done = _bench("run", "-e", "color-histogram", "-t", "synthetic-wbc", "-p", protocol, "--results", root / "results",
                  "--no-progress", home=home)
    assert done.exit_code == 0, done.output
    done = _bench("submit", "--results", root / "results", "--out", root / "submissions", home=home)
    assert done.exit_code == 0 and "300 x 96 features packaged" in done.output, done.output
    return root


def copy_submissions(honest, tmp_path, protocol: str = "knn-20"):
    """A copy of the honest submissions to tamper with, and the folder of ``protocol``'s."""
    target = tmp_path / "submissions"
    shutil.copytree(honest / "submissions", target)
    return target, next(target.rglob(protocol))


def _verify(target, home, *more):
    return _bench("verify", target, "--seed", "3", *more, home=home)


def _resign(folder, predictions: pd.DataFrame | None = None, record: dict | None = None, npz: dict | None = None):
    """Rewrite files of a submission and every digest submission.json holds for them (a careful forger)."""
    from bench.submissions import labels_digest

    info = json.loads((folder / "submission.json").read_text())
    if predictions is not None:
        raw = predictions.to_csv(index=False, lineterminator="\n").encode()
        (folder / "predictions.csv.gz").write_bytes(gzip.compress(raw))
        info["predictions_sha256"] = hashlib.sha256(raw).hexdigest()
        info["labels_sha256"] = labels_digest(predictions)
    if record is not None:
        (folder / "record.json").write_text(json.dumps(record))
    if npz is not None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **npz)
        (folder.parent / "features.npz").write_bytes(buffer.getvalue())
        info["features"]["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (folder / "submission.json").write_text(json.dumps(info))


def _perfect(folder) -> tuple[pd.DataFrame, dict]:
    """Every prediction set to its label and every metric to 1.0, consistently (the issue's forgery)."""
    predictions = pd.read_csv(io.BytesIO(gzip.decompress((folder / "predictions.csv.gz").read_bytes())), dtype=str,
                              keep_default_na=False)
    predictions["prediction"] = predictions["label"]
    record = json.loads((folder / "record.json").read_text())
    for fold in record["metrics"]["per_fold"]:
        fold.update(weighted_f1=1.0, accuracy=1.0, balanced_accuracy=1.0)
    for metric in ("weighted_f1", "accuracy", "balanced_accuracy"):
        record["metrics"]["mean"][metric], record["metrics"]["std"][metric] = 1.0, 0.0
    return predictions, record


def test_an_honest_submission_is_verified_and_the_board_shows_cis_own_numbers(honest, tmp_path):
    home = honest / "home"
    done = _verify(honest / "submissions", home)
    assert done.exit_code == 0 and "1 submission(s) accepted: 1 verified, 0 self-reported" in done.output, done.output
    assert "labels: the canonical split of synthetic-wbc" in done.output
    assert "features: 64 of 300 images extracted again (seed 3" in done.output
    record = json.loads(next((honest / "results").rglob("knn-20.json")).read_text())
    board = tmp_path / "board.csv"
    assert _bench("leaderboard", "--results", tmp_path / "none", "--submissions", honest / "submissions", "--format",
                  "csv", "--out", board, "--bootstrap", "0", home=home).exit_code == 0
    row = pd.read_csv(board).iloc[0]
    assert row["source"] == "submission" and "extracted again" in row["checks"]
    # the board shows CI's own run: scikit-learn's kNN-20 on the submitted float16 features, the canonical labels and
    # folds; it differs from the submitter's float32 run by less than the tolerance (measured: 0.3 points here)
    from sklearn.metrics import f1_score
    from sklearn.neighbors import KNeighborsClassifier

    from tasks import get_task

    with np.load(next((honest / "submissions").rglob("features.npz"))) as npz:
        features, paths = npz["features"].astype(np.float32), npz["path"]
    canonical = get_task("synthetic-wbc").canonical_split().set_index("path").loc[paths]
    scores = []
    for fold in sorted(set(canonical["fold"])):
        test = (canonical["fold"] == fold).to_numpy()
        knn = KNeighborsClassifier(20).fit(features[~test], canonical["label"][~test])
        scores.append(f1_score(canonical["label"][test], knn.predict(features[test]), average="weighted"))
    assert row["weighted_f1_mean"] == pytest.approx(np.mean(scores), abs=1e-12)
    assert abs(row["weighted_f1_mean"] - record["metrics"]["mean"]["weighted_f1"]) < 0.01


def test_a_forged_perfect_score_is_refused_by_running_the_protocol_again(honest, tmp_path):
    target, folder = copy_submissions(honest, tmp_path)
    predictions, record = _perfect(folder)
    _resign(folder, predictions, record)
    done = _verify(target, honest / "home")
    assert done.exit_code == 1, done.output
    assert "record.json metrics.mean.weighted_f1: 1.0, knn-20 run again by CI on the submitted features gives" in \
        done.output


def test_forged_features_that_give_the_forged_score_are_caught_by_extracting_again(honest, tmp_path):
    target, folder = copy_submissions(honest, tmp_path)
    predictions, record = _perfect(folder)
    with np.load(folder.parent / "features.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    classes = sorted(set(arrays["label"]))
    forged = np.zeros_like(arrays["features"])
    forged[np.arange(len(forged)), [classes.index(c) for c in arrays["label"]]] = 1.0  # features = the labels
    _resign(folder, predictions, record, {**arrays, "features": forged})
    done = _verify(target, honest / "home")
    assert done.exit_code == 1, done.output
    assert "features.npz: 64 of 64 images extracted again differ from the submitted features" in done.output
    assert "they are not color-histogram's features of these images" in done.output


def test_labels_come_from_the_canonical_split_not_from_the_submission(honest, tmp_path):
    target, folder = copy_submissions(honest, tmp_path)
    with np.load(folder.parent / "features.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    first = str(arrays["path"][0])
    other = next(c for c in sorted(set(arrays["label"])) if c != arrays["label"][0])
    arrays["label"] = np.where(arrays["path"] == first, other, arrays["label"])
    _resign(folder, npz=arrays)
    done = _verify(target, honest / "home")
    assert done.exit_code == 1 and f"features.npz label of {first}: '{other}', the canonical split of " \
                                   "synthetic-wbc says" in done.output, done.output


def test_what_ci_cannot_derive_is_self_reported_never_verified(honest, tmp_path):
    """A plugin's features cannot be extracted again (its weights are not public): accepted, badged self-reported."""
    target, folder = copy_submissions(honest, tmp_path)
    record = json.loads((folder / "record.json").read_text())
    record["extractor"]["name"] = "my_model.py:Mine"
    info = json.loads((folder / "submission.json").read_text())
    info["extractor"]["name"] = "my_model.py:Mine"
    (folder / "submission.json").write_text(json.dumps(info))
    _resign(folder, record=record)
    done = _verify(target, honest / "home")
    assert done.exit_code == 0 and "0 verified, 1 self-reported" in done.output, done.output
    assert "features: self-reported (my_model.py:Mine is not a built-in extractor" in done.output
    page = tmp_path / "board.html"
    assert _bench("leaderboard", "--results", tmp_path / "none", "--submissions", target, "--format", "html", "--out",
                  page, "--bootstrap", "0", home=honest / "home").exit_code == 0
    assert ">self-reported submission</span>" in page.read_text() and ">verified submission</span>" not in \
        page.read_text().split("</p>", 1)[1]


def test_a_symlinked_record_in_a_submission_is_refused(honest, tmp_path):
    target, folder = copy_submissions(honest, tmp_path)
    outside = tmp_path / "elsewhere.json"
    shutil.move(folder / "record.json", outside)
    (folder / "record.json").symlink_to(outside)
    done = _verify(target, honest / "home")
    assert done.exit_code == 1 and "record.json is a symbolic link" in done.output, done.output


# -- results kept and ranked ------------------------------------------------------------------------------------
@pytest.fixture
def one_result(image_folder, tmp_path):
    results = tmp_path / "r"
    done = _bench("run", "-e", TINY, "-t", f"imagefolder:{image_folder}", "-p", "knn-1", "--results", results,
                  "--no-progress")
    assert done.exit_code == 0, done.output
    (record,) = results.rglob("knn-1.json")
    return image_folder, results, record


def _board(results, tmp_path):
    out = tmp_path / "board.md"
    done = _bench("leaderboard", "--results", results, "--out", out, "--bootstrap", "0")
    assert done.exit_code == 0, done.output
    return out.read_text(), done.output


def _again(image_folder, results):
    return _bench("run", "-e", TINY, "-t", f"imagefolder:{image_folder}", "-p", "knn-1", "--results", results,
                  "--no-progress")


def test_an_edited_metric_is_neither_shown_nor_kept(one_result, tmp_path):
    image_folder, results, record = one_result
    payload = json.loads(record.read_text())
    true = payload["metrics"]["mean"]["weighted_f1"]
    payload["metrics"]["mean"]["weighted_f1"] = 0.99
    record.write_text(json.dumps(payload))
    board, output = _board(results, tmp_path)
    assert "99.0" not in board and "is not shown: it does not agree with its predictions" in board
    assert f"metrics.mean.weighted_f1: 0.99, its folds give {true!r}" in output
    again = _again(image_folder, results)
    assert again.exit_code == 0 and "recomputing" in again.output and "does not agree with its predictions" in \
        again.output and "kept existing" not in again.output
    assert json.loads(record.read_text())["metrics"]["mean"]["weighted_f1"] == pytest.approx(true)


def test_truncated_predictions_are_neither_shown_nor_kept(one_result, tmp_path):
    image_folder, results, record = one_result
    table = record.with_name("knn-1.predictions.csv")
    lines = table.read_text().splitlines()
    table.write_text("\n".join(lines[:3]) + "\n")  # the header and 2 of 36 rows
    board, output = _board(results, tmp_path)
    assert "is not shown" in board and "n_predictions: 36, the predictions file has 2 row(s)" in output
    again = _again(image_folder, results)
    assert again.exit_code == 0 and "recomputing" in again.output and "n_predictions: 36" in again.output
    assert len(table.read_text().splitlines()) == 37


def test_an_empty_results_folder_never_replaces_a_board(one_result, tmp_path):
    _, results, _ = one_result
    board = tmp_path / "board.html"
    assert _bench("leaderboard", "--results", results, "--format", "html", "--out", board, "--bootstrap",
                  "0").exit_code == 0
    before = board.read_bytes()
    (tmp_path / "empty").mkdir()
    done = _bench("leaderboard", "--results", tmp_path / "empty", "--format", "html", "--out", board)
    assert done.exit_code == 1 and "left as it was rather than replaced with an empty board" in done.output
    assert board.read_bytes() == before


@pytest.mark.parametrize("content, what", [("[1, 2, 3]", "a JSON list"), ("null", "null"),
                                           ('{"metrics": {"mean": {"weighted_f1": "abc"}}, "protocol": {}}',
                                            "metrics.mean.weighted_f1: Input should be a valid number")])
def test_json_that_is_no_record_is_a_line_on_the_board(one_result, tmp_path, content, what):
    _, results, record = one_result
    (record.parent / "odd.json").write_text(content)
    board, output = _board(results, tmp_path)
    assert "odd.json" in board and what in output and "Problems with the results folder (1)" in board


def test_a_record_with_a_metric_that_is_no_number_is_a_line_on_the_board(one_result, tmp_path):
    _, results, record = one_result
    payload = json.loads(record.read_text())
    payload["extractor"]["name"] = "other"
    payload["metrics"]["per_fold"][0]["weighted_f1"] = "abc"
    (record.parent / "odd.json").write_text(json.dumps(payload))
    shutil.copy(record.with_name("knn-1.predictions.csv"), record.with_name("odd.predictions.csv"))
    board, output = _board(results, tmp_path)
    assert "| other" not in board and "metrics.per_fold[0].weighted_f1: 'abc', the predictions of fold 0 give" in output


def test_a_symlink_in_the_results_folder_is_not_followed(one_result, tmp_path):
    _, results, record = one_result
    outside = tmp_path / "outside"
    shutil.copytree(record.parent, outside)
    payload = json.loads((outside / "knn-1.json").read_text())
    payload["extractor"]["name"] = "from-outside"
    (outside / "knn-1.json").write_text(json.dumps(payload))
    (results / "linked").symlink_to(outside, target_is_directory=True)
    (record.parent / "other.json").symlink_to(outside / "knn-1.json")
    board, output = _board(results, tmp_path)
    assert "from-outside" not in board.split("## Problems")[0]
    assert output.count("is a symbolic link") == 2


def test_results_boards_and_exports_are_readable_under_the_users_umask(image_folder, tmp_path):
    old = os.umask(0o022)
    try:
        results = tmp_path / "r"
        assert _bench("run", "-e", TINY, "-t", f"imagefolder:{image_folder}", "-p", "knn-1", "--results", results,
                      "--no-progress").exit_code == 0
        assert _bench("leaderboard", "--results", results, "--out", tmp_path / "board.md").exit_code == 0
        assert _bench("extract", "-e", TINY, "-t", f"imagefolder:{image_folder}", "--export", tmp_path / "export",
                      "--no-progress").exit_code == 0
        assert _bench("submit", "--results", results, "--out", tmp_path / "subs").exit_code == 0
    finally:
        os.umask(old)
    files = [*results.rglob("*.json"), *results.rglob("*.csv"), tmp_path / "board.md",
             *(tmp_path / "export").iterdir(), *(tmp_path / "subs").rglob("*.*")]
    modes = {str(f): stat.S_IMODE(f.stat().st_mode) for f in files if f.is_file()}
    assert len(modes) >= 8 and set(modes.values()) == {0o644}, modes


def test_a_collapsed_probe_is_a_warning_everywhere_and_never_best(image_folder, tmp_path):
    """Constant features: kNN-1 predicts one class per fold. The run's table says "warning: collapsed", the
    Table-2 grid marks it and never calls it best (even alone in its column), the Markdown board does not rank it."""
    from tests.conftest import REPO

    constant = f"{REPO / 'tests' / 'plugins' / 'tiny_vit.py'}:Constant"
    results = tmp_path / "r"
    done = _bench("run", "-e", constant, "-t", f"imagefolder:{image_folder}", "-p", "knn-1", "--results", results,
                  "--no-progress")
    assert done.exit_code == 0 and "warning: collapsed (5 fold(s))" in done.output, done.output
    page = tmp_path / "board.html"
    assert _bench("leaderboard", "--results", results, "--format", "html", "--out", page, "--bootstrap",
                  "0").exit_code == 0
    grid = page.read_text().split('id="grid"')[1].split("</table>")[0]
    assert 'class="num collapsed"' in grid and 'class="num best"' not in grid and "best in this column" not in grid
    assert "collapsed to one class in 5 fold(s)" in grid
    assert "warning: collapsed to one class in 5 fold(s)" in page.read_text()  # the status of All results
    board, _ = _board(results, tmp_path)
    assert "⚠ collapsed" in board and "(#1)" not in board


def test_a_curve_on_a_protocol_that_has_none_is_refused(honest, tmp_path):
    """The record does not choose its own evidence: a kNN record given a few-shot curve (and no predictions) is
    refused, not checked against the episodes it invented."""
    from bench.core.curves import episode_curve

    target, folder = copy_submissions(honest, tmp_path)
    record = json.loads((folder / "record.json").read_text())
    for fold in record["metrics"]["per_fold"]:
        fold["shots"] = {"1": {"n_train": 6, "weighted_f1": 0.99, "accuracy": 0.99, "balanced_accuracy": 0.99}}
    record["curve"] = episode_curve(record["metrics"]["per_fold"])
    _resign(folder, record=record)
    done = _verify(target, honest / "home")
    assert done.exit_code == 1 and "record.json curve: present, but knn-20 is not a few-shot protocol" in done.output, \
        done.output
    (folder / "predictions.csv.gz").unlink()  # and without its predictions it is not even read
    done = _verify(target, honest / "home")
    assert done.exit_code == 1 and "cannot be read" in done.output and "predictions.csv.gz" in done.output, done.output


@pytest.mark.parametrize("info, says", [
    ([], "submission.json: a JSON list, expected the object `bench submit` writes"),
    ({"format": "hemabench-submission/2"}, "submission.json extractor.name: missing"),
    ({"format": "hemabench-submission/2", "extractor": {"name": "color-histogram"}, "features": "x"},
     "submission.json features: 'x', expected the entry"),
])
def test_a_malformed_submission_json_is_a_line_naming_the_field(honest, tmp_path, info, says):
    target, folder = copy_submissions(honest, tmp_path)
    (folder / "submission.json").write_text(json.dumps(info))
    done = _verify(target, honest / "home")
    assert done.exit_code == 1 and says in done.output and "Traceback" not in done.output, done.output


def test_predictions_that_are_no_csv_are_a_line_not_a_crash(honest, tmp_path):
    target, folder = copy_submissions(honest, tmp_path)
    (folder / "predictions.csv.gz").write_bytes(gzip.compress(b"\xff\xfe\x00 not a table \"\n\x00,,\"\n"))
    done = _verify(target, honest / "home")
    assert done.exit_code == 1 and "knn-20: cannot be read" in done.output and "Traceback" not in done.output, \
        done.output
