"""Pictures of embeddings, as the DinoBloom paper shows them: a UMAP of cells or patients (Fig. 2) and the first
three PCA components of patch tokens as RGB (Fig. 3). Pure functions of arrays (no model, no torch): umap-learn
for the map, scikit-learn for the PCA, matplotlib for PNGs; the HTML version is an inline SVG whose points carry
their labels as hover titles (a browser shows them; no script, no network).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

FIGURE_DPI = 100


@dataclass
class Scatter:
    """A 2-D map of points: ``xy`` (n, 2), ``groups`` (the colour of each point), ``fitted`` (True: the map
    was fitted on the point; False: embedded into the fitted map), ``hover`` (one text per point), ``images``
    (paths, for thumbnails; None where a point is not one image)."""

    xy: np.ndarray
    groups: np.ndarray
    fitted: np.ndarray
    hover: list[str]
    images: list[str | None]
    title: str
    color_by: str
    extractor: str | None = None  # the extractor and task of a one-task map (kept for the leaderboard)
    task: str | None = None


def umap_coordinates(features: np.ndarray, fitted: np.ndarray, seed: int, n_neighbors: int = 15) -> np.ndarray:
    """UMAP (umap-learn) fitted on the rows where ``fitted`` is True, the other rows embedded into that map
    (``transform``). Seeded: the same input and seed give the same coordinates (umap-learn then runs single
    threaded)."""
    import umap

    fit_rows, rest = np.flatnonzero(fitted), np.flatnonzero(~fitted)
    if len(fit_rows) < 3:
        raise ValueError(f"a UMAP needs at least 3 points to fit on, got {len(fit_rows)}")
    reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(fit_rows) - 1), n_components=2, random_state=seed, n_jobs=1,
                        init="spectral" if len(fit_rows) > n_neighbors + 1 else "random")
    xy = np.zeros((len(features), 2), dtype=np.float64)
    xy[fit_rows] = reducer.fit_transform(np.asarray(features[fit_rows], dtype=np.float32))
    if len(rest):
        xy[rest] = reducer.transform(np.asarray(features[rest], dtype=np.float32))
    return xy


def _palette(names: list[str]) -> dict[str, str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: to_hex(cmap(i % cmap.N)) for i, name in enumerate(names)}


def scatter_png(scatter: Scatter, out: Path, thumbnails: int = 0, seed: int = 0, size_px: int = 900) -> Path:
    """The map as a PNG: one colour per group, fitted points filled, embedded points as rings; ``thumbnails``:
    that many cell images (a seeded choice) drawn at their points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(set(scatter.groups.tolist()))
    colours = _palette(names)
    fig, ax = plt.subplots(figsize=(size_px / FIGURE_DPI, size_px / FIGURE_DPI), dpi=FIGURE_DPI)
    for name in names:
        mine = scatter.groups == name
        ring = {"facecolors": "none", "edgecolors": colours[name]}
        style: dict[str, Any]  # keyword arguments of ax.scatter
        for fitted, style in ((True, {"c": colours[name]}), (False, ring)):
            rows = mine & (scatter.fitted == fitted)
            if rows.any():
                ax.scatter(scatter.xy[rows, 0], scatter.xy[rows, 1], s=12, linewidths=0.8,
                           label=name if fitted or not (mine & scatter.fitted).any() else None, **style)
    if thumbnails:
        _draw_thumbnails(ax, scatter, thumbnails, seed)
    embedded = (~scatter.fitted).any()
    ax.set_title(scatter.title + (" (filled: fitted; rings: embedded into the map)" if embedded else ""), fontsize=9)
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.legend(title=scatter.color_by, fontsize=7, title_fontsize=8, markerscale=1.5, loc="best")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=FIGURE_DPI)
    plt.close(fig)
    return out


def _draw_thumbnails(ax, scatter: Scatter, count: int, seed: int, pixels: int = 28) -> None:
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage
    from PIL import Image

    candidates = [i for i, path in enumerate(scatter.images) if path]
    rng = np.random.default_rng(seed)
    for i in sorted(rng.choice(candidates, size=min(count, len(candidates)), replace=False).tolist()):
        with Image.open(scatter.images[i]) as image:
            thumb = image.convert("RGB")
            thumb.thumbnail((pixels, pixels))
        xy = (float(scatter.xy[i, 0]), float(scatter.xy[i, 1]))
        box = AnnotationBbox(OffsetImage(np.asarray(thumb), zoom=1.0), xy, frameon=False, zorder=3)
        ax.add_artist(box)


