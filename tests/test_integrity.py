"""Nothing silently wrong (issue 11): checksummed cache entries, non-finite features refused, results that
say what they were computed from, names with commas, a protocol failing on its own, a full disk."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.core.errors import DiskFullError, ExtractorError
from bench.runner import RunOptions, load_pair
from tests.conftest import REPO, TINY, make_image_folder

NAN_PLUGIN = f"{REPO / 'tests' / 'plugins' / 'tiny_vit.py'}:NaNWeights"


def _features(folder, lines=None, extractor=TINY, **kw):
    options = RunOptions(progress=False, batch_size=4, shard_size=4, **kw)
    pair = load_pair(extractor, f"imagefolder:{folder}", options, log=(lines.append if lines is not None else print))
    return np.array(pair.cached.features), pair.stats, pair.cached


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def _entry(bench_home) -> Path:
    (entry,) = [p for p in (bench_home / "cache" / "features").iterdir() if p.is_dir()]
    return entry


# -- the feature cache ------------------------------------------------------------------------------------
def test_edited_features_file_is_named_evicted_and_re_extracted(image_folder, tiny_plugin, bench_home):
    reference, _, _ = _features(image_folder)
    path = _entry(bench_home) / "features.npy"
    edited = np.load(path)
    edited[:20] = edited[:20][::-1]  # the attack: rows reversed, same shape, same size
    np.save(path, edited)
    lines = []
    tiny_plugin.forward_calls = 0
    again, stats, _ = _features(image_folder, lines)
    assert not stats.cached and tiny_plugin.forward_calls == 9  # extracted anew, not read from the edited file
    np.testing.assert_array_equal(again, reference)
    assert any("does not match its checksum" in line and "evicted" in line and _entry(bench_home).name in line
               for line in lines)


@pytest.mark.parametrize("damage", ["truncate", "manifest"])
def test_truncated_file_or_broken_manifest_is_re_extracted(image_folder, tiny_plugin, bench_home, damage):
    reference, _, _ = _features(image_folder)
    entry = _entry(bench_home)
    if damage == "truncate":
        data = (entry / "features.npy").read_bytes()
        (entry / "features.npy").write_bytes(data[:-100])
    else:
        (entry / "manifest.json").write_text("{not json")
    lines = []
    again, stats, _ = _features(image_folder, lines)
    assert not stats.cached
    np.testing.assert_array_equal(again, reference)
    assert any(str(entry) in line for line in lines)


def test_entry_without_checksums_from_an_older_version_is_re_extracted(image_folder, tiny_plugin, bench_home):
    _features(image_folder)
    manifest_path = _entry(bench_home) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["files"], manifest["cache_format"]
    manifest_path.write_text(json.dumps(manifest))
    lines = []
    _, stats, _ = _features(image_folder, lines)
    assert not stats.cached and any("older hemabench" in line for line in lines)


def test_flipped_bytes_in_a_finished_shard_are_re_extracted(image_folder, tiny_plugin, tmp_path, bench_home):
    reference, _, _ = _features(image_folder, cache_root=tmp_path / "clean-cache")
    tiny_plugin.forward_calls, tiny_plugin.fail_after = 0, 5  # 5 shards of 4 rows written, then the run is killed
    with pytest.raises(KeyboardInterrupt):
        _features(image_folder)
    shard = _entry(bench_home) / "shards" / "shard-000000004.npy"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF  # one flipped byte in the features of shard 2
    shard.write_bytes(bytes(data))
    tiny_plugin.forward_calls, tiny_plugin.fail_after = 0, None
    lines = []
    resumed, stats, _ = _features(image_folder, lines)
    # the damaged shard (rows 4-7) is extracted again with the 4 never written; the 4 intact shards are kept
    assert stats.resumed_from == 16 and tiny_plugin.forward_calls == 1 + 4
    np.testing.assert_array_equal(resumed, reference)
    assert any("shard-000000004.npy" in line and "differ from its checksum" in line for line in lines)


def test_cache_commands_list_verify_and_prune(image_folder, tiny_plugin, bench_home):
    _features(image_folder)
    listing = _run("cache", "ls")
    assert listing.exit_code == 0 and "TinyViT" in listing.output and "36 x 32" in listing.output
    assert _run("cache", "verify").exit_code == 0
    path = _entry(bench_home) / "features.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    verify = _run("cache", "verify")
    assert verify.exit_code == 1 and "does not match its checksum" in verify.output
    assert not [p for p in (bench_home / "cache" / "features").iterdir() if p.is_dir()]  # evicted
    tiny_plugin.forward_calls, tiny_plugin.fail_after = 0, 2  # a partial entry, left by a killed run
    with pytest.raises(KeyboardInterrupt):
        _features(image_folder)
    assert "partial" in _run("cache", "ls").output
    dry = _run("cache", "prune", "--dry-run")
    assert "would remove" in dry.output and _entry(bench_home).exists()
    assert _run("cache", "prune").exit_code == 0
    assert not [p for p in (bench_home / "cache" / "features").iterdir() if p.is_dir()]


# -- non-finite features ----------------------------------------------------------------------------------
def test_nan_weights_are_refused_with_the_cause_and_nothing_cached(image_folder, bench_home):
    with pytest.raises(ExtractorError) as refused:
        _features(image_folder, extractor=NAN_PLUGIN)
    message = str(refused.value)
    assert "NaN or inf features" in message and "weights hold NaN" in message and "head.weight" in message
    assert "nothing was cached" in message and "a_000.png" in message
    assert not list((bench_home / "cache" / "features").glob("*/features.npy"))


def test_non_finite_features_from_finite_weights_name_precision_or_forward():
    import torch

    from bench.extract import non_finite_error

    out = np.ones((3, 2), dtype=np.float32)
    out[1, 0] = np.inf
    model = torch.nn.Linear(2, 2)
    fp16 = str(non_finite_error("m", model, out, ["x.png", "y.png", "z.png"], "fp16"))
    assert "1 of 3 images" in fp16 and "y.png" in fp16 and "fp16 overflow" in fp16
    assert "its forward produces them" in str(non_finite_error("m", model, out, ["x", "y", "z"], "fp32"))


# -- results say what they were computed from -------------------------------------------------------------
def _bench_run(results, task, *extra):
    return _run("run", "-e", "color-histogram", "-t", task, "-p", "knn-1", "--results", results, "--no-progress", *extra)


def test_truncated_result_is_recomputed_and_a_current_one_is_kept(image_folder, tmp_path):
    results = tmp_path / "r"
    assert _bench_run(results, f"imagefolder:{image_folder}").exit_code == 0
    (record,) = results.rglob("knn-1.json")
    first = json.loads(record.read_text())
    assert first["inputs"]["digest"] and first["inputs"]["features"][0]["n_samples"] == 36
    kept = _bench_run(results, f"imagefolder:{image_folder}")
    assert kept.exit_code == 0 and "kept existing results for knn-1" in kept.output
    record.write_text(record.read_text()[:200])  # a truncated JSON
    redone = _bench_run(results, f"imagefolder:{image_folder}")
    assert redone.exit_code == 0 and "recomputing" in redone.output and "cannot be read" in redone.output
    assert json.loads(record.read_text())["inputs"] == first["inputs"]


def test_result_is_recomputed_after_images_are_added(image_folder, tmp_path):
    results = tmp_path / "r"
    assert _bench_run(results, f"imagefolder:{image_folder}").exit_code == 0
    make_image_folder(tmp_path / "more", {"a": 3})
    for file in (tmp_path / "more" / "a").iterdir():
        shutil.copy(file, image_folder / "a" / f"new_{file.name}")
    redone = _bench_run(results, f"imagefolder:{image_folder}")
    assert redone.exit_code == 0 and "recomputing" in redone.output and "images differ" in redone.output
    (record,) = results.rglob("knn-1.json")
    assert json.loads(record.read_text())["task"]["n_samples"] == 39


def test_a_stale_result_leaves_the_board_even_when_its_recomputation_fails(image_folder, tmp_path):
    results = tmp_path / "r"
    assert _bench_run(results, f"imagefolder:{image_folder}").exit_code == 0
    (record,) = results.rglob("knn-1.json")
    good = (image_folder / "a" / "a_000.png").read_bytes()
    (image_folder / "a" / "broken.png").write_bytes(good[: len(good) // 2])  # a PNG cut short: cannot be decoded
    failed = _bench_run(results, f"imagefolder:{image_folder}")
    assert failed.exit_code == 1 and "images differ" in failed.output and "moved to" in failed.output
    assert not list(results.rglob("*.json")) and not list(results.rglob("*.predictions.csv"))
    assert (record.parent / "knn-1.json.stale").is_file() and (record.parent / "knn-1.predictions.csv.stale").is_file()


def test_kept_results_are_checked_against_the_data_folder(tmp_path):
    from tasks.acevedo import ACEVEDO_CLASSES

    data = make_image_folder(tmp_path / "acevedo", {c: 3 for c in ACEVEDO_CLASSES})
    results = tmp_path / "r"
    assert _bench_run(results, "acevedo", "--data-root", data).exit_code == 0
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    kept = _bench_run(results, "acevedo", "--data-root", moved)  # the same images elsewhere: still the same data
    assert kept.exit_code == 0 and "kept existing results for knn-1" in kept.output
    missing = _bench_run(results, "acevedo", "--data-root", tmp_path / "nonexistent")
    assert missing.exit_code == 1 and "kept existing results" not in missing.output
    assert "does not exist" in missing.output


def test_result_without_inputs_from_an_older_version_is_recomputed(image_folder, tmp_path):
    results = tmp_path / "r"
    assert _bench_run(results, f"imagefolder:{image_folder}").exit_code == 0
    (record,) = results.rglob("knn-1.json")
    payload = json.loads(record.read_text())
    del payload["inputs"]
    record.write_text(json.dumps(payload))
    redone = _bench_run(results, f"imagefolder:{image_folder}")
    assert "recomputing" in redone.output and "written before results recorded" in redone.output


# -- names with commas ------------------------------------------------------------------------------------
def test_a_path_with_a_comma_runs_that_folder_or_fails(tmp_path):
    make_image_folder(tmp_path / "a", {"x": 6, "y": 6})
    results = tmp_path / "r"
    missing = _bench_run(results, f"imagefolder:{tmp_path / 'a,b'}")
    assert missing.exit_code == 2 and not list(results.rglob("*.json"))  # never ran imagefolder:.../a
    assert "taken whole" in missing.output
    make_image_folder(tmp_path / "a,b", {"x": 8, "y": 8}, seed=1)
    done = _bench_run(results, f"imagefolder:{tmp_path / 'a,b'}")
    assert done.exit_code == 0
    (record,) = results.rglob("knn-1.json")
    info = json.loads(record.read_text())["task"]
    assert info["root"] == str(tmp_path / "a,b") and info["n_samples"] == 16


def test_plain_names_still_split_on_commas():
    from bench.cli import _split

    assert _split(["knn-1,knn-20", "linear"]) == ["knn-1", "knn-20", "linear"]
    assert _split(["imagefolder:/d/a,b", "x.py:A,B"]) == ["imagefolder:/d/a,b", "x.py:A,B"]


# -- each protocol succeeds or fails on its own -----------------------------------------------------------
def test_a_protocol_that_cannot_run_does_not_stop_the_others(tmp_path):
    folder = make_image_folder(tmp_path / "small", {"a": 4, "b": 4, "c": 4})
    results = tmp_path / "r"
    done = _run("run", "-e", "color-histogram", "-t", f"imagefolder:{folder}", "-p", "knn-20", "-p", "knn-1",
                "-p", "linear-std", "--results", results, "--no-progress")
    assert done.exit_code == 1
    assert "knn-20: DataError: k=20 neighbours requested" in done.output
    assert sorted(p.name for p in results.rglob("*.json")) == ["knn-1.json", "linear-std.json"]
    assert "Traceback" not in done.output


# -- a full disk ------------------------------------------------------------------------------------------
def test_a_full_disk_is_one_clear_error_and_nothing_half_written_is_trusted(image_folder, tiny_plugin, bench_home,
                                                                            monkeypatch):
    import os

    from bench.core import files

    reference, _, _ = _features(image_folder, cache_root=bench_home / "clean")
    real_fsync, calls = os.fsync, []

    def fsync_fails_after_three(fd):  # the fourth file written finds the disk full: after entry.json and the
        calls.append(fd)  # 1st shard's data and description, the 2nd shard's data
        if len(calls) >= 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync_fails_after_three)
    with pytest.raises(DiskFullError) as full:
        _features(image_folder)
    assert "no space left in" in str(full.value) and "shards" in str(full.value)
    entry = _entry(bench_home)
    assert not list(entry.rglob("*.tmp"))  # the half-written file is gone
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    resumed, stats, _ = _features(image_folder)
    assert stats.resumed_from == 4
    np.testing.assert_array_equal(resumed, reference)


def test_too_little_space_is_refused_before_writing_with_the_space_needed(image_folder, tiny_plugin, monkeypatch):
    from collections import namedtuple

    from bench.core import files

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 100))
    done = _run("run", "-e", TINY, "-t", f"imagefolder:{image_folder}", "-p", "knn-1", "--no-progress",
                "--batch-size", "4")
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert "no space left in" in done.output and "needed" in done.output and "0.0 MiB free" in done.output


def test_images_found_count_what_a_task_leaves_out(tmp_path):
    """The leaderboard tells a subset from the full set by the files found, not the samples a task keeps."""
    from tasks import get_task
    from tasks.acevedo import ACEVEDO_CLASSES

    root = make_image_folder(tmp_path / "acevedo", {c: 3 for c in ACEVEDO_CLASSES})
    (root / "ig" / "MY_x.png").write_bytes((root / "ig" / "ig_000.png").read_bytes()[:-1] + b"\0")
    info = get_task("acevedo-11").load(root, data_home=tmp_path).describe()
    assert info["n_images_found"] == 25 and info["n_samples"] == 19  # IG_* and NEUTROPHIL_* name no fine class
    reasons = {f["path"]: f["reason"] for f in info["ignored_files"]}
    assert "no acevedo-11 class" in reasons["ig/ig_000.png"]


PLUGIN_PROTOCOL = """
from dataclasses import dataclass

