"""``bench list``: the registered extractors, tasks and protocols."""

from __future__ import annotations

from enum import Enum

import typer
from rich.table import Table

from bench.cli.common import _examples, app, out


class Kind(str, Enum):
    extractors = "extractors"
    tasks = "tasks"
    protocols = "protocols"


@app.command("list", epilog=_examples("list"))
def list_(
    kind: Kind = typer.Argument(..., help="extractors, tasks or protocols"),
    details: bool = typer.Option(False, "--details", help="extractors: grouped by family, with dim, parameters, licence and whether the weights are here (imports the model code)"),
) -> None:
    """List registered names with a one-line summary."""
    if kind is Kind.extractors and details:
        _list_extractor_details()
        return
    if kind is Kind.extractors:
        from extractors import EXTRACTORS as registry
    elif kind is Kind.tasks:
        from tasks import TASKS as registry
    else:
        from protocols import PROTOCOLS as registry
    from rich.markup import escape

    table = Table("name", "summary", box=None, pad_edge=False)
    for name, summary in registry.summaries().items():
        table.add_row(escape(name), escape(summary))
    for scheme in registry.schemes().values():
        table.add_row(escape(f"{scheme.name}:{scheme.argument}"), escape(scheme.summary))
    if registry.allow_files:
        own = f"your own {registry.kind}, defined in a Python file (docs/{kind.value}.md)"
        table.add_row("path/to/file.py:Name", escape(own))
    out.print(table)


def _list_extractor_details() -> None:
    from rich.markup import escape

    from bench.core import settings
    from extractors.catalog import catalog

    table = Table("family", "name", "dim", "parameters", "licence", "weights", box=None, pad_edge=False)
    family = None
    for row in catalog(settings.weights_dir()):
        shown = "" if row.family == family else row.family
        family = row.family
        size = "—" if row.parameters is None else f"{row.parameters / 1e6:,.1f} M"
        table.add_row(escape(shown), escape(row.name), str(row.dim), size, escape(row.licence), row.weights)
    out.print(table)