def scatter_html(scatter: Scatter, out: Path, size_px: int = 720) -> Path:
    """The map as one self-contained HTML file: an inline SVG, each point's text (image, class, ...) as its hover
    title, a legend; no script and nothing fetched."""
    names = sorted(set(scatter.groups.tolist()))
    colours = _palette(names)
    pad = 12
    low, high = scatter.xy.min(axis=0), scatter.xy.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    xy = pad + (scatter.xy - low) / span * (size_px - 2 * pad)
    points = []
    for (x, y), name, fitted, text in zip(xy, scatter.groups, scatter.fitted, scatter.hover):
        fill = colours[name] if fitted else "none"
        points.append(f'<circle cx="{x:.1f}" cy="{size_px - y:.1f}" r="3" fill="{fill}" stroke="{colours[name]}">'
                      f"<title>{escape(text)}</title></circle>")
    legend = "".join(f'<li><span style="background:{colours[n]}"></span>{escape(str(n))}</li>' for n in names)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(scatter.title)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:1.5em}} svg{{border:1px solid #ddd}}
ul{{list-style:none;padding:0}} li span{{display:inline-block;width:.8em;height:.8em;margin-right:.4em}}</style>
</head><body><h1 style="font-size:1.1em">{escape(scatter.title)}</h1>
<p>Colour: {escape(scatter.color_by)}. Filled points: the map was fitted on them; rings: embedded into it.
Hover a point for its image and labels.</p>
<svg width="{size_px}" height="{size_px}" role="img" aria-label="{escape(scatter.title, quote=True)}">
{"".join(points)}
</svg><ul>{legend}</ul></body></html>
"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def patch_pca_rgb(tokens: np.ndarray, threshold: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Patch tokens (n_images, n_patches, dim) of a square grid -> (RGB maps (n, g, g, 3) in [0, 1], foreground
    mask (n, g, g)), the DINOv2 recipe the DinoBloom authors used: a PCA over all patches of all images; its first
    component, scaled to [0, 1] and thresholded, separates background from cells (the side of the threshold
    holding most patches of the image borders is background); a second PCA over the foreground patches gives
    three components, each scaled to [0, 1], as RGB; background is black."""
    from sklearn.decomposition import PCA

    n, patches, dim = tokens.shape
    grid = int(round(patches ** 0.5))
    if grid * grid != patches:
        raise ValueError(f"{patches} patch tokens do not form a square grid")
    flat = tokens.reshape(n * patches, dim).astype(np.float64)
    first = PCA(n_components=1, random_state=seed).fit_transform(flat)[:, 0]
    first = (first - first.min()) / max(first.max() - first.min(), 1e-12)
    above = (first > threshold).reshape(n, grid, grid)
    border = np.zeros((grid, grid), dtype=bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    foreground = ~above if above[:, border].mean() > 0.5 else above
    fg_rows = foreground.reshape(-1)
    if fg_rows.sum() < 3:  # nothing stands out: colour every patch
        fg_rows[:] = True
        foreground[:] = True
    components = PCA(n_components=3, random_state=seed).fit_transform(flat[fg_rows])
    low, high = components.min(axis=0), components.max(axis=0)
    rgb = np.zeros((n * patches, 3))
    rgb[fg_rows] = (components - low) / np.where(high - low > 0, high - low, 1.0)
    return rgb.reshape(n, grid, grid, 3), foreground


def patch_pca_png(originals: list[np.ndarray], rgb: np.ndarray, names: list[str], title: str, out: Path) -> Path:
    """Originals (as the model saw them: resized, H x W x 3 uint8) above their patch-PCA maps (nearest
    upsampling, one square per patch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(originals)
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.6), dpi=FIGURE_DPI, squeeze=False)
    for i in range(n):
        axes[0, i].imshow(originals[i])
        axes[0, i].set_title(names[i], fontsize=7)
        axes[1, i].imshow(rgb[i], interpolation="nearest")
        for ax in axes[:, i]:
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=FIGURE_DPI)
    plt.close(fig)
    return out
