"""Synthetic white-blood-cell images: the embedded default data set of hemabench.

These are *not* real cells. This module draws cartoon-like but stain-plausible
single-cell crops of a peripheral blood smear stained with May-Gruenwald-Giemsa,
so the benchmark (and its tests) can run with no download and no patient data.

What it models, per image: a pale background; several red blood cells (pink discs
with central pallor, some cut by the frame, some tucked under the white cell); the
white cell with a class-specific size, nucleus shape (round, kidney, 2-5 connected
lobes), chromatin texture, nucleoli, cytoplasm colour and granules (fine lilac,
coarse orange, dark purple); occasional platelets; then optical blur and sensor
noise. Colours are built in optical-density space (Beer-Lambert), so overlapping
structures darken as in a real smear. Two stains exist: "default" and "shifted",
the latter standing for another lab's stain and scanner (stain hue, saturation
and strength, background tint, blur, noise and vignetting all differ), for
domain-shift experiments.

Limits: six textbook classes only, no pathology beyond class mixes (no dysplasia,
Auer rods, smudge cells, immature granulocytes), no real optics, and the class
cues are simpler and more regular than in real smears. Numbers measured on it say
whether the harness works and roughly how features rank; they are not evidence
about clinical performance.

Everything random comes from the ``numpy.random.Generator`` passed in, so an image
is a pure function of (class, rng state, size, stain). The folder writers derive a
separate rng per image with ``numpy.random.SeedSequence``; an image never depends
on how many others are generated.
"""

from __future__ import annotations

import csv
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from bench.core.errors import UsageError
from tasks.materialise import materialise_folder

__all__ = [
    "GENERATOR_VERSION",
    "CELL_CLASSES",
    "STAINS",
    "BAG_LABELS",
    "render_cell",
    "write_cell_folder",
    "write_patient_bags",
]

GENERATOR_VERSION: int = 1

CELL_CLASSES: tuple[str, ...] = (
    "basophil",
    "blast",
    "eosinophil",
    "lymphocyte",
    "monocyte",
    "neutrophil",
)

STAINS: tuple[str, ...] = ("default", "shifted")


def _profile(**weights: float) -> dict[str, float]:
    total = float(sum(weights.values()))
    return {c: float(weights.get(c, 0.0)) / total for c in CELL_CLASSES}


#: Patient-level diagnosis -> expected share of each cell class in that patient's blood.
BAG_LABELS: dict[str, dict[str, float]] = {
    "control": _profile(neutrophil=0.60, lymphocyte=0.28, monocyte=0.07, eosinophil=0.035, basophil=0.01,
                        blast=0.005),
    "aml-like": _profile(blast=0.55, neutrophil=0.18, lymphocyte=0.16, monocyte=0.08, eosinophil=0.02,
                         basophil=0.01),
    "cml-like": _profile(neutrophil=0.55, basophil=0.12, eosinophil=0.10, lymphocyte=0.10, monocyte=0.08,
                         blast=0.05),
    "eosinophilia": _profile(eosinophil=0.35, neutrophil=0.38, lymphocyte=0.19, monocyte=0.06, basophil=0.02),
}

_PATIENT_CONCENTRATION = 40.0  # Dirichlet concentration of a patient's mix around its label profile
_MIN_SIZE = 16
_REF = 128.0  # pixel-valued parameters below are given for 128 px images and scale with size

# ----------------------------------------------------------------------------------------------
# Stains: optical-density (absorbance) vectors per structure, and per-lab acquisition settings.
# ----------------------------------------------------------------------------------------------
_OD_NUCLEUS = np.array([0.95, 1.45, 0.55], np.float32)  # azure/methylene blue -> purple
_OD_RBC = np.array([0.05, 0.31, 0.21], np.float32)  # eosin -> pink
_OD_PLATELET = np.array([0.50, 0.78, 0.30], np.float32)
_OD_AZUROPHIL = np.array([0.40, 0.70, 0.18], np.float32)

_STAIN: dict[str, dict[str, Any]] = {
    #            background rgb          hue deg  sat   density blur px noise  vignette
    "default": dict(bg=(0.925, 0.895, 0.885), hue=0.0, sat=1.00, dens=1.00, blur=0.55, noise=0.010, vig=0.00),
    "shifted": dict(bg=(0.865, 0.890, 0.935), hue=22.0, sat=1.30, dens=0.80, blur=1.25, noise=0.028, vig=0.07),
}

