"""The crop size of ``chula-rbc-12`` and what cutting its crops costs, measured on a clone of
github.com/Chula-PIC-Lab/Chula-RBC-12-Dataset (docs/tasks.md, "Chula-RBC-12").

    python benchmarks/chula_crops.py --clone Chula-RBC-12-Dataset [--no-timing] [--out report.md]

1. **How large a red cell is here.** Per smear with points: the cells segmented by Otsu's threshold on the green
   channel (holes filled, one opening), each connected component that holds exactly one labelled point, does not
   touch the image's border and fills at least 60 % of its bounding box (a cell standing alone, not a clump): its
   equivalent diameter (of a disc of its area) and its largest extent, and which centred squares hold all of it.
2. **How many crops reach past the border** at each size (those are padded with black).
3. **The cost** (unless ``--no-timing``): the task's ``load`` into a fresh data home, once cold (cutting every crop)
   and once warm (reusing them), wall and CPU seconds, and the crops' size on disk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from measure import CpuMeter, emit_report, log, md_table, wait_quiet  # noqa: E402

SIZES = (48, 56, 64, 72, 80, 96, 128)


def _otsu(values: np.ndarray) -> int:
    hist = np.bincount(values.ravel(), minlength=256) / values.size
    w, m = np.cumsum(hist), np.cumsum(hist * np.arange(256))
    between = (m[-1] * w - m) ** 2 / (w * (1 - w) + 1e-12)
    return int(np.argmax(between))


def cells(clone: Path, samples) -> dict[str, list[tuple[float, int, int]]]:
    """class -> (equivalent diameter, largest extent, side of the smallest centred square holding it) per cell."""
    out = defaultdict(list)
    for image, rows in samples.groupby("image"):
        green = np.asarray(Image.open(clone / str(image)).convert("RGB"))[..., 1]
        mask = ndimage.binary_fill_holes(ndimage.binary_opening(green < _otsu(green)))
        labels = np.asarray(ndimage.label(mask)[0])  # pyright: ignore[reportIndexIssue]  # (scipy's stubs: a tuple)
        boxes = ndimage.find_objects(labels)
        points = list(zip(rows["x"], rows["y"], rows["label"]))
        per_component = Counter(int(labels[y, x]) for x, y, _ in points)
        for x, y, label in points:
            k = int(labels[y, x])
            if k == 0 or per_component[k] != 1:
                continue
            rs, cs = boxes[k - 1]
            if rs.start == 0 or cs.start == 0 or rs.stop == labels.shape[0] or cs.stop == labels.shape[1]:
                continue
            area = int((labels[rs, cs] == k).sum())
            height, width = rs.stop - rs.start, cs.stop - cs.start
            if area < 0.6 * height * width:
                continue
            reach = max(x - cs.start, cs.stop - x, y - rs.start, rs.stop - y)
            out[label].append((2 * np.sqrt(area / np.pi), max(height, width), 2 * reach))
    return out


def size_section(found: dict, samples) -> list[str]:
    every = np.array([c for rows in found.values() for c in rows])
    rows = [["all", len(every), *np.percentile(every[:, 0], [50, 95]).round(1),
             np.percentile(every[:, 1], 99).round(0), *[f"{(every[:, 2] <= s).mean():.1%}" for s in SIZES]]]
    for label in sorted(found):
        a = np.array(found[label])
        rows.append([label, len(a), *np.percentile(a[:, 0], [50, 95]).round(1), np.percentile(a[:, 1], 99).round(0),
                     *[f"{(a[:, 2] <= s).mean():.1%}" for s in SIZES]])
    from tasks.crops import padded

    border = [f"{int(padded(samples, s).sum()):,} ({padded(samples, s).mean():.1%})" for s in SIZES]
    return ["## Red cells standing alone, and the centred squares that hold them whole", "",
            md_table(["class", "cells", "diameter median (px)", "diameter p95", "extent p99",
                      *[f"{s} px" for s in SIZES]], rows), "",
            "## Crops reaching past their image's border (padded with black)", "",
            md_table([f"{s} px" for s in SIZES], [border]), ""]


def timing_section(clone: Path) -> list[str]:
    from tasks import get_task

    home = Path(tempfile.mkdtemp(prefix="chula-crops-"))
    try:
        rows = []
        for what in ("cold: cut every crop", "warm: reuse them"):
            wait_quiet()
            with CpuMeter() as meter:
                dataset = get_task("chula-rbc-12").load(clone, data_home=home)
            rows.append([what, f"{meter.wall:.1f}", f"{meter.own:.1f}", f"{meter.foreign:.1f}"])
            log(f"{what}: {meter.wall:.1f} s")
        files = [p for p in dataset.root.rglob("*") if p.is_file()]
        apparent = sum(p.stat().st_size for p in files)
        on_disk = sum(p.stat().st_blocks * 512 for p in files)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return ["## Cutting the crops (`load` into a fresh data home)", "",
            md_table(["pass", "wall s", "CPU s (this process)", "CPU s (others)"], rows), "",
            f"{len(dataset):,} crops in {len(files):,} files: {apparent / 2**20:.0f} MiB of data, "
            f"{on_disk / 2**20:.0f} MiB on disk; {os.cpu_count()} logical CPUs.", ""]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clone", type=Path, required=True, help="a clone of Chula-PIC-Lab/Chula-RBC-12-Dataset")
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    from tasks.chula import CHULA_RBC_12

    t0 = time.perf_counter()
    samples = CHULA_RBC_12.inventory(args.clone.resolve()).samples
    lines = [f"# Chula-RBC-12 crops ({time.strftime('%Y-%m-%d')})", "",
             f"`python benchmarks/chula_crops.py --clone {args.clone}`: {len(samples):,} points.", ""]
    lines += size_section(cells(args.clone.resolve(), samples), samples)
    if not args.no_timing:
        lines += timing_section(args.clone.resolve())
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return emit_report(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
