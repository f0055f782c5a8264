"""The options `bench run` and `bench extract` share, with their choices, help texts and help panels."""

from __future__ import annotations

from enum import Enum

import typer

from bench.cli.common import BATCH_HELP, PRECISION_HELP, Precision


class Overwrite(str, Enum):
    never = "never"
    always = "always"
    only_missing = "only-missing"


class Pooling(str, Enum):
    cls = "cls"
    mean = "mean"
    cls_mean = "cls+mean"


class Decode(str, Enum):
    cpu = "cpu"
    gpu = "gpu"
    auto = "auto"


DECODE_HELP = ("where JPEGs are decoded and resized: cpu (PIL, in the loader workers), gpu (nvJPEG and resize on "
               "the CUDA device; within one 8-bit level of PIL's pixels, part of the features' identity), auto "
               "(gpu on CUDA)")
SHARD_HELP = ("rows per feature-cache shard: what a resumed run keeps and the unit torchrun's processes share "
              "(a shard's batches start at its first row)")


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
