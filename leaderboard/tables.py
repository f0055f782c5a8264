"""The leaderboard as a pure function of the results folder (no torch: reading JSON and pandas only).

Nothing is silently wrong: a result file that cannot be read, two files holding the same (extractor, task,
protocol), and predictions that cannot be read are each reported as one line naming the file and the fix (and
listed on the board); a result on a subset of a data set with a published size is marked as such and kept apart
from full-set results; Borda counts and means over tasks compare only extractors that share the same tasks;
names (which come from users' files and plugins) are escaped in Markdown and HTML.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, cast

import pandas as pd

from bench.core.errors import ResultsError, UsageError
from bench.core.metrics import INTEGRATION, LABEL_METRICS, PERTURBED_F1, SCORES
from bench.core.record import ResultRecord, cells_path, looks_like_record, predictions_path

COLUMNS = ["extractor", "task", "protocol", "source", "subset", "main_metric", "n_folds", "warnings", "collapsed",
           "checks", "created",
           "predictions", "n_images", "full_set_images", "dim", "n_parameters", "precision", "weights_sha256",
           "training_iteration", "training_run", "record", "curve"] + [
    f"{m}_{s}" for m in SCORES for s in ("mean", "std")
]
_KEY = ["extractor", "task", "protocol"]
# Where a row comes from: a results folder this board was built from ("run"), a submission that `bench verify`
# accepted ("submission"), or both (the run is shown: it reproduced the submission's entry)
RUN, SUBMISSION, SELF_REPORTED = "run", "submission", "self-reported"
# bootstrap intervals (below), UMAPs (leaderboard.maps), the suite's summary per extractor (bench.suite)
_SIDE_FILES = (".intervals.json", ".map.json", ".summary.json")
BATCH_EFFECT_NOTE = (  # beside columns whose main metric is the integration score (protocols/batch_effect.py)
    "A batch-effect column (task A+B: `bench run -t A+B` or `bench batch-effect`) holds the integration score: scIB's weighting "
    "0.6 x class ASW + 0.4 x mean(domain ASW, kNN mixing), on the classes the data sets share, domains balanced per "
    "class; higher means the data sets mix and the cell types stay apart; mean ± std over random draws "
    "(docs/figures.md).")


def read_results(results_dir: str | Path, problems: list[str] | None = None) -> pd.DataFrame:
    """One row per result record: extractor, task, protocol, <metric>_mean/_std, n_folds, warnings, created, ...

    With ``problems`` (a list), a file that cannot be read (not JSON, not a valid record, a newer schema) is
    skipped and reported there, and records of the same (extractor, task, protocol) in several files (a copied
    folder) give one row, the newest ``created``, with the clash reported: one line each, naming the files and
    the fix. Without it, the first such problem raises :class:`ResultsError`.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ResultsError(f"results folder {results_dir} does not exist; run `bench run` first or pass --results DIR")
    found = [] if problems is None else problems
    rows = []
    links: list[Path] = []
    for path in files_inside(results_dir, ".json", links):
        if path.name.endswith(_SIDE_FILES):
            continue  # kept beside the records, read (and reported) by what uses them
        try:
            try:
                payload = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ResultsError(f"result file {path} is not valid JSON ({exc}); delete it and run again") from exc
            except (OSError, UnicodeDecodeError) as exc:
                raise ResultsError(f"result file {path} cannot be read ({exc}); fix its permissions or delete it "
                                   "and run again") from exc
            if not looks_like_record(payload):
                raise ResultsError(f"{path} is JSON but not a result record ({_what_json(payload)}); move it out of "
                                   "the results folder")
            rows.append(_checked_row(ResultRecord.from_dict(payload, path), path))
        except ResultsError as exc:
            if problems is None:
                raise
            found.append(f"skipped: {exc}")
    found.extend(f"skipped: {link_problem(path)}" for path in links)
    rows = _without_duplicates(rows, found)
    if problems is None and found:
        raise ResultsError(found[0])
    return _table(rows).sort_values(["task", "protocol", "extractor"], ignore_index=True)