import numpy as np
import pandas as pd

from protocols.base import CellProtocol, Prediction


@dataclass(frozen=True)
class FirstClass(CellProtocol):
    def fit_predict(self, x_train, y_train, x_test, n_classes):
        return Prediction(labels=np.full(len(x_test), {label}, dtype=np.int64))


FIRST = FirstClass("first-class", "always one class")
"""


def test_a_plugin_protocol_edited_on_disk_is_recomputed_and_a_builtins_version_counts(image_folder, tmp_path,
                                                                                      monkeypatch):
    """A protocol from a file records its source's sha256: editing the file makes its stored result stale (the
    run says why and recomputes it); a built-in's own version recomputes only that protocol's results."""
    plugin = tmp_path / "first_protocol.py"
    plugin.write_text(PLUGIN_PROTOCOL.format(label=0))
    results = tmp_path / "r"
    args = ("run", "-e", "color-histogram", "-t", f"imagefolder:{image_folder}", "-p", f"{plugin}:FIRST", "-p", "knn-1",
            "--results", results, "--no-progress")
    assert _run(*args).exit_code == 0
    (record,) = results.rglob("first-class.json")
    inputs = json.loads(record.read_text())["inputs"]["protocol"]
    assert inputs["code_file"] == "first_protocol.py" and len(inputs["code_sha256"]) == 64
    assert "code_sha256" not in json.loads(next(results.rglob("knn-1.json")).read_text())["inputs"]["protocol"]
    kept = _run(*args)
    assert kept.exit_code == 0 and "kept existing results for first-class, knn-1" in kept.output
    plugin.write_text(PLUGIN_PROTOCOL.format(label=1))  # the protocol now predicts the other class
    redone = _run(*args)
    assert redone.exit_code == 0 and "source file first_protocol.py changed" in redone.output, redone.output
    assert "kept existing results for knn-1" in redone.output
    predictions = pd.read_csv(record.with_name("first-class.predictions.csv"))
    assert (predictions["prediction"] == "b").all()
    from protocols.knn import KNNProtocol

    monkeypatch.setattr(KNNProtocol, "version", 2)
    bumped = _run(*args)
    assert "its version 1 -> 2" in bumped.output and "kept existing results for first-class" in bumped.output

