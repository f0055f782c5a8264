"""``bench run`` and ``bench extract``: features extracted (cached), protocols run or features exported, alone or
under torchrun."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from bench.cli.common import (
    COMMA_NOTE,
    RESULTS_HELP,
    USAGE_ERRORS,
    Precision,
    _check_names,
    _examples,
    _fail,
    _interrupted,
    _log,
    _results,
    _split,
    _state,
    _user_errors,
    app,
    out,
)
from bench.cli.options import (
    BATCH_OPTION,
    DATA_ROOT_OPTION,
    DECODE_OPTION,
    DEVICE_OPTION,
    EXTRACTOR_NAMES_HELP,
    OFFLINE_OPTION,
    OVERWRITE_HELP,
    PRECISION_OPTION,
    PROGRESS_OPTION,
    SHARD_OPTION,
    SKIP_BAD_OPTION,
    SPLIT_FILE_HELP,
    TASK_NAMES_HELP,
    WEIGHTS_OPTION,
    WORKERS_OPTION,
    Decode,
    Overwrite,
)
from bench.core.errors import HemabenchError
from bench.core.metrics import LABEL_METRICS, LABELS


@app.command(epilog=_examples("run"))
def run(
    extractor: List[str] = typer.Option(..., "--extractor", "-e", metavar="NAME", help=EXTRACTOR_NAMES_HELP),
    task: List[str] = typer.Option(..., "--task", "-t", metavar="NAME", help=TASK_NAMES_HELP),
    protocol: Optional[List[str]] = typer.Option(None, "--protocol", "-p", metavar="NAME", help="protocol(s) (default: "
                                                 "the task's)"),
    results: Optional[Path] = typer.Option(None, metavar="DIR", help=RESULTS_HELP),
    overwrite: Overwrite = typer.Option(Overwrite.only_missing, metavar="POLICY", help=OVERWRITE_HELP),
    data_root: Optional[Path] = DATA_ROOT_OPTION,
    split_file: Optional[Path] = typer.Option(None, metavar="CSV", help=SPLIT_FILE_HELP),
    weights: Optional[Path] = WEIGHTS_OPTION,
    device: str = DEVICE_OPTION,
    precision: Precision = PRECISION_OPTION,
    decode: Decode = DECODE_OPTION,
    batch_size: Optional[int] = BATCH_OPTION,
    shard_size: int = SHARD_OPTION,
    num_workers: Optional[int] = WORKERS_OPTION,
    progress: bool = PROGRESS_OPTION,
    offline: bool = OFFLINE_OPTION,
    skip_bad_images: bool = SKIP_BAD_OPTION,
) -> None:
    """Extract features (cached), run the protocols and write one result file per protocol. What a name says is
    the result's name: -t acevedo@folds=authors (the authors' folds), -t acevedo=>bmc (domain shift), -t a+b (batch
    effect), -e dinobloom-s+mean (another pooling). Under torchrun the ranks share the work (docs/distributed.md)."""
    extractors, tasks, protocols = _split(extractor), _split(task), _split(protocol) or None
    if weights is not None and len(extractors) != 1:
        _fail("--weights applies to one extractor; name exactly one --extractor with it", 2)
    if (data_root is not None or split_file is not None) and len(tasks) != 1:
        _fail("--data-root and --split-file apply to one task; run the tasks one at a time", 2)
    _check_names(extractors, tasks, protocols)
    from bench.runner import RunOptions, help_pair, run_pair

    with _user_errors():
        options = RunOptions(
            results_dir=_results(results), data_root=data_root, split_file=split_file, weights=weights, offline=offline,
            overwrite=overwrite.value, device=device, precision=precision.value, decode=decode.value,
            batch_size=batch_size, num_workers=num_workers, skip_bad_images=skip_bad_images, progress=progress,
            shard_size=shard_size,
        )
        world = _join(device, {"cache": options.extraction().cache_root, "results": options.results_dir})
        options = replace(options, progress=progress and world.rank == 0)
    log = _rank_log(world)
    outcomes, loaded = [], {}
    pairs = [(e, t) for e in extractors for t in tasks]
    _check_plans(pairs, protocols, options)
    with _stopped(world):
        for index, (extractor_name, task_name) in enumerate(pairs):
            if not world.owns(index):  # under torchrun: help the pair's owner extract its features
                help_pair(extractor_name, task_name, protocols, options, log, world, world.owner(index), loaded)
                continue
            log(f"{extractor_name} on {task_name}")
            outcome = run_pair(extractor_name, task_name, protocols, options, log=log, world=world, loaded=loaded)
            _report(outcome, extractor_name, task_name, log)
            outcomes.append((index, outcome))
        everything = [outcome for _, outcome in sorted(world.gather(outcomes), key=lambda item: item[0])]
    _quiet_stop()
    world.close()
    if world.rank != 0:  # its pairs are in rank 0's table and exit code; exiting 1 here would stop rank 0
        return
    _print_outcomes(everything)
    _print_next(everything, options.results_dir)
    for outcome in everything:  # last on screen: what failed, and why
        _print_failure(outcome)
    if any(o.status == "failed" for o in everything):
        raise typer.Exit(1)


def _check_plans(pairs, protocols, options) -> None:
    """The plan step of every pair before any work: a usage error (a variant the task does not take, a protocol of
    another kind) ends the command with exit code 2 and nothing done. Other errors (absent data, an existing result
    under --overwrite never) are reported by their pair, whose siblings still run."""
    from bench.runner import plan_pair

    for extractor_name, task_name in pairs:
        try:
            plan_pair(extractor_name, task_name, protocols, options)
        except USAGE_ERRORS as exc:
            _fail(f"{extractor_name} / {task_name}: {exc}", 2)
        except HemabenchError:
            continue


def _report(outcome, extractor_name: str, task_name: str, log) -> None:
    """What a pair left behind as it ends: kept results (its failures are printed after the results table)."""
    if outcome.skipped_protocols:
        log(f"kept existing results for {', '.join(outcome.skipped_protocols)} (--overwrite only-missing: "
            "they match this run's features, data, splits and settings)")


def _print_failure(outcome) -> None:
    """A failed pair's lines (with the traceback of a bug first)."""
    if outcome.status != "failed":
        return
    if outcome.bug or _state["debug"]:
        _log(outcome.traceback or "")
    for failure in outcome.failed_protocols or [None]:
        what = f" / {failure.protocol}" if failure else ""
        error = failure.error if failure else outcome.error
        bug = failure.bug if failure else outcome.bug
        _log(f"failed: {outcome.extractor} / {outcome.task}{what}: {error}"
             + (" (a bug in hemabench or a plugin: the traceback is above)" if bug else ""))
    if "," in outcome.extractor + outcome.task and not outcome.records:
        _log(f"note: {COMMA_NOTE}")


