"""``bench check-extractor`` and ``bench train``: an extractor's contract checked, and DinoBloom trained with its
exports evaluated."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from bench.cli.common import (
    RESULTS_HELP,
    Precision,
    _check_names,
    _examples,
    _log,
    _results,
    _split,
    _state,
    _user_errors,
    app,
    out,
)
from bench.cli.options import DEVICE_OPTION, OFFLINE_OPTION, PRECISION_OPTION, WEIGHTS_OPTION
from bench.core.metrics import LABEL_METRICS, LABELS


@app.command("check-extractor", epilog=_examples("check-extractor"))
def check_extractor_cmd(
    name: str = typer.Argument(..., help="extractor name or path/to/file.py:Name"),
    weights: Optional[Path] = WEIGHTS_OPTION,
    offline: bool = OFFLINE_OPTION,
    device: str = DEVICE_OPTION,
    precision: Precision = PRECISION_OPTION,
) -> None:
    """Build the extractor (finding its weights as `bench run` does) and check its contract on a tiny batch."""
    _check_names([name])
    from bench.checks import check_extractor
    from bench.extract import pick_device
    from bench.runner import RunOptions, build_extractor, resolve_entry

    with _user_errors():
        options = RunOptions(weights=weights, offline=offline, device=device, precision=precision.value)
        built = build_extractor(resolve_entry(name), options, log=_log)
        entry = built.entry
        checks = check_extractor(entry, built.model, device=pick_device(device))
    out.print(f"{entry.name} in {entry.precision} on {pick_device(device)}", markup=False)
    from rich.markup import escape

    table = Table("check", "result", "detail", box=None)
    for check in checks:
        table.add_row(check.name, "[green]pass[/]" if check.passed else "[red]FAIL[/]", escape(check.detail))
    out.print(table)
    out.print(f"{entry.name}: dim {entry.dim}", markup=False)
    if not all(check.passed for check in checks):
        raise typer.Exit(1)


@app.command(epilog=_examples("train"))
def train(
    preset: str = typer.Option(..., help="tiny-cpu, s, b, l or g"),
    data: Path = typer.Option(..., help="image folder, or a folder of .txt image lists (the authors' format)"),
    out: Path = typer.Option(..., help="run folder: checkpoint.pth, log.jsonl, exports/"),
    eval_task: Optional[str] = typer.Option(None, help="evaluate every export with kNN on this task"),
    eval_data_root: Optional[Path] = typer.Option(None, help="--data-root for the evaluation task"),
    eval_protocol: List[str] = typer.Option(["knn-20"], help="protocol(s) for the evaluation of exports"),
    results: Optional[Path] = typer.Option(None, help=RESULTS_HELP + " (the exports' evaluations)"),
    max_steps: Optional[int] = typer.Option(None, min=1, help="stop after this many iterations"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override a config field: --set base_lr=1e-4"),
) -> None:
    """Train DinoBloom (DINOv2 without local crops); export the teacher every N iterations and evaluate it."""
    if eval_task is not None:  # checked before training, not at the first export
        _check_names(tasks=[eval_task], protocols=_split(eval_protocol))
    from bench.runner import RunOptions, run_pair
    from dinobloom_train.train import main_cli

    options = RunOptions(results_dir=_results(results), data_root=eval_data_root, progress=False)

    def evaluate_export(path: Path) -> None:
        if eval_task is None:
            return
        _log(f"export {path.name}: evaluating it on {eval_task} ({', '.join(_split(eval_protocol))}), which "
             "extracts its features first; training goes on after")
        outcome = run_pair(f"trained:{path}", eval_task, _split(eval_protocol), options, log=_log)
        for record in outcome.records:
            _log(f"export {path.name}: {eval_task} {record.protocol.name} "  # (label metrics are never None)
                 + ", ".join(f"{LABELS[m]} {100 * record.metrics.mean[m]:.1f}" for m in LABEL_METRICS))  # pyright: ignore[reportOperatorIssue]
        if outcome.status == "failed":
            if outcome.bug or _state["debug"]:
                _log(outcome.traceback or "")
            _log(f"evaluation of {path.name} failed: {outcome.error}")

    with _user_errors():
        trainer = main_cli(preset, str(data), str(out), list(set_ or []), max_steps, log=_log,
                           on_export=evaluate_export)
    if trainer.dist.main:
        _print_exports(trainer.out, eval_task, options.results_dir)


def _print_exports(run_folder: Path, eval_task: Optional[str], results: Path) -> None:
    """Where a training run's exports are and the command that evaluates one."""
    import shlex

    exports = sorted((run_folder / "exports").glob("teacher_*.pth"))
    if not exports:
        return
    last = shlex.quote(f"trained:{exports[-1]}")
    out.print(f"{len(exports)} export(s) in {run_folder / 'exports'}; evaluate the last one with: bench run -e {last} "
              f"-t {shlex.quote(eval_task) if eval_task else 'TASK'}", markup=False, highlight=False)
    if eval_task is not None:
        out.print(f"the exports' evaluations on {eval_task}, ranked: bench leaderboard --results "
                  f"{shlex.quote(str(results))}", markup=False, highlight=False)
