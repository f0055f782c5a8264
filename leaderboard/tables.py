"""The leaderboard as a pure function of the results folder (no torch: reading JSON and pandas only)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

METRIC_COLUMNS = ("weighted_f1", "accuracy", "balanced_accuracy", "macro_auroc")


class ResultsError(ValueError):
    """A results folder that is missing or holds an unreadable record."""


def read_results(results_dir: str | Path) -> pd.DataFrame:
    """One row per result record: extractor, task, protocol, <metric>_mean/_std, n_folds, warnings, created."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ResultsError(f"results folder {results_dir} does not exist; run `bench run` first or pass --results DIR")
    rows = []
    for path in sorted(results_dir.rglob("*.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ResultsError(f"result file {path} is not valid JSON ({exc}); delete it and run again") from exc
        if not isinstance(record, dict) or "metrics" not in record or "protocol" not in record:
            continue  # not a result record (e.g. a user's own JSON next to the results)
        row = {
            "extractor": record["extractor"]["name"],
            "task": record["task"]["task"],
            "protocol": record["protocol"]["name"],
            "main_metric": record["metrics"].get("main", "weighted_f1"),
            "n_folds": len(record["metrics"]["per_fold"]),
            "warnings": len(record.get("warnings", [])),
            "created": record.get("created"),
        }
        for metric in METRIC_COLUMNS:
            row[f"{metric}_mean"] = record["metrics"]["mean"].get(metric)
            row[f"{metric}_std"] = record["metrics"]["std"].get(metric)
        rows.append(row)
    columns = ["extractor", "task", "protocol", "main_metric", "n_folds", "warnings", "created"] + [
        f"{m}_{s}" for m in METRIC_COLUMNS for s in ("mean", "std")
    ]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["task", "protocol", "extractor"], ignore_index=True)


def main_table(results: pd.DataFrame) -> pd.DataFrame:
    """Extractors x (task / protocol): the main metric as "mean ± std" in percent (ranking is issue-6 work:
    rows are in name order, so nothing here implies a rank)."""
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
    if mean is None or pd.isna(mean):
        return "—"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def render(results: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return results.to_csv(index=False)
    if fmt == "md":
        if results.empty:
            return "_No results yet._\n"
        table = main_table(results)
        note = "\n\nMain metric per task (weighted F1 unless the task says otherwise), percent, mean ± std over folds.\n"
        return table.to_markdown() + note
    raise ValueError(f"--format must be md or csv, got {fmt!r}")
