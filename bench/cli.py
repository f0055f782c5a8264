"""The ``bench`` command line (typer + rich). Model and data code is imported inside the commands, so that
``bench --help`` and ``bench list`` stay fast and import no model code."""

from __future__ import annotations

from bench.core.settings import use_scipy_array_api

use_scipy_array_api()  # before anything imports scipy: the linear probe's GPU path needs it (the function says why)

import sys  # noqa: E402
from contextlib import contextmanager
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from bench.core.errors import HemabenchError
from bench.core.metrics import LABEL_METRICS, LABELS, MAIN_METRIC

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmark image feature extractors on hematology tasks.")
_WIDTH = None if sys.stdout.isatty() else 160  # rich falls back to 80 columns when piped: too narrow for tables
console = Console(stderr=True, soft_wrap=True, width=_WIDTH)  # soft wrap: file paths in messages stay whole
out = Console(soft_wrap=True, width=_WIDTH)
_state = {"debug": False}


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="show the traceback of every error, not only of bugs"),
) -> None:
    """Benchmark image feature extractors on hematology tasks."""
    _state["debug"] = debug


class Kind(str, Enum):
    extractors = "extractors"
    tasks = "tasks"
    protocols = "protocols"


class Overwrite(str, Enum):
    never = "never"
    always = "always"
    only_missing = "only-missing"


class Pooling(str, Enum):
    cls = "cls"
    mean = "mean"
    cls_mean = "cls+mean"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    tf32 = "tf32"
    bf16 = "bf16"
    fp16 = "fp16"


PRECISION_HELP = ("forward precision, part of the features' identity: auto (bf16 on CUDA, else fp32), fp32, tf32 "
                  "(CUDA), bf16, fp16")
class Decode(str, Enum):
    cpu = "cpu"
    gpu = "gpu"
    auto = "auto"


DECODE_HELP = ("where JPEGs are decoded and resized: cpu (PIL, in the loader workers), gpu (nvJPEG and resize on "
               "the CUDA device; within one 8-bit level of PIL's pixels, part of the features' identity), auto "
               "(gpu on CUDA)")
BATCH_HELP = "images per forward pass (default: 256 on CUDA, halved if memory runs out; 32 elsewhere)"
RESULTS_HELP = "results folder (default: $BENCH_RESULTS, else ./results)"
SHARD_HELP = ("rows per feature-cache shard: what a resumed run keeps and the unit torchrun's processes share "
              "(a shard's batches start at its first row)")


class BoardFormat(str, Enum):
    md = "md"
    csv = "csv"
    html = "html"


EXAMPLES = {
    "list": ['bench list extractors', 'bench list extractors --details', 'bench list tasks'],
    "run": ['bench run -e dinobloom-s -t acevedo', 'bench run -e dinobloom-s,resnet50 -t acevedo,bmc -p knn-20,linear --precision bf16'],
    "extract": ['bench extract -e dinobloom-s -t acevedo --export feats/acevedo-s'],
    "leaderboard": ['bench leaderboard', 'bench leaderboard --format html --out board.html'],
    "compare": ['bench compare dinobloom-s resnet50 -t acevedo -p knn-20'],
    "check-extractor": ['bench check-extractor my_extractor.py:SmallViT', 'bench check-extractor uni --weights ~/hub/MahmoodLab-UNI'],
    "train": ['bench train --preset tiny-cpu --data cells/ --out runs/tiny --eval-task synthetic-wbc --max-steps 400'],
    "plot umap": ['bench plot umap -e dinobloom-s -t acevedo --out figs/acevedo.png', 'bench plot umap -e dinobloom-s -t aml-hehr --pool abmil-paper --out figs/aml.png'],
    "plot patch-pca": ['bench plot patch-pca -e dinobloom-b --images a.jpg --images b.jpg --out figs/pca.png'],
    "batch-effect": ['bench batch-effect -e dinobloom-s,resnet50 -t synthetic-wbc,synthetic-wbc-shifted'],
    "data check": ['bench data check acevedo --data-root ~/data/PBC'],
    "data info": ['bench data info bmc'],
    "data split": ['bench data split acevedo --data-root ~/data/PBC --out acevedo.split.csv.gz'],
    "cache ls": ['bench cache ls'],
    "cache verify": ['bench cache verify'],
    "cache prune": ['bench cache prune --older-than 30'],
    "weights list": ['bench weights list'],
    "submit": ['bench submit --out leaderboard/submissions', 'bench submit -e dinobloom-s -t acevedo --out leaderboard/submissions'],
    "verify": ['bench verify leaderboard/submissions', 'bench verify leaderboard/submissions --data-root acevedo=~/data/PBC_dataset_normal_DIB --seed 7'],
    "weights fetch": ['bench weights fetch dinobloom-s'],
}


