"""The ``bench`` command line (typer + rich), one module per command group: ``common`` (the app, the consoles and
the helpers every group uses), ``options`` (the options `bench run` and `bench extract` share), ``listing``,
``run`` (run, extract), ``board`` (leaderboard, compare), ``train`` (check-extractor, train), ``plots`` (plot,
batch-effect), ``submissions`` (submit, verify), ``data``, ``cache``, ``weights`` and ``suite``. Model and data code is
imported inside the commands, so that ``bench --help`` and ``bench list`` stay fast and import no model code."""

from __future__ import annotations

from bench.core.settings import use_scipy_array_api

use_scipy_array_api()  # before anything imports scipy: the linear probe's GPU path needs it (the function says why)

# The command modules register their commands as they are imported; `bench --help` lists the commands in that order
# (and the sub-apps plot, data, cache, weights after them, in theirs): keep this order.
# isort: off
from bench.cli import listing, run, board, train, plots, submissions, data, cache, weights, suite  # noqa: E402, F401
# isort: on
from bench.cli.common import EXAMPLES, _split, app  # noqa: E402

__all__ = ["EXAMPLES", "_split", "app"]
