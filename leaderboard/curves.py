"""Label-efficiency curves on the board: for each task and few-shot protocol, the main metric at every number of
labelled cells per class, one line per extractor, with the 95 % interval over episodes each record holds
(:mod:`bench.core.curves`). A table (Markdown and HTML) and a chart (SVG, HTML); nothing is computed that the
records do not hold.
"""

from __future__ import annotations

from html import escape

import pandas as pd

from leaderboard.frames import frame_html, frame_md

NOTE = ("Few-shot: the main metric (percent) with n labelled cells per class, mean over seeded episodes and its 95 % "
        "interval (Student's t over episodes); each episode draws n cells per class from a training split and is "
        "tested on that split's test cells, the same draws for every extractor. The column \"mean\" (over n) is the "
        "record's own score (the area under the curve on a log2 axis), the one the tables above rank.")
CORNER = "extractor \\ n per class"
# Distinguishable line colours (Okabe-Ito), cycled
COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442")


def curve_points(results: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """(task label, protocol) -> one row per (extractor, shots): mean, ci_low, ci_high of the row's main metric."""
    out: dict[tuple[str, str], list[dict]] = {}
    if "curve" not in results:
        return {}
    for _, row in results.iterrows():
        curve, metric = row.get("curve"), row["main_metric"]
        if not isinstance(curve, dict):
            continue
        task = row["task_label"] if "task_label" in row else row["task"]
        for point in curve.get("points", []):
            out.setdefault((str(task), str(row["protocol"])), []).append({
                "extractor": row["extractor"], "shots": int(point["shots"]), "episodes": point.get("episodes"),
                **{k: (point.get(k) or {}).get(metric) for k in ("mean", "ci_low", "ci_high")}})
    return {key: pd.DataFrame(rows) for key, rows in sorted(out.items())}


def curve_table(points: pd.DataFrame, overall: dict[str, float | None]) -> pd.DataFrame:
    """Extractors x n = "1" ... "128" of "mean [low–high]" text, and the record's mean over n ("mean")."""
    table = pd.DataFrame(index=sorted(points["extractor"].unique()), dtype=object)
    for n in sorted(points["shots"].unique()):
        at = points[points["shots"] == n].set_index("extractor")
        table[str(n)] = [_cell(at.loc[e]) if e in at.index else "—" for e in table.index]
    table["mean"] = [_pct(overall.get(e)) for e in table.index]
    return table


def _pct(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{100 * value:.1f}"


def _cell(point) -> str:
    return f"{_pct(point['mean'])} [{_pct(point['ci_low'])}–{_pct(point['ci_high'])}]"


def _overall(results: pd.DataFrame, task: str, protocol: str) -> dict[str, float | None]:
    labels = results["task_label"] if "task_label" in results else results["task"]
    rows = results[(labels == task) & (results["protocol"] == protocol)]
    return {str(r["extractor"]): r.get(f"{r['main_metric']}_mean") for _, r in rows.iterrows()}


def curves_md(results: pd.DataFrame, escape_name) -> list[str]:
    found = curve_points(results)
    if not found:
        return []
    parts = ["\n## Few-shot: label efficiency\n", NOTE]
    for (task, protocol), points in found.items():
        parts += [f"\n### {escape_name(task)} / {escape_name(protocol)}\n",
                  frame_md(curve_table(points, _overall(results, task, protocol)), CORNER, escape_name)]
    return parts


def curves_html(results: pd.DataFrame) -> str:
    found = curve_points(results)
    if not found:
        return ""
    parts = [f'<h2 id="few-shot">Few-shot: label efficiency</h2><p>{escape(NOTE)}</p><div class="charts">']
    for (task, protocol), points in found.items():
        title = f"{task} / {protocol}"
        table = frame_html(curve_table(points, _overall(results, task, protocol)), CORNER, _mean_cell)
        parts.append(f'<div class="curve"><h3>{escape(title)}</h3>{curve_svg(points, title)}'
                     f'<div class="scroll">{table}</div></div>')
    return "".join(parts) + "</div>"


def _mean_cell(row, column, value) -> str:
    """A curve table's cell in HTML: the mean, its interval on hover (the chart draws it; the table stays narrow)."""
    mean, _, interval = str(value).partition(" [")
    hover = f' title="95 % interval {escape(interval.rstrip("]"), quote=True)}"' if interval else ""
    return f'<td class="num"{hover}>{escape(mean)}</td>'


def curve_svg(points: pd.DataFrame, title: str, width: int = 560, height: int = 240) -> str:
    """Lines of the mean over log2(n), one per extractor, with its interval as a band; axes and a legend."""
    import math

    shots = sorted(points["shots"].unique())
    extractors = sorted(points["extractor"].unique())
    low = min(float(v) for v in points["ci_low"].fillna(points["mean"]))
    high = max(float(v) for v in points["ci_high"].fillna(points["mean"]))
    low, high = max(0.0, math.floor(low * 10) / 10), min(1.0, math.ceil(high * 10) / 10)
    if high - low < 0.1:
        low, high = max(0.0, high - 0.1), max(high, 0.1)
    left, right, top, bottom = 40, 150, 10, height - 34
    span_x = max(math.log2(shots[-1]) - math.log2(shots[0]), 1.0)

    def x(n) -> float:
        return left + (width - left - right) * (math.log2(n) - math.log2(shots[0])) / span_x

    def y(v) -> float:
        return bottom - (bottom - top) * (float(v) - low) / (high - low)

    out = [f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{escape(title, quote=True)}">',
           f'<line x1="{left}" x2="{width - right}" y1="{bottom}" y2="{bottom}" stroke="#999"/>',
           f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#999"/>']
    for n in shots:
        out.append(f'<text x="{x(n):.1f}" y="{bottom + 14}" font-size="10" text-anchor="middle">{n}</text>')
    out.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 4}" font-size="10" text-anchor="middle">'
               "labelled cells per class (n)</text>")
    for v in (low, (low + high) / 2, high):
        out.append(f'<text x="{left - 4}" y="{y(v) + 3:.1f}" font-size="10" text-anchor="end">{100 * v:.0f}</text>')
    for i, extractor in enumerate(extractors):
        colour = COLOURS[i % len(COLOURS)]
        rows = points[points["extractor"] == extractor].sort_values("shots")
        band = [(x(n), y(h)) for n, h in zip(rows["shots"], rows["ci_high"].fillna(rows["mean"]))] + \
               [(x(n), y(lo)) for n, lo in zip(rows["shots"][::-1], rows["ci_low"].fillna(rows["mean"])[::-1])]
        out.append(f'<polygon points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in band)}" fill="{colour}" '
                   'fill-opacity="0.15" stroke="none"/>')
        line = " ".join(f"{x(n):.1f},{y(m):.1f}" for n, m in zip(rows["shots"], rows["mean"]))
        out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"><title>'
                   f"{escape(str(extractor))}</title></polyline>")
        out.append(f'<rect x="{width - right + 10}" y="{top + 14 * i}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{width - right + 24}" y="{top + 14 * i + 9}" font-size="10"><title>'
                   f"{escape(str(extractor))}</title>{escape(_short(str(extractor)))}</text>")
    out.append("</svg>")
    return "".join(out)


def _short(name: str, keep: int = 20) -> str:
    return name if len(name) <= keep else "…" + name[-(keep - 1):]