def files_inside(folder: Path, suffix: str, links: list[Path]) -> list[Path]:
    """The files ending in ``suffix`` below ``folder``, in path order, without following a symbolic link: a link
    (to a file or a folder, inside or outside) is appended to ``links`` and never read, so nothing outside the
    folder reaches a board or a submission."""
    found = []
    for top, folders, files in os.walk(folder):  # os.walk does not descend into linked folders
        for name in sorted(folders + files):
            path = Path(top) / name
            if path.is_symlink():
                if name.endswith(suffix) or name in folders:
                    links.append(path)
            elif name in files and name.endswith(suffix):
                found.append(path)
    return sorted(found)


def link_problem(path: Path) -> str:
    return (f"{path} is a symbolic link (to {os.readlink(path)}); only files inside the folder are read: replace it "
            "with a copy of what it points to")


def _what_json(payload) -> str:
    if isinstance(payload, dict):
        return f"an object without {' and '.join(k for k in ('metrics', 'protocol') if k not in payload)}"
    return "null" if payload is None else f"a JSON {type(payload).__name__.replace('str', 'string')}"


def _checked_row(record: ResultRecord, path: Path) -> dict:
    """The board row of a record whose numbers its predictions give again (bench.core.rescore); a record that
    disagrees with its predictions is refused (ResultsError), one without predictions shown with the problem
    reported later (no interval)."""
    from bench.core.rescore import rescore_file

    if record.curve is not None:  # few-shot: its episodes are its evidence (no per-cell predictions)
        from bench.core.curves import curve_problems

        problems = curve_problems(record)
        if problems:
            raise ResultsError(f"{path} is not shown: it does not agree with its episodes ({'; '.join(problems[:3])}). "
                               "`bench run` with --overwrite only-missing recomputes it; or delete it")
        return _row(record, path)
    if record.metrics.main == PERTURBED_F1:  # robustness: its per-cell table is its evidence
        from bench.core.rescore import rescore_robustness

        problems = rescore_robustness(record, cells_path(path))
        if problems:
            raise ResultsError(f"{path} is not shown: it does not agree with its per-cell table "
                               f"({'; '.join(problems[:3])}). `bench run` with --overwrite only-missing recomputes "
                               "it; or delete it")
        return _row(record, path)
    table = predictions_path(path)
    if not (table.exists() or table.is_symlink()):
        return _row(record, path)
    check = rescore_file(record, table)
    if check.problems:
        shown = "; ".join(check.problems[:3]) + (f"; and {len(check.problems) - 3} more" if len(check.problems) > 3
                                                 else "")
        raise ResultsError(f"{path} is not shown: it does not agree with its predictions ({shown}). `bench run` "
                           "with --overwrite only-missing recomputes it; or delete it")
    return _row(record, path, collapsed=len(check.collapsed))


def _table(rows: list[dict]) -> pd.DataFrame:
    """Board rows (:func:`_row`) as the table :func:`read_results` returns."""
    return pd.DataFrame(rows, columns=COLUMNS).astype({"n_images": "Int64", "full_set_images": "Int64"})


def empty_results() -> pd.DataFrame:
    """The table of :func:`read_results` without rows."""
    return _table([])


def submission_row(record: ResultRecord, record_path: Path, predictions: Path | None, collapsed: int, checks: str,
                   verified: bool) -> dict:
    """The board row of an accepted submission: ``record`` as derived again by ``bench verify`` (its metrics CI's
    own where it ran the protocol), ``predictions`` CI's (None for a few-shot record: its curve is in it),
    ``checks`` what was derived again and what was taken on trust; its source is "submission" (verified) or
    "self-reported"."""
    return _row(record, Path(record_path), predictions=None if predictions is None else Path(predictions),
                source=SUBMISSION if verified else
                SELF_REPORTED, collapsed=collapsed, checks=checks)


