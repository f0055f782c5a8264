"""Hashes and atomic writes, shared by the cache, the results, the data checks, the weights and the trainer."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

CHUNK = 1 << 20
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})  # image files by name


def sha256_and_head(path: str | Path, head: int = 0) -> tuple[str, bytes]:
    """(sha256 hex digest, the first ``head`` bytes) of a file, in a single read."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        block = fh.read(max(CHUNK, head))
        first = block[:head]
        while block:
            digest.update(block)
            block = fh.read(CHUNK)
    return digest.hexdigest(), first


def sha256_file(path: str | Path) -> str:
    return sha256_and_head(path)[0]


def digest(payload: Any) -> str:
    """Stable sha256 of a JSON-able payload (keys sorted; other objects by ``str``)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``write(file)`` to a temporary sibling, fsync, then rename over ``path`` (atomic on POSIX:
    a reader or a killed writer never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())
