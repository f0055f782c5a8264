"""A static single-file HTML leaderboard: sortable table, per-task bar charts with 95 % intervals, the training
curve of trainer exports, extractor metadata, and the paper's reported numbers. Nothing is fetched from the
network (inline CSS, inline SVG, a few lines of inline JavaScript for sorting); every string that comes from a
result (extractor names come from plugins) is HTML-escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import pandas as pd

from bench.core.metrics import INTEGRATION
from leaderboard.grid import BADGE_CSS, badge, sources
from leaderboard.tables import BATCH_EFFECT_NOTE, fold_spread_sentence, main_scores

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f3f3f3}table.sortable th{cursor:pointer}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.reported{color:#555}h2{margin-top:2em}.scroll{overflow-x:auto;max-width:100%}
td.name,table.sortable td:first-child{overflow-wrap:anywhere;min-width:8em;max-width:18em}
table.grid th.group{text-align:center}table.grid th.metric{font-weight:normal;font-size:12px;white-space:nowrap}
table.grid td.best{font-weight:bold;background:#e3f1e3}table.grid td.collapsed{color:#a33}tbody.reported td{color:#666}
th.reported-title{font-weight:normal;font-style:italic;background:#fafafa}
.charts{display:flex;flex-wrap:wrap;gap:1em 2em;align-items:flex-start}
figure.chart{margin:0;width:420px}figure.chart figcaption{font-weight:bold;font-size:13px;margin-bottom:4px}
figure.map{display:inline-block;margin:0 1.5em 1.5em 0;font-size:11px;max-width:260px;vertical-align:top}
div.matrix h3{font-size:14px;margin:0}div.matrix td.diag{background:#f0f0f0;font-style:italic}
div.curve{max-width:640px}div.curve h3{font-size:14px;margin:1em 0 0}div.curve small{color:#666;font-size:10px}
""" + BADGE_CSS

