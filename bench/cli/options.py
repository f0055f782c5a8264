"""The options `bench run` and `bench extract` share, with their choices, help texts and help panels."""

from __future__ import annotations

from enum import Enum

import typer

from bench.cli.common import BATCH_HELP, PRECISION_HELP, Precision


class Overwrite(str, Enum):
    never = "never"
    always = "always"
    only_missing = "only-missing"


class Decode(str, Enum):
    cpu = "cpu"
    gpu = "gpu"
    auto = "auto"


DECODE_HELP = ("where JPEGs are decoded and resized: cpu (PIL, in the loader workers), gpu (nvJPEG and resize on "
               "the CUDA device; within one 8-bit level of PIL's pixels, part of the features' identity), auto "
               "(gpu on CUDA)")
SHARD_HELP = ("rows per feature-cache shard: what a resumed run keeps and the unit torchrun's processes share "
              "(a shard's batches start at its first row)")

# `bench run --help` and `bench extract --help` in two panels: what to run (typer's first panel, "Options", with
# --help; on one 80 x 40 screen, tested), then performance and hardware. The authors' evaluation choices are parts
# of the names (tasks.names, extractors.split_pooling), not options.
PERFORMANCE_PANEL = "Performance and hardware"
EXTRACTOR_NAMES_HELP = ("extractor(s): repeat, or comma-separate (a name with : or / is taken whole); NAME+mean, "
                        "+cls, +cls+mean: another token pooling")
TASK_NAMES_HELP = ("task(s), as the result is named: acevedo, acevedo@folds=authors, acevedo@preprocessing=direct, "
                   "acevedo=>bmc (train on one, test on the other; add @training=folds, @classes=shared), a+b "
                   "(side by side: batch effect); docs/tasks.md")
DATA_ROOT_HELP = "the task's data folder (default: $BENCH_HOME/data/...; of a domain shift, the training task's)"
SPLIT_FILE_HELP = "fixed split CSV (path,split = train|test) instead of k-fold"
WEIGHTS_HELP = "weight file for the extractor (where several are named, one only)"
OVERWRITE_HELP = "existing results: never (refuse), always (redo), only-missing (skip)"
DEVICE_HELP = "auto, cpu, cuda, cuda:1, mps"
WORKERS_HELP = ("DataLoader worker processes (default: 1 per 2 CPU cores, max 4; on CUDA every core but one, max "
                "16)")
OFFLINE_HELP = "never download weights"
SKIP_BAD_HELP = "leave unreadable images out (listed in the result) instead of failing"


# The options several commands share, each defined once with its one help text.
DATA_ROOT_OPTION = typer.Option(None, metavar="DIR", help=DATA_ROOT_HELP)
WEIGHTS_OPTION = typer.Option(None, metavar="PATH", help=WEIGHTS_HELP)
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
