"""torchrun: several processes share one feature cache entry (whole shards each), the pair's owner finalises and
evaluates; the result is byte-identical to one process; a killed rank is named and any world size resumes."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from filelock import FileLock
from typer.testing import CliRunner

from bench.cache import FeatureStore, missing_units
from bench.cli import app
from bench.extract import share_order
from bench.runner import RunOptions, load_pair, run_pair
from tests.conftest import REPO

PLUGIN = f"{REPO / 'tests' / 'plugins' / 'tiny_vit.py'}:DiesInRank"  # TinyViT that can die or sleep on request
SETTINGS = ["--batch-size", "2", "--shard-size", "4", "--no-progress"]  # 36 images: 9 shards of 2 batches


# -- the pieces, in one process ------------------------------------------------------------------------------
def test_shards_are_cut_on_a_fixed_grid_whatever_is_done():
    assert missing_units(10, 4, []) == [(0, 4), (4, 8), (8, 10)]
    from bench.cache import Shard

    done = [Shard(0, 4, ()), Shard(8, 10, ())]
    assert missing_units(10, 4, done) == [(4, 8)]
    legacy = [Shard(0, 6, ())]  # a shard of an older grid: the rest is cut back onto the grid
    assert missing_units(13, 4, legacy) == [(6, 8), (8, 12), (12, 13)]


def test_each_rank_takes_its_share_first_then_the_others_from_the_end():
    units = list(range(7))
    assert share_order(units, 0, 3) == [0, 3, 6, 5, 4, 2, 1]
    assert share_order(units, 2, 3) == [2, 5, 6, 4, 3, 1, 0]
    assert share_order(units, 0, 1) == units


def test_a_held_shard_is_skipped_and_a_dead_claimant_is_named(tmp_path):
    store = FeatureStore(tmp_path, "k")
    other = store.claim((0, 4), {"rank": 1, "world": 2})  # as another process: its own lock object
    assert other is not None
    assert store.claim((0, 4), {"rank": 0, "world": 2}) is None  # held: skipped, not waited for
    mine = store.claim((4, 8), {"rank": 0, "world": 2})
    assert mine is not None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    info = json.loads((store.shard_dir / "shard-000000000.claim").read_text())
    (store.shard_dir / "shard-000000000.claim").write_text(json.dumps({**info, "pid": int(dead.stdout)}))
    said = store.unfinished(10, 4)
    assert said[0].startswith("rows 0-3 (shard-000000000): claimed by rank 1 of 2") and "no longer exists" in said[0]
    assert said[1].startswith("rows 4-7") and "rank 0 of 2" in said[1]
    assert said[2] == "rows 8-9 (shard-000000008): not started"
    store.write_shard(4, np.zeros((4, 2), np.float32), [])
    mine.release()
    other.release()
    assert store.claim((4, 8), {"rank": 0, "world": 1}) is None  # complete by now
    held = FileLock(str(store.shard_dir / "shard-000000000.lock"))
    held.acquire()
    waited = []
    held.release()
    claim = store.claim((0, 4), {"rank": 0, "world": 1}, wait=True, on_wait=waited.append)
    assert claim is not None and not waited  # free again (its holder gone): taken over
    claim.release()


# -- real torchrun launches on CPU (gloo) --------------------------------------------------------------------
def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bench(args: list[str], home, nproc: int = 1, **env_extra) -> subprocess.CompletedProcess:
    """``python -m bench ...``, or under ``torchrun --nproc-per-node nproc -m bench ...``."""
    env = {**os.environ, "BENCH_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env_extra}
    launcher = ["-m", "bench"]
    if nproc > 1:
        launcher = ["-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port", str(_port()),
                    "--monitor-interval", "0.2", "-m", "bench"]
    return subprocess.run([sys.executable, *launcher, *args], capture_output=True, text=True, timeout=300, env=env,
                          cwd=REPO)


def _entry_features(home) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in (home / "cache" / "features").glob("*/features.npy")}


def _results(folder) -> dict[str, tuple]:
    """Per result: its metrics, the digest of what it was computed from, the feature key, and its predictions."""
    out = {}
    for path in sorted(folder.rglob("*.json")):
        record = json.loads(path.read_text())
        predictions = path.with_name(path.stem + ".predictions.csv").read_bytes()
        out[str(path.relative_to(folder))] = (record["metrics"], record["inputs"]["digest"],
                                             record["extractor"]["feature_key"], predictions)
    return out


def test_two_ranks_share_the_pairs_and_match_one_process_byte_for_byte(image_folder, tmp_path, monkeypatch):
    args = ["run", "-e", PLUGIN, "-e", "color-histogram", "-t", f"imagefolder:{image_folder}", *SETTINGS]
    # the one-process reference runs here, in this process (the same command; one thread, as each rank has)
    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "h1"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = CliRunner().invoke(app, [*args, "--results", str(tmp_path / "r1")])
    finally:
        torch.set_num_threads(threads)
    assert one.exit_code == 0, one.output[-3000:]
    two = _bench([*args, "--results", str(tmp_path / "r2")], tmp_path / "h2", nproc=2, HEMABENCH_TEST_SLEEP="0.25")
    assert two.returncode == 0, two.stderr[-3000:] + two.stdout[-2000:]
    features = _entry_features(tmp_path / "h1")
    assert _entry_features(tmp_path / "h2") == features and len(features) == 2
    assert _results(tmp_path / "r2") == _results(tmp_path / "r1") and len(_results(tmp_path / "r1")) == 6
    records = [json.loads(p.read_text()) for p in (tmp_path / "r2").rglob("knn-1.json")]
    assert all(r["environment"]["world_size"] == 2 for r in records)
    vit = next(r for r in records if "DiesInRank" in r["extractor"]["name"])
    assert 0 < vit["timings"]["rows_extracted"] < 36  # rank 0 owns this pair; rank 1 extracted the other shards
    assert "[rank 1/2] color-histogram on imagefolder" in two.stderr  # the second pair is rank 1's
    assert "knn-1" in two.stdout and two.stdout.count("imagefolder") >= 6  # rank 0 prints every pair's results


def _crash(image_folder, home, results) -> subprocess.CompletedProcess:
    """2 ranks; rank 1 is SIGKILLed at its 4th forward pass, while rank 0 is still at work."""
    run = _bench(["run", "-e", PLUGIN, "-t", f"imagefolder:{image_folder}", "-p", "knn-1", "--results", str(results),
                  *SETTINGS],
                 home, nproc=2, HEMABENCH_TEST_DIE_RANK="1", HEMABENCH_TEST_DIE_AFTER="3", HEMABENCH_TEST_SLEEP="0.4")
    assert run.returncode != 0
    text = run.stdout + run.stderr
    assert re.search(r"rank\s*: 1 \(local_rank: 1\)\s*\n\s*exitcode\s*: -9", text), text[-3000:]  # torchrun's report
    named = re.search(r"rows (\d+)-(\d+) \(shard-\d+\): claimed by rank 1 of 2 \(pid \d+ on [^,]+, a process that "
                      r"no longer exists", text)
    assert named, text[-3000:]  # the rank and its shard, said by rank 0 when torchrun stops it
    assert "run the same command again, with any number of processes" in text
    shards = list((home / "cache" / "features").glob("*/shards/*.json"))
    assert 0 < len(shards) < 9 and not list((home / "cache" / "features").glob("*/manifest.json"))
    return run


# -m slow (suite time: 22 s with 1 rank, 36 s with 3); the two-rank sharing test above stays in the default run
@pytest.mark.slow
@pytest.mark.parametrize("resume_world", [1, 3])
def test_a_killed_rank_fails_the_run_by_name_and_any_world_size_resumes(image_folder, tmp_path, bench_home,
                                                                        resume_world):
    reference = load_pair(PLUGIN, f"imagefolder:{image_folder}",
                          RunOptions(progress=False, batch_size=2, shard_size=4, cache_root=tmp_path / "reference"),
                          log=print)
    _crash(image_folder, bench_home, tmp_path / "results")
    done = len(list((bench_home / "cache" / "features").glob("*/shards/*.json")))
    if resume_world == 1:  # a plain process, here
        outcome = run_pair(PLUGIN, f"imagefolder:{image_folder}", ["knn-1"], RunOptions(
            results_dir=tmp_path / "results", progress=False, batch_size=2, shard_size=4), log=print)
        assert outcome.status == "ok", outcome.error
    else:
        resumed = _bench(["run", "-e", PLUGIN, "-t", f"imagefolder:{image_folder}", "-p", "knn-1", "--results",
                          str(tmp_path / "results"), *SETTINGS], bench_home, nproc=resume_world)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    entry = next((bench_home / "cache" / "features").glob("*/features.npy"))
    np.testing.assert_array_equal(np.load(entry), reference.features)
    record = json.loads(next((tmp_path / "results").rglob("knn-1.json")).read_text())
    assert record["timings"]["resumed_from_row"] >= 4 * done  # the complete shards were kept
    assert record["timings"]["rows_extracted"] <= 36 - 4 * done


def test_a_cache_folder_that_a_rank_does_not_see_is_refused(image_folder, tmp_path):
    """Two ranks started as torchrun starts them (its environment variables), each with its own BENCH_HOME, as
    on two nodes without a shared file system: both refuse at the start, naming the folder."""
    port = _port()
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "BENCH_HOME": str(tmp_path / f"node{rank}"), "PYTHONPATH": str(REPO), "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "bench", "extract", "-e", "color-histogram", "-t", f"imagefolder:{image_folder}",
             "--export", str(tmp_path / "export"), "--device", "cpu"],
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err[-2000:]
        assert f"rank 1 on {socket.gethostname()} does not see the cache folder {tmp_path / 'node0' / 'cache'}" in err
    assert not (tmp_path / "export").exists()