def with_submissions(runs: pd.DataFrame, submitted: list[dict]) -> pd.DataFrame:
    """The board's rows: the runs and the verified submissions' rows. Where both hold an (extractor, task,
    protocol), the run is shown and its source reads "run, submission" (it reproduced the submitted entry)."""
    have = {tuple(r) for r in runs[_KEY].itertuples(index=False)}
    runs = runs.copy()
    both = {tuple(row[k] for k in _KEY) for row in submitted} & have
    kinds = {tuple(row[k] for k in _KEY): row["source"] for row in submitted}
    runs["source"] = [f"{RUN}, {kinds[tuple(r)]}" if tuple(r) in both else s
                      for r, s in zip(runs[_KEY].itertuples(index=False), runs["source"])]
    extra = _table([row for row in submitted if tuple(row[k] for k in _KEY) not in have])
    if extra.empty:
        return runs
    return pd.concat([runs, extra], ignore_index=True).sort_values(["task", "protocol", "extractor"], ignore_index=True)


def _created(row: dict) -> _dt.datetime:
    """The record's creation time for choosing among copies; missing or unreadable ones count as oldest."""
    try:
        moment = _dt.datetime.fromisoformat(str(row["created"]))
    except (TypeError, ValueError):
        return _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
    return moment if moment.tzinfo else moment.replace(tzinfo=_dt.timezone.utc)