def _examples(command: str) -> str:
    """The help's closing examples (typer's epilog: shown under the options)."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in EXAMPLES[command])


def _split(values: List[str] | None) -> List[str]:
    """Repeated options and comma-separated lists both work: --extractor a --extractor b,c.

    A comma separates names only in a value that cannot hold a path: one with ``:`` (a scheme such as
    ``imagefolder:/data/a,b`` or a ``file.py:Name``) or ``/`` is taken whole, so a path with a comma names
    that path and never a different data set; to give several such names, repeat the option.
    """
    names = []
    for value in values or []:
        if any(mark in value for mark in (":", "/", "\\")):
            names.append(value)
        else:
            names.extend(part.strip() for part in value.split(",") if part.strip())
    return names


def _results(results: Optional[Path]) -> Path:
    from bench.core import settings

    return results if results is not None else settings.results_dir()


def _log(message: str) -> None:
    """Plain text from the harness (paths, names from plugins): never interpreted as rich markup."""
    console.print(message, markup=False, highlight=False)


def _fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    console.print(f"[red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def _user_errors():
    """A HemabenchError (something the user can fix) ends the command with its one-line message, exit code 1;
    anything else is a bug and propagates with its traceback. ``--debug`` shows the traceback of both."""
    try:
        yield
    except HemabenchError as exc:
        if _state["debug"]:
            console.print_exception()
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _interrupted()


def _check_names(extractors=(), tasks=(), protocols=()) -> None:
    """Refuse a name that cannot resolve before any model code is imported (torch alone takes seconds): a typo,
    an unknown scheme or a missing plugin file ends the command at once, with the closest names."""
    from extractors import EXTRACTORS
    from protocols import PROTOCOLS
    from tasks import TASKS

    with _user_errors():
        for registry, names in ((EXTRACTORS, extractors), (TASKS, tasks), (PROTOCOLS, protocols)):
            for name in [n for n in names or () if n is not None]:
                try:
                    registry.check(name)
                except HemabenchError as exc:
                    if "," in name:
                        exc.args = (f"{exc} (note: {COMMA_NOTE})",)
                    raise


COMMA_NOTE = "a name with ':' or '/' is taken whole, commas included; to run several, repeat --extractor / --task"
INTERRUPTED = ("interrupted (Ctrl-C). What was finished is kept: the complete shards of every feature extraction "
               "(in the cache), the results written so far, the trainer's last checkpoint. Run the same command again "
               "to resume")


def _interrupted() -> None:
    console.print(f"[yellow]{INTERRUPTED}[/]", highlight=False)
    raise typer.Exit(130)


@contextmanager
def _busy(what: str):
    """A spinner with the elapsed time while one long step runs (a UMAP fit); gone when it ends."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        bar.add_task(what, total=None)
        yield


