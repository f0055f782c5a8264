"""The command line end to end, in-process through typer's runner (plugins registered here stay visible)."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.cli import app
from tests.conftest import TINY, make_image_folder

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def synthetic_results(synthetic_root, tmp_path):
    results = tmp_path / "results"
    done = _run("run", "-e", TINY, "-t", "synthetic-wbc", "--data-root", synthetic_root, "--results", results,
                "--no-progress", "--batch-size", "50")
    assert done.exit_code == 0, done.output
    return results


def test_run_writes_self_describing_results(synthetic_results):
    folder = next(synthetic_results.glob("*/synthetic-wbc"))
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{p}{suffix}" for p in ("knn-1", "knn-20", "linear") for suffix in (".json", ".predictions.csv")
    )
    record = json.loads((folder / "knn-20.json").read_text())
    assert record["task"]["n_samples"] == 300 and len(record["task"]["classes"]) == 6
    assert len(record["metrics"]["per_fold"]) == 5
    assert record["metrics"]["mean"]["weighted_f1"] == pytest.approx(
        np.mean([f["weighted_f1"] for f in record["metrics"]["per_fold"]])
    )
    assert record["extractor"]["fingerprint"]["state_sha256"] and record["extractor"]["fingerprint"]["n_parameters"] > 0
    assert record["task"]["content_sha256"] and record["task"]["split_sha256"]
    assert record["environment"]["packages"]["torch"]
    assert record["timings"]["images_per_second"] > 0 and record["timings"]["cached"] is False
    predictions = pd.read_csv(folder / "knn-20.predictions.csv")
    assert len(predictions) == 300 and {"path", "fold", "label", "prediction"} <= set(predictions.columns)
    assert predictions["path"].is_unique


def test_same_run_twice_gives_identical_metrics(synthetic_results, synthetic_root):
    folder = next(synthetic_results.glob("*/synthetic-wbc"))
    before = {p.name: json.loads(p.read_text())["metrics"] for p in folder.glob("*.json")}
    again = _run("run", "-e", TINY, "-t", "synthetic-wbc", "--data-root", synthetic_root, "--results",
                 synthetic_results, "--no-progress", "--overwrite", "always")
    assert again.exit_code == 0, again.output
    after = {p.name: json.loads(p.read_text()) for p in folder.glob("*.json")}
    assert {name: record["metrics"] for name, record in after.items()} == before
    assert all(record["timings"]["cached"] for record in after.values())


def test_overwrite_policies(synthetic_results, synthetic_root):
    args = ("run", "-e", TINY, "-t", "synthetic-wbc", "--data-root", synthetic_root, "--results", synthetic_results, "--no-progress")
    refused = _run(*args, "--overwrite", "never")
    assert refused.exit_code == 1 and "--overwrite is 'never'" in refused.output
    kept = _run(*args, "-p", "knn-1,knn-cosine")  # default only-missing: knn-1 kept, knn-cosine added
    assert kept.exit_code == 0 and "kept existing results for knn-1" in kept.output
    assert next(synthetic_results.glob("*/synthetic-wbc/knn-cosine.json")).is_file()


def test_leaderboard_and_extract(synthetic_results, synthetic_root, tmp_path):
    board = _run("leaderboard", "--results", synthetic_results)
    assert board.exit_code == 0 and "synthetic-wbc / knn-20" in board.output
    csv_out = tmp_path / "board.csv"
    assert _run("leaderboard", "--results", synthetic_results, "--format", "csv", "--out", csv_out).exit_code == 0
    assert len(pd.read_csv(csv_out)) == 3
    export = tmp_path / "export"
    done = _run("extract", "-e", TINY, "-t", "synthetic-wbc", "--data-root", synthetic_root, "--export", export, "--no-progress")
    assert done.exit_code == 0, done.output
    features = np.load(export / "features.npy")
    index = pd.read_csv(export / "index.csv")
    assert features.shape == (300, 32) and features.dtype == np.float32
    assert list(index.columns) == ["path", "label", "fold"] and set(index["fold"]) == set(range(5))


def test_failing_pair_is_reported_and_others_still_run(image_folder, tmp_path):
    wrong = TINY.replace(":TinyViT", ":WrongShape")
    done = _run("run", "-e", TINY, "-e", wrong, "-t", f"imagefolder:{image_folder}", "-p", "knn-1",
                "--results", tmp_path / "r", "--no-progress", "--num-workers", "0")
    assert done.exit_code == 1
    assert "expected (32, 32)" in done.output
    assert len(list((tmp_path / "r").rglob("knn-1.json"))) == 1


def test_an_unknown_name_stops_the_run_before_any_pair(image_folder, tmp_path):
    done = _run("run", "-e", TINY, "-e", "vit-s14-randm", "-t", f"imagefolder:{image_folder}", "-p", "knn-1",
                "--results", tmp_path / "r", "--no-progress")
    assert done.exit_code == 2 and done.output.startswith("error: unknown extractor 'vit-s14-randm'")
    assert "Did you mean 'vit-s14-random'" in done.output
    assert not (tmp_path / "r").exists()


def test_unknown_task_and_protocol(image_folder, tmp_path):
    done = _run("run", "-e", TINY, "-t", "synthetic-wcb", "--no-progress", "--results", tmp_path)
    assert done.exit_code == 2 and "Did you mean 'synthetic-wbc'" in done.output
    done = _run("run", "-e", TINY, "-t", f"imagefolder:{image_folder}", "-p", "knn20", "--results", tmp_path, "--no-progress")
    assert done.exit_code == 2 and "Did you mean 'knn-20'" in done.output


def test_missing_data_root_names_the_path(tmp_path):
    done = _run("run", "-e", TINY, "-t", f"imagefolder:{tmp_path / 'absent'}", "--results", tmp_path, "--no-progress")
    assert done.exit_code == 2 and str(tmp_path / "absent") in done.output  # a name on the command line


def _plant_bad_images(root):
    good = (root / "a" / "a_000.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 3])
    (root / "b" / "notes.jpg").write_text("this is not an image")


def test_corrupt_images_fail_with_their_name_or_are_skipped_and_listed(tmp_path):
    root = make_image_folder(tmp_path / "cells", {"a": 12, "b": 12})
    _plant_bad_images(root)
    args = ("run", "-e", TINY, "-t", f"imagefolder:{root}", "-p", "knn-1", "--results", tmp_path / "r", "--no-progress")
    failed = _run(*args)
    assert failed.exit_code == 1 and ("notes.jpg" in failed.output or "truncated.png" in failed.output)
    in_worker = _run(*args, "--num-workers", "1")  # raised in a DataLoader worker: still the one line, no traceback
    assert in_worker.exit_code == 1 and "truncated.png" in in_worker.output
    assert "Traceback" not in in_worker.output and "DataLoader worker" not in in_worker.output
    skipped = _run(*args, "--skip-bad-images")
    assert skipped.exit_code == 0, skipped.output
    assert "skipped 1 unreadable image(s) (--skip-bad-images; every one is listed in the result): a/truncated.png" \
        in skipped.output
    again = _run(*args, "--skip-bad-images")  # nothing to compute: the stored result is shown, not blanks
    assert "kept (stored result)" in again.output and "—" not in again.output
    record = json.loads(next((tmp_path / "r").rglob("knn-1.json")).read_text())
    # the text file named like a JPEG is no image by its signature: left out and reported, like in the paper's tasks
    assert record["skipped_images"] == ["a/truncated.png"]
    assert any("not images" in note and "b/notes.jpg" in note for note in record["task"]["notes"])
    assert record["metrics"]["per_fold"][0]["n_train"] + record["metrics"]["per_fold"][0]["n_test"] == 24
    predictions = pd.read_csv(next((tmp_path / "r").rglob("knn-1.predictions.csv")))
    assert "b/notes.jpg" not in set(predictions["path"])
    # the cache now holds the bad rows; without the flag the run still refuses, naming them
    refused = _run(*args, "--overwrite", "always")
    assert refused.exit_code == 1 and "truncated.png" in refused.output


def test_check_extractor(tmp_path):
    done = _run("check-extractor", TINY)
    assert done.exit_code == 0, done.output
    assert "dim 32" in done.output and "FAIL" not in done.output
    nodim = TINY.replace(":TinyViT", ":NoDim")
    failed = runner.invoke(app, ["check-extractor", nodim])
    assert failed.exit_code == 1 and "class attribute `dim`" in failed.output


@pytest.mark.parametrize("name", ["color-histogram", "vit-s14-random", "resnet50-trunc-random"])
def test_check_extractor_builtins(name):
    done = _run("check-extractor", name)
    assert done.exit_code == 0, done.output


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit-b14-random", "vit-l14-random", "vit-g14-random", "resnet50-random"])
def test_check_extractor_builtins_large(name):
    done = _run("check-extractor", name)
    assert done.exit_code == 0, done.output


def test_list_shows_doors():
    done = _run("list", "extractors")
    assert "vit-s14-random" in done.output and "path/to/file.py:Name" in done.output
    assert "imagefolder:PATH" in _run("list", "tasks").output


def test_fixed_split_file(image_folder, tmp_path):
    from tasks import get_task

    paths = get_task(f"imagefolder:{image_folder}").load(data_home=tmp_path).samples["path"]
    split = pd.DataFrame({"path": paths, "split": ["test" if i % 4 == 0 else "train" for i in range(len(paths))]})
    split.to_csv(tmp_path / "split.csv", index=False)
    done = _run("run", "-e", TINY, "-t", f"imagefolder:{image_folder}", "-p", "knn-1", "--split-file",
                tmp_path / "split.csv", "--results", tmp_path / "r", "--no-progress")
    assert done.exit_code == 0, done.output
    record = json.loads(next((tmp_path / "r").rglob("knn-1.json")).read_text())
    assert record["task"]["split_kind"] == "fixed"
    assert record["metrics"]["per_fold"][0]["fold"] == "test" and record["metrics"]["per_fold"][0]["n_test"] == 9
    digest = hashlib.sha256((tmp_path / "split.csv").read_bytes()).hexdigest()[:8]
    assert record["task"]["task"] == f"imagefolder:{image_folder}@split=split-{digest}"
    # the k-fold result of the same task lands beside it: nothing is replaced
    done = _run("run", "-e", TINY, "-t", f"imagefolder:{image_folder}", "-p", "knn-1", "--results", tmp_path / "r",
                "--no-progress")
    assert done.exit_code == 0, done.output
    records = [json.loads(p.read_text()) for p in (tmp_path / "r").rglob("knn-1.json")]
    assert sorted(r["task"]["split_kind"] for r in records) == ["fixed", "kfold"]
    assert len({r["task"]["task"] for r in records}) == 2
    refused = _run("run", "-e", TINY, "-t", f"imagefolder:{image_folder}=>imagefolder:{image_folder}", "--split-file",
                   tmp_path / "split.csv", "--results", tmp_path / "r", "--no-progress")
    assert refused.exit_code != 0 and "a split file does not apply" in refused.output
    export = tmp_path / "export"
    assert _run("extract", "-e", TINY, "-t", f"imagefolder:{image_folder}", "--split-file", tmp_path / "split.csv",
                "--export", export, "--no-progress").exit_code == 0
    assert set(pd.read_csv(export / "index.csv")["fold"]) == {"train", "test"}


def test_domain_shift_trains_on_one_task_and_tests_on_another(tmp_path):
    train = make_image_folder(tmp_path / "lab1", {"a": 8, "b": 8, "c": 8}, seed=1)
    test = make_image_folder(tmp_path / "lab2", {"a": 5, "b": 5, "d": 5}, seed=2)
    done = _run("run", "-e", TINY, "-t", f"imagefolder:{train}=>imagefolder:{test}", "-p", "knn-1",
                "--results", tmp_path / "r", "--no-progress")
    assert done.exit_code == 0, done.output
    record = json.loads(next((tmp_path / "r").rglob("knn-1.json")).read_text())
    assert record["task"]["task"] == f"imagefolder:{train}=>imagefolder:{test}"
    assert record["task"]["train"]["n_samples"] == 24 and record["task"]["test"]["n_samples"] == 15
    fold = record["metrics"]["per_fold"][0]
    assert fold["n_train"] == 24 and fold["n_test"] == 15
    assert any("only in the training task" in w and "'c'" in w for w in record["warnings"])
    assert any("only in the test task" in w and "'d'" in w for w in record["warnings"])
    predictions = pd.read_csv(next((tmp_path / "r").rglob("knn-1.predictions.csv")))
    assert set(predictions["label"]) == {"a", "b", "d"} and "d" not in set(predictions["prediction"])
    assert len(predictions) == 15


def test_bag_task_end_to_end_with_attention_per_cell(tmp_path):
    """synthetic-bags through `bench run`: patient-level CV, per-patient predictions, attention of every cell."""
    import dataclasses

    from protocols import PROTOCOLS
    from protocols.mil import ABMIL_GATED

    quick = dataclasses.replace(ABMIL_GATED, name="abmil-gated-quick", epochs=5)
    PROTOCOLS.add("abmil-gated-quick", quick, summary="test: 5 epochs")
    try:
        done = _run("run", "-e", TINY, "-t", "synthetic-bags", "-p", "abmil-gated-quick", "--results", tmp_path / "r",
                    "--no-progress", "--batch-size", "64")
        assert done.exit_code == 0, done.output
        folder = next((tmp_path / "r").rglob("synthetic-bags"))
        record = json.loads((folder / "abmil-gated-quick.json").read_text())
        assert record["task"]["n_patients"] == 40 and record["task"]["unit"] == "patient"
        assert len(record["metrics"]["per_fold"]) == 5 and record["protocol"]["settings"]["epochs"] == 5
        predictions = pd.read_csv(folder / "abmil-gated-quick.predictions.csv")
        assert len(predictions) == 40 and predictions["bag"].is_unique
        attention = pd.read_csv(folder / "abmil-gated-quick.attention.csv")
        assert len(attention) == 40 * 24 and attention["path"].is_unique
        sums = attention.groupby("bag")["attention"].sum()
        np.testing.assert_allclose(sums, 1.0, rtol=1e-5)
        # a patient never straddles folds: all its cells carry one fold
        assert attention.groupby("bag")["fold"].nunique().eq(1).all()
        wrong = _run("run", "-e", TINY, "-t", "synthetic-bags", "-p", "knn-1", "--results", tmp_path / "r", "--no-progress")
        assert wrong.exit_code == 2 and "bags task" in wrong.output  # found in the plan step, before any work
    finally:
        PROTOCOLS.remove("abmil-gated-quick")


def test_ctrl_c_says_what_is_kept_and_a_rerun_resumes(image_folder, tmp_path, tiny_plugin):
    args = ["run", "-e", TINY, "-t", f"imagefolder:{image_folder}", "-p", "knn-1", "--results", str(tmp_path / "r"),
            "--no-progress", "--num-workers", "0", "--batch-size", "8", "--shard-size", "8"]
    tiny_plugin.fail_after = 2  # the third forward pass is interrupted, as by Ctrl-C
    stopped = CliRunner().invoke(app, args)
    assert stopped.exit_code == 130 and "interrupted (Ctrl-C)" in stopped.output and "resume" in stopped.output
    tiny_plugin.fail_after, tiny_plugin.forward_calls = None, 0
    resumed = CliRunner().invoke(app, args)
    assert resumed.exit_code == 0, resumed.output
    assert tiny_plugin.forward_calls == 3  # 36 images in shards of 8: the 2 complete ones were kept


def test_every_command_shares_one_results_default(image_folder, tmp_path, monkeypatch):
    """$BENCH_RESULTS is the default results folder of run and leaderboard alike (and of train's evaluations)."""
    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path / "shared-results"))
    monkeypatch.chdir(tmp_path)
    done = _run("run", "-e", TINY, "-t", f"imagefolder:{image_folder}", "-p", "knn-1", "--no-progress")
    assert done.exit_code == 0, done.output
    assert list((tmp_path / "shared-results").rglob("knn-1.json")) and not (tmp_path / "results").exists()
    board = _run("leaderboard", "--bootstrap", "20")
    assert board.exit_code == 0 and "knn-1" in board.output
    assert "bootstrap 95 % intervals of 1 result(s), 20 resamples each" in board.output  # never a silent wait