def _print_next(outcomes, results_dir: Path) -> None:
    """Where the results are and the command that ranks them."""
    import shlex

    written, kept = sum(len(o.records) for o in outcomes), sum(len(o.kept) for o in outcomes)
    if not written and not kept:
        return
    total = written + kept
    counts = " and ".join(f"{n} {what}" for n, what in ((written, "written"), (kept, "kept")) if n)
    out.print(f"{total} result{'s' if total > 1 else ''} ({counts}) under {results_dir}; next, rank them: "
              f"bench leaderboard --results {shlex.quote(str(results_dir))}", markup=False, highlight=False)


def _join(device: str, shared: dict):
    """This process's place among torchrun's processes (rank 0 of 1 without torchrun); checks that every rank
    sees the ``shared`` folders."""
    from bench.distributed import init_world

    world = init_world(device)
    world.check_shared(shared)
    return world


def _rank_log(world):
    """``_log``, each line prefixed with the rank under torchrun."""
    if not world.distributed:
        return _log
    prefix = world.prefix()
    return lambda message: _log(prefix + message)


def _quiet_stop() -> None:
    from bench.distributed import quiet_stop

    quiet_stop()


@contextmanager
def _stopped(world):
    """Stopped by the launcher (torchrun stops every rank when one fails): one line saying what was unfinished."""
    from bench.distributed import StoppedBySignal

    try:
        yield
    except KeyboardInterrupt:
        _interrupted()
    except StoppedBySignal as exc:
        world.group = False  # the group is broken: leave it to the exiting process
        _fail(str(exc), 1)


def _mean_std(mean, std) -> str:
    return "—" if mean is None else f"{100 * mean:.1f} ± {100 * (std or 0):.1f}"


