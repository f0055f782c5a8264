"""The feature cache: hits run no forward pass, interrupted extractions resume, concurrent runs agree."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from bench.runner import RunOptions, load_pair
from tests.conftest import REPO, TINY


def _features(folder, **kw):
    options = RunOptions(progress=False, batch_size=4, shard_size=4, **kw)
    pair = load_pair(TINY, f"imagefolder:{folder}", options, log=print)
    cached, stats = pair.cached, pair.stats
    return np.array(cached.features), stats


def test_cache_hit_runs_no_forward_pass(image_folder, tiny_plugin):
    first, stats = _features(image_folder)
    assert tiny_plugin.forward_calls == 9 and not stats.cached  # 36 images / batch 4
    tiny_plugin.forward_calls = 0
    again, stats = _features(image_folder)
    assert tiny_plugin.forward_calls == 0 and stats.cached
    np.testing.assert_array_equal(first, again)


def test_changed_image_content_misses_the_cache(image_folder, tiny_plugin):
    _features(image_folder)
    victim = sorted((image_folder / "a").iterdir())[0]
    victim.write_bytes((image_folder / "b" / "b_000.png").read_bytes())
    tiny_plugin.forward_calls = 0
    _features(image_folder)
    assert tiny_plugin.forward_calls == 9


def test_interrupted_extraction_resumes_with_identical_features(image_folder, tiny_plugin, tmp_path, bench_home):
    reference, _ = _features(image_folder, cache_root=tmp_path / "reference-cache")
    tiny_plugin.forward_calls, tiny_plugin.fail_after = 0, 3
    with pytest.raises(KeyboardInterrupt):
        _features(image_folder)
    shard_dirs = list((bench_home / "cache" / "features").glob("*/shards"))
    assert len(shard_dirs) == 1 and len(list(shard_dirs[0].glob("*.json"))) == 3
    tiny_plugin.forward_calls, tiny_plugin.fail_after = 0, None
    resumed, stats = _features(image_folder)
    assert tiny_plugin.forward_calls == 6 and stats.resumed_from == 12
    np.testing.assert_array_equal(resumed, reference)
    assert not shard_dirs[0].exists()  # shards are folded into features.npy when complete


def test_a_failed_extraction_leaves_no_nameless_entry(image_folder, tiny_plugin, bench_home):
    """An extraction that fails before its first shard leaves nothing in the cache; one that fails after keeps its
    complete shards for a resume, in an entry `bench cache ls` names."""
    from bench.cache import cache_entries, entry_state
    from bench.core.errors import BadImageError

    cache = bench_home / "cache"
    tiny_plugin.fail_after = 0  # the extractor fails on the first batch
    with pytest.raises(KeyboardInterrupt):
        _features(image_folder, num_workers=0)
    assert cache_entries(cache) == []
    first = sorted((image_folder / "a").iterdir())[0]
    good = first.read_bytes()
    first.write_bytes(good[: len(good) // 3])  # the first image cannot be read
    tiny_plugin.fail_after = None
    with pytest.raises(BadImageError):
        _features(image_folder, num_workers=0)
    assert cache_entries(cache) == []
    first.write_bytes(good)
    tiny_plugin.forward_calls, tiny_plugin.fail_after = 0, 3  # three shards of four rows, then a stop
    with pytest.raises(KeyboardInterrupt):
        _features(image_folder, num_workers=0)
    (store,) = cache_entries(cache)
    state = entry_state(store)
    assert (state.status, state.extractor, state.detail) == ("partial", "tiny_vit.py:TinyViT", "3 complete shard(s)")
    assert state.created


def _extract_script(folder, export, sleep):
    return textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from bench.core.registry import import_target
        cls = import_target({TINY!r})
        cls.sleep_seconds = {sleep}
        from typer.testing import CliRunner
        from bench.cli import app
        result = CliRunner().invoke(app, ["extract", "-e", {TINY!r}, "-t", "imagefolder:{folder}",
                                          "--export", {str(export)!r}, "--batch-size", "4", "--shard-size", "4",
                                          "--no-progress"])
        print(result.output)
        print("forward calls:", cls.forward_calls)
        sys.exit(result.exit_code)
        """
    )


def test_killed_process_resumes_from_its_complete_shards(image_folder, tmp_path, bench_home, tiny_plugin):
    script = tmp_path / "slow_extract.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(REPO)!r})
            from bench.core.registry import import_target
            import_target({TINY!r}).sleep_seconds = 0.3
            from bench.runner import RunOptions, load_pair
            options = RunOptions(progress=False, batch_size=4, shard_size=4)
            load_pair({TINY!r}, "imagefolder:{image_folder}", options, log=print)
            """
        )
    )
    env = {**os.environ, "BENCH_HOME": str(bench_home)}
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    features_dir = bench_home / "cache" / "features"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(features_dir.glob("*/shards/*.json"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(features_dir.glob("*/shards/*.json")))
    assert 2 <= done < 9, "the process should have been killed mid-way"
    assert not list(features_dir.glob("*/manifest.json"))
    reference, _ = _features(image_folder, cache_root=tmp_path / "reference-cache")
    tiny_plugin.forward_calls = 0
    resumed, stats = _features(image_folder)
    assert stats.resumed_from >= 4 * done and tiny_plugin.forward_calls == 9 - stats.resumed_from // 4
    np.testing.assert_array_equal(resumed, reference)


@pytest.mark.slow  # suite time (15 s); processes sharing one entry stay in the default run: test_distributed.py
def test_two_processes_on_one_key_agree(image_folder, tmp_path, bench_home):
    env = {**os.environ, "BENCH_HOME": str(bench_home)}
    procs = []
    for name in ("one", "two"):
        script = tmp_path / f"{name}.py"
        script.write_text(_extract_script(image_folder, tmp_path / name, sleep=0.05))
        procs.append(subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    calls = []
    for proc in procs:
        output, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, output
        calls.append(int(output.split("forward calls:")[1].split()[0]))
    assert sum(calls) == 9, calls  # 9 shards of one batch: each extracted once, by one of the two processes
    one = np.load(tmp_path / "one" / "features.npy")
    two = np.load(tmp_path / "two" / "features.npy")
    np.testing.assert_array_equal(one, two)
    entries = [p for p in (bench_home / "cache" / "features").iterdir() if p.is_dir()]
    assert len(entries) == 1
    manifest = json.loads((entries[0] / "manifest.json").read_text())
    assert manifest["rows"] == 36 and not (entries[0] / "shards").exists()
