"""Hashes and atomic writes, shared by the cache, the results, the data checks, the weights and the trainer."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Callable

from bench.core.errors import DiskFullError

CHUNK = 1 << 20


def __getattr__(name: str):
    """``IMAGE_EXTENSIONS``: image files by name, every extension of a format PIL decodes
    (:func:`bench.core.images.image_extensions`), computed on first use so that importing this module stays
    free of PIL."""
    if name == "IMAGE_EXTENSIONS":
        from bench.core.images import image_extensions

        return image_extensions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def class_source(cls: type) -> tuple[str, str | None]:
    """(file name, sha256) of the source file that defines ``cls``, what a result records of a plugin's code; the
    module's name and None for a class with no source file (defined interactively)."""
    import inspect

    try:
        source = inspect.getsourcefile(cls)
    except TypeError:  # classes defined interactively have no source file
        source = None
    return (Path(source).name, sha256_file(source)) if source else (cls.__module__, None)


def sha256_file_remembered(path: str | Path, index: Path | None = None) -> str:
    """``sha256_file`` of a large file that is read often (a weight file: 4.4 GB for ViT-g, ~3 s of hashing at
    every run), remembered in ``index`` (default ``$BENCH_HOME/cache/sha256-index.json``) under the file's
    identity: path, inode, size, mtime and ctime in ns, and a hash of its first and last 64 KiB. Any write changes
    the ctime, which no user call can set back; on file systems with coarse timestamps (NFS, FAT) a same-size
    rewrite within one tick must also leave both ends of the file as they were to go unnoticed."""
    path = Path(path).resolve()
    stat = path.stat()
    ends = hashlib.sha256()
    with open(path, "rb") as fh:
        ends.update(fh.read(1 << 16))
        fh.seek(max(0, stat.st_size - (1 << 16)))
        ends.update(fh.read(1 << 16))
    identity = f"{path}|{stat.st_ino}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{ends.hexdigest()[:16]}"
    if index is None:
        from bench.core.settings import cache_dir

        index = cache_dir() / "sha256-index.json"
    try:
        known = json.loads(index.read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(identity), str) and len(known[identity]) == 64:
        return known[identity]
    digest = sha256_file(path)
    # older versions of this file, and files that no longer exist (temporary files, deleted exports)
    known = {k: v for k, v in known.items() if not k.startswith(f"{path}|") and Path(k.split("|", 1)[0]).exists()}
    known[identity] = digest
    try:
        atomic_write_json(index, known)
    except OSError:
        pass  # a read-only cache only costs the next run the hashing again
    return digest


def digest(payload: Any) -> str:
    """Stable sha256 of a JSON-able payload (keys sorted; other objects by ``str``)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def split_digest(paths, labels, folds) -> str:
    """A data set's split identity: sha256 over its sorted (path, label, fold) rows, all as text. The same from a
    task's samples and from a k-fold result's predictions (every sample once), so a submission can be checked
    against the split its record claims."""
    out = hashlib.sha256()
    for path, label, fold in sorted(zip(map(str, paths), map(str, labels), map(str, folds))):
        out.update(f"{path}\0{label}\0{fold}\n".encode())
    return out.hexdigest()


def _new_sibling(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path``, opened for writing, with the mode an ordinary ``open`` would give
    (0666 less the umask): ``tempfile.mkstemp`` creates 0600 files, and a result, a board or an export renamed
    from one would stay unreadable to the group and the web server whatever the user's umask."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {path}")


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``write(file)`` to a temporary sibling, fsync, then rename over ``path`` (atomic on POSIX:
    a reader or a killed writer never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_sibling(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full(path.parent, f"writing {path.name}") from None
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())


# -- a full disk: one clear error instead of a half-written file or a SIGBUS ---------------------------------
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _FULL


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


def disk_full(folder: Path, doing: str, needed: int | None = None) -> DiskFullError:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    need = f"; {_mib(needed)} needed" if needed is not None else ""
    have = f", {_mib(free)} free" if free is not None else ""
    return DiskFullError(
        f"no space left in {folder} while {doing}{need}{have}. Free space there, or point BENCH_HOME (cache, "
        "weights, data) or --results at a larger disk; what was half-written is discarded, never used"
    )


def ensure_space(folder: Path, needed: int, doing: str) -> None:
    """Refuse, before writing, what cannot fit: ``needed`` bytes in ``folder`` (a memory map of a file on a
    full disk would die of SIGBUS instead of raising)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(folder).free < needed:
        raise disk_full(folder, doing, needed)
