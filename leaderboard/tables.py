"""The leaderboard as a pure function of the results folder (no torch: reading JSON and pandas only)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.core.errors import ResultsError, UsageError
from bench.core.metrics import LABEL_METRICS, METRICS
from bench.core.record import ResultRecord, looks_like_record, predictions_path

COLUMNS = ["extractor", "task", "protocol", "main_metric", "n_folds", "warnings", "created", "predictions", "dim",
           "n_parameters", "weights_sha256", "training_iteration", "training_run"] + [
    f"{m}_{s}" for m in METRICS for s in ("mean", "std")
]


def read_results(results_dir: str | Path) -> pd.DataFrame:
    """One row per result record: extractor, task, protocol, <metric>_mean/_std, n_folds, warnings, created."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ResultsError(f"results folder {results_dir} does not exist; run `bench run` first or pass --results DIR")
    rows = []
    for path in sorted(results_dir.rglob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ResultsError(f"result file {path} is not valid JSON ({exc}); delete it and run again") from exc
        if not looks_like_record(payload):
            continue  # not a result record (e.g. a user's own JSON next to the results)
        rows.append(_row(ResultRecord.from_dict(payload, path), path))
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["task", "protocol", "extractor"], ignore_index=True)


def _row(record: ResultRecord, path: Path) -> dict:
    extractor, training = record.extractor, record.extractor.training
    row = {
        "extractor": extractor.name,
        "task": record.task.name,
        "protocol": record.protocol.name,
        "main_metric": record.metrics.main,
        "n_folds": len(record.metrics.per_fold),
        "warnings": len(record.warnings) + len(training.get("warnings") or []),  # e.g. the trainer's collapse warning
        "created": record.created,
        "predictions": str(predictions_path(path)),
        "dim": extractor.dim,
        "n_parameters": extractor.n_parameters,
        "weights_sha256": extractor.weights_sha256,
        "training_iteration": training.get("iteration"),
        "training_run": training.get("run"),
    }
    for metric in METRICS:
        row[f"{metric}_mean"] = record.metrics.mean.get(metric)
        row[f"{metric}_std"] = record.metrics.std.get(metric)
    return row


def main_table(results: pd.DataFrame) -> pd.DataFrame:
    """Extractors x (task / protocol): the main metric as "mean ± std" over folds in percent, name order."""
    if results.empty:
        return pd.DataFrame()
    cells = results.assign(
        column=results["task"] + " / " + results["protocol"],
        value=[
            _fmt(row[f"{row['main_metric']}_mean"], row[f"{row['main_metric']}_std"]) for _, row in results.iterrows()
        ],
    )
    table = cells.pivot(index="extractor", columns="column", values="value").fillna("—")
    table.columns.name = None
    return table.sort_index()


def _fmt(mean, std) -> str:
    return "—" if mean is None or pd.isna(mean) else f"{_pct(mean)} ± {_pct(std)}"


def with_confidence(results: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Add the main metric over all stored predictions (``main_pooled``) and its bootstrap 95 % interval."""
    from leaderboard.stats import bootstrap_ci

    results = results.copy()
    pooled, low, high = [], [], []
    for _, row in results.iterrows():
        path = Path(row["predictions"])
        if n_boot <= 0 or not path.is_file() or row["main_metric"] not in LABEL_METRICS:
            pooled.append(None), low.append(None), high.append(None)
            continue
        point, lo, hi = bootstrap_ci(pd.read_csv(path), row["main_metric"], n_boot=n_boot, seed=seed)
        pooled.append(point), low.append(lo), high.append(hi)
    results["main_pooled"], results["ci_low"], results["ci_high"] = pooled, low, high
    return results


def ranking(results: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Extractors x tasks for one protocol: main-metric mean over folds, the mean over tasks (missing when any
    task is missing), Borda count and per-task ranks (``leaderboard.stats.rank_table``)."""
    from leaderboard.stats import rank_table

    rows = results[results["protocol"] == protocol]
    scores = rows.assign(score=[r[f"{r['main_metric']}_mean"] for _, r in rows.iterrows()]).pivot(
        index="extractor", columns="task", values="score")
    scores.columns.name = None
    return rank_table(scores.astype(float))


def render(results: pd.DataFrame, fmt: str, n_boot: int = 1000) -> str:
    if fmt == "csv":
        return with_confidence(results, n_boot).to_csv(index=False)
    if fmt == "md":
        if results.empty:
            return "_No results yet._\n"
        parts = [main_table(results).to_markdown(),
                 "\nMain metric per task (weighted F1 unless the task says otherwise), percent, mean ± std over folds."]
        scored = with_confidence(results, n_boot)
        for protocol in sorted(results["protocol"].unique()):
            table = ranking(results, protocol)
            cells = scored[scored["protocol"] == protocol].set_index(["extractor", "task"])
            shown = pd.DataFrame(index=table.index)
            for task in [c for c in table.columns if c not in ("mean", "borda") and not c.startswith("rank ")]:
                shown[task] = [_with_ci(table.loc[e, task], cells, e, task) for e in table.index]
            shown["mean over tasks"] = [_pct(v) for v in table["mean"]]
            shown["Borda"] = table["borda"].astype(int)
            parts += [f"\n### {protocol}: ranked (Borda count over tasks)\n", shown.to_markdown()]
        parts.append("\nIn brackets: bootstrap 95 % interval of the metric over all stored predictions (resampling "
                     "images, or patients for MIL). A mean over tasks is shown only where every task has a result.")
        parts += _reported_sections()
        return "\n".join(parts) + "\n"
    if fmt == "html":
        from leaderboard.html import render_html
        from leaderboard.paper import CITATION, paper_rows, reported_table

        reported = {p: reported_table(p) for p in sorted(paper_rows()["protocol"].unique())}
        return render_html(with_confidence(results, n_boot), reported, CITATION)
    raise UsageError(f"--format must be md, csv or html, got {fmt!r}")


def _pct(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{100 * value:.1f}"


def _with_ci(value, cells: pd.DataFrame, extractor: str, task: str) -> str:
    if value is None or pd.isna(value):
        return "—"
    row = cells.loc[(extractor, task)] if (extractor, task) in cells.index else None
    if row is None or pd.isna(row["ci_low"]):
        return _pct(value)
    return f"{_pct(value)} [{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]"


def _reported_sections() -> list[str]:
    from leaderboard.paper import CITATION, paper_rows, reported_table

    parts = [f"\n## Reported in the paper ({CITATION}): weighted F1, percent; not ranked with measured rows"]
    for protocol in sorted(paper_rows()["protocol"].unique()):
        parts += [f"\n### {protocol} (reported)\n", reported_table(protocol).to_markdown()]
    return parts