# Per-class appearance. r: cell radius / image size; cyto: cytoplasm OD; nuc_d: chromatin density;
# chrom: (texture amplitude, texture scale px); gran: (count range, sigma px range, amplitude, OD
# vector, share of granules kept over the nucleus, probability the cell has granules at all).
_CLASS = {
    "basophil": dict(r=0.235, cyto=(0.10, 0.17, 0.08), nuc_d=0.80, chrom=(0.20, 1.2),
                     gran=((45, 150), (1.0, 1.5), 0.95, (1.15, 1.65, 0.75), 0.85, 1.0)),
    "blast": dict(r=0.27, cyto=(0.46, 0.34, 0.07), nuc_d=0.70, chrom=(0.10, 0.7),
                  gran=((1, 10), (0.55, 0.7), 0.45, tuple(_OD_AZUROPHIL), 0.0, 0.2)),
    "eosinophil": dict(r=0.265, cyto=(0.07, 0.16, 0.14), nuc_d=0.95, chrom=(0.28, 1.3),
                       gran=((320, 520), (0.9, 1.1), 0.7, (0.03, 0.52, 0.95), 0.12, 1.0)),
    "lymphocyte": dict(r=0.19, cyto=(0.34, 0.20, 0.03), nuc_d=1.15, chrom=(0.33, 1.5),
                       gran=((1, 12), (0.55, 0.7), 0.45, tuple(_OD_AZUROPHIL), 0.0, 0.25)),
    "monocyte": dict(r=0.30, cyto=(0.24, 0.25, 0.15), nuc_d=0.78, chrom=(0.22, 1.1),
                     gran=((60, 180), (0.45, 0.5), 0.18, (0.25, 0.38, 0.10), 0.0, 1.0)),
    "neutrophil": dict(r=0.25, cyto=(0.07, 0.17, 0.10), nuc_d=1.05, chrom=(0.30, 1.3),
                       gran=((350, 550), (0.45, 0.55), 0.3, (0.22, 0.36, 0.12), 0.05, 1.0)),
}


# ----------------------------------------------------------------------------------------------
# Small vectorised helpers
# ----------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Unit-variance Gaussian-smoothed white noise."""
    n = ndimage.gaussian_filter(rng.standard_normal((size, size), dtype=np.float32), sigma, mode="wrap")
    return n / (n.std() + np.float32(1e-6))


def _ellipse_sdf(xx, yy, cx, cy, a, b, ang):
    """Approximate signed distance (px) to a rotated ellipse with semi-axes a, b."""
    c, s = math.cos(ang), math.sin(ang)
    dx, dy = xx - cx, yy - cy
    u = dx * c + dy * s
    v = dy * c - dx * s
    k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    k1 = np.sqrt((u / (a * a)) ** 2 + (v / (b * b)) ** 2)
    return k0 * (k0 - 1.0) / (k1 + 1e-6)


def _capsule_sdf(xx, yy, p0, p1, w):
    bx, by = p1[0] - p0[0], p1[1] - p0[1]
    px, py = xx - p0[0], yy - p0[1]
    h = np.clip((px * bx + py * by) / (bx * bx + by * by + 1e-6), 0.0, 1.0)
    return np.sqrt((px - bx * h) ** 2 + (py - by * h) ** 2) - w