@contextmanager
def _steps(what: str, enabled: bool):
    """A progress bar over counted steps, shown from the first ``update(done, total)`` (after the features are
    extracted, with their own bars) until the step count is reached or the block ends."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    shown: dict = {}

    def update(done: int, total: int) -> None:
        if not enabled:
            return
        if not shown:
            shown["bar"] = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), console=console)
            shown["bar"].start()
            shown["task"] = shown["bar"].add_task(what, total=total)
        shown["bar"].update(shown["task"], completed=done, total=total)

    try:
        yield update
    finally:
        if shown:
            shown["bar"].stop()


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


# `bench run --help` and `bench extract --help` in three panels: what to run (typer's first panel, "Options", with
# --help; one 80 x 40 screen), the authors' evaluation choices, and performance and hardware
AUTHORS_PANEL = "The DinoBloom authors' evaluation choices"
PERFORMANCE_PANEL = "Performance and hardware"
NAMES_HELP = "{}(s): repeat, or comma-separate (a name with : or / is taken whole)"
DATA_ROOT_HELP = "the task's data folder (default: $BENCH_HOME/data/...)"
SPLIT_FILE_HELP = "fixed split CSV (path,split = train|test) instead of k-fold"
WEIGHTS_HELP = "weight file for the extractor"
POOLING_HELP = "cls, mean or cls+mean: token pooling for ViT-like extractors (default: the entry's)"
OVERWRITE_HELP = "existing results: never (refuse), always (redo), only-missing (skip)"
DEVICE_HELP = "auto, cpu, cuda, cuda:1, mps"
WORKERS_HELP = ("DataLoader worker processes (default: 1 per 2 CPU cores, max 4; on CUDA every core but one, max "
                "16)")
OFFLINE_HELP = "never download weights"
SKIP_BAD_HELP = "leave unreadable images out (listed in the result) instead of failing"
PREPROCESSING_HELP = ("before the extractor's transform: task (the task's own), authors-cv (a PIL bicubic resize to "
                      "224 x 224 first: the DinoBloom authors' cross-validation code, Acevedo's default) or direct "
                      "(the transform on the original image: their fixed-split code, BMC's)")
SHIFT_TRAINING_HELP = ("domain shift: one probe trained on all of --task (all), or each cross-validation fold's "
                       "probe tested on --test-task, as the authors did (folds: mean ± std over the folds)")
SHIFT_CLASSES_HELP = ("domain shift: score every test cell (all), or only the classes both tasks hold, predictions "
                      "restricted to them (shared)")
FOLDS_HELP = ("k-fold tasks: task (the portable folds) or authors (StratifiedKFold(5) without shuffling over the "
              "sorted file names, as the DinoBloom authors split)")


# The options `bench run` and `bench extract` share, each defined once with its one help text.
PREPROCESSING_OPTION = typer.Option("task", metavar="CHOICE", rich_help_panel=AUTHORS_PANEL, help=PREPROCESSING_HELP)
FOLDS_OPTION = typer.Option("task", metavar="CHOICE", rich_help_panel=AUTHORS_PANEL, help=FOLDS_HELP)
POOLING_OPTION = typer.Option(None, metavar="POOLING", rich_help_panel=AUTHORS_PANEL, help=POOLING_HELP)
DEVICE_OPTION = typer.Option("auto", metavar="DEVICE", rich_help_panel=PERFORMANCE_PANEL, help=DEVICE_HELP)
PRECISION_OPTION = typer.Option(Precision.auto, metavar="PRECISION", rich_help_panel=PERFORMANCE_PANEL,
                                help=PRECISION_HELP)
DECODE_OPTION = typer.Option(Decode.cpu, metavar="WHERE", rich_help_panel=PERFORMANCE_PANEL, help=DECODE_HELP)
BATCH_OPTION = typer.Option(None, min=1, metavar="N", rich_help_panel=PERFORMANCE_PANEL, help=BATCH_HELP)
SHARD_OPTION = typer.Option(1024, min=1, metavar="N", rich_help_panel=PERFORMANCE_PANEL, help=SHARD_HELP)
WORKERS_OPTION = typer.Option(None, min=0, metavar="N", rich_help_panel=PERFORMANCE_PANEL, help=WORKERS_HELP)
PROGRESS_OPTION = typer.Option(True, rich_help_panel=PERFORMANCE_PANEL, help="show a progress bar")
OFFLINE_OPTION = typer.Option(False, "--offline", rich_help_panel=PERFORMANCE_PANEL, help=OFFLINE_HELP)
SKIP_BAD_OPTION = typer.Option(False, rich_help_panel=PERFORMANCE_PANEL, help=SKIP_BAD_HELP)


@app.command(epilog=_examples("run"))
def run(
    extractor: List[str] = typer.Option(..., "--extractor", "-e", metavar="NAME", help=NAMES_HELP.format("extractor")),
    task: List[str] = typer.Option(..., "--task", "-t", metavar="NAME", help=NAMES_HELP.format("task")),
    protocol: Optional[List[str]] = typer.Option(None, "--protocol", "-p", metavar="NAME", help="protocol(s) (default: "
                                                 "the task's)"),
    data_root: Optional[Path] = typer.Option(None, metavar="DIR", help=DATA_ROOT_HELP),
    split_file: Optional[Path] = typer.Option(None, metavar="CSV", help=SPLIT_FILE_HELP),
    weights: Optional[Path] = typer.Option(None, metavar="PATH", help=WEIGHTS_HELP + " (one extractor only)"),
    results: Optional[Path] = typer.Option(None, metavar="DIR", help=RESULTS_HELP),
    overwrite: Overwrite = typer.Option(Overwrite.only_missing, metavar="POLICY", help=OVERWRITE_HELP),
    test_task: Optional[str] = typer.Option(None, metavar="NAME", rich_help_panel=AUTHORS_PANEL,
                                            help="domain shift: train the probe on --task, test on this task"),
    preprocessing: str = PREPROCESSING_OPTION,
    folds: str = FOLDS_OPTION,
    shift_training: str = typer.Option("all", metavar="CHOICE", rich_help_panel=AUTHORS_PANEL, help=SHIFT_TRAINING_HELP),
    shift_classes: str = typer.Option("all", metavar="CHOICE", rich_help_panel=AUTHORS_PANEL, help=SHIFT_CLASSES_HELP),
    pooling: Optional[Pooling] = POOLING_OPTION,
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
    """Extract features (cached), run the protocols and write one result file per protocol. An authors' choice
    other than the task's own gives a result of its own name (e.g. acevedo@folds=authors), never ranked with the
    default one. Under torchrun the ranks share the work (docs/distributed.md)."""
    extractors, tasks, protocols = _split(extractor), _split(task), _split(protocol) or None
    if weights is not None and len(extractors) != 1:
        _fail("--weights applies to one extractor; name exactly one --extractor with it")
    if test_task is not None and len(tasks) != 1:
        _fail("--test-task pairs with exactly one --task (the training task)")
    if (data_root is not None or split_file is not None) and len(tasks) != 1:
        _fail("--data-root and --split-file apply to one task; run the tasks one at a time")
    if split_file is not None and test_task is not None:
        _fail("--split-file and --test-task exclude each other: a domain-shift run trains on all of --task "
              "and tests on all of --test-task")
    _check_names(extractors, tasks + [test_task], protocols)
    from bench.runner import RunOptions, help_pair, run_pair

    with _user_errors():
        options = RunOptions(
            results_dir=_results(results), data_root=data_root, split_file=split_file, weights=weights, offline=offline,
            pooling=pooling.value if pooling else None, overwrite=overwrite.value, device=device,
            precision=precision.value, decode=decode.value, batch_size=batch_size, num_workers=num_workers,
            skip_bad_images=skip_bad_images, progress=progress, shard_size=shard_size, preprocessing=preprocessing,
            folds=folds, shift_training=shift_training, shift_classes=shift_classes,
        )
        world = _join(device, {"cache": options.extraction().cache_root, "results": options.results_dir})
        options = replace(options, progress=progress and world.rank == 0)
    log = _rank_log(world)
    outcomes, loaded = [], {}
    pairs = [(e, t) for e in extractors for t in tasks]
    with _stopped(world):
        for index, (extractor_name, task_name) in enumerate(pairs):
            if not world.owns(index):  # under torchrun: help the pair's owner extract its features
                help_pair(extractor_name, task_name, protocols, options, log, world, world.owner(index), test_task,
                          loaded)
                continue
            log(f"{extractor_name} on {task_name}" + (f", tested on {test_task}" if test_task else ""))
            outcome = run_pair(extractor_name, task_name, protocols, options, log=log, test_task=test_task,
                               world=world, loaded=loaded)
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
    extractor: str = typer.Option(..., "--extractor", "-e", metavar="NAME", help="extractor name"),
    task: str = typer.Option(..., "--task", "-t", metavar="NAME", help="task name"),
    export: Path = typer.Option(..., metavar="DIR", help="folder for features.npy (float32, N x dim) and index.csv"),
    data_root: Optional[Path] = typer.Option(None, metavar="DIR", help=DATA_ROOT_HELP),
    split_file: Optional[Path] = typer.Option(None, metavar="CSV", help="fixed split CSV (path,split); index.csv "
                                              "then says train/test"),
    weights: Optional[Path] = typer.Option(None, metavar="PATH", help=WEIGHTS_HELP),
    preprocessing: str = PREPROCESSING_OPTION,
    folds: str = FOLDS_OPTION,
    pooling: Optional[Pooling] = POOLING_OPTION,
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
                             pooling=pooling.value if pooling else None, device=device, batch_size=batch_size,
                             precision=precision.value, decode=decode.value,
                             num_workers=num_workers, skip_bad_images=skip_bad_images, progress=progress,
                             shard_size=shard_size, preprocessing=preprocessing, folds=folds)
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


@app.command(epilog=_examples("leaderboard"))
def leaderboard(
    results: Optional[Path] = typer.Option(None, help=RESULTS_HELP),
    format: BoardFormat = typer.Option(BoardFormat.md, "--format"),
    out_path: Optional[Path] = typer.Option(None, "--out", help="write here instead of printing"),
    bootstrap: int = typer.Option(1000, min=0, help="bootstrap resamples for the 95 % intervals (0: none)"),
    check: bool = typer.Option(False, "--check", help="fail if the board at --out differs from the results"),
    submissions: Optional[Path] = typer.Option(
        None, help="also the submissions in this folder that `bench verify` accepts (e.g. leaderboard/submissions)"),
    runs_badge: str = typer.Option("run here", help="the badge of the results folder's rows on the HTML board "
                                   "(the published board's CI build says 'reproduced by CI')"),
) -> None:
    """Turn a results folder into tables: scores, bootstrap intervals, ranks (Borda) per protocol.

    With --submissions, verified submissions join the results' rows, each row badged by where it comes from (the
    results folder, a verified submission; the paper's reported rows apart); a refused submission is listed as a
    problem and not shown.

    A result file that cannot be read, results held twice (a copied folder) and predictions that cannot be read
    are reported on stderr, one line each, and listed on the board; the board is still written (exit 0), and
    --check fails on them. --out is replaced atomically: a failed build leaves the previous board as it was."""
    from bench.core.files import atomic_write_bytes
    from leaderboard.tables import read_results, render

    problems: list[str] = []
    results = _results(results)
    with _user_errors():
        if submissions is not None and not results.exists():  # a board of submissions alone
            from leaderboard.tables import empty_results

            table = empty_results()
        else:
            table = read_results(results, problems)
        if submissions is not None:
            from bench.submissions import board_rows

            table = board_rows(table, submissions, problems)
        if table.empty and out_path is not None and out_path.exists() and not check:
            what = f"results folder {results}" + (f" and submissions folder {submissions}" if submissions else "")
            _fail(f"the {what} hold no result to show, so {out_path} is left as it was rather than replaced with an "
                  "empty board; point --results at the folder that holds the results, or delete "
                  f"{out_path} first" + (f" ({len(problems)} problem(s) found: {problems[0]})" if problems else ""), 1)
        if bootstrap and len(table):
            _log(f"bootstrap 95 % intervals of {len(table)} result(s), {bootstrap} resamples each (kept beside the "
                 "predictions, a submission's in the cache: a board rebuilt from the same results reads them)")
        with _steps("bootstrap intervals", console.is_terminal) as update:
            text = render(table, format.value, n_boot=bootstrap, problems=problems, on_row=update,
                          runs_badge=runs_badge)
    for line in problems:
        _log(f"warning: {line}")
    # a name UTF-8 cannot encode (a lone surrogate from a JSON escape in a result file) is shown escaped
    data = text.encode("utf-8", "backslashreplace")
    if check:
        if out_path is None:
            _fail("--check compares with the board at --out PATH; name it")
        current = out_path.read_bytes() if out_path.is_file() else None
        if current != data:
            why = "does not exist" if current is None else "differs from what the results give"
            _fail(f"{out_path} {why}; regenerate it with `bench leaderboard --results {results} --format "
                  f"{format.value} --out {out_path}`", 1)
        if problems:
            _fail(f"{out_path} matches the results, but the results folder {results} has {len(problems)} "
                  "problem(s) (warnings above); fix them and regenerate the board", 1)
        out.print(f"{out_path} matches the results", markup=False)
        return
    if out_path is None:
        sys.stdout.write(data.decode("utf-8"))
        return
    try:
        with _user_errors():
            atomic_write_bytes(out_path, data)
    except OSError as exc:
        _fail(f"cannot write the board to {out_path} ({exc}); name a file in a folder you can write, with --out", 1)
    noted = f" ({len(problems)} problem(s) with the results folder, listed on the board)" if problems else ""
    out.print(f"wrote {out_path}{noted}", markup=False)


@app.command(epilog=_examples("compare"))
def compare(
    extractor_a: str = typer.Argument(...),
    extractor_b: str = typer.Argument(...),
    task: str = typer.Option(..., "--task", "-t"),
    protocol: str = typer.Option(..., "--protocol", "-p"),
    results: Optional[Path] = typer.Option(None, help=RESULTS_HELP),
    metric: Optional[str] = typer.Option(None, help=f"{', '.join(LABEL_METRICS)} (default: the task's main metric)"),
    bootstrap: int = typer.Option(2000, min=100),
) -> None:
    """Paired bootstrap of metric(A) - metric(B) on the same test samples of one task and protocol."""
    import pandas as pd

    from bench.core.metrics import check_metric
    from bench.core.record import ResultRecord, result_paths
    from leaderboard.stats import paired_bootstrap

    frames = []
    with _user_errors():
        for name in (extractor_a, extractor_b):
            record_path, path = result_paths(_results(results), name, task, protocol)
            if not path.is_file():
                _fail(f"no predictions for {name} on {task} / {protocol} at {path}; run `bench run` first", 1)
            if metric is None and record_path.is_file():
                metric = ResultRecord.read(record_path).metrics.main
            redo = f"delete it and its record and run `bench run -e {name} -t {task} -p {protocol}` again"
            try:
                frame = pd.read_csv(path)
            except (OSError, ValueError, pd.errors.ParserError) as exc:
                _fail(f"predictions file {path} cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())}); "
                      + redo, 1)
            lacking = sorted({"label", "prediction"} - set(frame.columns))
            if lacking:
                _fail(f"predictions file {path} lacks column(s) {lacking}; {redo}", 1)
            frames.append(frame)
        metric = check_metric(metric or MAIN_METRIC)
        r = paired_bootstrap(frames[0], frames[1], metric, n_boot=bootstrap)
    out.print(
        f"{metric}: {extractor_a} - {extractor_b} = {100 * r['difference']:+.2f} points, 95 % interval "
        f"[{100 * r['low']:+.2f}, {100 * r['high']:+.2f}], bootstrap {_p_value(r['p_value'], r['n_boot'])} "
        f"({r['n_units']} units, {r['n_boot']} resamples)", markup=False)


def _p_value(p: float, n_boot: int) -> str:
    """A two-sided bootstrap p-value; 0 (no resample on one side of zero) is a bound, not a value: the smallest
    non-zero p the resamples can give is 2 / n_boot."""
    return f"p < 1/{n_boot // 2}" if p == 0 else f"p = {p:.4f}"


@app.command("check-extractor", epilog=_examples("check-extractor"))
def check_extractor_cmd(
    name: str = typer.Argument(..., help="extractor name or path/to/file.py:Name"),
    weights: Optional[Path] = typer.Option(None),
    offline: bool = typer.Option(False, "--offline", help="never download weights"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1, mps"),
    precision: Precision = typer.Option(Precision.auto, help=PRECISION_HELP),
) -> None:
    """Build the extractor (finding its weights as `bench run` does) and check its contract on a tiny batch."""
    _check_names([name])
    from bench.checks import check_extractor
    from bench.extract import pick_device
    from bench.runner import RunOptions, build_extractor, resolve_entry

    with _user_errors():
        options = RunOptions(weights=weights, offline=offline, device=device, precision=precision.value)
        built = build_extractor(resolve_entry(name, None), options, log=_log)
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
            _log(f"export {path.name}: {eval_task} {record.protocol.name} "
                 + ", ".join(f"{LABELS[m]} {100 * record.metrics.mean[m]:.1f}" for m in LABEL_METRICS))
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


plot_app = typer.Typer(no_args_is_help=True, help="Pictures of embeddings: UMAP of cells or patients, patch-PCA.")
app.add_typer(plot_app, name="plot")


class ColorBy(str, Enum):
    class_ = "class"
    domain = "domain"
    patient = "patient"
    fold = "fold"


class FitOn(str, Enum):
    train = "train"
    all = "all"


@plot_app.command("umap", epilog=_examples("plot umap"))
def plot_umap(
    extractor: str = typer.Option(..., "--extractor", "-e"),
    task: List[str] = typer.Option(..., "--task", "-t", help="task(s); several: one map, --color-by domain tells them apart"),
    out_path: Path = typer.Option(..., "--out", help="PNG to write; the HTML version (hover labels) is written beside it"),
    color_by: ColorBy = typer.Option(ColorBy.class_, help="colour: class, domain (task), patient or fold"),
    fit_on: FitOn = typer.Option(FitOn.train, help="fit the map on the first task's training rows (first split; the rest is embedded into it) or on all"),
    thumbnails: bool = typer.Option(False, "--thumbnails", help="draw 60 cell images (a seeded choice) at their points"),
    seed: int = typer.Option(0, help="UMAP seed: the same seed gives the same picture"),
    pool: str = typer.Option("mean", help="bag tasks: a patient's point is the mean of its cells, or (a bag protocol, e.g. abmil-gated) their sum weighted by the attention of that protocol's result in --results"),
    results: Optional[Path] = typer.Option(None, help=RESULTS_HELP + "; a one-task map keeps a small copy there for the HTML leaderboard; --pool reads attention there"),
    data_root: Optional[Path] = typer.Option(None, help="the first task's data folder"),
    weights: Optional[Path] = typer.Option(None),
    offline: bool = typer.Option(False, "--offline", help="never download weights"),
    device: str = typer.Option("auto"),
    precision: Precision = typer.Option(Precision.auto, help=PRECISION_HELP),
    batch_size: Optional[int] = typer.Option(None, min=1, help=BATCH_HELP),
    progress: bool = typer.Option(True),
) -> None:
    """UMAP of an extractor's embeddings (cached features: no forward pass when cached), as PNG and HTML."""
    _check_names([extractor], _split(task))
    from bench.plots import keep_for_board, umap_scatter
    from bench.runner import RunOptions
    from leaderboard.figures import scatter_html, scatter_png

    with _user_errors():
        options = RunOptions(data_root=data_root, weights=weights, offline=offline, device=device,
                              precision=precision.value, batch_size=batch_size, progress=progress,
                              results_dir=_results(results))
        scatter = umap_scatter(extractor, _split(task), options, color_by=color_by.value, fit_on=fit_on.value,
                               seed=seed, pool=pool, log=_log, busy=_busy if progress else None)
    png = scatter_png(scatter, out_path, thumbnails=60 if thumbnails else 0, seed=seed)
    html = scatter_html(scatter, out_path.with_suffix(".html"))
    with _user_errors():
        kept = keep_for_board(scatter, options.results_dir, seed=seed, fit_on=fit_on.value)
    out.print(f"wrote {png} and {html}" + (f"; the leaderboard's copy: {kept}" if kept else ""), markup=False)


