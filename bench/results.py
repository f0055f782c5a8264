"""Result records: one self-describing JSON per (extractor, task, protocol), predictions beside it.

``results/<extractor>/<task>/<protocol>.json`` and ``<protocol>.predictions.csv`` (path, fold, label,
prediction, proba_<class>...). Names that are not safe as folder names (``imagefolder:/data/x``,
``plugin.py:Class``) are turned into a readable slug plus a short hash of the full name.
"""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pandas as pd

from bench.cache import atomic_write_bytes, atomic_write_json
from bench.registry import safe_name

SCHEMA_VERSION = 1
OVERWRITE_POLICIES = ("never", "always", "only-missing")
_PACKAGES = ("hemabench", "torch", "torchvision", "timm", "numpy", "scikit-learn", "pandas", "pillow")


slug = safe_name  # folder-safe names for results/<extractor>/<task>/


def result_paths(results_dir: Path, extractor: str, task: str, protocol: str) -> tuple[Path, Path]:
    base = Path(results_dir) / slug(extractor) / slug(task)
    return base / f"{slug(protocol)}.json", base / f"{slug(protocol)}.predictions.csv"


def package_versions() -> dict[str, str | None]:
    versions = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict | None:
    """The commit of the hemabench checkout that produced a result (None when not run from a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def environment(device: str) -> dict:
    return {
        "packages": package_versions(),
        "git": git_commit(),
        "platform": platform.platform(),
        "device": device,
    }


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_table(path: Path, table: pd.DataFrame) -> None:
    atomic_write_bytes(path, table.to_csv(index=False).encode())


def write_result(json_path: Path, record: dict, predictions: pd.DataFrame, predictions_path: Path) -> None:
    """Write the predictions, then the record (atomically), so a record never points at missing predictions."""
    write_table(predictions_path, predictions)
    atomic_write_json(json_path, record)
