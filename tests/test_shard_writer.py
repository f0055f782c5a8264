"""What ``extract_to_store`` writes, checked against a computation outside the harness: each shard (rows, bad rows,
checksum), entry.json, the manifest and features.npy; a stopped run resumed; which shards a rank takes, in which
order; what it says while it waits for a shard another process holds; the progress bar's count."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import ToTensor

from bench.cache import CACHE_FORMAT, FeatureStore
from bench.distributed import World
from bench.extract import ImageFiles, extract_to_store

SIZE, DIM, BAD = 8, 5, 5  # 10 images of 8 px, 5 features, image 5 cannot be read
MANIFEST = {"key_payload": {"extractor": {"name": "linear"}}, "paths_in_order": 10, "created": "2020-01-02T03:04:05"}


class Linear(torch.nn.Module):
    """A fixed linear map of the pixels; counts its forward passes and stops (as Ctrl-C does) at ``stop_at``."""

    def __init__(self, stop_at: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(3 * SIZE * SIZE, DIM)
        self.calls, self.stop_at = 0, stop_at

    def forward(self, x):
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.calls += 1
        return self.lin(x.flatten(1))


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(10):
        path = tmp_path / "cells" / f"{i:02d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    data = paths[BAD].read_bytes()
    paths[BAD].write_bytes(data[: len(data) // 3])
    return paths


def expected(paths) -> np.ndarray:
    """Image by image, without the harness: the model on each readable image alone; the bad one's row is zeros."""
    model = Linear()
    with torch.no_grad():
        rows = [np.zeros(DIM, np.float32) if i == BAD else
                model(ToTensor()(Image.open(p).convert("RGB"))[None]).numpy()[0] for i, p in enumerate(paths)]
    return np.stack(rows)


def extract(store, paths, model, **overrides):
    """Batches of 3 in shards of 4: each shard's batches are cut from its start (3 + 1, 3 + 1, 2)."""
    options = dict(dim=DIM, batch_size=3, num_workers=0, device=torch.device("cpu"), precision="fp32", shard_size=4,
                   manifest=MANIFEST, progress=False, description="linear on cells", log=print)
    return extract_to_store(model, store, ImageFiles(paths, ToTensor(), SIZE, skip_bad=True), **{**options, **overrides})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_shards_entry_and_manifest_hold_the_independent_features_and_a_resume_adds_the_rest(tmp_path, images, capsys):
    store = FeatureStore(tmp_path / "cache", "key")
    with pytest.raises(KeyboardInterrupt):
        extract(store, images, Linear(stop_at=4))  # two shards of two passes each, then a stop in the third
    reference = expected(images)
    assert json.loads(store.description_path.read_text()) == {**MANIFEST, "key": "key"}
    assert sorted(p.name for p in store.shard_dir.glob("*.json")) == ["shard-000000000.json", "shard-000000004.json"]
    for start, stop, bad in [(0, 4, []), (4, 8, [BAD])]:
        data = (store.shard_dir / f"shard-{start:09d}.npy").read_bytes()
        meta = json.loads((store.shard_dir / f"shard-{start:09d}.json").read_text())
        assert meta == {"start": start, "stop": stop, "bad": bad, "sha256": sha256(data), "bytes": len(data)}
        shard = np.load(store.shard_dir / f"shard-{start:09d}.npy")
        np.testing.assert_allclose(shard, reference[start:stop], rtol=1e-5, atol=1e-6)

    capsys.readouterr()
    resumed = Linear()
    stats = extract(store, images, resumed, progress=True)
    assert resumed.calls == 1  # rows 8-9 only
    assert re.search(r"linear on cells .* 10/10 [\d.]+ img/s", capsys.readouterr().err)  # 8 found + 2 extracted
    features = store.features_path.read_bytes()
    manifest = json.loads(store.manifest_path.read_text())
    extraction = manifest.pop("extraction")
    assert manifest == {**MANIFEST, "key": "key", "rows": 10, "dim": DIM, "bad_rows": [BAD],
                        "files": {"features.npy": {"sha256": sha256(features), "bytes": len(features)}},
                        "cache_format": CACHE_FORMAT}
    assert extraction == {**stats.as_dict(), "cached": False, "rows_extracted": 2, "resumed_from_row": 8,
                          "batch_size": 3, "num_workers": 0, "attention": "sdpa", "precision": "fp32"}
    assert set(extraction) == {"cached", "rows_extracted", "resumed_from_row", "extraction_seconds",
                               "images_per_second", "batch_size", "num_workers", "attention", "precision"}
    np.testing.assert_allclose(np.load(store.features_path), reference, rtol=1e-5, atol=1e-6)
    assert not store.shard_dir.exists() and not store.description_path.exists()


def test_a_rank_takes_its_own_share_first_then_the_others_from_the_end_and_the_owner_finalises(tmp_path, images):
    store = FeatureStore(tmp_path / "cache", "key")
    written = []
    real_write = store.write_shard
    store.write_shard = lambda start, features, bad: written.append(start) or real_write(start, features, bad)
    helper = Linear()
    stats = extract(store, images, helper, world=World(rank=1, size=2), finalise=False)
    assert written == [4, 8, 0]  # shards (0, 4), (4, 8), (8, 10): rank 1's own is (4, 8)
    assert (stats.rows_extracted, stats.world_size, helper.calls) == (10, 2, 5) and not store.is_complete()
    owner = Linear()
    stats = extract(store, images, owner, world=World(rank=0, size=2))
    assert owner.calls == 0 and (stats.rows_extracted, stats.resumed_from) == (0, 10)
    assert store.load().manifest["extraction"]["world_size"] == 2
    np.testing.assert_allclose(np.asarray(store.load().features), expected(images), rtol=1e-5, atol=1e-6)


def test_the_finaliser_says_who_holds_a_shard_waits_and_takes_it_over_when_freed(tmp_path, images):
    store = FeatureStore(tmp_path / "cache", "key")
    store.shard_dir.mkdir(parents=True)
    fd = os.open(store.shard_dir / "shard-000000004.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process's claim of rows 4-7 (another open file)
    (store.shard_dir / "shard-000000004.claim").write_text(json.dumps(
        {"rank": 1, "world": 2, "host": "elsewhere", "pid": 4321, "token": "another", "rows": [4, 8],
         "since": "12:34:56"}))
    threading.Timer(0.5, os.close, [fd]).start()  # its process ends without writing the shard
    said = []
    model = Linear()
    stats = extract(store, images, model, world=World(rank=0, size=2), log=said.append)
    assert said == ["waiting for rows 4-7: rank 1 of 2 (pid 4321 on elsewhere, since 12:34:56) is extracting them"]
    assert model.calls == 5 and stats.rows_extracted == 10 and store.is_complete()
    np.testing.assert_allclose(np.asarray(store.load().features), expected(images), rtol=1e-5, atol=1e-6)
