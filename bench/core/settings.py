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


def use_scipy_array_api() -> bool:
    """Switch on scipy's array-API support for this process, which scikit-learn's GPU path of the linear probe
    needs; scipy reads the switch (``SCIPY_ARRAY_API``) once, at its first import, so this works only before
    anything imports scipy. The ``bench`` command calls it first thing; a script that wants the probe on a GPU calls
    it (or exports ``SCIPY_ARRAY_API=1``) before its other imports. Numpy inputs behave as before. Not set where
    scipy is imported already, so that the variable never claims what scipy did not do; ``SCIPY_ARRAY_API=0`` in
    the environment keeps it off. Whether it is on now."""
    import sys

    if "scipy" not in sys.modules:
        os.environ.setdefault("SCIPY_ARRAY_API", "1")
    return os.environ.get("SCIPY_ARRAY_API") == "1"

