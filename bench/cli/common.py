"""What every command group shares: the Typer ``app`` and its ``--debug`` callback, the two consoles, the help
texts more than one group uses, every command's examples, and the helpers that split names, print plain text,
turn a user's error into one line and show progress."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import List, NoReturn, Optional

import typer
from rich.console import Console

from bench.core.errors import HemabenchError, RegistryError, UsageError

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


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    tf32 = "tf32"
    bf16 = "bf16"
    fp16 = "fp16"


PRECISION_HELP = ("forward precision, part of the features' identity: auto (bf16 on CUDA, else fp32), fp32, tf32 "
                  "(CUDA), bf16, fp16")
BATCH_HELP = "images per forward pass (default: 256 on CUDA, halved if memory runs out; 32 elsewhere)"
RESULTS_HELP = "results folder (default: $BENCH_RESULTS, else ./results)"


EXAMPLES = {
    "list": ['bench list extractors', 'bench list extractors --details', 'bench list tasks'],
    "run": ['bench run -e dinobloom-s -t acevedo', 'bench run -e dinobloom-s,resnet50 -t acevedo,bmc -p knn-20,linear --precision bf16',
            "bench run -e dinobloom-s -t 'acevedo@folds=authors' -t 'acevedo=>bmc@training=folds'",
            "bench run -e dinobloom-s+mean -t 'synthetic-wbc+synthetic-wbc-shifted'"],
    "extract": ['bench extract -e dinobloom-s -t acevedo --export feats/acevedo-s'],
    "leaderboard": ['bench leaderboard', 'bench leaderboard --format html --out board.html'],
    "compare": ['bench compare dinobloom-s resnet50 -t acevedo -p knn-20'],
    "check-extractor": ['bench check-extractor my_extractor.py:SmallViT', 'bench check-extractor uni --weights ~/hub/MahmoodLab-UNI'],
    "train": ['bench train --preset tiny-cpu --data cells/ --out runs/tiny --eval-task synthetic-wbc --max-steps 400'],
    "plot umap": ['bench plot umap -e dinobloom-s -t acevedo --out figs/acevedo.png', 'bench plot umap -e dinobloom-s -t aml-hehr --pool abmil-paper --out figs/aml.png'],
    "plot patch-pca": ['bench plot patch-pca -e dinobloom-b --images a.jpg --images b.jpg --out figs/pca.png'],
    "batch-effect": ['bench batch-effect -e dinobloom-s,resnet50 -t synthetic-wbc,synthetic-wbc-shifted --k 30'],
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
    "suite list": ['bench suite list'],
    "suite run": ['bench suite run -e dinobloom-s -e resnet50', 'bench suite run -e color-histogram -t bccd-wbc -t sslseg-1'],
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


def _fail(message: str, code: int = 2) -> NoReturn:
    from rich.markup import escape

    console.print(f"[red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


# Exit codes, one convention for every command (README, "Exit codes"): 0 done; 1 something to fix before it can be
# done (data, weights, results, a failed pair); 2 a usage error, as click has it (an option, a name, a variant, a
# protocol of another kind): found before any work; 130 interrupted.
USAGE_ERRORS = (UsageError, RegistryError)


def exit_code(exc: HemabenchError) -> int:
    return 2 if isinstance(exc, USAGE_ERRORS) else 1


@contextmanager
def _user_errors():
    """A HemabenchError (something the user can fix) ends the command with its one-line message, exit code 2 for
    a usage error and 1 otherwise (:func:`exit_code`); anything else is a bug and propagates with its traceback.
    ``--debug`` shows the traceback of both."""
    try:
        yield
    except HemabenchError as exc:
        if _state["debug"]:
            console.print_exception()
        _fail(str(exc), exit_code(exc))
    except KeyboardInterrupt:
        _interrupted()


def _check_names(extractors=(), tasks=(), protocols=()) -> None:
    """Refuse a name that cannot resolve before any model code is imported (torch alone takes seconds): a typo,
    an unknown scheme, a bad variant or a missing plugin file ends the command at once, with the closest names and
    exit code 2 (the command line is wrong)."""
    from extractors import check_extractor
    from protocols import PROTOCOLS
    from tasks import check_task

    for check, names in ((check_extractor, extractors), (check_task, tasks), (PROTOCOLS.check, protocols)):
        for name in [n for n in names or () if n is not None]:
            try:
                check(name)
            except HemabenchError as exc:
                if _state["debug"]:
                    console.print_exception()
                _fail(f"{exc} (note: {COMMA_NOTE})" if "," in name else str(exc), 2)


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
