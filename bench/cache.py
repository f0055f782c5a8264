"""Content-addressed feature cache, written in shards as features are produced, every file checksummed.

Layout of one entry, ``<cache>/features/<key>/``::

    shards/shard-000000000.npy   features of rows [start, stop) (float32)
    shards/shard-000000000.json  {start, stop, bad, sha256, bytes}: written after the .npy, so it marks the
                                 shard complete and says what its bytes must hash to
    shards/shard-000000000.lock  held by the process extracting those rows (its claim), beside
    shards/shard-000000000.claim who holds it: rank, host, pid (left behind by a process that was killed)
    entry.json                   written first: what the entry holds (the key's payload: extractor, data), so
                                 that an entry cut short is named by `bench cache ls`; removed with the shards
    features.npy                 all rows (N, dim) float32, streamed shard by shard (hashed on the way)
    manifest.json                written last: rows, dim, the sha256 and size of features.npy; its presence
                                 means the entry is complete

The rows are cut into shards of ``shard_size`` rows at fixed places (multiples of ``shard_size``), whatever the
number of processes, so a shard's batches are the same in every run and so are its features. A process claims a
shard by taking its lock without waiting, so any number of processes, of one ``torchrun`` launch or of several
launches, share the missing shards and none is extracted twice; the process that finalises waits for the shards
others hold, and extracts itself any whose holder died (a dead process's lock is released by the kernel).

Every file is written under a temporary name and renamed into place (atomic on POSIX), so a killed process
leaves only complete shards behind; the next run, with any number of processes, extracts only the shards that
are missing or whose bytes no longer match their checksum. A complete entry is checked on every load (size and
shape of ``features.npy`` against the manifest, then its sha256: one read of the file, cheap next to any
protocol); an entry that does not match raises :class:`~bench.core.errors.CacheError` naming it, and the caller
evicts and re-extracts it. The entry's own lock serialises finalising (and eviction); the second process to get
it finds the entry complete and reads it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from bench.core.errors import CacheError
from bench.core.files import atomic_write, atomic_write_json, digest, ensure_space, sha256_file

# Part of the key: bump when a change to the extraction changes the features. 2: 16-bit, 32-bit and float
# images are scaled to 8 bits (bench.core.images) instead of saturating to white.
FEATURE_CODE_VERSION = 2
CACHE_FORMAT = 2  # 2: checksums per shard and for features.npy (entries of format 1 are re-extracted)
FEATURES_FILE = "features.npy"
PROCESS_TOKEN = uuid.uuid4().hex  # tells this process's claims from another's (pids repeat across containers)


def feature_key(extractor_fingerprint: dict, dataset_content_sha256: str) -> tuple[str, dict]:
    payload = {
        "extractor": extractor_fingerprint,
        "dataset_content_sha256": dataset_content_sha256,
        "feature_code_version": FEATURE_CODE_VERSION,
    }
    return digest(payload), payload


@dataclass(frozen=True)
class Shard:
    start: int
    stop: int
    bad: tuple[int, ...]  # row numbers (in the whole data set) whose image could not be read
    sha256: str = ""
    bytes: int = 0


@dataclass
class CachedFeatures:
    features: np.ndarray  # (N, dim) float32, memory-mapped
    bad_rows: list[int]
    manifest: dict


@dataclass
class Claim:
    """A shard this process holds (see :meth:`FeatureStore.claim`): rows [start, stop)."""

    start: int
    stop: int
    lock: FileLock
    info: Path

    def release(self) -> None:
        self.info.unlink(missing_ok=True)
        self.lock.release()


def missing_units(n_rows: int, shard_size: int, shards: list[Shard]) -> list[tuple[int, int]]:
    """The row ranges [start, stop) still to extract, cut where the shard grid (multiples of ``shard_size``) cuts
    them: every process and every run forms the same shards, hence the same batches and the same features."""
    units = []
    for gap_start, gap_stop in zip([0] + [s.stop for s in shards], [s.start for s in shards] + [n_rows]):
        row = gap_start
        while row < gap_stop:
            stop = min(gap_stop, (row // shard_size + 1) * shard_size)
            units.append((row, stop))
            row = stop
    return units


def _npy_header(n_rows: int, dim: int) -> bytes:
    """The .npy header of a C-order float32 (n_rows, dim) array (numpy's own writer, into memory)."""
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": (n_rows, dim)})
    return buffer.getvalue()


class FeatureStore:
    """One cache entry (one key). Use ``with store.lock():`` around anything that writes."""

    def __init__(self, cache_root: Path, key: str):
        self.key = key
        self.directory = Path(cache_root) / "features" / key
        self.shard_dir = self.directory / "shards"

    # -- state ----------------------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"

    @property
    def features_path(self) -> Path:
        return self.directory / FEATURES_FILE

    @property
    def description_path(self) -> Path:
        return self.directory / "entry.json"

    def describe(self, manifest: dict) -> None:
        """Write what the entry holds (``entry.json``: key, key payload, creation time) before any shard, so
        that an entry cut short is named by `bench cache ls` (its manifest, which names it too, comes last)."""
        if not self.description_path.is_file():
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.description_path, {**manifest, "key": self.key})

    def description(self) -> dict:
        """The manifest of a complete entry, else its ``entry.json``; {} if neither can be read."""
        for path in (self.manifest_path, self.description_path):
            try:
                found = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(found, dict):
                return found
        return {}

    def discard_if_empty(self) -> bool:
        """After an extraction failed: remove the entry if it holds nothing a later run can use (no manifest, no
        complete shard) and no live process holds any of it. Returns whether it was removed."""
        with self.lock():
            if self.is_complete() or self.completed_shards(verify=False) or _busy(self, shards_only=True):
                return False
            self.evict()
        Path(str(self.directory) + ".lock").unlink(missing_ok=True)
        return True

    def is_complete(self) -> bool:
        return self.manifest_path.is_file()

    def lock(self, on_wait=None) -> FileLock:
        """The entry's lock; ``on_wait(path)`` is called once if another process holds it."""
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.directory) + ".lock")
        try:
            lock.acquire(timeout=0)
            lock.release()
        except Timeout:
            if on_wait is not None:
                on_wait(lock.lock_file)
        return lock

    def evict(self) -> None:
        """Remove the entry (hold its lock)."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def _shard_stem(self, start: int) -> Path:
        return self.shard_dir / f"shard-{start:09d}"

    def completed_shards(self, problems: list[str] | None = None, verify: bool = True) -> list[Shard]:
        """Complete shards in row order, none overlapping another (a shard that overlaps one before it is
        ignored); gaps between them are rows still to extract. ``verify`` checks each against its checksum: one
        that does not match is deleted (and named in ``problems``), its rows are then missing again."""
        if not self.shard_dir.is_dir():
            return []
        shards = []
        for meta_path in sorted(self.shard_dir.glob("shard-*.json")):
            data = meta_path.with_suffix(".npy")
            try:
                meta = json.loads(meta_path.read_text())
                shard = Shard(meta["start"], meta["stop"], tuple(meta["bad"]), meta.get("sha256", ""),
                              meta.get("bytes", 0))
            except FileNotFoundError:
                continue  # finalised meanwhile by another process (it removes the shards)
            except (OSError, ValueError, KeyError, TypeError):
                shard = None
            why = None
            try:
                if shard is None:
                    why = "its description cannot be read"
                elif not data.is_file():  # the .json is written after the .npy: deleted by a user or a prune
                    why = "its data file is missing"
                elif not shard.sha256:
                    why = "it has no checksum (written by an older hemabench)"
                elif verify and (data.stat().st_size != shard.bytes or sha256_file(data) != shard.sha256):
                    why = "its bytes differ from its checksum"
            except FileNotFoundError:
                continue  # finalised meanwhile by another process
            if why is not None and self.is_complete():
                continue  # not a damaged shard: the entry was finalised while this process looked
            if why is not None:
                if problems is not None:
                    problems.append(f"cache shard {data} is not used: {why}; deleted, its rows are extracted again")
                meta_path.unlink(missing_ok=True)
                data.unlink(missing_ok=True)
                continue
            shards.append(shard)
        kept, covered = [], 0
        for shard in sorted(shards, key=lambda s: (s.start, -s.stop)):
            if shard.start >= covered:
                kept.append(shard)
                covered = shard.stop
        return kept

    def rows_done(self) -> int:
        """Rows in complete shards (from their descriptions, unverified: for progress bars)."""
        return sum(s.stop - s.start for s in self.completed_shards(verify=False))

    # -- claiming (several processes on one entry) ----------------------------------------------------------
    def claim(self, unit: tuple[int, int], owner: dict, wait: bool = False, on_wait=None) -> "Claim | None":
        """The lock on the shard that starts at ``unit[0]``, or None when another process holds it (``wait``:
        wait for it, calling ``on_wait(who holds it)`` once) or the shard is complete by now. ``owner`` (rank,
        world size) is written beside the lock, so that a stopped run can say who was extracting which rows."""
        if self.is_complete():  # finalised by now (its shards are gone)
            return None
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        stem = self._shard_stem(unit[0])
        lock = FileLock(str(stem.with_suffix(".lock")))
        said = False
        while True:  # (not filelock's own wait: the holder may finish, finalise and remove the folder meanwhile)
            try:
                lock.acquire(timeout=0)
                break
            except (Timeout, FileNotFoundError):
                if not wait or self.is_complete() or self._written(stem):
                    return None
                if self._claim_info(unit[0]).get("token") == PROCESS_TOKEN:  # never wait for oneself
                    raise RuntimeError(f"this process holds the lock of {stem} it waits for")
            if on_wait is not None and not said:
                on_wait(self.claimant(unit[0]) or "another process")
                said = True
            time.sleep(0.2)
        if self._written(stem) or self.is_complete():  # done while this process looked elsewhere
            lock.release()
            if self.is_complete():  # (acquiring made shards/ again: the finalised entry has none)
                Path(lock.lock_file).unlink(missing_ok=True)
                try:
                    self.shard_dir.rmdir()
                except OSError:
                    pass
            return None
        info = {**owner, "host": socket.gethostname(), "pid": os.getpid(), "token": PROCESS_TOKEN,
                "rows": list(unit), "since": time.strftime("%H:%M:%S")}
        try:  # for messages only: a plain write (no fsync per shard); a torn one is read as no claim
            stem.with_suffix(".claim").write_text(json.dumps(info))
        except BaseException:
            lock.release()
            raise
        return Claim(unit[0], unit[1], lock, stem.with_suffix(".claim"))

    @staticmethod
    def _written(stem: Path) -> bool:
        return stem.with_suffix(".json").is_file() and stem.with_suffix(".npy").is_file()

    def _claim_info(self, start: int) -> dict:
        try:
            info = json.loads(self._shard_stem(start).with_suffix(".claim").read_text())
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def claimant(self, start: int) -> str | None:
        """Who claimed the shard at ``start`` (from its .claim file), in words; None if nobody did."""
        info = self._claim_info(start)
        if not info:
            return None
        gone = ""
        if info.get("host") == socket.gethostname():
            try:
                os.kill(int(info["pid"]), 0)
            except ProcessLookupError:
                gone = ", a process that no longer exists"
            except (OSError, ValueError, KeyError, TypeError):
                pass
        rank = f"rank {info.get('rank')} of {info.get('world')}" if info.get("world", 1) > 1 else "a process"
        return f"{rank} (pid {info.get('pid')} on {info.get('host')}{gone}, since {info.get('since')})"

    def unfinished(self, n_rows: int, shard_size: int) -> list[str]:
        """The shards still missing, each with who claimed it (the claim file stays when its process is killed)."""
        said = []
        for start, stop in missing_units(n_rows, shard_size, self.completed_shards(verify=False)):
            who = self.claimant(start)
            said.append(f"rows {start}-{stop - 1} (shard-{start:09d}): " + (f"claimed by {who}, not finished"
                                                                          if who else "not started"))
        return sorted(said, key=lambda line: "no longer exists" not in line)  # the dead process's first

    # -- writing --------------------------------------------------------------------------------------------
    def write_shard(self, start: int, features: np.ndarray, bad: list[int]) -> Shard:
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        stem = self._shard_stem(start)
        array = np.ascontiguousarray(features, dtype=np.float32)
        payload = _npy_header(*array.shape) + array.tobytes()
        ensure_space(self.shard_dir, len(payload), f"writing a shard of cache entry {self.key[:12]}")
        atomic_write(stem.with_suffix(".npy"), lambda fh: fh.write(payload))
        shard = Shard(start, start + len(array), tuple(bad), hashlib.sha256(payload).hexdigest(), len(payload))
        atomic_write_json(stem.with_suffix(".json"), {"start": shard.start, "stop": shard.stop, "bad": list(bad),
                                                      "sha256": shard.sha256, "bytes": shard.bytes})
        return shard

    def finalise(self, n_rows: int, dim: int, manifest: dict) -> None:
        """Stream the shards into features.npy (one shard in memory at a time, each checked against its checksum
        and hashed on the way; plain writes, so a full disk raises instead of killing the process as a memory
        map would), then write the manifest. Call with the entry's lock held."""
        shards = self.completed_shards(verify=False)  # verified below, as each is read
        covered = sum(s.stop - s.start for s in shards)
        if covered != n_rows or (shards and shards[-1].stop != n_rows):
            raise CacheError(f"cache entry {self.directory}: shards cover {covered} of {n_rows} rows; run again "
                             "to extract the rest")
        header = _npy_header(n_rows, dim)
        size = len(header) + 4 * n_rows * dim
        ensure_space(self.directory, size, f"assembling {FEATURES_FILE} of cache entry {self.key[:12]}")
        hasher = hashlib.sha256(header)

        def write(fh) -> None:
            fh.write(header)
            for shard in shards:
                path = self._shard_stem(shard.start).with_suffix(".npy")
                payload = path.read_bytes()
                if len(payload) != shard.bytes or hashlib.sha256(payload).hexdigest() != shard.sha256:
                    path.with_suffix(".json").unlink(missing_ok=True)
                    path.unlink(missing_ok=True)
                    raise CacheError(f"cache shard {path} does not match its checksum (changed on disk after it "
                                     "was written); deleted: run again to extract its rows")
                array = np.load(io.BytesIO(payload))
                if array.shape != (shard.stop - shard.start, dim) or array.dtype != np.float32:
                    raise CacheError(f"cache shard {path} holds {array.dtype} {array.shape}, expected float32 "
                                     f"({shard.stop - shard.start}, {dim}); run again to extract it anew")
                data = array.tobytes()
                hasher.update(data)
                fh.write(data)

        atomic_write(self.features_path, write)
        bad = [row for shard in shards for row in shard.bad]
        files = {FEATURES_FILE: {"sha256": hasher.hexdigest(), "bytes": size}}
        atomic_write_json(self.manifest_path, {**manifest, "key": self.key, "rows": n_rows, "dim": dim,
                                               "bad_rows": bad, "files": files, "cache_format": CACHE_FORMAT})
        shutil.rmtree(self.shard_dir, ignore_errors=True)
        self.description_path.unlink(missing_ok=True)  # the manifest says it all now

    # -- reading --------------------------------------------------------------------------------------------
    def read_manifest(self) -> dict:
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise CacheError(f"cache entry {self.directory}: manifest.json cannot be read ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("cache_format") != CACHE_FORMAT:
            raise CacheError(f"cache entry {self.directory} has no checksums (written by an older hemabench)")
        return manifest

    def check(self, full: bool = True) -> dict:
        """The manifest, after checking features.npy against it: size and shape always, the sha256 if ``full``.
        Raises :class:`CacheError` naming the entry and what differs."""
        manifest = self.read_manifest()
        path = self.features_path
        try:
            expected = manifest["files"][FEATURES_FILE]
            rows, dim = int(manifest["rows"]), int(manifest["dim"])
        except (KeyError, TypeError, ValueError):
            raise CacheError(f"cache entry {self.directory}: manifest.json lacks rows, dim or checksums") from None
        if not path.is_file():
            raise CacheError(f"cache entry {self.directory}: {FEATURES_FILE} is missing")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise CacheError(f"cache entry {self.directory}: {FEATURES_FILE} has {size} bytes, its manifest says "
                             f"{expected['bytes']}")
        with open(path, "rb") as fh:
            try:
                version = np.lib.format.read_magic(fh)
                read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                if version not in read:
                    raise ValueError(f"format version {version}")
                shape, fortran, dtype = read[version](fh)
            except ValueError as exc:
                raise CacheError(f"cache entry {self.directory}: {FEATURES_FILE} is not a .npy file ({exc})") from None
        if shape != (rows, dim) or fortran or dtype != np.float32:
            raise CacheError(f"cache entry {self.directory}: {FEATURES_FILE} holds {dtype} {shape}, its manifest "
                             f"says float32 ({rows}, {dim})")
        if full:
            actual = sha256_file(path)
            if actual != expected["sha256"]:
                raise CacheError(f"cache entry {self.directory}: {FEATURES_FILE} does not match its checksum "
                                 f"(sha256 {actual[:12]}..., manifest {expected['sha256'][:12]}...): it was changed "
                                 "on disk")
        return manifest

    def load(self) -> CachedFeatures:
        """The verified features (see :meth:`check`)."""
        manifest = self.check(full=True)
        features = np.load(self.features_path, mmap_mode="r")
        return CachedFeatures(features, list(manifest.get("bad_rows", [])), manifest)



# -- maintenance: `bench cache ls | verify | prune` ----------------------------------------------------------
@dataclass
class EntryState:
    """One cache entry as found on disk."""

    key: str
    directory: Path
    status: str  # ok | corrupt | partial (being written, or left by a killed run) | busy (locked by a live run)
    detail: str = ""
    extractor: str = ""
    rows: int | None = None
    dim: int | None = None
    size: int = 0  # bytes on disk
    created: str = ""


def cache_entries(cache_root: Path) -> list[FeatureStore]:
    folder = Path(cache_root) / "features"
    if not folder.is_dir():
        return []
    return [FeatureStore(cache_root, p.name) for p in sorted(folder.iterdir()) if p.is_dir()]


def _busy(store: FeatureStore, shards_only: bool = False) -> bool:
    """A live process holds the entry's lock (unless ``shards_only``) or a shard's (its claim)."""
    locks = [] if shards_only else [Path(str(store.directory) + ".lock")]
    if store.shard_dir.is_dir():
        locks += sorted(store.shard_dir.glob("shard-*.lock"))
    for path in locks:
        lock = FileLock(str(path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        lock.release()
    return False


def entry_state(store: FeatureStore, full: bool = False) -> EntryState:
    """The entry's status; ``full`` checks the sha256 of features.npy (else size and shape only)."""
    size = sum(p.stat().st_size for p in store.directory.rglob("*") if p.is_file())
    state = EntryState(store.key, store.directory, "ok", size=size)
    manifest = store.description()  # a partial entry is named by its entry.json
    state.extractor = str(((manifest.get("key_payload") or {}).get("extractor") or {}).get("name", ""))
    state.rows, state.dim, state.created = manifest.get("rows"), manifest.get("dim"), str(manifest.get("created", ""))
    if not store.is_complete():
        state.status = "busy" if _busy(store) else "partial"
        state.detail = f"{len(store.completed_shards())} complete shard(s)" if state.status == "partial" else ""
        return state
    try:
        store.check(full=full)
    except CacheError as exc:
        state.status, state.detail = "corrupt", str(exc)
    return state


def prune(cache_root: Path, *, older_than_days: float | None = None, everything: bool = False,
          dry_run: bool = False) -> list[EntryState]:
    """Remove corrupt entries, partial ones no live run holds, and (``older_than_days``) complete entries
    created longer ago than that, or (``everything``) every entry not in use; returns what was (or, with
    ``dry_run``, would be) removed."""
    import datetime as dt

    removed = []
    now = dt.datetime.now(dt.timezone.utc)
    for store in cache_entries(cache_root):
        state = entry_state(store, full=True)
        if state.status == "busy":
            continue
        old = False
        if older_than_days is not None and state.status == "ok":
            try:
                created = dt.datetime.fromisoformat(state.created)
            except ValueError:
                created = dt.datetime.fromtimestamp(store.manifest_path.stat().st_mtime, dt.timezone.utc)
            old = (now - created).total_seconds() > older_than_days * 86400
        if everything or old or state.status in ("corrupt", "partial"):
            removed.append(state)
            if not dry_run:
                with store.lock():
                    store.evict()
                Path(str(store.directory) + ".lock").unlink(missing_ok=True)
    return removed