@plot_app.command("patch-pca", epilog=_examples("plot patch-pca"))
def plot_patch_pca(
    extractor: str = typer.Option(..., "--extractor", "-e"),
    images: List[Path] = typer.Option(..., "--images", help="image file(s); repeat the option"),
    out_path: Path = typer.Option(..., "--out", help="PNG to write"),
    threshold: float = typer.Option(0.5, help="background: first PCA component (scaled to 0-1) on the border side of this"),
    weights: Optional[Path] = typer.Option(None),
    offline: bool = typer.Option(False, "--offline", help="never download weights"),
    device: str = typer.Option("auto"),
    precision: Precision = typer.Option(Precision.auto, help=PRECISION_HELP),
) -> None:
    """The first three PCA components of a ViT's patch tokens as RGB, beside the images (the paper's Fig. 3)."""
    _check_names([extractor])
    from bench.plots import patch_pca
    from bench.runner import RunOptions

    with _user_errors():
        options = RunOptions(weights=weights, offline=offline, device=device, precision=precision.value)
        written = patch_pca(extractor, list(images), options, out_path, threshold=threshold, log=_log)
    out.print(f"wrote {written}", markup=False)


@app.command("batch-effect", epilog=_examples("batch-effect"))
def batch_effect_cmd(
    extractor: List[str] = typer.Option(..., "--extractor", "-e", help="extractor name(s); repeat, or comma-separate plain names"),
    task: List[str] = typer.Option(..., "--tasks", "-t", help="the data sets (cell tasks) to compare, at least two: -t a,b or -t a -t b"),
    k: int = typer.Option(15, help="neighbours of each cell for the kNN mixing score"),
    max_per_class: int = typer.Option(500, help="cells per data set and class at most (drawn at random per repeat)"),
    repeats: int = typer.Option(5, help="random draws when a class has more cells than are used"),
    seed: int = typer.Option(0, help="seed of the draws and of the chance level of the mixing score"),
    results: Optional[Path] = typer.Option(None, help=RESULTS_HELP),
    weights: Optional[Path] = typer.Option(None, help="weight file for the extractor (one extractor only)"),
    offline: bool = typer.Option(False, "--offline", help="never download weights"),
    device: str = typer.Option("auto"),
    precision: Precision = typer.Option(Precision.auto, help=PRECISION_HELP),
    batch_size: Optional[int] = typer.Option(None, min=1, help=BATCH_HELP),
    progress: bool = typer.Option(True),
) -> None:
    """Do embeddings cluster by data set rather than by cell type? scIB's silhouettes and a kNN mixing score on
    the classes the data sets share, written as a result record that the leaderboard ranks (docs/figures.md)."""
    _check_names(_split(extractor), _split(task))
    from rich.markup import escape

    from bench.batch_effect import batch_effect, domains_label
    from bench.core.metrics import BATCH_METRICS
    from bench.runner import RunOptions
    from protocols.batch_effect import BatchEffect

    extractors, tasks = _split(extractor), _split(task)
    if weights is not None and len(extractors) != 1:
        _fail("--weights applies to one extractor; name exactly one --extractor with it")
    with _user_errors():
        scorer = BatchEffect(k=k, max_per_class=max_per_class, repeats=repeats, seed=seed)
        options = RunOptions(results_dir=_results(results), weights=weights, offline=offline, device=device,
                             precision=precision.value, batch_size=batch_size, progress=progress)
    table = Table("extractor", "tasks", *(LABELS[m] for m in BATCH_METRICS), "status", box=None, pad_edge=False)
    failed = False
    for name in extractors:
        try:
            with _steps(f"{name}: scoring draws", progress) as update:
                record, path = batch_effect(name, tasks, options, scorer, log=_log, on_repeat=update)
        except KeyboardInterrupt:
            _interrupted()
        except HemabenchError as exc:
            failed = True
            _log(f"failed: {name} / {', '.join(tasks)}: {exc}")
            table.add_row(escape(name), escape(domains_label(tasks)), *([""] * len(BATCH_METRICS)), "failed")
            continue
        for warning in record.warnings:
            _log(f"warning: {name}: {warning}")
        _log(f"wrote {path} and its per-cell scores beside it")
        mean, std = record.metrics.mean, record.metrics.std
        table.add_row(escape(name), escape(record.task.name),
                      *(f"{100 * mean[m]:.1f} ± {100 * std[m]:.1f}" for m in BATCH_METRICS), "ok")
    out.print(table)
    if failed:
        raise typer.Exit(1)