def _without_duplicates(rows: list[dict], problems: list[str]) -> list[dict]:
    """One row per (extractor, task, protocol): the newest ``created`` (the first file in path order among
    equals); each clash is reported with every file it involves."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in _KEY), []).append(row)
    kept = []
    for key, group in groups.items():
        newest = max(group, key=_created)  # max keeps the first of equals, and rows come in path order
        kept.append(newest)
        if len(group) > 1:
            others = ", ".join(r["record"] for r in group if r is not newest)
            problems.append(
                f"duplicate: {len(group)} result files hold {' / '.join(map(str, key))}: {newest['record']} "
                f"(created {newest['created'] or 'unknown'}) is shown, {others} not; delete or move the copies "
                "out of the results folder"
            )
    return kept


def subset_mark(task: dict) -> tuple[int | None, int | None, str]:
    """(images found, published full-set size, mark) of a record's task section: the mark reads
    "subset: 4,000 of 17,092 images" when the data held fewer images than the task's published full set
    (``full_set_images``, recorded by tasks that have one), else "not the canonical split" when the task pins its
    split (``canonical_split_sha256``) and the result's ``split_sha256`` differs (other folds, files or labels), or
    names its canonical rule (``canonical_split_rule``, BMC's authors' list) and the data set followed another
    (``split_rule``).
    Images found: ``n_images_found`` (image files in the data folder, including those a task leaves out on
    purpose) where recorded, else ``n_samples``. A domain-shift record marks its train and test sides."""
    if isinstance(task.get("train"), dict) or isinstance(task.get("test"), dict):
        marks = []
        for side in ("train", "test"):
            mark = subset_mark(task[side])[2] if isinstance(task.get(side), dict) else ""
            if mark:
                marks.append(f"{side} {mark}")
        return None, None, "; ".join(marks)
    full = task.get("full_set_images")
    found = task.get("n_images_found", task.get("n_samples"))
    full = full if isinstance(full, int) and not isinstance(full, bool) and full > 0 else None
    found = found if isinstance(found, int) and not isinstance(found, bool) else None
    marks = []
    if full is not None and found is not None and found < full:
        marks.append(f"subset: {found:,} of {full:,} images")
    canonical, rule = task.get("canonical_split_sha256"), task.get("canonical_split_rule")
    other = (isinstance(canonical, str) and task.get("split_sha256") != canonical) or \
        (isinstance(rule, str) and task.get("split_rule", rule) != rule)  # BMC: the authors' list, else generated
    if other and not task.get("split_file") and not marks:  # a subset is never on the canonical split: one column
        marks.append("not the canonical split")  # for results on that subset
    return found, full, "; ".join(marks)


def _row(record: ResultRecord, path: Path, predictions: Path | None = None, source: str = RUN, collapsed: int = 0,
         checks: str = "") -> dict:
    extractor, training = record.extractor, record.extractor.training
    n_images, full_set, mark = subset_mark(record.task.model_extra or {})
    row = {
        "extractor": extractor.name,
        "task": record.task.name,
        "protocol": record.protocol.name,
        "source": source,
        "subset": mark,
        "main_metric": record.metrics.main,
        "n_folds": len(record.metrics.per_fold),
        "warnings": len(record.warnings) + len(training.get("warnings") or []),  # e.g. the trainer's collapse warning
        "collapsed": collapsed,  # folds whose predictions are one class although their labels are several
        "checks": checks,  # a submission: what `bench verify` re-derived
        "created": record.created,
        "predictions": str(predictions or predictions_path(path)),
        "n_images": n_images,
        "full_set_images": full_set,
        "dim": extractor.dim,
        "n_parameters": extractor.n_parameters,
        "precision": extractor.precision,
        "weights_sha256": extractor.weights_sha256,
        "training_iteration": training.get("iteration"),
        "training_run": training.get("run"),
        "record": str(path),
        "curve": record.curve,  # few-shot: the label-efficiency curve (bench.core.curves)
    }
    for metric in SCORES:
        row[f"{metric}_mean"] = record.metrics.mean.get(metric)
        row[f"{metric}_std"] = record.metrics.std.get(metric)
    return row


def task_label(task: str, subset: str) -> str:
    """The task as a column of the tables: a subset result is its own column, never beside full-set ones."""
    return f"{task} ({subset})" if subset else task


def _labels(results: pd.DataFrame) -> pd.Series:
    subset = results["subset"].fillna("") if "subset" in results else [""] * len(results)
    return pd.Series([task_label(t, s) for t, s in zip(results["task"], subset)], index=results.index, dtype=object)


def main_table(results: pd.DataFrame) -> pd.DataFrame:
    """Extractors x (task / protocol): the main metric as "mean ± std" over folds in percent, name order. A
    result on a subset of a data set with a published size has its own column, "task (subset: n of N images)"."""
    if results.empty:
        return pd.DataFrame()
    cells = results.assign(
        column=_labels(results) + " / " + results["protocol"],
        value=[
            _fmt(row[f"{row['main_metric']}_mean"], row[f"{row['main_metric']}_std"]) for _, row in results.iterrows()
        ],
    )
    table = cells.pivot(index="extractor", columns="column", values="value").fillna("—")
    table.columns.name = None
    return table.sort_index()


def main_scores(results: pd.DataFrame, stat: str = "mean") -> list:
    """Each row's main metric's ``stat`` ("mean" or "std"), None where the row holds none."""
    return [row.get(f"{row['main_metric']}_{stat}") for _, row in results.iterrows()]


def _fmt(mean, std) -> str:
    return "—" if mean is None or pd.isna(mean) else f"{_pct(mean)} ± {_pct(std)}"


def with_confidence(results: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
                    problems: list[str] | None = None, on_row=None) -> pd.DataFrame:
    """Add the main metric over all stored predictions (``main_pooled``) and its bootstrap 95 % interval; for a
    few-shot result, its mean over episodes and their t interval (:mod:`bench.core.curves`).

    A predictions file that is missing or cannot be read leaves its row with its score and no interval, and
    is reported in ``problems`` (one line naming the file and the fix)."""
    problems = [] if problems is None else problems
    results = results.copy()
    pooled, low, high = [], [], []
    for number, (_, row) in enumerate(results.iterrows()):
        if on_row is not None:  # progress: on_row(done, total)
            on_row(number, len(results))
        path = Path(row["predictions"])
        point = lo = hi = None
        curve = row.get("curve")
        if isinstance(curve, dict):  # few-shot: the t interval over its episodes, recorded with it
            overall = curve.get("overall") or {}
            point, lo, hi = (overall.get(k, {}).get(row["main_metric"]) for k in ("mean", "ci_low", "ci_high"))
        elif n_boot > 0 and row["main_metric"] in LABEL_METRICS:
            what = f"{row['extractor']} / {row['task']} / {row['protocol']}"
            fix = (f"{what} is shown without its 95 % interval; run it again with `bench run ... --overwrite always` "
                   "to write its predictions")
            if not path.is_file():
                problems.append(f"no interval: predictions file {path} is missing; {fix}")
            else:
                try:
                    point, lo, hi = cached_interval(path, row["main_metric"], n_boot, seed)
                except (OSError, ValueError, KeyError, IndexError) as exc:  # parse errors, bad columns, empty
                    problems.append(f"no interval: predictions file {path} cannot be read "
                                    f"({type(exc).__name__}: {_one_line(exc)}); {fix}")
        pooled.append(point)
        low.append(lo)
        high.append(hi)
    if on_row is not None:
        on_row(len(results), len(results))
    results["main_pooled"], results["ci_low"], results["ci_high"] = pooled, low, high
    return results


INTERVALS_VERSION = 1  # bump when the interval computation changes its numbers


def intervals_path(predictions: Path, sha256: str | None = None) -> Path:
    """``<protocol>.intervals.json`` beside ``<protocol>.predictions.csv``: the intervals computed from it. Any
    other predictions file (a submission's ``predictions.csv.gz``, in a repository) is never written beside, nor
    is a file found there trusted: its intervals are kept in the cache, under the file's sha256 (``sha256``, when
    the caller has it already)."""
    if predictions.name.endswith(".predictions.csv"):
        return predictions.with_name(predictions.name.replace(".predictions.csv", ".intervals.json"))
    from bench.core import settings
    from bench.core.files import sha256_file

    return settings.cache_dir() / "intervals" / f"{sha256 or sha256_file(predictions)}.json"


def cached_interval(predictions: Path, metric: str, n_boot: int, seed: int = 0) -> tuple[float, float, float]:
    """``bootstrap_ci`` of a predictions file, kept beside it keyed by the file's sha256 and the settings, so a
    board rebuilt from the same results reads its intervals instead of resampling again. A cache that does not
    match (other predictions, settings or code) is recomputed; one that cannot be written (a read-only results
    folder) is skipped: it only saves time."""
    from bench.core.files import sha256_file
    from leaderboard.stats import bootstrap_ci

    sha = sha256_file(predictions)
    cache = intervals_path(predictions, sha)  # (a submission's cache is named by the same digest: hashed once)
    key = f"{metric}|n_boot={n_boot}|seed={seed}|level=0.95"
    try:
        stored: Any = json.loads(cache.read_text())
    except (OSError, ValueError):
        stored = None
    current = (isinstance(stored, dict) and stored.get("predictions_sha256") == sha
               and stored.get("version") == INTERVALS_VERSION and isinstance(stored.get("intervals"), dict))
    keep = stored if current else {"predictions_sha256": sha, "version": INTERVALS_VERSION, "intervals": {}}
    try:
        point, lo, hi = keep["intervals"][key]
        return float(point), float(lo), float(hi)
    except (KeyError, TypeError, ValueError):
        pass  # not computed yet with these settings (or damaged): compute it
    interval = bootstrap_ci(pd.read_csv(predictions), metric, n_boot=n_boot, seed=seed)
    keep["intervals"][key] = list(interval)
    try:  # renamed into place, but not fsynced: a cache lost in a crash is only recomputed
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(keep, sort_keys=True))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only results folder: the board is still right, only slower next time
    return interval


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def ranking(results: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Extractors x tasks for one protocol (a subset result is its own task column): main-metric mean over
    folds, per-task ranks, and the mean over tasks and Borda count among the extractors that have every task of
    the table (``leaderboard.stats.rank_table``)."""
    from leaderboard.stats import rank_table

    rows = results[results["protocol"] == protocol]
    collapsed = rows["collapsed"].fillna(0) > 0 if "collapsed" in rows else pd.Series(False, index=rows.index)
    # (pandas-stubs takes no list holding None as a column)
    scores = rows.assign(task_label=_labels(rows), score=[None if c else r[f"{r['main_metric']}_mean"]  # pyright: ignore[reportArgumentType]
                                                          for c, (_, r) in zip(collapsed, rows.iterrows())]
                         ).pivot(index="extractor", columns="task_label", values="score")  # a collapse is never ranked
    scores.columns.name = None
    return rank_table(scores.astype(float))


