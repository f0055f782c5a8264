"""Folders of files a task makes on first use (the synthetic data sets, the crops of a point task): written into a
temporary sibling under a file lock, marked with what made them (``GENERATED.json``), then renamed into place, so
a reader or a killed writer never sees half a folder, and a second call that asks for the same thing reuses it
without writing anything."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Callable

from filelock import FileLock

from bench.core.errors import DataError

MARKER = "GENERATED.json"


def existing_is_complete(root: Path, expected: dict, what: str) -> bool:
    """True if ``root`` holds a complete folder made as ``expected`` says; False if it is absent or empty; an
    error naming the folder and the fix if it holds anything else (``what``: "synthetic data", "crops", ...)."""
    if not root.exists():
        return False
    if root.is_dir() and not any(root.iterdir()):
        return False  # an empty folder is replaced
    try:
        found = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        raise DataError(f"{root} exists but is not a complete folder of {what} (no readable {MARKER}); delete it "
                        "and call again") from None
    if found != expected:
        found = found if isinstance(found, dict) else {"marker": found}
        differ = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
        theirs, asked = {k: found.get(k) for k in differ}, {k: expected.get(k) for k in differ}
        raise DataError(f"{root} holds {what} made with other settings ({theirs!r}; asked for {asked!r}); delete the "
                        f"folder {root} and call again, or use another root")
    return True


def materialise_folder(root: str | Path, expected: dict, write: Callable[[Path], int], what: str) -> Path:
    """``root`` holding what ``write(folder) -> number of files written`` makes, made once: reused when its marker
    says ``expected`` (nothing is written then), else written into a temporary sibling, checked against
    ``expected["n_files"]``, marked and renamed to ``root``. Leftovers of killed writers are removed."""
    root = Path(root)
    expected = json.loads(json.dumps(expected))  # plain JSON types, as read back from the marker
    if existing_is_complete(root, expected, what):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if existing_is_complete(root, expected, what):
            return root
        stale = re.compile(rf"\.{re.escape(root.name)}\.partial\.[0-9a-f]{{8}}")
        for p in root.parent.iterdir():  # leftovers of crashed writers (we hold the lock)
            if stale.fullmatch(p.name):
                shutil.rmtree(p, ignore_errors=True)
        tmp = root.parent / f".{root.name}.partial.{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            n = write(tmp)
            if n != expected["n_files"]:
                raise RuntimeError(f"internal error: wrote {n} files, expected {expected['n_files']}")
            (tmp / MARKER).write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
            if root.is_dir():
                root.rmdir()  # was empty (checked above)
            os.rename(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return root
