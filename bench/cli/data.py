"""``bench data``: where to get a data set, and checking a copy of it (layout, split)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bench.cli.common import _examples, _user_errors, app, out

data_app = typer.Typer(no_args_is_help=True, help="Data sets: where to get them, and checking a copy.")
app.add_typer(data_app, name="data")


@data_app.command("check", epilog=_examples("data check"))
def data_check(
    task: str = typer.Argument(..., help="task name"),
    data_root: Optional[Path] = typer.Option(None, help="the task's data folder (default: $BENCH_HOME/data/...)"),
    verify: bool = typer.Option(True, help="decode-check every image with PIL (slower)"),
) -> None:
    """Validate a data set's layout: class counts, duplicates, non-image and unreadable files."""
    from bench.core import settings
    from tasks import get_task
    from tasks.checks import check_dataset

    with _user_errors():
        report = check_dataset(get_task(task), data_root, settings.data_dir(), verify=verify)
    out.print(report.format(), markup=False, highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("split", epilog=_examples("data split"))
def data_split(
    task: str = typer.Argument(..., help="task name"),
    data_root: Optional[Path] = typer.Option(None, help="the task's data folder (default: $BENCH_HOME/data/...)"),
    out_path: Optional[Path] = typer.Option(None, "--out", help="write the split here: path,label,fold (.csv or "
                                            ".csv.gz)"),
) -> None:
    """The task's split on this copy of its data: how many samples, its digest (the split_sha256 every result
    records) and whether it is the task's canonical split; where it is not, which files differ (absent, added,
    relabelled). --out writes it as data. Run on a complete copy of a data set, this gives the digest to pin
    (TaskCard.canonical_split_sha256, docs/submitting.md)."""
    from bench.core import settings
    from tasks import get_task

    with _user_errors():
        chosen = get_task(task)
        dataset = chosen.load(data_root, data_home=settings.data_dir())
        status, details = chosen.split_status(dataset)
    if out_path is not None:
        from tasks.splits import write_split_csv

        write_split_csv(dataset.samples.sort_values("path"), out_path)
    written = "" if out_path is None else f"; written to {out_path}"
    out.print(f"{chosen.name}: {len(dataset):,} samples, split_sha256 {dataset.split_fingerprint()}: {status}"
              f"{written}", markup=False, highlight=False)
    for line in details:
        out.print(f"  - {line}", markup=False, highlight=False)


@data_app.command("info", epilog=_examples("data info"))
def data_info(task: str = typer.Argument(..., help="task name")) -> None:
    """Where to obtain a task's data, its licence and the expected layout."""
    from bench.core import settings
    from tasks import get_task
    from tasks.checks import describe_task

    with _user_errors():
        text = describe_task(get_task(task), settings.data_dir())
    out.print(text, markup=False, highlight=False)