def _print_outcomes(outcomes) -> None:
    from rich.markup import escape

    from bench.core.rescore import COLLAPSED

    table = Table("extractor", "task", "protocol", *(LABELS[m] for m in LABEL_METRICS), "status",
                  title="results (percent, mean ± std over folds)")
    for outcome in outcomes:
        for record, how in [(r, "ok") for r in outcome.records] + [(r, "kept (stored result)") for r in outcome.kept]:
            mean, std = record.metrics.mean, record.metrics.std
            cells = [_mean_std(mean.get(m), std.get(m)) for m in LABEL_METRICS]
            collapsed = sum(COLLAPSED in warning for warning in record.warnings)
            status = (f"warning: collapsed ({collapsed} fold(s))" if collapsed else how) + (
                f" ({len(record.warnings)} warning(s))" if record.warnings else "")
            main = record.metrics.main
            if main not in LABEL_METRICS and main in mean:  # a score of the embedding (batch effect), not of labels
                status += f"; {LABELS.get(main, main)} {_mean_std(mean[main], std.get(main))}"
            table.add_row(escape(outcome.extractor), escape(outcome.task), escape(record.protocol.name), *cells, status)
        for failure in outcome.failed_protocols:
            table.add_row(escape(outcome.extractor), escape(outcome.task), escape(failure.protocol),
                          *([""] * len(LABEL_METRICS)), escape(f"failed: {failure.error}"))
        if not outcome.records and not outcome.failed_protocols and not outcome.kept:
            table.add_row(escape(outcome.extractor), escape(outcome.task), "", *([""] * len(LABEL_METRICS)), outcome.status)
    if any(o.records or o.kept or o.failed_protocols for o in outcomes):  # else only failures, said after it
        out.print(table)


@app.command(epilog=_examples("extract"))
def extract(
    extractor: str = typer.Option(..., "--extractor", "-e", metavar="NAME", help="extractor name (NAME+POOLING: "
                                  "another token pooling)"),
    task: str = typer.Option(..., "--task", "-t", metavar="NAME", help="task name (with its variants: "
                             "acevedo@folds=authors)"),
    export: Path = typer.Option(..., metavar="DIR", help="folder for features.npy (float32, N x dim) and index.csv"),
    data_root: Optional[Path] = DATA_ROOT_OPTION,
    split_file: Optional[Path] = typer.Option(None, metavar="CSV", help="fixed split CSV (path,split); index.csv "
                                              "then says train/test"),
    weights: Optional[Path] = WEIGHTS_OPTION,
    device: str = DEVICE_OPTION,
    precision: Precision = PRECISION_OPTION,
    decode: Decode = DECODE_OPTION,
    batch_size: Optional[int] = BATCH_OPTION,
    shard_size: int = SHARD_OPTION,
    num_workers: Optional[int] = WORKERS_OPTION,
    progress: bool = PROGRESS_OPTION,
    offline: bool = OFFLINE_OPTION,
    skip_bad_images: bool = SKIP_BAD_OPTION,
) -> None:
    """Export features (from the cache, extracting what is missing) and an index of their rows."""
    _check_names([extractor], [task])
    import numpy as np

    from bench.runner import RunOptions, load_pair

    with _user_errors():
        options = RunOptions(data_root=data_root, split_file=split_file, weights=weights, offline=offline,
                             device=device, batch_size=batch_size, precision=precision.value, decode=decode.value,
                             num_workers=num_workers, skip_bad_images=skip_bad_images, progress=progress,
                             shard_size=shard_size)
        world = _join(device, {"cache": options.extraction().cache_root})
        options = replace(options, progress=progress and world.rank == 0)
        with _stopped(world):
            pair = load_pair(extractor, task, options, log=_rank_log(world), world=world)
    _quiet_stop()
    world.close()
    if pair is None:  # under torchrun, a rank other than 0: its share is in the cache, rank 0 exports
        return
    export.mkdir(parents=True, exist_ok=True)
    keep = pair.keep
    np.save(export / "features.npy", pair.features[keep])
    pair.dataset.samples.loc[keep, ["path", "label", "fold"]].to_csv(export / "index.csv", index=False)
    out.print(f"wrote {keep.sum()} x {pair.extractor.entry.dim} features to {export / 'features.npy'} and "
              f"{export / 'index.csv'}", markup=False)
