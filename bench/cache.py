"""Content-addressed feature cache, written in shards as features are produced.

Layout of one entry, ``<cache>/features/<key>/``::

    shards/shard-000000000.npy   features of rows [start, stop) (float32)
    shards/shard-000000000.json  {start, stop, bad}: written after the .npy, so it marks the shard complete
    features.npy                 all rows (N, dim) float32, assembled shard by shard through a memmap
    manifest.json                written last: its presence means the entry is complete

Every file is written under a temporary name and renamed into place (atomic on POSIX), so a killed process
leaves only complete shards behind; the next run resumes after the last contiguous complete shard. A lock
file beside the entry serialises two processes working on the same key; the second one then finds the
entry complete and reads it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from bench.core.files import atomic_write, atomic_write_json, digest

FEATURE_CODE_VERSION = 1


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


@dataclass
class CachedFeatures:
    features: np.ndarray  # (N, dim) float32, memory-mapped
    bad_rows: list[int]
    manifest: dict


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

    def completed_shards(self) -> list[Shard]:
        """Complete shards that continue each other from row 0 (anything after a gap is ignored)."""
        if not self.shard_dir.is_dir():
            return []
        shards = []
        for meta_path in self.shard_dir.glob("shard-*.json"):
            meta = json.loads(meta_path.read_text())
            if meta_path.with_suffix(".npy").is_file():
                shards.append(Shard(meta["start"], meta["stop"], tuple(meta["bad"])))
        shards.sort(key=lambda s: s.start)
        contiguous, expected = [], 0
        for shard in shards:
            if shard.start != expected:
                break
            contiguous.append(shard)
            expected = shard.stop
        return contiguous

    def _shard_stem(self, start: int) -> Path:
        return self.shard_dir / f"shard-{start:09d}"

    # -- writing --------------------------------------------------------------------------------------------
    def write_shard(self, start: int, features: np.ndarray, bad: list[int]) -> Shard:
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        stem = self._shard_stem(start)
        array = np.ascontiguousarray(features, dtype=np.float32)
        atomic_write(stem.with_suffix(".npy"), lambda fh: np.save(fh, array))
        shard = Shard(start, start + len(features), tuple(bad))
        atomic_write_json(stem.with_suffix(".json"), {"start": shard.start, "stop": shard.stop, "bad": list(bad)})
        return shard

    def finalise(self, n_rows: int, dim: int, manifest: dict) -> None:
        """Assemble the shards into features.npy (one shard in memory at a time), then write the manifest."""
        shards = self.completed_shards()
        covered = shards[-1].stop if shards else 0
        if covered != n_rows:
            raise RuntimeError(f"cache entry {self.directory}: shards cover {covered} of {n_rows} rows")
        final = self.directory / "features.npy"
        tmp = self.directory / ".features.npy.tmp"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_rows, dim))
        for shard in shards:
            out[shard.start : shard.stop] = np.load(self._shard_stem(shard.start).with_suffix(".npy"))
        out.flush()
        del out
        os.replace(tmp, final)
        bad = [row for shard in shards for row in shard.bad]
        atomic_write_json(self.manifest_path, {**manifest, "key": self.key, "rows": n_rows, "dim": dim, "bad_rows": bad})
        shutil.rmtree(self.shard_dir, ignore_errors=True)

    # -- reading --------------------------------------------------------------------------------------------
    def load(self) -> CachedFeatures:
        manifest = json.loads(self.manifest_path.read_text())
        features = np.load(self.directory / "features.npy", mmap_mode="r")
        return CachedFeatures(features, list(manifest.get("bad_rows", [])), manifest)