@app.command(epilog=_examples("submit"))
def submit(
    out_path: Path = typer.Option(..., "--out", help="the submissions folder (e.g. leaderboard/submissions)"),
    results: Optional[Path] = typer.Option(None, help=RESULTS_HELP),
    extractor: Optional[List[str]] = typer.Option(None, "--extractor", "-e", help="only these extractors"),
    task: Optional[List[str]] = typer.Option(None, "--task", "-t", help="only these tasks"),
    data_root: Optional[Path] = typer.Option(None, help="where the task's images are now, if not where the results "
                                             "say (their features are packaged from the cache in its row order)"),
) -> None:
    """Package results for a pull request: each record, its predictions (compressed), the features of each
    (extractor, task) as float16, the extractor's card, the data's identity and digests; `bench verify` runs the
    protocol again on those features (docs/submitting.md)."""
    from bench.submissions import submit as package

    with _user_errors():
        written = package(_results(results), out_path, _split(extractor) or None, _split(task) or None, log=_log,
                          data_root=data_root)
    if not written:
        _fail(f"no result with predictions found under {_results(results)}" + (" for the names given" if extractor
              or task else "") + "; run `bench run` first", 1)
    size = sum(f.stat().st_size for f in out_path.rglob("*") if f.is_file())
    out.print(f"wrote {len(written)} submission(s) under {out_path} ({size / 1e6:.2f} MB in all)", markup=False)