def test_every_command_has_examples_that_parse():
    """Each command's help ends with examples, and each example parses (names and options exist)."""
    import shlex

    import typer

    from bench.cli import EXAMPLES

    root = typer.main.get_command(app)
    commands = {}

    def walk(group, prefix):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):  # a group (typer's own click)
                walk(command, prefix + [name])
            else:
                commands[" ".join(prefix + [name])] = command

    walk(root, [])
    assert set(EXAMPLES) == set(commands)  # every command has examples
    for name, lines in EXAMPLES.items():
        assert "Examples:" in _run(*name.split(), "--help").output
        for line in lines:
            words = shlex.split(line)[1 + len(name.split()):]
            commands[name].make_context(name, words)  # raises on an unknown option or a missing required one


@pytest.mark.parametrize("command", ["run", "extract"])
def test_help_groups_the_options_and_what_to_run_fits_one_screen(command):
    """`bench run --help` on an 80 x 40 terminal: what to run is the first panel, and the top of the help through
    that panel fits the screen; the authors' choices and the performance options follow in panels of their own."""
    text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"}).output
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    panels, name = {}, None
    for number, line in enumerate(lines):
        if line.startswith("╭─ "):
            name = line[3:].split(" ─", 1)[0]
            panels[name] = {"first": number, "options": []}
        elif line.startswith("╰"):
            panels[name]["last"], name = number, None
        elif name is not None:
            panels[name]["options"] += [word for word in line.split() if word.startswith("--")]
    assert list(panels) == ["Options", "Performance and hardware"]
    first = panels["Options"]
    assert first["last"] < 40  # from the top of the help to the end of the first panel: one screen
    what = {"--extractor", "--task", "--data-root", "--split-file", "--weights"}
    what |= {"--protocol", "--results", "--overwrite"} if command == "run" else {"--export"}
    assert what <= set(first["options"])
    gone = {"--folds", "--preprocessing", "--pooling", "--test-task", "--shift-training", "--shift-classes"}
    assert not gone & {o for panel in panels.values() for o in panel["options"]}  # parts of the names now
    assert {"--device", "--precision", "--batch-size", "--num-workers", "--offline"} <= set(
        panels["Performance and hardware"]["options"])
    assert not {"--device", "--precision"} & set(first["options"])
