"""Small UMAPs on the HTML leaderboard: ``bench plot umap`` of one task keeps a copy of its map beside the
extractor's results on that task (``results/<extractor>/<task>/umap.map.json``, at most 2,000 points, a seeded
choice), and the board draws every copy it finds beside its results as a small inline SVG (no script, nothing
fetched). Pure JSON and numbers: no torch, no model."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

import numpy as np

from bench.core.errors import ResultsError
from bench.core.files import atomic_write_bytes

MAP_FILE = "umap.map.json"
MAP_KIND, MAP_VERSION = "hemabench-umap", 1
MAX_POINTS = 2000


def save_map(scatter, folder: Path, meta: dict, *, max_points: int = MAX_POINTS, seed: int = 0) -> Path:
    """Keep ``scatter`` (:class:`leaderboard.figures.Scatter`) as ``folder/umap.map.json``: at most
    ``max_points`` of its points (a seeded choice), with ``meta`` (extractor, task, seed, fit_on, created)."""
    n = len(scatter.xy)
    rows = np.arange(n) if n <= max_points else np.sort(np.random.default_rng(seed).choice(n, max_points, False))
    payload = {"kind": MAP_KIND, "version": MAP_VERSION, **meta, "title": scatter.title, "color_by": scatter.color_by,
               "n_points": int(n), "x": [round(float(v), 4) for v in scatter.xy[rows, 0]],
               "y": [round(float(v), 4) for v in scatter.xy[rows, 1]],
               "group": [str(g) for g in scatter.groups[rows]], "fitted": [bool(f) for f in scatter.fitted[rows]]}
    path = Path(folder) / MAP_FILE
    atomic_write_bytes(path, (json.dumps(payload, sort_keys=True) + "\n").encode())
    return path


def read_map(path: Path) -> dict:
    """A kept map, checked: the same number of x, y, group and fitted entries, finite coordinates."""
    fix = f"make it again with `bench plot umap` or delete {path}"
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"map file {path} cannot be read ({type(exc).__name__}: {exc}); {fix}") from None
    if not isinstance(payload, dict) or payload.get("kind") != MAP_KIND or payload.get("version") != MAP_VERSION:
        raise ResultsError(f"map file {path} is not a version-{MAP_VERSION} hemabench UMAP; {fix}")
    try:
        x, y = np.asarray(payload["x"], dtype=float), np.asarray(payload["y"], dtype=float)
        if not (len(x) == len(y) == len(payload["group"]) == len(payload["fitted"])) or not np.isfinite([x, y]).all():
            raise ValueError("x, y, group and fitted differ in length, or a coordinate is not finite")
    except (KeyError, TypeError, ValueError) as exc:
        raise ResultsError(f"map file {path} is damaged ({exc}); {fix}") from None
    return payload


def map_svg(payload: dict, size: int = 240) -> str:
    """A small inline SVG of a kept map: one colour per group (filled: fitted; rings: embedded), a legend."""
    from leaderboard.figures import _palette

    x, y = np.asarray(payload["x"], dtype=float), np.asarray(payload["y"], dtype=float)
    groups = [str(g) for g in payload["group"]]
    names = sorted(set(groups))
    colours = _palette(names)
    pad, top = 6, 20
    span = max(size - 2 * pad, 1)
    sx = (x - x.min()) / (np.ptp(x) or 1.0) * span + pad if len(x) else x
    sy = top + span - (y - y.min()) / (np.ptp(y) or 1.0) * span if len(y) else y
    title = f"{payload.get('extractor', '?')} / {payload.get('task', '?')}"
    parts = [f'<figure class="map"><svg width="{size}" height="{size + top}" role="img" '
             f'aria-label="{escape(title, quote=True)}"><text x="0" y="13" font-size="12" font-weight="bold">'
             f"{escape(title)}</text>"]
    for px, py, group, fitted in zip(sx, sy, groups, payload["fitted"]):
        fill = colours[group] if fitted else "none"
        parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="1.6" fill="{fill}" stroke="{colours[group]}" '
                     'stroke-width="0.6"/>')
    shown = f"{len(x):,} of {int(payload.get('n_points', len(x))):,} points" if len(x) < payload.get("n_points", 0) \
        else f"{len(x):,} points"
    legend = " ".join(f'<span style="color:{colours[n]}">●</span>&nbsp;{escape(n)}' for n in names[:12])
    more = f" (+{len(names) - 12} more)" if len(names) > 12 else ""
    parts.append(f"</svg><figcaption>{escape(str(payload.get('color_by', '')))}: {legend}{more}<br>{shown}, "
                 f"seed {escape(str(payload.get('seed', '?')))}</figcaption></figure>")
    return "".join(parts)


def maps_beside(results, problems: list[str]) -> list[dict]:
    """The kept maps in the folders of the board's result records (``results["record"]``), Acevedo's first,
    then by extractor and task; a map that cannot be read is reported in ``problems`` and left out."""
    found = []
    for folder in sorted({Path(record).parent for record in results.get("record", [])}):
        path = folder / MAP_FILE
        if path.is_file():
            try:
                found.append(read_map(path))
            except ResultsError as exc:
                problems.append(f"no map: {exc}")
    return sorted(found, key=lambda m: (str(m.get("task")) != "acevedo", str(m.get("extractor")), str(m.get("task"))))