def _smin(a, b, k):
    """Polynomial smooth minimum (organic union of shapes)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _hue_matrix(deg: float) -> np.ndarray:
    """Rotation about the grey axis of RGB (optical density) space."""
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    k = np.full((3, 3), (1.0 - c) / 3.0)
    r = s / np.sqrt(3.0)
    k += np.array([[c, -r, r], [r, c, -r], [-r, r, c]])
    return k


# ----------------------------------------------------------------------------------------------
# Nucleus shapes: each returns a signed distance field (px, negative inside)
# ----------------------------------------------------------------------------------------------
def _nucleus_round(rng, xx, yy, cx, cy, R, ratio, notch_p):
    rn = R * rng.uniform(*ratio)
    phi = rng.uniform(0, 2 * np.pi)
    off = (R - rn) * rng.uniform(0.1, 0.8)
    nx, ny = cx + off * math.cos(phi), cy + off * math.sin(phi)
    sdf = _ellipse_sdf(xx, yy, nx, ny, rn, rn * rng.uniform(0.84, 1.0), rng.uniform(0, np.pi))
    if rng.random() < notch_p:  # slight indentation
        ang = rng.uniform(0, 2 * np.pi)
        nr = rn * rng.uniform(0.25, 0.45)
        d = rn + nr * rng.uniform(0.35, 0.75)
        notch = np.sqrt((xx - nx - d * math.cos(ang)) ** 2 + (yy - ny - d * math.sin(ang)) ** 2) - nr
        sdf = np.maximum(sdf, -notch)
    return sdf, (nx, ny, rn)


def _nucleus_kidney(rng, xx, yy, cx, cy, R):
    a, b = R * rng.uniform(0.60, 0.74), R * rng.uniform(0.44, 0.56)
    ang = rng.uniform(0, 2 * np.pi)
    c, s = math.cos(ang), math.sin(ang)
    shift = (R - b) * rng.uniform(0.15, 0.55)  # nucleus pushed to the side opposite the notch
    nx, ny = cx + shift * s, cy - shift * c
    sdf = _ellipse_sdf(xx, yy, nx, ny, a, b, ang)
    nr = b * rng.uniform(0.45, 0.8)
    d = b + nr * rng.uniform(0.05, 0.6)
    notch = np.sqrt((xx - nx + d * s) ** 2 + (yy - ny - d * c) ** 2) - nr
    return np.maximum(sdf, -notch), (nx, ny, a)


def _nucleus_lobed(rng, xx, yy, cx, cy, R, n_lobes, lobe_r, arc_r, span, link_w, k_smooth):
    ra = R * rng.uniform(*arc_r)
    mid = rng.uniform(0, 2 * np.pi)
    sp = rng.uniform(*span) * (n_lobes - 1)  # span = angle between neighbouring lobes
    ox, oy = (R * rng.uniform(-0.1, 0.1, size=2)).tolist()
    t = np.linspace(-0.5, 0.5, n_lobes) * sp + mid + rng.uniform(-0.15, 0.15, size=n_lobes)
    rl = R * rng.uniform(*lobe_r, size=n_lobes) * (1.12 if n_lobes == 2 else 1.0)
    px = cx + ox + ra * np.cos(t) + rng.normal(0, 0.08, n_lobes) * R
    py = cy + oy + ra * np.sin(t) + rng.normal(0, 0.08, n_lobes) * R
    asp = rng.uniform(0.7, 0.95, size=n_lobes)
    t, rl, px, py, asp = t.tolist(), rl.tolist(), px.tolist(), py.tolist(), asp.tolist()
    sdf = None
    for i in range(n_lobes):
        e = _ellipse_sdf(xx, yy, px[i], py[i], rl[i], rl[i] * asp[i], t[i] + np.pi / 2 + rng.normal(0, 0.3))
        sdf = e if sdf is None else _smin(sdf, e, k_smooth * R)
    assert sdf is not None  # n_lobes >= 1
    w = R * rng.uniform(*link_w)
    for i in range(n_lobes - 1):
        sdf = np.minimum(sdf, _capsule_sdf(xx, yy, (px[i], py[i]), (px[i + 1], py[i + 1]), w))
    return sdf, (sum(px) / n_lobes, sum(py) / n_lobes, max(rl))


# ----------------------------------------------------------------------------------------------
# Renderer
# ----------------------------------------------------------------------------------------------
def _check_choice(name: str, value, valid: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in valid:
        raise UsageError(f"{name}={value!r} is not valid; choose one of {', '.join(map(repr, valid))}")


def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _splat(rng, S, cell_in, nuc, xx0, yy0, R, count_rng, sigma_rng, amp, keep_over_nuc, sc):
    """Gaussian granules at random positions inside the cell; returns an OD weight field."""
    n = int(rng.integers(count_rng[0], count_rng[1] + 1))
    sigma = rng.uniform(*sigma_rng) * sc
    rad = R * 0.97 * np.sqrt(rng.random(n))
    th = rng.uniform(0, 2 * np.pi, n)
    w = rng.uniform(0.6, 1.4, n).astype(np.float32) * amp
    keep_u = rng.random(n)
    ix = np.floor(xx0 + rad * np.cos(th)).astype(np.intp)
    iy = np.floor(yy0 + rad * np.sin(th)).astype(np.intp)
    ok = (ix >= 0) & (ix < S) & (iy >= 0) & (iy < S)
    ix, iy, w, keep_u = ix[ok], iy[ok], w[ok], keep_u[ok]
    ok = (cell_in[iy, ix] > 0.5) & ((nuc[iy, ix] < 0.5) | (keep_u < keep_over_nuc))
    field = np.zeros((S, S), np.float32)
    np.add.at(field, (iy[ok], ix[ok]), w[ok])
    field = ndimage.gaussian_filter(field, sigma) * np.float32(2 * np.pi * sigma * sigma)
    return np.float32(1.3) * (1.0 - np.exp(-field / np.float32(1.3)))  # saturate where granules pile up


def render_cell(cell_class: str, rng: np.random.Generator, size: int = 128, stain: str = "default") -> np.ndarray:
    """Render one synthetic single-cell image; returns a (size, size, 3) uint8 RGB array."""
    _check_choice("cell_class", cell_class, CELL_CLASSES)
    _check_choice("stain", stain, STAINS)
    S = _check_positive_int("size", size, _MIN_SIZE)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    spec, st = _CLASS[cell_class], _STAIN[stain]
    sc = S / _REF
    yy, xx = _grid(S)

    # Per-image stain variation within the lab.
    hue = st["hue"] + rng.normal(0, 4.0)
    sat = st["sat"] * rng.uniform(0.9, 1.1)
    dens = st["dens"] * rng.uniform(0.88, 1.12)
    bg = np.asarray(st["bg"], np.float32) * rng.uniform(0.985, 1.015, 3).astype(np.float32)

    # White cell outline: jittered centre, size, wobbly boundary.
    cx, cy = (S * (0.5 + rng.uniform(-0.06, 0.06, 2))).tolist()
    R = S * spec["r"] * float(np.exp(rng.normal(0, 0.08)))
    dx, dy = xx - cx, yy - cy
    d = np.sqrt(dx * dx + dy * dy)
    th = np.arctan2(dy, dx)
    amps, phs = rng.normal(0, 0.025, 3).tolist(), rng.uniform(0, 2 * np.pi, 3).tolist()
    rth = R * (1.0 + sum(amps[k] * np.cos((k + 2) * th + phs[k]) for k in range(3)))
    cell = np.clip(rth - d + 0.5, 0.0, 1.0)
    cell_in = np.clip(rth - d - 0.5 * sc, 0.0, 1.0)  # keeps the nucleus off the membrane

    # Nucleus.
    if cell_class == "lymphocyte":
        sdf, (nx, ny, rn) = _nucleus_round(rng, xx, yy, cx, cy, R, (0.78, 0.88), 0.3)
    elif cell_class == "blast":
        sdf, (nx, ny, rn) = _nucleus_round(rng, xx, yy, cx, cy, R, (0.70, 0.82), 0.15)
    elif cell_class == "monocyte":
        sdf, (nx, ny, rn) = _nucleus_kidney(rng, xx, yy, cx, cy, R)
    elif cell_class == "neutrophil":
        k = int(rng.choice([2, 3, 4, 5], p=[0.12, 0.43, 0.33, 0.12]))
        sdf, (nx, ny, rn) = _nucleus_lobed(rng, xx, yy, cx, cy, R, k, (0.24, 0.31), (0.40, 0.50),
                                           (0.30 * np.pi, 0.42 * np.pi), (0.035, 0.06), 0.05)
    elif cell_class == "eosinophil":
        k = 2 if rng.random() < 0.85 else 3
        sdf, (nx, ny, rn) = _nucleus_lobed(rng, xx, yy, cx, cy, R, k, (0.28, 0.34), (0.36, 0.46),
                                           (0.45 * np.pi, 0.65 * np.pi), (0.04, 0.07), 0.05)
    else:  # basophil: two or three large, fused, pale lobes
        k = 2 if rng.random() < 0.6 else 3
        sdf, (nx, ny, rn) = _nucleus_lobed(rng, xx, yy, cx, cy, R, k, (0.30, 0.38), (0.25, 0.38),
                                           (0.35 * np.pi, 0.5 * np.pi), (0.10, 0.16), 0.25)
    sdf = sdf + _smooth_noise(rng, S, 3.0 * sc) * (0.9 * sc)
    nuc = np.clip(0.5 - sdf, 0.0, 1.0) * cell_in

    # Chromatin texture (and folds, nucleoli).
    amp, scale = spec["chrom"]
    chrom = spec["nuc_d"] * np.clip(1.0 + amp * _smooth_noise(rng, S, scale * sc), 0.3, 2.0)
    blue_extra = None
    if cell_class == "monocyte":
        ang = rng.uniform(0, np.pi)
        freq = 2 * np.pi / (R * rng.uniform(0.3, 0.45))
        chrom = chrom * (1.0 + 0.16 * np.sin(freq * (dx * math.cos(ang) + dy * math.sin(ang)) + 2.0 * sdf / R * 6))
    if cell_class == "blast":
        m = int(rng.integers(1, 4))
        spots = np.zeros((S, S), np.float32)
        for _ in range(m):
            a, rr = rng.uniform(0, 2 * np.pi), rn * math.sqrt(rng.uniform(0, 0.3))
            r0 = rn * rng.uniform(0.09, 0.16)
            dd = np.sqrt((xx - nx - rr * math.cos(a)) ** 2 + (yy - ny - rr * math.sin(a)) ** 2)
            spots = np.maximum(spots, np.clip((r0 - dd) / (1.2 * sc) + 0.5, 0.0, 1.0))
        chrom = chrom * (1.0 - 0.55 * spots)
        blue_extra = spots * nuc * 0.35
    if cell_class == "lymphocyte":  # condensed chromatin at the nuclear rim
        chrom = chrom * (1.0 + 0.15 * np.clip(1.0 + sdf / (0.25 * rn), 0.0, 1.0))

    # Cytoplasm: colour, texture, darker rim for basophilic cytoplasm, vacuoles in monocytes.
    cyto_w = cell * (1.0 - nuc) * np.clip(1.0 + 0.12 * _smooth_noise(rng, S, 2.0 * sc), 0.5, 1.5)
    if cell_class in ("lymphocyte", "blast"):
        cyto_w = cyto_w * (1.0 + 0.35 * np.clip((d / rth - 0.75) / 0.25, 0.0, 1.0))
    if cell_class == "monocyte":
        nv = int(rng.integers(0, 7))
        for _ in range(nv):
            a, rr = rng.uniform(0, 2 * np.pi), R * rng.uniform(0.3, 0.9)
            r0 = R * rng.uniform(0.03, 0.08)
            dd = np.sqrt((xx - cx - rr * math.cos(a)) ** 2 + (yy - cy - rr * math.sin(a)) ** 2)
            cyto_w = cyto_w * (1.0 - 0.7 * np.clip(r0 - dd + 0.5, 0.0, 1.0))
    cyto_vec = np.asarray(spec["cyto"], np.float32) * rng.uniform(0.85, 1.15)

    # Granules.
    cnt, sig, gamp, gvec, over, present = spec["gran"]
    gran = None
    if rng.random() < present:
        gran = _splat(rng, S, cell_in, nuc, cx, cy, rth.max(), cnt, sig, gamp, over, sc)
        gran = gran * cell

    # Red blood cells: pale-centred eosin discs, pushed out so they only tuck under the cell edge.
    n_rbc = int(rng.integers(3, 10))
    rx, ry = rng.uniform(-0.12, 1.12, (2, n_rbc)) * S
    rr = S * 0.15 * np.exp(rng.normal(0, 0.07, n_rbc))
    ovl = rng.uniform(0.35, 1.05, n_rbc)
    asp = rng.uniform(0.86, 1.0, n_rbc)
    rang = rng.uniform(0, np.pi, n_rbc)
    rint = rng.uniform(0.85, 1.15, n_rbc)
    vx, vy = rx - cx, ry - cy
    dist = np.hypot(vx, vy) + 1e-3
    need = R + rr * ovl
    push = np.where(dist < need, need / dist, 1.0)
    rx, ry = cx + vx * push, cy + vy * push

    def col(a):
        return a.astype(np.float32).reshape(n_rbc, 1, 1)

    c, s = col(np.cos(rang)), col(np.sin(rang))
    ddx, ddy = xx - col(rx), yy - col(ry)
    u = (ddx * c + ddy * s) / col(rr)
    v = (ddy * c - ddx * s) / col(rr * asp)
    t = np.sqrt(u * u + v * v)
    disc = np.clip((1.0 - t) * col(rr) + 0.5, 0.0, 1.0)
    prof = 0.5 + 0.5 * np.clip((t - 0.15) / 0.65, 0.0, 1.0) ** 2
    rbc = (disc * prof * col(rint)).sum(axis=0) * (1.0 - 0.85 * cell)

    # Platelets now and then, away from the cell.
    plt = None
    n_plt = int(rng.choice([0, 0, 1, 2]))
    if n_plt:
        plt = np.zeros((S, S), np.float32)
        for _ in range(n_plt):
            a, rr0 = rng.uniform(0, 2 * np.pi), R + S * rng.uniform(0.05, 0.4)
            px, py = cx + rr0 * math.cos(a), cy + rr0 * math.sin(a)
            ps = S * rng.uniform(0.012, 0.025)
            plt += np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * ps * ps)) * rng.uniform(0.6, 1.0)

    # Optical density -> RGB through this image's stain.
    od = rbc[..., None] * _OD_RBC + cyto_w[..., None] * cyto_vec + (nuc * chrom)[..., None] * _OD_NUCLEUS
    if gran is not None:
        od += gran[..., None] * np.asarray(gvec, np.float32)
    if blue_extra is not None:
        od += blue_extra[..., None] * np.asarray(spec["cyto"], np.float32)
    if plt is not None:
        od += plt[..., None] * _OD_PLATELET
    m = dens * _hue_matrix(hue) @ (sat * np.eye(3) + (1.0 - sat) / 3.0)
    od = np.maximum(od @ m.T.astype(np.float32), 0.0)

    gx, gy = rng.normal(0, 0.02, 2).tolist()
    illum = 1.0 + gx * (xx / S - 0.5) + gy * (yy / S - 0.5)
    if st["vig"]:
        illum = illum - st["vig"] * 2.0 * ((xx / S - 0.5) ** 2 + (yy / S - 0.5) ** 2)
    img = (bg * illum[..., None]) * np.exp(-od)

    blur = st["blur"] * sc * rng.uniform(0.8, 1.25)
    img = ndimage.gaussian_filter(img, (blur, blur, 0))
    img += rng.standard_normal(img.shape, dtype=np.float32) * st["noise"]
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Folder writers: atomic, marked, locked
# ----------------------------------------------------------------------------------------------
def _materialise(root, expected: dict, files: Callable[[], Iterator[tuple[str, Callable[[], np.ndarray]]]],
                 extra: Callable[[Path], None] | None = None) -> Path:
    """Write the files (PNG) and ``extra`` into a new folder at ``root``, atomically, once
    (:func:`tasks.materialise.materialise_folder`)."""

    def write(tmp: Path) -> int:
        n = 0
        for rel, make in files():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(make()).save(path, format="PNG", compress_level=1)
            n += 1
        if extra is not None:
            extra(tmp)
        return n

    return materialise_folder(root, expected, write, "synthetic data")


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


# SeedSequence domain tags, so the two writers never share image streams.
_TAG_CELLS, _TAG_BAG_CELL, _TAG_PATIENT = 0, 1, 2


def write_cell_folder(root, n_per_class: int, *, seed: int = 0, size: int = 128, stain: str = "default") -> Path:
    """Write ``<root>/<class>/<class>_<i:04d>.png`` for every class (idempotent, atomic, locked); return root.

    The rng of image i of class c is ``SeedSequence([seed, 0, index of c, i])``.
    """
    n = _check_positive_int("n_per_class", n_per_class)
    seed = _check_seed(seed)
    size = _check_positive_int("size", size, _MIN_SIZE)
    _check_choice("stain", stain, STAINS)
    expected = {
        "generator": "tasks.synthetic",
        "generator_version": GENERATOR_VERSION,
        "kind": "cell_folder",
        "params": {"n_per_class": n, "seed": seed, "size": size, "stain": stain, "classes": list(CELL_CLASSES)},
        "n_files": n * len(CELL_CLASSES),
    }

    def files():
        for ci, cls in enumerate(CELL_CLASSES):
            for i in range(n):
                yield f"{cls}/{cls}_{i:04d}.png", (
                    lambda cls=cls, ci=ci, i=i: render_cell(cls, _rng(seed, _TAG_CELLS, ci, i), size, stain))

    return _materialise(root, expected, files)


def _patient_mix(profile: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    p = np.array([profile[c] for c in CELL_CLASSES])
    pos = p > 0
    mix = np.zeros_like(p)
    mix[pos] = rng.dirichlet(p[pos] * _PATIENT_CONCENTRATION)
    return mix


def write_patient_bags(root, *, n_patients_per_label: int, cells_per_patient: int, seed: int = 0,
                       size: int = 128, stain: str = "default") -> Path:
    """Write ``<root>/<label>/<patient_id>/<patient_id>_c<j:04d>.png`` bags plus ``cells.csv``; return root.

    Each patient's class mix is drawn around its label's profile (Dirichlet, concentration 40); each cell's
    class and image come from ``SeedSequence([seed, 1, label index, patient index, j])``. Patient ids
    ``P0001``... run over labels in ``BAG_LABELS`` order and are unique across labels.
    """
    n_pat = _check_positive_int("n_patients_per_label", n_patients_per_label)
    n_cells = _check_positive_int("cells_per_patient", cells_per_patient)
    seed = _check_seed(seed)
    size = _check_positive_int("size", size, _MIN_SIZE)
    _check_choice("stain", stain, STAINS)
    labels = list(BAG_LABELS)
    expected = {
        "generator": "tasks.synthetic",
        "generator_version": GENERATOR_VERSION,
        "kind": "patient_bags",
        "params": {"n_patients_per_label": n_pat, "cells_per_patient": n_cells, "seed": seed, "size": size,
                   "stain": stain, "classes": list(CELL_CLASSES), "labels": BAG_LABELS,
                   "patient_concentration": _PATIENT_CONCENTRATION},
        "n_files": len(labels) * n_pat * n_cells,
    }
    rows: list[tuple[str, str, str, str]] = []

    def files():
        rows.clear()
        for li, label in enumerate(labels):
            for p in range(n_pat):
                pid = f"P{li * n_pat + p + 1:04d}"
                mix = _patient_mix(BAG_LABELS[label], _rng(seed, _TAG_PATIENT, li, p))
                for j in range(n_cells):
                    rng = _rng(seed, _TAG_BAG_CELL, li, p, j)
                    cls = CELL_CLASSES[int(rng.choice(len(CELL_CLASSES), p=mix))]
                    rel = f"{label}/{pid}/{pid}_c{j:04d}.png"
                    rows.append((rel, label, pid, cls))
                    yield rel, (lambda cls=cls, rng=rng: render_cell(cls, rng, size, stain))

    def write_csv(tmp: Path) -> None:
        with open(tmp / "cells.csv", "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["path", "label", "patient_id", "cell_class"])
            w.writerows(rows)

    return _materialise(root, expected, files, write_csv)


# ----------------------------------------------------------------------------------------------
# Task specs: the embedded default tasks (generated under $BENCH_HOME/data on first use)
# ----------------------------------------------------------------------------------------------
SYNTHETIC_N_PER_CLASS = 50
SYNTHETIC_SIZE = 128
# The canonical splits (``split_fingerprint`` of the generated data with the default settings: paths, labels and
# folds; both stains share the file names and so the folds). A change to the generator that moves them bumps
# GENERATOR_VERSION and these.
SYNTHETIC_WBC_SPLIT = "f2dcbe279b7c6a8629a467ea1b97ae785e24716b2399fa39f43453ffd9dd236a"
SYNTHETIC_BAGS_SPLIT = "515e85d67b955534cb898c0eb7bfa8b935474b0156c600090665b184c44e6173"


def _synthetic_task(folder: str, stain: str):
    from functools import partial

    from tasks.imagefolder import CellTask

    return CellTask(
        data_dir=f"{folder}-v{GENERATOR_VERSION}",
        obtain="It is generated on first use; pass an empty or absent --data-root to generate it there.",
        prepare=partial(write_cell_folder, n_per_class=SYNTHETIC_N_PER_CLASS, seed=0, size=SYNTHETIC_SIZE, stain=stain),
        canonical_split_sha256=SYNTHETIC_WBC_SPLIT,
        canonical_split_file="synthetic-wbc.split.csv.gz",  # the same names, labels and folds in both stains
    )


SYNTHETIC_WBC = _synthetic_task("synthetic-wbc", "default")
SYNTHETIC_WBC_SHIFTED = _synthetic_task("synthetic-wbc-shifted", "shifted")


def _synthetic_bags():
    from functools import partial

    from tasks.patients import BagTask

    return BagTask(
        data_dir=f"synthetic-bags-v{GENERATOR_VERSION}",
        obtain="It is generated on first use.",
        prepare=partial(write_patient_bags, n_patients_per_label=10, cells_per_patient=24, seed=0, size=64),
        seeds=(0,),
        canonical_split_sha256=SYNTHETIC_BAGS_SPLIT,
    )


SYNTHETIC_BAGS = _synthetic_bags()