DATA_ROOTS_HELP = ("TASK=DIR: where a task's images are on this machine, to extract a sample of them again "
                   "(repeat for several tasks; default: the task's folder under $BENCH_HOME/data)")


def _data_roots(values: List[str] | None) -> dict:
    roots = {}
    for value in values or []:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            _fail(f"--data-root {value!r}: write TASK=DIR, e.g. --data-root acevedo=~/data/PBC_dataset_normal_DIB")
        roots[name] = Path(folder).expanduser()
    return roots


@app.command(epilog=_examples("verify"))
def verify(
    submissions: Path = typer.Argument(..., help="the submissions folder"),
    data_root: Optional[List[str]] = typer.Option(None, help=DATA_ROOTS_HELP),
    sample: int = typer.Option(64, min=0, help="images per submission extracted again and compared with its "
                               "features (built-in extractors whose weights are here)"),
    seed: Optional[int] = typer.Option(None, help="the sample's seed (default: a new random one each time, said in "
                                       "the output; give it to repeat a check)"),
) -> None:
    """Check submissions before they reach a board. Their files must agree (digests; every label metric re-scored
    from the predictions; a prediction for every test sample; the split digest; the protocol's and task's settings
    against the registered ones; built-in names against their published weights; no duplicates), and CI derives
    again what it can: the labels from the task's canonical split, the folds by the task's rule, the protocol run
    on the submitted features (its metrics are what the board shows), and a random sample of images extracted
    again and compared with the submitted features. Each accepted submission is "verified" where all four were
    derived, else "self-reported", with what was taken on trust."""
    from bench.submissions import verify as check

    if not submissions.is_dir():
        _fail(f"submissions folder {submissions} does not exist", 1)
    roots = _data_roots(data_root)
    with _user_errors():
        found, problems, outcome = check(submissions, roots, sample, seed, log=_log)
    for folder, derived in outcome.items():
        if not derived.failures:
            where = folder.relative_to(submissions).as_posix()
            _log(f"{derived.checks.badge}: {where}: {derived.checks.summary()}")
    for line in problems:
        _log(f"refused: {line}")
    if not found:
        _fail(f"no submission (submission.json) under {submissions}; make them with `bench submit`", 1)
    if problems:
        _fail(f"{len(problems)} problem(s) in {found} submission(s); those submissions do not reach the board", 1)
    verified = sum(d.checks.verified for d in outcome.values())
    out.print(f"{found} submission(s) accepted: {verified} verified, {found - verified} self-reported", markup=False)


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


