"""Where hemabench keeps things: ``$BENCH_HOME`` (default: the user cache folder) holds cache/, data/, weights/;
results go to ``$BENCH_RESULTS`` (default: ``results`` in the working folder), the one default of every command
that writes or reads results (run, batch-effect, plot, train's evaluations, leaderboard, compare)."""

from __future__ import annotations

import os
from pathlib import Path


def bench_home() -> Path:
    env = os.environ.get("BENCH_HOME")
    if env:
        return Path(env).expanduser().resolve()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("hemabench"))


def cache_dir() -> Path:
    return bench_home() / "cache"


def data_dir() -> Path:
    return bench_home() / "data"


def weights_dir() -> Path:
    return bench_home() / "weights"


def results_dir() -> Path:
    env = os.environ.get("BENCH_RESULTS")
    return Path(env).expanduser() if env else Path("results")
