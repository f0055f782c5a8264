"""Cross-data-set generalisation as matrices: for each protocol (and domain-shift variant) and extractor, the main
metric of every ``TRAIN=>TEST`` result, the training task's in-domain result on the diagonal. Built from the board's
rows (task names as the runner writes them, :mod:`tasks.names`); nothing is computed that the records do not hold.
"""

from __future__ import annotations

import pandas as pd

from leaderboard.frames import frame_html, frame_md
from leaderboard.tables import main_scores

SHIFT = "=>"
CORNER = "trained on \\ tested on"


def split_shift(task: str) -> tuple[str, str, str] | None:
    """(training task, test task, variants) of a domain-shift result's task name, else None. The variants (after
    the test task's name: ``@training=folds``, ``@classes=shared``, the training task's ``@folds=``) name the
    matrix the result belongs to."""
    if SHIFT not in task:
        return None
    train, rest = task.split(SHIFT, 1)
    test, at, variants = rest.partition("@")
    return train, test, at + variants


def shift_matrices(results: pd.DataFrame) -> dict[tuple[str, str, str], pd.DataFrame]:
    """(protocol, variants, extractor) -> training tasks x test tasks of the main metric's mean (a fraction), with
    the training task's own result (same protocol, its default name) on the diagonal where the board holds it."""
    rows = results.assign(parts=results["task"].map(split_shift))
    main = pd.Series(main_scores(results), index=results.index, dtype=float)
    rows = rows.assign(main=main)
    shifts = rows[rows["parts"].notna()]
    own = {(str(e), str(t), str(p)): float(v) for e, t, p, v in rows[["extractor", "task", "protocol", "main"]]
           .itertuples(index=False)}
    out: dict[tuple[str, str, str], pd.DataFrame] = {}
    for (protocol, extractor), group in shifts.groupby(["protocol", "extractor"], sort=True):
        for variants in sorted({parts[2] for parts in group["parts"]}):
            cells = {(p[0], p[1]): v for p, v in zip(group["parts"], group["main"]) if p[2] == variants}
            names = sorted({name for pair in cells for name in pair})
            matrix = pd.DataFrame(index=pd.Index(names, name="trained on"), columns=names, dtype=float)
            for (train, test), value in cells.items():
                matrix.loc[train, test] = value
            for name in names:
                matrix.loc[name, name] = own.get((str(extractor), name, str(protocol)), float("nan"))
            out[(str(protocol), variants, str(extractor))] = matrix
    return out


def matrices_md(results: pd.DataFrame, escape) -> list[str]:
    """The matrices as Markdown sections (``escape``: the board's Markdown escaping of a name)."""
    matrices = shift_matrices(results)
    if not matrices:
        return []
    parts = ["\n## Cross-data-set generalisation\n",
             "Main metric, percent: trained on the row's data set, tested on the column's (`bench run -t 'A=>B'`); "
             "on the diagonal, the row's own cross-validated result; —: not run. Variants name the matrix "
             "(`@classes=shared`: scored on the classes both hold)."]
    for (protocol, variants, extractor), matrix in matrices.items():
        shown = matrix.map(lambda v: "—" if pd.isna(v) else f"{100 * v:.1f}")
        title = escape(f"{extractor} / {protocol}" + (f" / {variants}" if variants else ""))
        parts += [f"\n### {title}\n", frame_md(shown, CORNER, escape)]
    return parts


def matrices_html(results: pd.DataFrame) -> str:
    """The matrices as an HTML section ("" without a domain-shift result); cells hold their value for sorting."""
    from html import escape

    matrices = shift_matrices(results)
    if not matrices:
        return ""
    parts = ['<h2 id="generalisation">Cross-data-set generalisation</h2><p>Main metric, percent: trained on the '
             "row's data set, tested on the column's (<code>bench run -t 'A=&gt;B'</code>); on the diagonal, the "
             "row's own cross-validated result; —: not run. Variants name the matrix (<code>@classes=shared</code>: "
             'scored on the classes both hold).</p><div class="charts">']
    for (protocol, variants, extractor), matrix in matrices.items():
        title = f"{extractor} / {protocol}" + (f" / {variants}" if variants else "")
        parts.append(f'<div class="matrix"><h3>{escape(title)}</h3>{frame_html(matrix, CORNER, _cell)}</div>')
    parts.append("</div>")
    return "".join(parts)


def _cell(row, column, value) -> str:
    """A matrix cell: percent, its value kept for sorting, the diagonal (in-domain) marked."""
    missing = pd.isna(value)
    return (f'<td class="num{" diag" if row == column else ""}" data-value="{"" if missing else value}">'
            f'{"—" if missing else f"{100 * float(value):.1f}"}</td>')  # (value: a float or NaN)
