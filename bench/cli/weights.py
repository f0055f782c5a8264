"""``bench weights``: where each extractor's weights are, and fetching them."""

from __future__ import annotations

import typer
from rich.table import Table

from bench.cli.common import _examples, _log, _user_errors, app, out

weights_app = typer.Typer(no_args_is_help=True, help="Weight files: where they are, and fetching them.")
app.add_typer(weights_app, name="weights")


@weights_app.command("list", epilog=_examples("weights list"))
def weights_list() -> None:
    """Each extractor's weights: not needed, present (where), missing (where from)."""
    from rich.markup import escape

    from bench.core import settings
    from extractors import EXTRACTORS, get_extractor
    from extractors.sources import status

    table = Table("extractor", "status", "detail", box=None)
    for name in EXTRACTORS.names():
        try:
            state, detail = status(get_extractor(name), settings.weights_dir())
        except Exception as exc:  # a broken plugin must not hide the others
            state, detail = "error", f"{type(exc).__name__}: {exc}"
        colour = {"present": "green", "missing": "yellow", "bad": "red", "error": "red"}.get(state, "")
        table.add_row(escape(name), f"[{colour}]{state}[/]" if colour else state, escape(detail))
    out.print(table)
    out.print(f"weights folder: {settings.weights_dir()}", markup=False)


@weights_app.command("fetch", epilog=_examples("weights fetch"))
def weights_fetch(name: str = typer.Argument(..., help="extractor name")) -> None:
    """Download an extractor's weights into $BENCH_HOME/weights/<name>/ and verify their sha256."""
    from bench.core import settings
    from extractors import get_extractor
    from extractors.sources import resolve

    with _user_errors():
        entry = get_extractor(name)
        if not entry.needs_weights:
            out.print(f"{name} needs no weights", markup=False)
            return
        resolved = resolve(entry, explicit=None, weights_home=settings.weights_dir(), log=_log, fetching=True)
    out.print(f"{name}: {resolved.path} ({resolved.origin})", markup=False)
