"""One error family: a HemabenchError is one clear line (exit 1), anything else is a bug shown with its traceback."""

import inspect

import pytest
from typer.testing import CliRunner

import bench.core.errors as errors
from bench.cli import app
from tests.conftest import TINY

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_every_typed_error_is_a_hemabench_error():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(classes) >= 14 and all(issubclass(c, errors.HemabenchError) for c in classes)
    # each keeps the built-in its callers would expect
    assert issubclass(errors.DataError, ValueError) and issubclass(errors.NotFoundError, FileNotFoundError)
    assert issubclass(errors.RegistryError, KeyError) and str(errors.RegistryError("no 'x'")) == "no 'x'"


def test_a_user_error_is_one_line_and_debug_adds_the_traceback(tmp_path):
    done = _run("data", "info", "acevedoo")
    assert done.exit_code == 2 and done.output.startswith("error: unknown task 'acevedoo'")
    assert "Traceback" not in done.output and len(done.output.strip().splitlines()) == 1
    debug = _run("--debug", "data", "info", "acevedoo")
    assert debug.exit_code == 2 and "Traceback" in debug.output and "RegistryError" in debug.output


def test_a_failing_pair_from_a_bug_shows_its_traceback(image_folder, tmp_path):
    crashes = TINY.replace(":TinyViT", ":Crashes")
    done = _run("run", "-e", crashes, "-t", f"imagefolder:{image_folder}", "-p", "knn-1", "--results", tmp_path / "r",
                "--no-progress", "--num-workers", "0")
    assert done.exit_code == 1
    assert "Traceback" in done.output and "tiny_vit.py" in done.output and "in forward" in done.output
    assert "RuntimeError: boom: an index bug inside the plugin (a bug in hemabench or a plugin" in done.output


def test_a_broken_extractor_contract_is_a_clear_error(image_folder, tmp_path):
    wrong = TINY.replace(":TinyViT", ":WrongShape")
    done = _run("run", "-e", wrong, "-t", f"imagefolder:{image_folder}", "-p", "knn-1", "--results", tmp_path / "r",
                "--no-progress", "--num-workers", "0")
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert "ExtractorError: extractor returned features of shape (32, 5), expected (32, 32)" in done.output


@pytest.mark.parametrize("args, message, code", [
    (("leaderboard", "--results", "/nonexistent/results"), "results folder /nonexistent/results does not exist", 1),
    (("check-extractor", "vit-s14-random", "--weights", "/nonexistent.pth"), "--weights /nonexistent.pth: no such file",
     1),
    (("compare", "a", "b", "-t", "t", "-p", "knn-1", "--metric", "f1"), "metric 'f1' is not one of", 2),
])
def test_commands_end_user_errors_with_one_line(args, message, code, tmp_path, monkeypatch):
    """Exit code 1: something to fix before it can be done; 2: the command line is wrong (README, "Exit codes")."""
    monkeypatch.chdir(tmp_path)
    if args[0] == "compare":  # predictions present, the metric is what is wrong
        for name in ("a", "b"):
            folder = tmp_path / "results" / name / "t"
            folder.mkdir(parents=True)
            (folder / "knn-1.predictions.csv").write_text("path,fold,label,prediction\nx.png,0,a,a\n")
    done = _run(*args)
    assert done.exit_code == code and message in done.output and "Traceback" not in done.output


def test_a_file_that_is_no_checkpoint_is_called_so(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("remember to download the weights\n")
    done = _run("check-extractor", "vit-s14-random", "--weights", notes)
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert f"{notes} is not a weight file at all" in done.output and "b'reme'" in done.output
    assert "refusing" not in done.output  # not a security refusal: it is not a checkpoint
