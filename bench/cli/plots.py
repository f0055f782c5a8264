"""``bench plot`` (UMAP, patch-PCA) and ``bench batch-effect``: pictures of embeddings, and whether they cluster by
data set."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from bench.cli.common import (
    RESULTS_HELP,
    Precision,
    _busy,
    _check_names,
    _examples,
    _fail,
    _interrupted,
    _log,
    _results,
    _split,
    _user_errors,
    app,
    out,
)
from bench.cli.options import (
    BATCH_OPTION,
    DEVICE_OPTION,
    EXTRACTOR_NAMES_HELP,
    OFFLINE_OPTION,
    PRECISION_OPTION,
    PROGRESS_OPTION,
    WEIGHTS_OPTION,
)
from bench.core.metrics import LABELS

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
    weights: Optional[Path] = WEIGHTS_OPTION,
    offline: bool = OFFLINE_OPTION,
    device: str = DEVICE_OPTION,
    precision: Precision = PRECISION_OPTION,
    batch_size: Optional[int] = BATCH_OPTION,
    progress: bool = PROGRESS_OPTION,
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
    weights: Optional[Path] = WEIGHTS_OPTION,
    offline: bool = OFFLINE_OPTION,
    device: str = DEVICE_OPTION,
    precision: Precision = PRECISION_OPTION,
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
    extractor: List[str] = typer.Option(..., "--extractor", "-e", help=EXTRACTOR_NAMES_HELP),
    task: List[str] = typer.Option(..., "--tasks", "-t", help="the data sets (cell tasks) to compare, at least two: "
                                   "-t a,b or -t a -t b"),
    k: int = typer.Option(15, help="neighbours of each cell for the kNN mixing score"),
    max_per_class: int = typer.Option(500, help="cells per data set and class at most (drawn at random per repeat)"),
    repeats: int = typer.Option(5, help="random draws when a class has more cells than are used"),
    seed: int = typer.Option(0, help="seed of the draws and of the chance level of the mixing score"),
    results: Optional[Path] = typer.Option(None, help=RESULTS_HELP),
    weights: Optional[Path] = WEIGHTS_OPTION,
    device: str = DEVICE_OPTION,
    precision: Precision = PRECISION_OPTION,
    batch_size: Optional[int] = BATCH_OPTION,
    progress: bool = PROGRESS_OPTION,
    offline: bool = OFFLINE_OPTION,
) -> None:
    """Do embeddings cluster by data set rather than by cell type? scIB's silhouettes and a kNN mixing score on
    the classes the data sets share: `bench run -t A+B -p batch-effect` with the score's settings, written as a
    result record that the leaderboard ranks (docs/figures.md)."""
    from rich.markup import escape

    from bench.core.metrics import BATCH_METRICS

    extractors, tasks = _split(extractor), _split(task)
    if weights is not None and len(extractors) != 1:
        _fail("--weights applies to one extractor; name exactly one --extractor with it")
    if len(tasks) < 2 or len(set(tasks)) < len(tasks):
        _fail(f"--tasks: name at least two different tasks (data sets) to compare, got {tasks}")
    joined = "+".join(tasks)
    _check_names(extractors, [joined])
    from dataclasses import replace

    from bench.runner import RunOptions, run_pair
    from protocols import get_protocol

    with _user_errors():
        protocol = replace(get_protocol("batch-effect"), k=k, max_per_class=max_per_class, repeats=repeats, seed=seed)
        options = RunOptions(results_dir=_results(results), weights=weights, offline=offline, device=device,
                             precision=precision.value, batch_size=batch_size, progress=progress)
    table = Table("extractor", "tasks", *(LABELS[m] for m in BATCH_METRICS), "status", box=None, pad_edge=False)
    failed = False
    for name in extractors:
        try:
            outcome = run_pair(name, joined, [protocol], options, log=_log)
        except KeyboardInterrupt:
            _interrupted()
        for record, how in [(r, "ok") for r in outcome.records] + [(r, "kept (stored result)") for r in outcome.kept]:
            mean, std = record.metrics.mean, record.metrics.std
            table.add_row(escape(name), escape(record.task.name),  # (batch-effect scores are never None)
                          *(f"{100 * mean[m]:.1f} ± {100 * std[m]:.1f}" for m in BATCH_METRICS), how)  # pyright: ignore[reportOperatorIssue]
        if outcome.status == "failed":
            failed = True
            if outcome.bug:
                _log(outcome.traceback or "")
            _log(f"failed: {name} / {outcome.task}: {outcome.error}")
            table.add_row(escape(name), escape(outcome.task), *([""] * len(BATCH_METRICS)), "failed")
    out.print(table)
    if failed:
        raise typer.Exit(1)
