"""Few-shot results as submissions (issue 29): no per-cell predictions, so the record's episodes are checked against
themselves and the seeded episodes are run again by CI on the submitted features; a forged curve that agrees with
itself is caught by that run, an edited one by the record's own episodes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.core.curves import episode_curve
from bench.core.metrics import LABEL_METRICS
from tests.test_hostile import _bench, _resign, _verify, copy_submissions, run_and_submit

PROTOCOL = "fewshot-simpleshot"


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    """Colour histograms on the embedded task (pinned canonical split), few-shot SimpleShot: run and submitted."""
    return run_and_submit(tmp_path_factory.mktemp("fewshot"), PROTOCOL)


def test_a_fewshot_submission_holds_its_record_and_features_and_is_verified(honest, tmp_path):
    folder = next((honest / "submissions").rglob(PROTOCOL))
    assert sorted(p.name for p in folder.iterdir()) == ["record.json", "submission.json"]  # no predictions
    info = json.loads((folder / "submission.json").read_text())
    assert info["evidence"] == "episodes" and info["predictions_sha256"] is None and info["features"]["rows"] == 300
    done = _verify(honest / "submissions", honest / "home")
    assert done.exit_code == 0 and "1 submission(s) accepted: 1 verified, 0 self-reported" in done.output, done.output
    assert f"protocol: {PROTOCOL} run again by CI on the submitted float16 features" in done.output
    board = tmp_path / "board.csv"
    assert _bench("leaderboard", "--results", tmp_path / "none", "--submissions", honest / "submissions", "--format",
                  "csv", "--out", board, "--bootstrap", "0", home=honest / "home").exit_code == 0
    row = pd.read_csv(board).iloc[0]
    assert row["source"] == "submission" and row["protocol"] == PROTOCOL
    # CI's number is SimpleShot run again on the submitted features with the canonical labels and folds, episode by
    # episode as the protocol draws them; the submitter's float32 run agrees within the tolerance
    from bench.verification import design_of
    from protocols.fewshot import FEWSHOT_SIMPLESHOT
    from tasks import get_task

    with np.load(next((honest / "submissions").rglob("features.npz"))) as npz:
        features, paths = npz["features"].astype(np.float32) + npz["center"], npz["path"]
    canonical = get_task("synthetic-wbc").canonical_split().set_index("path").loc[paths]
    again = FEWSHOT_SIMPLESHOT.evaluate(features, design_of(canonical["label"].to_numpy(),
                                                            canonical["fold"].astype(str).to_numpy(), "kfold"))
    assert row["weighted_f1_mean"] == pytest.approx(again.mean["weighted_f1"], abs=1e-12)
    submitted = json.loads(next((honest / "results").rglob(f"{PROTOCOL}.json")).read_text())
    assert abs(row["weighted_f1_mean"] - submitted["metrics"]["mean"]["weighted_f1"]) < 0.01
    assert row["main_pooled"] == pytest.approx(again.curve["overall"]["mean"]["weighted_f1"])  # its t interval shown


def _forge_one_shot(record: dict, value: float) -> dict:
    """Every episode's 1-shot metrics set to ``value``, with the episodes' means, the record's mean and std and its
    curve recomputed, so the record agrees with itself (a careful forger)."""
    for episode in record["metrics"]["per_fold"]:
        episode["shots"]["1"].update({metric: value for metric in LABEL_METRICS})
        for metric in LABEL_METRICS:
            episode[metric] = float(np.mean([shot[metric] for shot in episode["shots"].values()]))
    for metric in LABEL_METRICS:
        values = [episode[metric] for episode in record["metrics"]["per_fold"]]
        record["metrics"]["mean"][metric], record["metrics"]["std"][metric] = float(np.mean(values)), float(np.std(values))
    record["curve"] = episode_curve(record["metrics"]["per_fold"])
    return record


def test_a_forged_curve_that_agrees_with_itself_is_refused_by_running_the_episodes_again(honest, tmp_path):
    target, folder = copy_submissions(honest, tmp_path, PROTOCOL)
    record = _forge_one_shot(json.loads((folder / "record.json").read_text()), 1.0)
    _resign(folder, record=record)
    done = _verify(target, honest / "home")
    assert done.exit_code == 1, done.output
    assert f"record.json curve.points[shots=1].mean.weighted_f1: 1.0, {PROTOCOL} run again by CI on the submitted " \
           "features gives" in done.output
    assert "record.json curve.points[shots=2]" not in done.output  # the other shot counts are the honest ones


def test_a_curve_edited_alone_is_refused_by_the_records_own_episodes(honest, tmp_path):
    target, folder = copy_submissions(honest, tmp_path, PROTOCOL)
    record = json.loads((folder / "record.json").read_text())
    record["curve"]["points"][0]["mean"]["weighted_f1"] = 1.0
    _resign(folder, record=record)
    done = _verify(target, honest / "home")
    assert done.exit_code == 1 and "a few-shot record must agree with its episodes" in done.output, done.output
    assert "curve" in done.output
