"""Tests of the synthetic white-blood-cell generator (tasks/synthetic.py)."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tasks.synthetic as syn
from tasks.synthetic import (
    BAG_LABELS,
    CELL_CLASSES,
    GENERATOR_VERSION,
    STAINS,
    render_cell,
    write_cell_folder,
    write_patient_bags,
)

REPO = Path(__file__).resolve().parents[1]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _siblings_left(root: Path) -> list[str]:
    return [p.name for p in root.parent.iterdir() if ".partial." in p.name]


# ------------------------------------------------------------------------------------------ render_cell
def test_public_constants():
    assert GENERATOR_VERSION == 1
    assert len(CELL_CLASSES) >= 6 and len(set(CELL_CLASSES)) == len(CELL_CLASSES)
    assert {"default", "shifted"} <= set(STAINS)
    assert len(BAG_LABELS) >= 3
    for label, profile in BAG_LABELS.items():
        assert set(profile) == set(CELL_CLASSES), label
        assert abs(sum(profile.values()) - 1.0) < 1e-9 and min(profile.values()) >= 0.0, label
    assert "not real" in syn.__doc__.lower() or "not* real" in syn.__doc__.lower()


@pytest.mark.parametrize("stain", STAINS)
@pytest.mark.parametrize("cell_class", CELL_CLASSES)
def test_render_is_a_pure_function_of_rng(cell_class, stain):
    a = render_cell(cell_class, np.random.default_rng(7), 48, stain)
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8
    assert 60 < a.mean() < 250 and a.std() > 10  # an image, not a blank
    b = render_cell(cell_class, np.random.default_rng(7), 48, stain)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, render_cell(cell_class, np.random.default_rng(8), 48, stain))


def test_render_ignores_and_keeps_global_random_state():
    outs = []
    for g in (1, 2):
        np.random.seed(g)
        random.seed(g)
        state, pystate = np.random.get_state()[1].copy(), random.getstate()
        outs.append(render_cell("monocyte", np.random.default_rng(3)))
        np.testing.assert_array_equal(np.random.get_state()[1], state)
        assert random.getstate() == pystate
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("size", [16, 128, 224])
def test_render_sizes(size):
    a = render_cell("neutrophil", np.random.default_rng(0), size)
    assert a.shape == (size, size, 3)


def _hist(img: np.ndarray) -> np.ndarray:
    return np.concatenate([np.histogram(img[..., c], bins=16, range=(0, 256))[0] for c in range(3)]) / img[..., 0].size


def test_classes_are_distinguishable_but_not_trivially():
    """Colour histogram + 1-NN, leave-one-out. Measured with L1 distance, 20 images/class: 0.75-0.83 over
    seeds 0-7 (chance 1/6). Assert well above 1.5 x chance but below perfect."""
    x, y = [], []
    for ci, c in enumerate(CELL_CLASSES):
        for i in range(20):
            x.append(_hist(render_cell(c, np.random.default_rng([100, ci, i]), 128)))
            y.append(ci)
    x, y = np.array(x), np.array(y)
    d = np.abs(x[:, None, :] - x[None, :, :]).sum(-1)
    np.fill_diagonal(d, np.inf)
    acc = float((y[d.argmin(1)] == y).mean())
    chance = 1.0 / len(CELL_CLASSES)
    assert acc > 3.0 * chance, acc
    assert acc < 0.97, acc


def test_shifted_stain_changes_mean_colour():
    def mean_rgb(stain):
        ims = [render_cell(c, np.random.default_rng([5, ci, i]), 64, stain)
               for ci, c in enumerate(CELL_CLASSES) for i in range(5)]
        return np.stack(ims).reshape(-1, 3).mean(0)

    d, s = mean_rgb("default"), mean_rgb("shifted")
    # measured: default ~(218, 197, 206), shifted ~(205, 195, 213)
    assert np.linalg.norm(d - s) > 8.0, (d, s)
    assert d[0] > d[2] and s[2] > s[0], (d, s)  # warm background -> cool background


# ------------------------------------------------------------------------------------------ cell folder
def test_cell_folder_layout_marker_and_png(tmp_path):
    root = write_cell_folder(tmp_path / "cells", 3, seed=1, size=32)
    assert root == tmp_path / "cells"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(CELL_CLASSES)
    for c in CELL_CLASSES:
        assert sorted(p.name for p in (root / c).iterdir()) == [f"{c}_{i:04d}.png" for i in range(3)]
    with Image.open(root / "blast" / "blast_0002.png") as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (32, 32)
        np.testing.assert_array_equal(
            np.asarray(im), render_cell("blast", np.random.default_rng(np.random.SeedSequence([1, 0, 1, 2])), 32))
    marker = json.loads((root / "GENERATED.json").read_text())
    assert marker["generator_version"] == GENERATOR_VERSION
    assert marker["n_files"] == 3 * len(CELL_CLASSES) == len(_files(root))
    assert marker["params"] == {"n_per_class": 3, "seed": 1, "size": 32, "stain": "default",
                                "classes": list(CELL_CLASSES)}
    assert _siblings_left(root) == []


def test_same_seed_identical_other_seed_different(tmp_path):
    a = _files(write_cell_folder(tmp_path / "a", 2, seed=3, size=32))
    b = _files(write_cell_folder(tmp_path / "b", 2, seed=3, size=32))
    c = _files(write_cell_folder(tmp_path / "c", 2, seed=4, size=32))
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_image_does_not_depend_on_n_per_class(tmp_path):
    small = _files(write_cell_folder(tmp_path / "small", 2, size=32))
    big = _files(write_cell_folder(tmp_path / "big", 5, size=32))
    assert len(big) == 5 * len(CELL_CLASSES)
    assert all(big[k] == v for k, v in small.items())


def test_recall_is_a_noop(tmp_path):
    root = write_cell_folder(tmp_path / "cells", 2, size=32)
    paths = [root, *root.rglob("*")]
    before = {p: p.stat().st_mtime_ns for p in paths}
    assert write_cell_folder(tmp_path / "cells", 2, size=32) == root
    assert write_cell_folder(str(tmp_path / "cells"), 2, size=32, seed=0, stain="default") == root
    assert {p: p.stat().st_mtime_ns for p in paths} == before
    assert sorted(root.rglob("*")) == sorted(paths[1:])


@pytest.mark.parametrize("change", [dict(n_per_class=3), dict(seed=1), dict(size=48), dict(stain="shifted")])
def test_mismatched_parameters_raise(tmp_path, change):
    root = write_cell_folder(tmp_path / "cells", 2, size=32)
    kwargs = dict(n_per_class=2, seed=0, size=32, stain="default") | change
    n = kwargs.pop("n_per_class")
    with pytest.raises(ValueError, match="delete") as err:
        write_cell_folder(root, n, **kwargs)
    assert str(root) in str(err.value)
    with pytest.raises(ValueError, match="delete"):  # a bag folder is not a cell folder either
        write_patient_bags(root, n_patients_per_label=1, cells_per_patient=1, size=32)


def test_foreign_folder_raises_and_empty_folder_is_filled(tmp_path):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x.txt").write_text("mine")
    with pytest.raises(ValueError, match="delete"):
        write_cell_folder(tmp_path / "foreign", 1, size=32)
    assert (tmp_path / "foreign" / "x.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    root = write_cell_folder(tmp_path / "empty", 1, size=32)
    assert len(_files(root)) == len(CELL_CLASSES)


def test_failure_leaves_nothing_and_stale_partials_are_cleaned(tmp_path, monkeypatch):
    real, calls = syn.render_cell, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(syn, "render_cell", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        write_cell_folder(tmp_path / "cells", 2, size=32)
    assert not (tmp_path / "cells").exists() and _siblings_left(tmp_path / "cells") == []
    monkeypatch.setattr(syn, "render_cell", real)

    stale = tmp_path / ".cells.partial.0123abcd"  # as left by a killed writer
    (stale / "basophil").mkdir(parents=True)
    root = write_cell_folder(tmp_path / "cells", 2, size=32)
    assert not stale.exists() and len(_files(root)) == 2 * len(CELL_CLASSES)


def test_two_threads_at_once(tmp_path):
    root, barrier, results, errors = tmp_path / "cells", threading.Barrier(2), [], []

    def work():
        try:
            barrier.wait()
            results.append(write_cell_folder(root, 6, size=64))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and results == [root, root]
    assert len(_files(root)) == 6 * len(CELL_CLASSES)
    assert json.loads((root / "GENERATED.json").read_text())["n_files"] == 6 * len(CELL_CLASSES)
    assert _siblings_left(root) == []


def test_two_processes_at_once(tmp_path):
    root = tmp_path / "cells"
    code = ("import sys; from tasks.synthetic import write_cell_folder; "
            "p = write_cell_folder(sys.argv[1], 10, size=96); print(len(list(p.rglob('*.png'))))")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip() == str(10 * len(CELL_CLASSES))
    assert _files(root) == _files(write_cell_folder(tmp_path / "ref", 10, size=96))
    assert _siblings_left(root) == []


# ------------------------------------------------------------------------------------------ patient bags
def _read_cells_csv(root: Path) -> list[dict[str, str]]:
    with open(root / "cells.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_patient_bags_layout(tmp_path):
    root = write_patient_bags(tmp_path / "bags", n_patients_per_label=2, cells_per_patient=3, seed=2, size=32)
    labels = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert labels == sorted(BAG_LABELS)
    pids = [p.name for lab in labels for p in (root / lab).iterdir()]
    assert len(pids) == len(set(pids)) == 2 * len(BAG_LABELS)
    assert sorted(pids) == [f"P{k:04d}" for k in range(1, 2 * len(BAG_LABELS) + 1)]
    files = _files(root)
    assert len(files) == 2 * 3 * len(BAG_LABELS)
    rows = _read_cells_csv(root)
    assert sorted(r["path"] for r in rows) == sorted(files)
    for r in rows:
        lab, pid, name = r["path"].split("/")
        assert (lab, pid) == (r["label"], r["patient_id"]) and name.startswith(pid)
        assert r["cell_class"] in CELL_CLASSES
    marker = json.loads((root / "GENERATED.json").read_text())
    assert marker["kind"] == "patient_bags" and marker["n_files"] == len(files)
    # idempotent, deterministic, and guarded like the cell folder
    mtime = (root / "GENERATED.json").stat().st_mtime_ns
    assert write_patient_bags(root, n_patients_per_label=2, cells_per_patient=3, seed=2, size=32) == root
    assert (root / "GENERATED.json").stat().st_mtime_ns == mtime
    again = write_patient_bags(tmp_path / "again", n_patients_per_label=2, cells_per_patient=3, seed=2, size=32)
    assert _files(again) == files
    with pytest.raises(ValueError, match="delete"):
        write_patient_bags(root, n_patients_per_label=2, cells_per_patient=4, seed=2, size=32)


def test_patient_bags_follow_label_profiles(tmp_path, monkeypatch):
    # Rendering is replaced by a tiny stub: the class draws do not depend on it, and this keeps it fast.
    monkeypatch.setattr(syn, "render_cell", lambda *a, **k: np.zeros((2, 2, 3), np.uint8))
    root = write_patient_bags(tmp_path / "bags", n_patients_per_label=10, cells_per_patient=50, size=32)
    by_label: dict[str, Counter] = {lab: Counter() for lab in BAG_LABELS}
    for r in _read_cells_csv(root):
        by_label[r["label"]][r["cell_class"]] += 1
    for lab, profile in BAG_LABELS.items():
        total = sum(by_label[lab].values())
        assert total == 500
        for c, p in profile.items():
            assert abs(by_label[lab][c] / total - p) < 0.1, (lab, c, by_label[lab][c] / total, p)
            if p == 0.0:
                assert by_label[lab][c] == 0
    assert by_label["aml-like"].most_common(1)[0][0] == "blast"
    assert by_label["eosinophilia"]["eosinophil"] > 3 * by_label["control"]["eosinophil"]


# ------------------------------------------------------------------------------------------ argument errors
@pytest.mark.parametrize("call, match", [
    (lambda: render_cell("erythrocyte", np.random.default_rng(0)), r"cell_class.*neutrophil"),
    (lambda: render_cell("blast", np.random.default_rng(0), stain="he"), r"stain.*shifted"),
    (lambda: render_cell("blast", np.random.default_rng(0), size=0), r"size"),
    (lambda: render_cell("blast", np.random.default_rng(0), size=12.5), r"size"),
])
def test_render_argument_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_render_rejects_non_generator():
    with pytest.raises(TypeError, match="rng"):
        render_cell("blast", 0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_per_class=0), "n_per_class"),
    (dict(n_per_class=-2), "n_per_class"),
    (dict(n_per_class=1.5), "n_per_class"),
    (dict(n_per_class=True), "n_per_class"),
    (dict(n_per_class=1, stain="lab2"), r"stain.*default"),
    (dict(n_per_class=1, seed=-1), "seed"),
    (dict(n_per_class=1, size=4), "size"),
])
def test_cell_folder_argument_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_cell_folder(tmp_path / "cells", **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_patients_per_label=0, cells_per_patient=1), "n_patients_per_label"),
    (dict(n_patients_per_label=1, cells_per_patient=0), "cells_per_patient"),
    (dict(n_patients_per_label=1, cells_per_patient=1, stain="x"), "stain"),
])
def test_bag_argument_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_patient_bags(tmp_path / "bags", **kwargs)
    assert list(tmp_path.iterdir()) == []
