"""Shared fixtures: an isolated BENCH_HOME per test, small image folders, the tiny plugin extractor."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.core.settings import use_scipy_array_api

use_scipy_array_api()  # as the bench command does, before anything imports scipy (the GPU probe's tests need it)
# umap-learn's kernels run as plain Python here: numba compiles them once per process (about 25 s of a 2-core
# machine), longer than these small maps take uncompiled. The same functions either way; `-m slow` draws one map in a
# fresh process with the JIT, as `bench plot umap` runs for users (tests/test_figures.py). Set it to 0 to compile.
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")
REPO = Path(__file__).resolve().parents[1]
# Real Acevedo (PBC) images in the shared subset's layout (labeled/<class>/*.jpg, unlabeled/*.jpg): HEMABENCH_PBC
# names the folder; the default is the read-only ../shared/data/pbc beside the checkout. Tests that need them skip.
PBC = Path(os.environ.get("HEMABENCH_PBC") or REPO.parent / "shared" / "data" / "pbc").expanduser()
# The complete public Acevedo copy (PBC_dataset_normal_DIB: 17,092 images in 8 class folders; public in GitHub
# repositories, e.g. kylewang1999/PBC_dataset): HEMABENCH_ACEVEDO_FULL names it; the tests that need it skip.
ACEVEDO_FULL = Path(os.environ["HEMABENCH_ACEVEDO_FULL"]).expanduser() if os.environ.get("HEMABENCH_ACEVEDO_FULL") \
    else None


def real_data_absent(where: Path) -> str:
    """The reason a real-image test skips: what is missing, and the variable that points at real images."""
    return (f"real PBC images not found at {where}: set HEMABENCH_PBC to a folder holding labeled/<class>/*.jpg and "
            "unlabeled/*.jpg (a subset of Acevedo et al.'s set, as ../shared/data/pbc is)")
def complete_copy_absent() -> str:
    """The reason a test on the complete Acevedo copy skips."""
    return ("the complete Acevedo copy is not here: set HEMABENCH_ACEVEDO_FULL to its PBC_dataset_normal_DIB folder "
            "(17,092 images in 8 class folders; public in GitHub repositories, e.g. kylewang1999/PBC_dataset)")


KEYS_FILE = REPO / "tests" / "data" / "checkpoint_keys.json"  # key names and shapes of the published checkpoints
TINY = f"{REPO / 'tests' / 'plugins' / 'tiny_vit.py'}:TinyViT"


def pytest_configure(config):
    """Under pytest-xdist (the default run: ``-n auto``), each worker's torch gets its share of the cores, so two
    workers on two cores do not each start two threads (subprocesses a test starts inherit the share)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        import torch

        share = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(share)
        os.environ.setdefault("OMP_NUM_THREADS", str(share))


@pytest.fixture(autouse=True)
def bench_home(tmp_path, monkeypatch):
    """Every test gets its own BENCH_HOME (cache, data, weights) so nothing leaks between tests or into ~."""
    home = tmp_path / "bench_home"
    monkeypatch.setenv("BENCH_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """The synthetic-wbc data set, generated once per session (pass it as --data-root)."""
    from tasks.synthetic import SYNTHETIC_N_PER_CLASS, SYNTHETIC_SIZE, write_cell_folder

    root = tmp_path_factory.mktemp("data") / "synthetic-wbc"
    return write_cell_folder(root, SYNTHETIC_N_PER_CLASS, seed=0, size=SYNTHETIC_SIZE)


@pytest.fixture
def tiny_plugin():
    """The TinyViT class as the harness loads it (same module object), with its counters reset."""
    from bench.core.registry import import_target

    cls = import_target(TINY)
    cls.forward_calls, cls.fail_after, cls.sleep_seconds = 0, None, 0.0
    yield cls
    cls.forward_calls, cls.fail_after, cls.sleep_seconds = 0, None, 0.0


def make_image_folder(root: Path, counts: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    """<root>/<class>/<i>.png with class-dependent colours (learnable) and noise."""
    rng = np.random.default_rng(seed)
    for c, (label, n) in enumerate(sorted(counts.items())):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            base = np.array([40 + 50 * c, 200 - 30 * c, 120], dtype=float)
            pixels = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{label}_{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "cells", {"a": 12, "b": 12, "c": 12})


@pytest.fixture
def pbc_subset(tmp_path) -> Path:
    """10 real Acevedo images per class, copied from ../shared/data/pbc (skipped when absent)."""
    labeled = PBC / "labeled"
    if not labeled.is_dir():
        pytest.skip(real_data_absent(labeled))
    root = tmp_path / "pbc"
    for class_dir in sorted(p for p in labeled.iterdir() if p.is_dir()):
        (root / class_dir.name).mkdir(parents=True)
        for file in sorted(class_dir.glob("*.jpg"))[:10]:
            shutil.copy(file, root / class_dir.name / file.name)
    return root


def scored_by(record: dict, predictions) -> dict:
    """A hand-made record whose folds and means are what its ``predictions`` give (scikit-learn's metrics, per
    fold; mean and population std over folds): the board re-scores every record from its predictions and refuses
    one that disagrees (issue 26)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    scorers = {"weighted_f1": lambda t, p: f1_score(t, p, average="weighted", zero_division=0),
               "accuracy": accuracy_score, "balanced_accuracy": balanced_accuracy_score}
    per_fold = []
    for fold, rows in predictions.groupby("fold", sort=True):
        truth, predicted = rows["label"].astype(str), rows["prediction"].astype(str)
        per_fold.append({"fold": str(fold), "n_test": len(rows),
                         **{name: float(score(truth, predicted)) for name, score in scorers.items()}})
    metrics = record["metrics"]
    metrics["per_fold"] = per_fold
    for name in scorers:
        values = np.array([fold[name] for fold in per_fold])
        metrics["mean"][name], metrics["std"][name] = float(values.mean()), float(values.std())
    return record
