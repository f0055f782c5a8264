"""``bench leaderboard`` and ``bench compare``: results turned into ranked tables, and two extractors compared."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from bench.cli.common import RESULTS_HELP, _examples, _fail, _log, _results, _steps, _user_errors, app, console, out
from bench.core.metrics import LABEL_METRICS, MAIN_METRIC


class BoardFormat(str, Enum):
    md = "md"
    csv = "csv"
    html = "html"


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