cache_app = typer.Typer(no_args_is_help=True, help="The feature cache: list, verify, prune.")
app.add_typer(cache_app, name="cache")


def _cache_root(cache: Optional[Path]) -> Path:
    from bench.core import settings

    return cache or settings.cache_dir()


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


@cache_app.command("ls", epilog=_examples("cache ls"))
def cache_ls(cache: Optional[Path] = typer.Option(None, help="cache folder (default: $BENCH_HOME/cache)")) -> None:
    """Every cache entry: extractor, rows x dim, size, created, status (size and shape checked)."""
    from rich.markup import escape

    from bench.cache import cache_entries, entry_state

    root = _cache_root(cache)
    table = Table("key", "extractor", "rows x dim", "size", "created", "status", box=None)
    total = 0
    for store in cache_entries(root):
        state = entry_state(store, full=False)
        total += state.size
        shape = f"{state.rows} x {state.dim}" if state.rows is not None else ""
        table.add_row(state.key[:12], escape(state.extractor), shape, _size(state.size), escape(state.created),
                      escape(state.status + (f": {state.detail}" if state.detail else "")))
    out.print(table)
    out.print(f"{len(cache_entries(root))} entries, {_size(total)} in {root}", markup=False)


@cache_app.command("verify", epilog=_examples("cache verify"))
def cache_verify(cache: Optional[Path] = typer.Option(None, help="cache folder (default: $BENCH_HOME/cache)"),
                 evict: bool = typer.Option(True, help="remove the entries that fail (they are re-extracted when next needed)")) -> None:
    """Check every complete entry against its checksums (reads every file); exit code 1 if any fails."""
    from bench.cache import cache_entries, entry_state

    bad = 0
    stores = cache_entries(_cache_root(cache))
    for store in stores:
        state = entry_state(store, full=True)
        if state.status != "corrupt":
            continue
        bad += 1
        if evict:
            with store.lock():
                store.evict()
        _log(f"{state.detail}" + ("; evicted" if evict else ""))
    out.print(f"{len(stores) - bad} of {len(stores)} entries verified" + (f", {bad} failed" if bad else ""), markup=False)
    if bad:
        raise typer.Exit(1)


@cache_app.command("prune", epilog=_examples("cache prune"))
def cache_prune(
    cache: Optional[Path] = typer.Option(None, help="cache folder (default: $BENCH_HOME/cache)"),
    older_than: Optional[float] = typer.Option(None, min=0, help="also remove complete entries created more than this many days ago"),
    all_: bool = typer.Option(False, "--all", help="remove every entry no running process holds"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be removed"),
) -> None:
    """Remove corrupt and partial entries (never one a running process holds), and optionally old ones."""
    from bench.cache import prune

    removed = prune(_cache_root(cache), older_than_days=older_than, everything=all_, dry_run=dry_run)
    for state in removed:
        _log(f"{'would remove' if dry_run else 'removed'} {state.key[:12]} ({state.extractor or '?'}, {state.status}, "
             f"{_size(state.size)})")
    verb = "would free" if dry_run else "freed"
    out.print(f"{len(removed)} entries, {verb} {_size(sum(s.size for s in removed))}", markup=False)


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


def main() -> None:  # pragma: no cover - console-script shim for `python -m bench.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
