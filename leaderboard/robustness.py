"""Robustness on the board: for each ``TASK@perturbation=all`` result (:mod:`protocols.robustness`), the clean and
perturbed weighted F1 per perturbation and the feature invariance, means over folds read from the records; as a
table (Markdown, HTML) and bars (HTML). The robustness index of data sets side by side is an ordinary column of
the tables above (its main metric).
"""

from __future__ import annotations

from html import escape

import pandas as pd

from bench.core.metrics import CLEAN_F1, INVARIANCE, PERTURBED_F1
from bench.core.record import ResultRecord
from leaderboard.frames import frame_html, frame_md

NOTE = ("Robustness (task TASK@perturbation=all): the linear probe trained on clean cells, weighted F1 (percent) on "
        "the test cells clean and under each perturbation (stain: HED jitter 0.05; blur: Gaussian 1.5 px; jpeg: "
        "quality 30; rescale: half size and back), the same seeded images for every model; invariance: each cell's "
        "feature against its clean one, mean cosine. Means over folds.")


def robustness_rows(results: pd.DataFrame) -> pd.DataFrame:
    """One row per robustness result: extractor, task, clean, each perturbation's F1 and the invariance."""
    rows = []
    held = results[results["main_metric"] == PERTURBED_F1] if "main_metric" in results else results.iloc[:0]
    for _, row in held.iterrows():
        record = ResultRecord.read(row["record"])
        folds = record.metrics.per_fold
        versions = sorted({v for f in folds for v in (f.get("perturbations") or {})})
        entry = {"extractor": row["extractor"], "task": row["task"], "clean": record.metrics.mean.get(CLEAN_F1),
                 "invariance": record.metrics.mean.get(INVARIANCE)}
        for v in versions:
            values = [f["perturbations"][v][PERTURBED_F1] for f in folds if v in (f.get("perturbations") or {})]
            entry[v] = sum(values) / len(values)
        rows.append(entry)
    return pd.DataFrame(rows)


def _tables(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    found = robustness_rows(results)
    out = {}
    for task, rows in found.groupby("task", sort=True) if len(found) else []:
        table = rows.drop(columns="task").set_index("extractor").sort_index().dropna(axis=1, how="all")
        out[str(task)] = table
    return out


def _text(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.map(lambda v: "—" if pd.isna(v) else f"{100 * v:.1f}")
    return shown.rename(columns={"clean": "clean F1", "invariance": "invariance (cosine)"})


def robustness_md(results: pd.DataFrame, escape_name) -> list[str]:
    tables = _tables(results)
    if not tables:
        return []
    parts = ["\n## Robustness to perturbations\n", NOTE]
    for task, table in tables.items():
        parts += [f"\n### {escape_name(task)}\n", frame_md(_text(table), "extractor", escape_name)]
    return parts


def robustness_html(results: pd.DataFrame) -> str:
    tables = _tables(results)
    if not tables:
        return ""
    parts = [f'<h2 id="robustness">Robustness to perturbations</h2><p>{escape(NOTE)}</p><div class="charts">']
    for task, table in tables.items():
        parts.append(f'<div class="curve"><h3>{escape(task)}</h3>{bars_svg(table, task)}'
                     f'<div class="scroll">{frame_html(_text(table), "extractor")}</div></div>')
    return "".join(parts) + "</div>"


def bars_svg(table: pd.DataFrame, title: str, width: int = 560, bar: int = 9) -> str:
    """Per extractor, a bar per version (clean first, then each perturbation) of its weighted F1, the value on
    hover and in the table beneath."""
    versions = [c for c in table.columns if c != "invariance"]
    colours = ["#444444", "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9"]
    left, legend = 150, 16
    group = bar * len(versions) + 8
    height = legend + group * len(table) + 4
    scale = width - left - 40
    out = [f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{escape(title, quote=True)}">']
    for j, version in enumerate(versions):
        out.append(f'<rect x="{left + 80 * j}" y="2" width="9" height="9" fill="{colours[j % len(colours)]}"/>'
                   f'<text x="{left + 80 * j + 12}" y="10" font-size="10">{escape(str(version))}</text>')
    for i, (extractor, values) in enumerate(table.iterrows()):
        y0 = legend + i * group
        out.append(f'<text x="{left - 6}" y="{y0 + group / 2 + 3:.1f}" font-size="11" text-anchor="end"><title>'
                   f'{escape(str(extractor))}</title>{escape(_short(str(extractor)))}</text>')
        for j, version in enumerate(versions):
            value = values[version]
            if pd.isna(value):
                continue
            out.append(f'<rect x="{left}" y="{y0 + j * bar}" width="{scale * float(value):.1f}" height="{bar - 1}" '
                       f'fill="{colours[j % len(colours)]}"><title>{escape(str(version))}: {100 * float(value):.1f}'
                       "</title></rect>")  # (the values are in the table beneath)
    out.append("</svg>")
    return "".join(out)


def _short(name: str, keep: int = 24) -> str:
    return name if len(name) <= keep else "…" + name[-(keep - 1):]
