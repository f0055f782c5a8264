"""The board as the paper's Table 2: one row per extractor, one column group per task and protocol, weighted F1
and balanced accuracy in each, the best measured value of every column marked; the paper's reported rows beneath
in the same columns (never marked, never ranked with measured rows). A result on a subset of a data set with a
published size is its own column group, headed as a subset. Batch-effect and robustness results (other scores),
few-shot curves and domain shifts (``A=>B``: the generalisation matrices) have their own sections.
"""

from __future__ import annotations

from html import escape
from typing import cast

import pandas as pd

from bench.core.metrics import BALANCED_ACCURACY, LABELS, WEIGHTED_F1

GRID_METRICS = (WEIGHTED_F1, BALANCED_ACCURACY)
_ORDER = {"knn-1": 0, "knn-20": 1, "knn-cosine": 2, "linear": 3, "linear-std": 4, "abmil-paper": 5, "abmil-gated": 6}


def columns(results: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(task label, task, protocol) of every column group, tasks by name, protocols in the paper's order."""
    rows = results[results[f"{WEIGHTED_F1}_mean"].notna()]  # (batch-effect results hold other scores)
    if "curve" in rows:  # nor are few-shot curves a column of the paper's table (their own section)
        rows = rows[[not isinstance(c, dict) for c in rows["curve"]]]
    rows = rows[~rows["task"].str.contains("=>", regex=False)]  # nor domain shifts: the generalisation matrices
    groups = {(r["task_label"], r["task"], r["protocol"]) for _, r in rows.iterrows()}
    return sorted(groups, key=lambda g: (g[0], _ORDER.get(g[2], 99), g[2]))


BADGE_CSS = (".badge{display:inline-block;font-size:10px;line-height:14px;padding:0 4px;margin:1px 0 1px 4px;"
             "border-radius:3px;white-space:nowrap;font-weight:normal}.badge.run{background:#dde8f6}"
             ".badge.submission{background:#f6e8c8}.badge.self-reported{background:#f3d6d6}"
             ".badge.paper{background:#e8e8e8}")
SUBMISSION_BADGE, SELF_REPORTED_BADGE, PAPER_BADGE = ("verified submission", "self-reported submission",
                                                      "reported in the paper")
BADGES = {"submission": SUBMISSION_BADGE, "self-reported": SELF_REPORTED_BADGE, "paper": PAPER_BADGE}
COLLAPSED_MARK = "⚠"  # a result whose predictions collapsed to one class in some fold: a warning, never the best


def sources(value) -> list[str]:
    """The sources of a row ("run", "submission", or both: ``leaderboard.tables.with_submissions``)."""
    return [part.strip() for part in str(value or "run").split(",") if part.strip()]


def badge(source: str, runs_badge: str, checks: str = "") -> str:
    """A row's source as a badge; a submission's says what `bench verify` derived again (``checks``) on hover."""
    text = {"run": runs_badge, **BADGES}.get(source, source)
    kind = source if source in ("run", *BADGES) else "run"
    tip = f' title="{escape(checks, quote=True)}"' if checks else ""
    return f'<span class="badge {kind}"{tip}>{escape(text)}</span>'


def _pct(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{100 * value:.1f}"


def grid_html(results: pd.DataFrame, reported: pd.DataFrame | None, runs_badge: str = "run here",
              beneath: tuple[str, ...] = ()) -> str:
    """``results``: the board's rows (with ``task_label``, ``ci_low``/``ci_high`` where known, ``source``);
    ``reported``: :func:`leaderboard.paper.paper_rows`. Each extractor's name carries a badge per source of its
    values (the results folder: ``runs_badge``; a verified submission), the paper's rows theirs; beneath the
    table, where the paper's rows are shown, one paragraph per sentence of ``beneath`` (which task the paper's rows
    are, how far fold choice alone moves a result). An empty string when no result has these metrics."""
    groups = columns(results)
    if not groups:
        return ""
    head_tasks, head_protocols, head_metrics = ["<th rowspan=\"3\">extractor</th>"], [], []
    for label in dict.fromkeys(g[0] for g in groups):
        span = 2 * sum(1 for g in groups if g[0] == label)
        head_tasks.append(f'<th colspan="{span}" class="group">{escape(label)}</th>')
    for label, _, protocol in groups:
        head_protocols.append(f'<th colspan="2" class="group">{escape(protocol)}</th>')
        head_metrics += [f'<th class="metric">{escape(LABELS[m])}</th>' for m in GRID_METRICS]
    cells = results.set_index(["extractor", "task_label", "protocol"])
    best = {}
    for label, _, protocol in groups:
        rows = results[(results["task_label"] == label) & (results["protocol"] == protocol)]
        for metric in GRID_METRICS:
            values = rows.loc[_collapsed(rows) == 0, f"{metric}_mean"].dropna()  # a collapsed result is never best
            best[(label, protocol, metric)] = values.max() if len(values) else None
    body = []
    wanted = {(label, protocol) for label, _, protocol in groups}
    shown = results[[key in wanted for key in zip(results["task_label"], results["protocol"])]]
    for extractor in sorted(results["extractor"].unique()):
        mine = shown[shown["extractor"] == extractor]
        kinds = sorted({k for value in mine.get("source", []) for k in sources(value)},
                       key=["run", "submission", "self-reported"].index)
        checks = "; ".join(sorted({str(c) for c in mine.get("checks", []) if isinstance(c, str) and c}))
        tds = [f'<td class="name" title="{escape(extractor, quote=True)}">{escape(extractor)}'
               f'{"".join(badge(k, runs_badge, checks if k != "run" else "") for k in kinds)}</td>']
        for label, _, protocol in groups:
            key = (extractor, label, protocol)
            # (a unique key: one row; pandas-stubs has no overload for a 3-level key)
            row = cast(pd.Series, cells.loc[key]) if key in cells.index else None  # pyright: ignore[reportCallIssue, reportArgumentType]
            for metric in GRID_METRICS:
                tds.append(_measured_cell(row, metric, best[(label, protocol, metric)], runs_badge))
        body.append("<tr>" + "".join(tds) + "</tr>")
    paper = _reported_rows(groups, reported)
    table = ('<div class="scroll"><table class="grid" id="grid"><thead>'
             f"<tr>{''.join(head_tasks)}</tr><tr>{''.join(head_protocols)}</tr><tr>{''.join(head_metrics)}</tr>"
             f"</thead><tbody>{''.join(body)}</tbody>{paper}</table></div>")
    if paper:  # beside the paper's rows, outside the scrolling table so that it wraps on screen
        table += "".join(f'<p class="beneath-paper">{escape(text)}</p>' for text in beneath if text)
    return table


def _measured_cell(row, metric: str, best, runs_badge: str = "run here") -> str:
    if row is None or pd.isna(row[f"{metric}_mean"]):
        return '<td class="num">—</td>'
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    tip = f"mean ± std over {int(row['n_folds'])} fold(s): {_pct(mean)} ± {_pct(std)}"
    origin = [{"run": runs_badge, **BADGES}.get(k, k) for k in sources(row.get("source"))]
    tip += f"; {' and '.join(origin)}"
    if metric == row["main_metric"] and pd.notna(row.get("ci_low")):
        tip += f"; 95 % interval {_pct(row['ci_low'])}–{_pct(row['ci_high'])}"
    collapsed = int(row.get("collapsed") or 0)
    if collapsed:
        tip += (f"; warning: the predictions collapsed to one class in {collapsed} fold(s) (a probe that learned "
                "nothing): never marked best")
        return (f'<td class="num collapsed" title="{escape(tip, quote=True)}">{_pct(mean)} '
                f'<span aria-label="warning: collapsed">{COLLAPSED_MARK}</span></td>')
    top = best is not None and mean >= best - 1e-12
    mark = ' best" aria-label="best in this column' if top else ""
    return f'<td class="num{mark}" title="{escape(tip, quote=True)}">{_pct(mean)}</td>'


def _collapsed(rows: pd.DataFrame) -> pd.Series:
    return rows["collapsed"].fillna(0) if "collapsed" in rows else pd.Series(0, index=rows.index)


def _reported_rows(groups, reported: pd.DataFrame | None) -> str:
    """The paper's rows in the same columns (its full-set numbers also under a subset column's base task)."""
    if reported is None or reported.empty:
        return ""
    wanted = {(task, protocol) for _, task, protocol in groups}
    rows = reported[[(t, p) in wanted for t, p in zip(reported["task"], reported["protocol"])]]
    if rows.empty:
        return ""
    indexed = rows.set_index(["extractor", "task", "protocol"])
    span = 1 + 2 * len(groups)
    out = [f'<tbody class="reported"><tr><th colspan="{span}" class="reported-title">reported in the paper '
           "(full data sets; not ranked with the rows above; on folds: beneath the table)</th></tr>"]
    for extractor in sorted(rows["extractor"].unique()):
        tds = [f'<td class="name">{escape(extractor)}{badge("paper", "")}</td>']
        for _, task, protocol in groups:
            key = (extractor, task, protocol)
            for metric in GRID_METRICS:
                column = f"{metric}_mean"
                value = indexed.loc[key, column] if key in indexed.index and column in indexed else None
                tds.append(f'<td class="num">{_pct(value)}</td>')
        out.append("<tr>" + "".join(tds) + "</tr>")
    return "".join(out) + "</tbody>"