def render(results: pd.DataFrame, fmt: str, n_boot: int = 1000, problems: list[str] | None = None,
           on_row=None, runs_badge: str = "run here") -> str:
    """The board in ``fmt`` (md, csv, html). ``problems``: what reading the results reported
    (:func:`read_results`); problems with predictions are added to it. The md and html boards list them all."""
    problems = [] if problems is None else problems
    if fmt == "csv":
        return with_confidence(results, n_boot, problems=problems, on_row=on_row).drop(columns=["record", "curve"]).to_csv(
            index=False)
    if fmt == "md":
        return _render_md(results, n_boot, problems, on_row)
    if fmt == "html":
        from leaderboard.html import render_html
        from leaderboard.maps import maps_beside
        from leaderboard.paper import CITATION, paper_rows, reported_table

        reported = {p: reported_table(p) for p in sorted(paper_rows()["protocol"].unique())}
        scored = with_confidence(results, n_boot, problems=problems, on_row=on_row)
        maps = maps_beside(results, problems)
        return render_html(scored.assign(task_label=_labels(scored)), reported, CITATION, problems, maps, paper_rows(),
                           runs_badge)
    raise UsageError(f"--format must be md, csv or html, got {fmt!r}")


def _render_md(results: pd.DataFrame, n_boot: int, problems: list[str], on_row=None) -> str:
    if results.empty:
        return "\n".join(["_No results yet._", *_problems_md(problems)]) + "\n"
    scored = with_confidence(results, n_boot, problems=problems, on_row=on_row)
    scored = scored.assign(task_label=_labels(scored))
    parts = [_md_table(main_table(results)),
             "\nMain metric per task (weighted F1 unless the task says otherwise), percent, mean ± std over folds."]
    from leaderboard.suite import suite_md

    parts += suite_md(results, md_text)
    if (results["main_metric"] == INTEGRATION).any():
        parts.append(BATCH_EFFECT_NOTE)
    for kind, title in ((SUBMISSION, "Verified submissions (labels, folds, protocol and features derived again by "
                                      "`bench verify`; the numbers are its own run of the protocol)"),
                        (SELF_REPORTED, "Self-reported submissions (accepted by `bench verify`, but some part taken on "
                                        "trust, as said for each)")):
        submitted = results[[kind in sources_of(s) for s in results.get("source", pd.Series(dtype=object))]]
        if len(submitted):
            names = "; ".join(f"{e} / {t} / {p}" + ("" if kind == SUBMISSION else f" ({c})")
                              for e, t, p, c in submitted[[*_KEY, "checks"]].itertuples(index=False))
            parts.append(f"{title}: {md_text(names)}.")
    collapsed = scored[scored["collapsed"].fillna(0) > 0]
    if len(collapsed):
        parts.append("⚠ collapsed: the predictions of these results fell onto one class in some fold (a probe that "
                     "learned nothing); they are shown with a warning and never ranked: "
                     + md_text("; ".join(f"{e} / {t} / {p}" for e, t, p in collapsed[_KEY].itertuples(index=False)))
                     + ".")
    if (scored["task_label"] != scored["task"]).any():
        parts.append("A column marked \"subset: n of N images\" holds results on part of a data set whose full set "
                     "has N images: they are not comparable with full-set results (nor with the paper's reported "
                     "numbers below) and are never ranked with them. One marked \"not the canonical split\" used "
                     "other folds, files or labels than the task's pinned split, and is kept apart likewise.")
    for protocol in sorted(results["protocol"].unique()):
        table = ranking(results, protocol)
        cells = scored[scored["protocol"] == protocol].set_index(["extractor", "task_label"])
        tasks = [c for c in table.columns if c not in ("mean", "borda", "ranked") and not c.startswith("rank ")]
        shown = pd.DataFrame(index=table.index)
        for task in tasks:
            shown[task] = [_collapsed_cell(cells, e, task) or
                           _with_ci(table.loc[e, task], cells, e, task, table.loc[e, f"rank {task}"])
                           for e in table.index]
        shown["mean over tasks"] = [_pct(v) for v in table["mean"]]
        shown["Borda"] = ["—" if pd.isna(v) else str(int(v)) for v in table["borda"]]
        unranked = int((~table["ranked"]).sum())
        parts += [f"\n### {md_text(protocol)}: ranked (Borda count over tasks)\n", _md_table(shown)]
        if unranked:
            parts.append(f"\nNot ranked: {unranked} extractor(s), listed last by name, lack a result on some task of "
                         "this table; they keep their per-task ranks, without a mean over tasks or a Borda count.")
    parts.append("\nIn brackets: bootstrap 95 % interval of the metric over all stored predictions (resampling "
                 "images, or patients for MIL); (#n): rank on that task among every extractor with a result on it. "
                 "The mean over tasks and the Borda count (per task, the number of those extractors with a strictly "
                 "lower score) compare only the extractors that have a result on every task of the table, sorted "
                 "first by Borda count.")
    from leaderboard.calibration import calibration_md
    from leaderboard.curves import curves_md
    from leaderboard.generalisation import matrices_md
    from leaderboard.robustness import robustness_md

    parts += matrices_md(results, md_text)
    parts += curves_md(scored, md_text)
    parts += robustness_md(results, md_text)
    parts += calibration_md(results, md_text)
    parts += _problems_md(problems)
    parts += _reported_sections(results)
    return "\n".join(parts) + "\n"


