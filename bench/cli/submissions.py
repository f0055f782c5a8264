"""``bench submit`` and ``bench verify``: results packaged for a pull request, and submissions checked before they
reach a board."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from bench.cli.common import RESULTS_HELP, _examples, _fail, _log, _results, _split, _user_errors, app, out


@app.command(epilog=_examples("submit"))
def submit(
    out_path: Path = typer.Option(..., "--out", help="the submissions folder (e.g. leaderboard/submissions)"),
    results: Optional[Path] = typer.Option(None, help=RESULTS_HELP),
    extractor: Optional[List[str]] = typer.Option(None, "--extractor", "-e", help="only these extractors"),
    task: Optional[List[str]] = typer.Option(None, "--task", "-t", help="only these tasks"),
    data_root: Optional[Path] = typer.Option(None, help="where the task's images are now, if not where the results "
                                             "say (their features are packaged from the cache in its row order)"),
) -> None:
    """Package results for a pull request: each record, its predictions (compressed; a few-shot record holds its
    episodes instead), the features of each (extractor, task) as float16, the extractor's card, the data's identity
    and digests; `bench verify` runs the protocol again on those features (docs/submitting.md)."""
    from bench.submissions import submit as package

    with _user_errors():
        written = package(_results(results), out_path, _split(extractor) or None, _split(task) or None, log=_log,
                          data_root=data_root)
    if not written:
        _fail(f"no result with predictions (or few-shot episodes) found under {_results(results)}" + (" for the names given" if extractor
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
        if not derived.failures and derived.checks is not None:  # (an accepted submission carries its checks)
            where = folder.relative_to(submissions).as_posix()
            _log(f"{derived.checks.badge}: {where}: {derived.checks.summary()}")
    for line in problems:
        _log(f"refused: {line}")
    if not found:
        _fail(f"no submission (submission.json) under {submissions}; make them with `bench submit`", 1)
    if problems:
        _fail(f"{len(problems)} problem(s) in {found} submission(s); those submissions do not reach the board", 1)
    verified = sum(d.checks.verified for d in outcome.values() if d.checks is not None)
    out.print(f"{found} submission(s) accepted: {verified} verified, {found - verified} self-reported", markup=False)
