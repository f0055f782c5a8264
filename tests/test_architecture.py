"""The house: the import contracts in pyproject.toml ([tool.importlinter]) hold, and they catch an upward import."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("bench", "extractors", "tasks", "protocols", "dinobloom_train", "leaderboard")


def _lint(root):
    """``lint-imports`` on the packages under ``root`` (they shadow the installed ones through PYTHONPATH)."""
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", script, "--no-cache"], cwd=root, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_import_contracts_hold():
    done = _lint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with open(tmp_path / "tasks" / "splits.py", "a") as fh:
        fh.write("\nfrom bench.runner import RunOptions  # planted: a task reaching up into the harness\n")
    done = _lint(tmp_path)
    assert done.returncode == 1 and "tasks.splits -> bench.runner" in done.stdout, done.stdout + done.stderr


def test_the_floor_and_the_leaderboard_load_without_torch():
    code = textwrap.dedent(
        """
        import sys
        import bench.core.record, bench.core.registry, bench.core.design, leaderboard.tables, leaderboard.stats
        heavy = [m for m in ("torch", "torchvision", "timm", "transformers") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_only_the_projects_packages_are_installed():
    """The wheel holds the six top-level packages and their sub-packages, never benchmarks/ or tests/ (a pattern
    such as "bench*" would match benchmarks): setuptools' own discovery with pyproject's include list (namespace
    discovery, as ``[tool.setuptools.packages.find]`` does by default: benchmarks/ has no __init__.py)."""
    import tomllib

    from setuptools import find_namespace_packages

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "benchmarks" in find_namespace_packages(str(REPO), include=["bench*"])  # the trap this guards against
    found = set(find_namespace_packages(str(REPO), include=include))
    tops = {name.split(".")[0] for name in found}
    assert tops == set(PACKAGES)
    assert {"bench.core", "tasks", "leaderboard"} <= found
    on_disk = {p.parent.relative_to(REPO).as_posix().replace("/", ".") for top in tops
               for p in (REPO / top).rglob("__init__.py")}
    assert on_disk <= found  # no sub-package left out


def test_the_lint_gate_passes():
    """`ruff check .` with the rules pyproject.toml chooses, as the pull-request workflow runs it."""
    import pytest

    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff (dev extra) is not installed: pip install -e '.[dev]'")
    done = subprocess.run([ruff, "check", "."], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