def _problems_md(problems: list[str]) -> list[str]:
    if not problems:
        return []
    return [f"\n## Problems with the results folder ({len(problems)})\n",
            *[f"- {md_text(line)}" for line in problems]]


# Characters that make Markdown structure (tables, links, code, emphasis, raw HTML); "_" is left alone: inside
# a word it never makes emphasis, and names such as teacher_0001000.pth stay readable in the raw board.
_MD_ESCAPES = str.maketrans({"\\": "\\\\", "`": "\\`", "*": "\\*", "[": "\\[", "]": "\\]", "|": "\\|",
                             "&": "&amp;", "<": "&lt;", ">": "&gt;", "\t": " "})


def md_text(value) -> str:
    """A name (extractor, task, protocol, path: they come from users' files) as inert Markdown text: ``|`` and
    the characters that make links, code or emphasis backslash-escaped, HTML characters as entities, line breaks
    as spaces."""
    return " ".join(str(value).splitlines()).translate(_MD_ESCAPES)


def _md_table(table: pd.DataFrame) -> str:
    """``table.to_markdown()`` with its index (extractors) and columns (tasks) escaped; cells are our own
    formatted numbers. Numbers are never re-parsed (a name such as "1e3" stays as written)."""
    shown = table.copy()
    shown.index = [md_text(i) for i in shown.index]
    shown.index.name = "extractor"
    shown.columns = [md_text(c) for c in shown.columns]
    return shown.to_markdown(disable_numparse=True)


