"""``bench suite``: the hematology suite (:mod:`bench.core.suite`): ``list`` its tasks and whether their data are
here, ``run`` it for one or more extractors on the data present."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from bench.cli.common import _check_names, _examples, _fail, _results, _split, _user_errors, app, out
from bench.cli.options import (
    BATCH_OPTION,
    DECODE_OPTION,
    DEVICE_OPTION,
    OFFLINE_OPTION,
    PRECISION_OPTION,
    PROGRESS_OPTION,
    WORKERS_OPTION,
    Decode,
    Precision,
)

suite_app = typer.Typer(no_args_is_help=True, help="The hematology suite: every public cell data set, few-shot, "
                        "generalisation, robustness; one command.")
app.add_typer(suite_app, name="suite")

DATA_HOME_HELP = "the folder holding each task's data folder (default: $BENCH_HOME/data)"


@suite_app.command("list", epilog=_examples("suite list"))
def suite_list(data_home: Optional[Path] = typer.Option(None, metavar="DIR", help=DATA_HOME_HELP)) -> None:
    """The suite's tasks: kind, published size, licence, and whether their data are here (nothing is read)."""
    from rich.markup import escape

    from bench.core import settings
    from bench.suite import presence

    home = data_home or settings.data_dir()
    from bench.core import suite as definition

    table = Table("task", "kind", "images", "licence", "data", box=None, pad_edge=False)
    absent = []
    with _user_errors():
        found = [presence(name, home) for name in definition.TASKS]
    for item in found:
        size = "—" if item.full_set_images is None else f"{item.full_set_images:,}"
        table.add_row(escape(item.task), item.kind, size, escape(item.licence or "—"),
                      escape(f"here: {item.where}" if item.present else "absent"))
        if not item.present:
            absent.append(item)
    out.print(table)
    out.print(f"{len(found) - len(absent)} of {len(found)} tasks have their data in {home}; the white-cell sets also "
              "give the generalisation matrix, robustness and the robustness index (docs/suite.md)",
              markup=False, highlight=False)
    for item in absent:
        out.print(f"absent: {item.task}: {item.obtain}", markup=False, highlight=False)


@suite_app.command("run", epilog=_examples("suite run"))
def suite_run(
    extractor: List[str] = typer.Option(..., "--extractor", "-e", metavar="NAME", help="extractor name(s)"),
    task: Optional[List[str]] = typer.Option(None, "--task", "-t", metavar="NAME",
                                             help="only these tasks of the suite (default: every one whose data are "
                                                  "here)"),
    results: Optional[Path] = typer.Option(None, metavar="DIR", help="results folder (default: $BENCH_RESULTS, "
                                           "else ./results)"),
    data_home: Optional[Path] = typer.Option(None, metavar="DIR", help=DATA_HOME_HELP),
    board: Optional[Path] = typer.Option(None, metavar="HTML", help="write the board with its suite view here "
                                         "(default: <results>/leaderboard.html)"),
    device: str = DEVICE_OPTION,
    precision: Precision = PRECISION_OPTION,
    decode: Decode = DECODE_OPTION,
    batch_size: Optional[int] = BATCH_OPTION,
    num_workers: Optional[int] = WORKERS_OPTION,
    progress: bool = PROGRESS_OPTION,
    offline: bool = OFFLINE_OPTION,
) -> None:
    """Run the suite for each extractor on every task whose data are here (the others are named, with how to get
    them): cell tasks with kNN, the linear probe and few-shot curves; for the white-cell sets also the
    generalisation matrix, robustness to perturbations and the robustness index over sites. Results already there
    and current are kept. Writes a summary per extractor and the board with its suite view."""
    extractors = _split(extractor)
    _check_names(extractors)
    from bench.core import settings
    from bench.runner import RunOptions, run_pair
    from bench.suite import plan_suite, write_summaries

    home = data_home or settings.data_dir()
    with _user_errors():
        plan = plan_suite(home, _split(task) or None)
        options = RunOptions(results_dir=_results(results), data_home=home, offline=offline, device=device,
                             precision=precision.value, decode=decode.value, batch_size=batch_size,
                             num_workers=num_workers, progress=progress)
    for item in plan.missing:
        out.print(f"absent, skipped: {item.task} (looked in {item.where}): {item.obtain}", markup=False,
                  highlight=False)
    if not plan.items:
        _fail(f"no task of the suite has its data in {home}; `bench suite list` says how to get each", 1)
    pairs = [(e, name, protocols) for e in extractors for name, protocols in plan.items]
    out.print(f"the suite: {len(plan.present)} task(s) present, {len(plan.items)} evaluation(s) x "
              f"{len(extractors)} extractor(s) = {len(pairs)} runs", markup=False, highlight=False)
    failed, t0 = [], time.perf_counter()
    for number, (extractor_name, task_name, protocols) in enumerate(pairs, 1):
        elapsed = time.perf_counter() - t0
        out.print(f"suite [{number}/{len(pairs)}, {elapsed / 60:.1f} min]: {extractor_name} on {task_name} "
                  f"({', '.join(protocols)})", markup=False, highlight=False)
        outcome = run_pair(extractor_name, task_name, list(protocols), options, log=_say)
        if outcome.status == "failed":
            failed.append((extractor_name, task_name, outcome.error or "failed"))
        failed.extend((extractor_name, task_name, f"{f.protocol}: {f.error}") for f in outcome.failed_protocols)
    written = write_summaries(options.results_dir, extractors, [name for name, _ in plan.items])
    target = board or options.results_dir / "leaderboard.html"
    _write_board(options.results_dir, target)
    out.print(f"the suite ran in {(time.perf_counter() - t0) / 60:.1f} min; summaries: "
              + ", ".join(str(p) for p in written.values()) + f"; board: {target}", markup=False, highlight=False)
    for extractor_name, task_name, why in failed:
        out.print(f"failed: {extractor_name} / {task_name}: {why}", markup=False, highlight=False)
    if failed:
        raise typer.Exit(1)


def _say(message: str) -> None:
    out.print(message, markup=False, highlight=False)


def _write_board(results_dir: Path, target: Path) -> None:
    from bench.core.files import atomic_write_bytes
    from leaderboard.tables import read_results, render

    problems: list[str] = []
    html = render(read_results(results_dir, problems), "html", problems=problems)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, html.encode())
