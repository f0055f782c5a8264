"""Cross-data-set generalisation as matrices: for each protocol (and domain-shift variant) and extractor, the main
metric of every ``TRAIN=>TEST`` result, the training task's in-domain result on the diagonal. Built from the board's
rows (task names as the runner writes them, :mod:`tasks.names`); nothing is computed that the records do not hold.
"""

from __future__ import annotations

import pandas as pd

SHIFT = "=>"


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
    main = pd.Series([row[f"{row['main_metric']}_mean"] if f"{row['main_metric']}_mean" in row else float("nan")
                      for _, row in results.iterrows()], index=results.index, dtype=float)
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
        shown.index = pd.Index([escape(i) for i in shown.index], name="trained on \\ tested on")
        shown.columns = [escape(c) for c in shown.columns]
        title = escape(f"{extractor} / {protocol}" + (f" / {variants}" if variants else ""))
        parts += [f"\n### {title}\n", shown.to_markdown(disable_numparse=True)]
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
        head = "".join(f"<th>{escape(str(c))}</th>" for c in ["trained on \\ tested on", *matrix.columns])
        body = "".join(
            f"<tr><td class=\"txt\">{escape(str(name))}</td>" + "".join(
                f'<td class="num{" diag" if name == column else ""}" data-value="{"" if pd.isna(v) else v}">'
                f'{"—" if pd.isna(v) else f"{100 * v:.1f}"}</td>' for column, v in zip(matrix.columns, values))
            + "</tr>" for name, values in zip(matrix.index, matrix.to_numpy()))
        parts.append(f'<div class="matrix"><h3>{escape(title)}</h3><table class="reported"><thead><tr>{head}</tr>'
                     f"</thead><tbody>{body}</tbody></table></div>")
    parts.append("</div>")
    return "".join(parts)
