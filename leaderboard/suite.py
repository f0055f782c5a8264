"""The suite view (``bench suite run``, :mod:`bench.core.suite`): one row per extractor, one column per suite task
with its headline protocol's main score (the paper's linear probe), each extractor's rank on every task it shares
with all the others and the mean of those ranks; links to the few-shot curves, the generalisation matrices and
the robustness bars, which have their own sections of the board. Built from the board's rows only.
"""

from __future__ import annotations

from html import escape

import pandas as pd

from bench.core import suite as definition
from leaderboard.frames import frame_html, frame_md

NOTE = ("The hematology suite (`bench suite run`): per task, the main metric (percent, mean over folds) of the linear "
        "probe; a task's rank (1 = best) among the extractors of this folder; the mean rank is over the tasks every "
        "extractor of the table has, as the board ranks. Its few-shot curves, generalisation matrices and robustness "
        "are in their sections below.")


def suite_results(results: pd.DataFrame) -> pd.DataFrame:
    """The board's rows of the suite's plain cell and bag tasks (full-set or subset alike)."""
    if results.empty:
        return results
    return results[results["task"].isin(definition.TASKS)]


def suite_scores(results: pd.DataFrame) -> pd.DataFrame:
    """Extractors x suite tasks (a subset result is its own column, as on the board): the headline protocol's main
    score (the bag task's protocol for patients)."""
    from leaderboard.tables import _labels

    rows = suite_results(results)
    rows = rows[(rows["protocol"] == definition.HEADLINE_PROTOCOL) |
                (rows["task"].isin(definition.BAG_TASKS) & rows["protocol"].isin(definition.BAG_PROTOCOLS))]
    if rows.empty:
        return pd.DataFrame()
    from leaderboard.tables import main_scores

    score = pd.Series(main_scores(rows), index=rows.index, dtype=float)
    table = rows.assign(column=_labels(rows), score=score).pivot_table(index="extractor", columns="column",
                                                                        values="score", aggfunc="first")
    table.columns.name = None
    return table.astype(float).sort_index()


def suite_ranks(results: pd.DataFrame) -> dict[str, dict]:
    """Extractor -> its ranks on the shared tasks (those every extractor of the table has), their mean, and among
    how many extractors."""
    scores = suite_scores(results)
    if scores.empty:
        return {}
    shared = [c for c in scores.columns if scores[c].notna().all()]
    ranks = scores[shared].rank(axis=0, ascending=False, method="min").to_dict(orient="index")
    return {str(e): {"shared_tasks": shared, "ranks": {t: int(r[t]) for t in shared},
                     "mean_rank": sum(r[t] for t in shared) / len(shared) if shared else None, "of": int(len(scores))}
            for e, r in ranks.items()}


def suite_table(results: pd.DataFrame) -> pd.DataFrame:
    """The view as text: "score (#rank)" per task, then the mean rank over the shared tasks; best mean rank first."""
    scores = suite_scores(results)
    if scores.empty:
        return scores
    ranks = suite_ranks(results)
    table = pd.DataFrame(index=scores.index, dtype=object)
    for task in scores.columns:
        order = scores[task].rank(ascending=False, method="min").to_dict()
        table[task] = ["—" if pd.isna(v) else f"{100 * v:.1f} (#{int(order[e])})" for e, v in scores[task].items()]
    table["mean rank"] = ["—" if ranks[e]["mean_rank"] is None else f"{ranks[e]['mean_rank']:.2f}"
                          for e in table.index]
    key = pd.Series({e: (ranks[e]["mean_rank"] if ranks[e]["mean_rank"] is not None else float("inf"))
                     for e in table.index})
    return table.loc[key.sort_values(kind="stable").index]


def suite_md(results: pd.DataFrame, escape_name) -> list[str]:
    table = suite_table(results)
    if table.empty:
        return []
    return ["\n## The hematology suite\n", NOTE, "", frame_md(table, "extractor", escape_name)]


def suite_html(results: pd.DataFrame) -> str:
    table = suite_table(results)
    if table.empty:
        return ""
    links = " · ".join(f'<a href="#{anchor}">{escape(title)}</a>' for anchor, title in
                       (("few-shot", "few-shot curves"), ("generalisation", "generalisation matrices"),
                        ("robustness", "robustness")))
    note = escape(NOTE).replace("`bench suite run`", "<code>bench suite run</code>")
    return (f'<h2 id="suite">The hematology suite</h2><p>{note}</p><p>{links}</p>'
            f'<div class="scroll">{frame_html(table, "extractor")}</div>')
