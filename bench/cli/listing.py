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
    details: bool = typer.Option(False, "--details", help="extractors: grouped by family, with dim, parameters, licence and whether the weights are here (imports the model code); tasks: kind, images, classes, licence and whether the data are here"),
) -> None:
    """List registered names with a one-line summary."""
    if kind is Kind.extractors and details:
        _list_extractor_details()
        return
    if kind is Kind.tasks and details:
        _list_task_details()
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


def _list_task_details() -> None:
    """Every built-in task: kind, published size, classes, licence, and whether its data are in its default folder
    (``$BENCH_HOME/data/...``; nothing is read or hashed: ``bench data check TASK`` checks the files)."""
    from rich.markup import escape

    from bench.core import settings
    from bench.suite import presence
    from tasks import TASKS, get_task

    table = Table("name", "kind", "images", "classes", "licence", "data", box=None, pad_edge=False)
    missing = []
    for name in TASKS.names():
        task, found = get_task(name), presence(name, settings.data_dir())
        where = found.where if found.root is None else f"here: {found.where}" if found.present else "absent"
        if not found.present:
            missing.append(name)
        size = "—" if task.full_set_images is None else f"{task.full_set_images:,}"
        classes = str(len(task.expected_classes)) if task.expected_classes else "—"
        table.add_row(escape(name), task.kind, size, classes, escape(task.licence or "—"), escape(where))
    out.print(table)
    if missing:
        out.print(f"absent from {settings.data_dir()}: {', '.join(missing)}. `bench data info TASK` says how to get "
                  "each; --data-root reads a copy elsewhere", markup=False, highlight=False)