def sources_of(value) -> list[str]:
    """The sources of a board row's ``source`` ("run", "submission", "self-reported", or "run, submission")."""
    return [part.strip() for part in str(value or RUN).split(",") if part.strip()]


def _collapsed_cell(cells: pd.DataFrame, extractor: str, task: str) -> str:
    """A collapsed result's cell ("4.8 ⚠ collapsed": its number, no rank), or "" for any other."""
    if (extractor, task) not in cells.index:
        return ""
    row = cast(pd.Series, cells.loc[(extractor, task)])  # (a unique key: one row)
    if not (row["collapsed"] or 0) > 0:
        return ""
    return f"{_pct(row[row['main_metric'] + '_mean'])} ⚠ collapsed"


def _pct(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{100 * value:.1f}"


def _with_ci(value, cells: pd.DataFrame, extractor: str, task: str, rank=None) -> str:
    if value is None or pd.isna(value):
        return "—"
    rank = "" if rank is None or pd.isna(rank) else f" (#{int(rank)})"
    row = cast(pd.Series, cells.loc[(extractor, task)]) if (extractor, task) in cells.index else None
    if row is None or pd.isna(row["ci_low"]):
        return _pct(value) + rank
    return f"{_pct(value)} [{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]{rank}"


def fold_spread(results: pd.DataFrame) -> pd.DataFrame:
    """How much the choice of folds alone moves a result: for each (extractor, task, protocol) measured under
    several fold schemes (``acevedo`` and ``acevedo@folds=authors``, the same features), the main metric under
    each and their range (points). Empty when no result has a fold variant."""
    import re

    rows = []
    base = results["task"].map(lambda t: re.sub(r"@folds=[^@]+", "", str(t)))
    scored = results.assign(base=base, score=main_scores(results))
    for (extractor, task, protocol), group in scored.groupby(["extractor", "base", "protocol"], sort=True):
        if group["task"].nunique() < 2 or group["score"].isna().any():
            continue
        schemes = {("portable" if t == task else t.split("@folds=", 1)[1].split("@")[0]): float(v)
                   for t, v in zip(group["task"], group["score"])}
        rows.append({"extractor": extractor, "task": task, "protocol": protocol, "schemes": schemes,
                     "spread": 100 * (max(schemes.values()) - min(schemes.values()))})
    return pd.DataFrame(rows, columns=["extractor", "task", "protocol", "schemes", "spread"])


def fold_spread_sentence(results: pd.DataFrame) -> str:
    """One sentence for beside the paper's rows: the largest fold spread measured here, or what is known."""
    spread = fold_spread(results)
    general = ("The DinoBloom authors' folds depended on their file listing, so nobody can rebuild them: a "
               "difference to the paper's numbers smaller than what the choice of folds alone moves a result says "
               "nothing (on 1,600 real PBC images, 0.3-1.3 points for the same features; docs/benchmarks.md, "
               "\"The authors' choices on real images\").")
    if spread.empty:
        return general + " Run -t TASK@folds=authors beside the default to measure it here."
    top = spread.sort_values("spread").iloc[-1]
    shown = ", ".join(f"{k} {100 * v:.1f}" for k, v in sorted(top["schemes"].items()))
    return (f"{general} On this board the fold scheme alone moves a result by up to {top['spread']:.1f} points "
            f"({top['extractor']} / {top['task']} / {top['protocol']}: {shown}; {len(spread)} result(s) measured "
            "under several fold schemes).")


def _reported_sections(results: pd.DataFrame | None = None) -> list[str]:
    from leaderboard.paper import CITATION, LABEL_SET_NOTE, paper_rows, reported_table

    parts = [f"\n## Reported in the paper ({CITATION}): weighted F1, percent, on the full data sets; not ranked "
             "with measured rows", "\n" + md_text(LABEL_SET_NOTE)]
    if results is not None:
        parts.append("\n" + md_text(fold_spread_sentence(results)))
    for protocol in sorted(paper_rows()["protocol"].unique()):
        parts += [f"\n### {protocol} (reported)\n", reported_table(protocol).to_markdown()]
    return parts