# Sorting by clicking a header; written here because the page must work offline with no library.
_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var table = th.closest('table'), body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.getAttribute('data-order') !== 'asc';
    table.querySelectorAll('th').forEach(function(h){ h.removeAttribute('data-order'); });
    th.setAttribute('data-order', asc ? 'asc' : 'desc');
    rows.sort(function(a, b){
      var x = a.cells[col].getAttribute('data-value'), y = b.cells[col].getAttribute('data-value');
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
"""


def _cell(value, numeric: bool = False, text: str | None = None) -> str:
    shown = escape(text if text is not None else ("—" if value is None or (numeric and pd.isna(value)) else str(value)))
    data = "" if value is None or (numeric and pd.isna(value)) else escape(str(value), quote=True)
    return f'<td class="{"num" if numeric else "txt"}" data-value="{data}">{shown}</td>'


def _millions(n) -> str:
    return "—" if n is None or pd.isna(n) else f"{n / 1e6:.1f} M"


def _short(name: str, keep: int = 28) -> str:
    """Long names (paths of trainer exports) differ at the end: keep the end."""
    return name if len(name) <= keep else "…" + name[-(keep - 1):]


def _pct(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{100 * value:.1f}"


def _figure(title: str, svg: str) -> str:
    """A chart with its title as an HTML caption (it wraps, where a title inside the SVG would be cut)."""
    return f'<figure class="chart"><figcaption>{escape(title)}</figcaption>{svg}</figure>'


def _bar_chart(rows: pd.DataFrame, title: str, width: int = 420, bar: int = 18) -> str:
    """Horizontal bars (main metric, mean over folds) with the bootstrap 95 % interval as error bars; each value
    label right of its bar and whisker."""
    rows = rows.sort_values("main_mean", ascending=False)
    height = 8 + bar * 1.5 * len(rows)
    left = 170
    scale = width - left - 44  # room right of a full bar for its value label
    parts = [f'<svg class="chart" width="{width}" height="{height:.0f}" role="img" aria-label="{escape(title, quote=True)}">']
    for i, (_, row) in enumerate(rows.iterrows()):
        y = 4 + i * bar * 1.5
        value = row["main_mean"] if pd.notna(row["main_mean"]) else 0.0
        parts.append(f'<text x="{left - 6}" y="{y + bar * 0.75:.1f}" font-size="11" text-anchor="end">'
                     f'<title>{escape(str(row["extractor"]))}</title>{escape(_short(str(row["extractor"]), 26))}</text>')
        parts.append(f'<rect x="{left}" y="{y:.1f}" width="{scale * value:.1f}" height="{bar}" fill="#4a7bb7"/>')
        if pd.notna(row.get("ci_low")) and pd.notna(row.get("ci_high")):
            x0, x1, ym = left + scale * row["ci_low"], left + scale * row["ci_high"], y + bar / 2
            parts.append(f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{ym:.1f}" y2="{ym:.1f}" stroke="#222"/>')
            for x in (x0, x1):
                parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{ym - 4:.1f}" y2="{ym + 4:.1f}" stroke="#222"/>')
        end = max(value, row["ci_high"]) if pd.notna(row.get("ci_high")) else value  # right of the whisker
        parts.append(f'<text x="{left + scale * end + 4:.1f}" y="{y + bar * 0.75:.1f}" font-size="10">'
                     f'{_pct(row["main_mean"])}</text>')
    parts.append("</svg>")
    return _figure(title, "".join(parts))


def _training_curve(rows: pd.DataFrame, title: str, width: int = 420, height: int = 180) -> str:
    """The main metric over the trainer's iterations: a line through the exports, the iterations under it and
    the axis range left of it; one export is said in words (a line needs two)."""
    rows = rows.sort_values("training_iteration")
    xs, ys = rows["training_iteration"].astype(float), rows["main_mean"].astype(float)
    if len(rows) == 1:
        return _figure(title, f'<svg class="chart" width="{width}" height="24" role="img" aria-label="'
                       f'{escape(title, quote=True)}"><text x="0" y="16" font-size="11">one export so far: iteration '
                       f'{int(xs.iloc[0])}, {_pct(ys.iloc[0])}</text></svg>')
    x_max, y_min, y_max = max(xs.max(), 1.0), ys.min(), ys.max()
    if y_max - y_min < 1e-3:  # a flat curve: an axis of +- 0.5 points around it
        y_min, y_max = y_min - 0.005, y_max + 0.005
    span, top, bottom, left = y_max - y_min, 10, height - 30, 44
    at = [(left + (width - left - 20) * x / x_max, bottom - (bottom - top) * (y - y_min) / span)
          for x, y in zip(xs, ys)]
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in at)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#b74a4a"/>' for x, y in at)
    labels, last = [], -1e9
    for (x, _), iteration in zip(at, xs):  # iteration labels that would touch the previous one are left out
        if x - last >= 34:
            labels.append(f'<text x="{x:.1f}" y="{height - 12}" font-size="9" text-anchor="middle">'
                          f"{int(iteration)}</text>")
            last = x
    return _figure(title, f'<svg class="chart" width="{width}" height="{height}" role="img" '
                   f'aria-label="{escape(title, quote=True)}"><polyline points="{points}" fill="none" stroke="#b74a4a" '
                   f'stroke-width="2"/>{dots}{"".join(labels)}<text x="0" y="{bottom + 3}" font-size="9">{_pct(y_min)}'
                   f'</text><text x="0" y="{top + 6}" font-size="9">{_pct(y_max)}</text></svg>')


def _extractors_table(results: pd.DataFrame) -> str:
    """One row per extractor: what its features are (dim, parameters, precision, weights) and its trainer
    iterations, from its newest result."""
    header = ["extractor", "dim", "parameters", "precision", "weights / state sha256", "iterations"]
    rows = []
    for name, group in results.groupby("extractor", sort=True):
        r = group.sort_values("created", na_position="first").iloc[-1]
        iterations = sorted({int(i) for i in group["training_iteration"].dropna()}) if "training_iteration" in group \
            else []
        shown = ", ".join(map(str, iterations[:6])) + (" ..." if len(iterations) > 6 else "") if iterations else "—"
        rows.append("<tr>" + "".join([
            _cell(name), _cell(r.get("dim"), True), _cell(r.get("n_parameters"), True, _millions(r.get("n_parameters"))),
            _cell(r.get("precision") if isinstance(r.get("precision"), str) else ""),
            _cell(str(r.get("weights_sha256") or "")[:16]), _cell(shown)]) + "</tr>")
    return ('<h2>Extractors</h2><div class="scroll"><table class="sortable" id="extractors"><thead><tr>'
            + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr></thead><tbody>" + "".join(rows)
            + "</tbody></table></div>")


def _problems(problems) -> list[str]:
    if not problems:
        return []
    items = "".join(f"<li>{escape(line)}</li>" for line in problems)
    return [f'<h2>Problems with the results folder ({len(problems)})</h2><ul class="problems">{items}</ul>']


def status(row) -> str:
    """A result's status on the board: a collapse to one class is a warning, whatever the number."""
    collapsed = int(row.get("collapsed") or 0) if pd.notna(row.get("collapsed")) else 0
    return f"warning: collapsed to one class in {collapsed} fold(s)" if collapsed else "ok"


def _checks(row, source: str) -> str:
    return str(row.get("checks") or "") if source != "run" and isinstance(row.get("checks"), str) else ""


def render_html(results: pd.DataFrame, reported: dict[str, pd.DataFrame], citation: str,
                problems: Sequence[str] = (), maps: Sequence[dict] = (), paper: pd.DataFrame | None = None,
                runs_badge: str = "run here") -> str:
    """``results``: ``tables.with_confidence(read_results(...))`` (with ``task_label``: the task, marked when the
    result is on a subset); ``reported``: protocol -> extractors x tasks; ``problems``: lines about files that
    were skipped, clashed or had unreadable predictions, listed at the top; ``maps``: the UMAPs kept beside the
    results (:func:`leaderboard.maps.maps_beside`), drawn small per extractor; ``paper``: the paper's rows
    (:func:`leaderboard.paper.paper_rows`) for the Table 2 view; ``runs_badge``: the badge of rows from the
    results folder (verified submissions and the paper's rows have their own)."""
    from leaderboard.grid import grid_html
    from leaderboard.suite import suite_html

    subset = results["subset"].fillna("") if "subset" in results else pd.Series("", index=results.index)
    results = results.assign(main_mean=main_scores(results), main_std=main_scores(results, "std"),
                             subset=subset,
                             task_label=results["task_label"] if "task_label" in results else results["task"])
    header = ["extractor", "task", "protocol", "metric", "mean", "± std", "95 % interval", "folds", "warnings",
              "status", "run date", "source"]
    body = []
    for _, r in results.iterrows():
        interval = "—" if pd.isna(r.get("ci_low")) else f"{_pct(r['ci_low'])}–{_pct(r['ci_high'])}"
        body.append("<tr class=\"result\">" + "".join([
            _cell(r["extractor"]), _cell(r["task_label"]), _cell(r["protocol"]), _cell(r["main_metric"]),
            _cell(r["main_mean"], True, _pct(r["main_mean"])), _cell(r["main_std"], True, _pct(r["main_std"])),
            _cell(r.get("ci_low"), True, interval), _cell(r["n_folds"], True), _cell(r["warnings"], True),
            _cell(status(r)), _cell(str(r.get("created") or "")[:10]),
            f'<td class="txt" data-value="{escape(str(r.get("source") or "run"), quote=True)}">'
            f'{"".join(badge(k, runs_badge, _checks(r, k)) for k in sources(r.get("source")))}</td>',
        ]) + "</tr>")
    from leaderboard.paper import LABEL_SET_NOTE

    spread = fold_spread_sentence(results)
    grid = grid_html(results, paper, runs_badge, (LABEL_SET_NOTE, spread))
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>hemabench leaderboard</title>",
             f"<style>{_CSS}</style></head><body><h1>hemabench leaderboard</h1>",
             "<p>Percent. Rows: extractors; columns: task, protocol, and weighted F1 / balanced accuracy (mean over "
             "folds; hover a value for its ± std and 95 % interval); the best measured value of each column in bold. "
             "A column headed \"subset: n of N images\" is on part of a data set whose full set has N images: not "
             "comparable with full-set results nor with the paper's reported numbers; one marked "
             "\"not the canonical split\" used other folds or files than the task's pinned split. Badges say where a "
             "row comes from: "
             f"{badge('run', runs_badge)} the results this page was built from, {badge('submission', '')} a "
             "submission whose labels, folds, protocol and features <code>bench verify</code> derived again itself "
             "(the numbers shown are its own run of the protocol), "
             f"{badge('self-reported', '')} a submission of which some part could not be derived again (hover the "
             "badge: e.g. a model whose weights are not public), "
             f"{badge('paper', '')} the numbers the DinoBloom paper reports. A value marked ⚠ comes from predictions "
             "that collapsed to one class in some fold: a warning, never the best of its column.</p>",
             *([f"<p>{escape(BATCH_EFFECT_NOTE)}</p>"] if (results["main_metric"] == INTEGRATION).any() else []),
             *_problems(problems),
             suite_html(results),
             *([grid] if grid else []),
             "<h2>Per task</h2><p>Main metric per task and protocol, with the bootstrap 95 % interval over all stored "
             "predictions as whiskers.</p><div class=\"charts\">"]
    for (task, protocol), rows in results.groupby(["task_label", "protocol"], sort=True):
        parts.append(_bar_chart(rows, f"{task} / {protocol}"))
    parts.append("</div>")
    from leaderboard.calibration import calibration_html
    from leaderboard.curves import curves_html
    from leaderboard.generalisation import matrices_html
    from leaderboard.robustness import robustness_html

    parts.append(matrices_html(results))
    parts.append(curves_html(results))
    parts.append(robustness_html(results))
    parts.append(calibration_html(results))
    trained = results[results["training_iteration"].notna()] if "training_iteration" in results else results.iloc[:0]
    if len(trained):
        parts.append('<h2>Training curves (trainer exports)</h2><div class="charts">')
        for (run, task, protocol), rows in trained.groupby(["training_run", "task_label", "protocol"], sort=True):
            parts.append(_training_curve(rows, f"{_short(str(run), 40)}: {task} / {protocol}"))
        parts.append("</div>")
    if maps:
        from leaderboard.maps import map_svg

        parts.append("<h2>Embeddings (UMAP)</h2><p>Made by <code>bench plot umap</code>: fitted on the task's "
                     "training rows of its first split, the rest embedded into the map (rings); at most 2,000 points "
                     "each, a seeded choice. The full map (PNG, and HTML with every cell's image on hover) is where "
                     "that command wrote it.</p>")
        parts.append('<div class="maps">' + "".join(map_svg(m) for m in maps) + "</div>")
    parts.append("<h2>All results</h2><p>Every result file: its main metric. Click a column header to sort.</p>"
                 '<div class="scroll"><table class="sortable" id="results"><thead><tr>'
                 + "".join(f"<th>{escape(h)}</th>" for h in header)
                 + "</tr></thead><tbody>" + "".join(body) + "</tbody></table></div>")
    parts.append(_extractors_table(results))
    parts.append(f'<h2>Reported in the paper ({escape(citation)}), weighted F1 on the full data sets, not ranked</h2>'
                 f'<p id="label-set">{escape(LABEL_SET_NOTE)}</p>'
                 f'<p id="fold-spread">{escape(spread)}</p>')
    for protocol, table in reported.items():
        head = "".join(f"<th>{escape(str(c))}</th>" for c in ["extractor", *table.columns])
        rows = "".join("<tr>" + _cell(name) + "".join(_cell(v, True, "—" if pd.isna(v) else f"{v:.1f}") for v in values)
                       + "</tr>" for name, values in zip(table.index, table.to_numpy()))
        parts.append(f'<h3>{escape(protocol)}</h3><div class="scroll"><table class="sortable reported"><thead><tr>'
                     f"{head}</tr></thead><tbody>{rows}</tbody></table></div>")
    parts.append(f"<script>{_JS}</script></body></html>\n")
    return "".join(parts)
