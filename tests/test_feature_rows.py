"""The features check of ``bench verify``: a re-extracted row against the submitted one (bench.verification).

A randomly initialised ViT's features are ~20 long and differ between images in the 5th significant digit, so
fp32 rounding on another CPU is a large share of an image's departure from the mean: such rows pass within a few
ulps of the feature's length, but only while each is nearest to its own image's row."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.verification import FEATURE_TOLERANCE, PRECISION_EPS, ROUNDING_ULPS, Features, compare_rows
from tests.conftest import PBC, REPO, real_data_absent

DIM, ROWS = 384, 200


def _random_vit_like(seed: int = 0, departure: float = 5e-4) -> Features:
    rng = np.random.default_rng(seed)
    center = rng.normal(size=DIM)
    center *= 20 / np.linalg.norm(center)
    offsets = rng.normal(size=(ROWS, DIM))
    offsets *= departure / np.linalg.norm(offsets, axis=1, keepdims=True)
    values = (center + offsets).astype(np.float32)
    return Features(values=values, paths=np.array([f"c/{i}.jpg" for i in range(ROWS)]),
                    labels=np.array(["c"] * ROWS), sha256=np.array([f"{i:064x}" for i in range(ROWS)]),
                    center=values.mean(axis=0))


def _moved(values: np.ndarray, ulps: float, seed: int = 1) -> np.ndarray:
    """``values`` moved by ``ulps`` fp32 ulps of each row's length, in a random direction (CI's rounding)."""
    noise = np.random.default_rng(seed).normal(size=values.shape)
    size = ulps * PRECISION_EPS["fp32"] * np.linalg.norm(values, axis=1, keepdims=True)
    return (values + noise * size / np.linalg.norm(noise, axis=1, keepdims=True)).astype(np.float64)


def _check(features: Features, again: np.ndarray, chosen: np.ndarray, precision: str = "fp32"):
    return compare_rows(again, features, chosen, precision, seed=7, submitted_file="features.npz", name="vit")


def test_rounding_of_a_random_vits_features_passes_within_the_ulps_allowance():
    features = _random_vit_like()
    chosen = np.arange(0, ROWS, 3)
    again = _moved(features.values[chosen], 0.7)  # the largest rounding measured on CI's CPU: 0.73 ulps
    relative = np.linalg.norm(again - features.values[chosen], axis=1) / np.linalg.norm(
        again - features.center, axis=1)
    assert relative.max() > FEATURE_TOLERANCE["fp32"]  # the relative rule alone refused these rows
    check, failures = _check(features, again, chosen)
    assert failures == []
    assert f"{len(chosen)} within {ROUNDING_ULPS} fp32 ulps of the feature's length" in check


def test_more_than_the_allowance_is_refused():
    features = _random_vit_like()
    chosen = np.arange(10)
    again = _moved(features.values[chosen], 2 * ROUNDING_ULPS)
    check, failures = _check(features, again, chosen)
    assert check == "" and failures[0].startswith("features.npz: 10 of 10 images extracted again differ")
    assert "they are not vit's features of these images" in failures[0]


def test_an_image_given_the_row_of_a_near_twin_is_refused_though_within_the_allowance():
    features = _random_vit_like()
    allowance = ROUNDING_ULPS * PRECISION_EPS["fp32"] * 20
    twin = features.values[0] + (features.values[1] - features.values[0]) * (0.5 * allowance / np.linalg.norm(
        features.values[1] - features.values[0]))
    features.values[1] = twin.astype(np.float32)  # image 1's feature half an allowance from image 0's
    chosen = np.array([0, 1])
    again = features.values[[1, 0]].astype(np.float64)  # each image's CI feature is the other's submitted row
    assert np.linalg.norm(again - features.values[chosen], axis=1).max() <= allowance
    check, failures = _check(features, again, chosen)
    assert check == "" and failures[0].startswith("features.npz: 2 of 2 images extracted again differ")


def test_byte_identical_images_tie_and_pass():
    features = _random_vit_like()
    features.values[5] = features.values[4]
    features.sha256[5] = features.sha256[4]  # the same image twice in the data set
    chosen = np.array([4, 5])
    check, failures = _check(features, _moved(features.values[chosen], 0.7), chosen)
    assert failures == [] and "2 of 200 images extracted again" in check


def test_features_far_apart_pass_on_the_relative_rule_alone():
    features = _random_vit_like(departure=5.0)  # a trained model's: images differ in the first digit
    chosen = np.arange(20)
    check, failures = _check(features, _moved(features.values[chosen], 0.7), chosen)
    assert failures == [] and "ulps" not in check and "tolerance 0.002 for fp32)" in check


def test_our_random_vit_submission_verifies_on_a_draw_holding_a_row_past_the_relative_rule(tmp_path):
    """The shipped vit-s14-random submission on the real subset: seed 318's 8 images include row 448, whose fp32
    features on this CPU differ by 0.34 % of its departure from the mean (measured), which CI refused before."""
    labeled = PBC / "labeled"
    if not labeled.is_dir():
        pytest.skip(real_data_absent(labeled))
    shipped = REPO / "leaderboard" / "submissions" / "vit-s14-random" / "acevedo"
    target = tmp_path / "submissions" / "vit-s14-random" / "acevedo"
    shutil.copytree(shipped / "knn-1", target / "knn-1")
    shutil.copy(shipped / "features.npz", target / "features.npz")
    done = CliRunner().invoke(app, ["verify", str(tmp_path / "submissions"), "--data-root", f"acevedo={labeled}",
                                    "--sample", "8", "--seed", "318"])
    assert done.exit_code == 0, done.output
    assert "verified: vit-s14-random/acevedo/knn-1" in done.output and "8 of 4000 images extracted again" in \
        done.output, done.output
