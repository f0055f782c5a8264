"""The crops of a point task (:mod:`tasks.points`): a square of ``size`` x ``size`` pixels centred on each point,
cut from its image and written as a lossless PNG, since the harness reads image files.

* **Centred, padded with black.** The point is pixel (``size // 2``, ``size // 2``) of its crop; where the square
  reaches past the image's border the missing pixels are black (0, 0, 0). Clamping the square into the image would
  move the labelled cell off the centre, towards a neighbour; mirroring would invent cells.
* **Where, and when again.** Under ``<crops home>/<size>px-<key>/``, where ``key`` is the first 16 hex digits of a
  sha256 over :data:`CROP_VERSION`, the size, the fill, the class names and the sha256 of every labels file and of
  every image with points: a changed labels file (or image) gives new crops in a new folder; the same ones are
  reused without writing anything. The folder is written whole into a temporary sibling and renamed into place
  (:func:`tasks.materialise.materialise_folder`), so no reader sees half of it. ``crops.csv`` in it says where each
  crop comes from (labels file, line, x, y) and whether it is padded.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from bench.core.errors import DataError
from bench.core.files import digest, ensure_space
from bench.core.images import decode_rgb
from tasks.materialise import materialise_folder
from tasks.points import PointInventory

CROP_VERSION = 1  # bump when the crops of the same points and images change (cut, fill, encoding)
FILL = (0, 0, 0)  # the colour of the pixels outside the image
INDEX = "crops.csv"


def crop_centred(pixels: np.ndarray, x: int, y: int, size: int) -> np.ndarray:
    """The ``size`` x ``size`` square of ``pixels`` (rows, columns, channels) whose pixel (size // 2, size // 2) is
    (row y, column x); what lies outside the image is :data:`FILL`."""
    half = size // 2
    top, left = y - half, x - half
    out = np.empty((size, size, pixels.shape[2]), dtype=pixels.dtype)
    out[...] = FILL
    rows = slice(max(top, 0), min(top + size, pixels.shape[0]))
    cols = slice(max(left, 0), min(left + size, pixels.shape[1]))
    out[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left] = pixels[rows, cols]
    return out


def padded(samples, size: int) -> np.ndarray:
    """Which points' crops reach past their image's border (``samples``: x, y, width, height)."""
    half = size // 2
    x, y = samples["x"].to_numpy(), samples["y"].to_numpy()
    return (x < half) | (y < half) | (x - half + size > samples["width"].to_numpy()) | (
        y - half + size > samples["height"].to_numpy())


def crops_key(inv: PointInventory, size: int) -> str:
    """The sha256 the crops of ``inv``'s points at ``size`` px are filed under."""
    used = sorted(set(inv.samples["image"]))
    classes = dict(sorted(zip(inv.samples["code"].astype(int), inv.samples["label"].astype(str))))  # in crops.csv
    return digest({"version": CROP_VERSION, "size": size, "fill": list(FILL), "labels": inv.labels_sha256,
                   "images": {image: inv.images[image] for image in used}, "classes": classes})


def materialise_crops(inv: PointInventory, home: Path, size: int) -> Path:
    """The folder of the crops of ``inv``'s points (cut on the first call, reused after): ``<home>/<size>px-<key>``,
    one ``<sample path>`` per point (its ``path`` in ``inv.samples``) and ``crops.csv``."""
    key = crops_key(inv, size)
    samples = inv.samples
    expected = {"generator": "tasks.crops", "version": CROP_VERSION, "size": size, "fill": list(FILL), "key": key,
                "n_files": len(samples)}

    def cut(folder: Path, image: str, rows) -> None:
        pixels = np.asarray(decode_rgb(inv.root / image))
        (folder / Path(rows["path"].iat[0]).parent).mkdir(exist_ok=True)
        for path, x, y in zip(rows["path"], rows["x"], rows["y"]):
            Image.fromarray(crop_centred(pixels, int(x), int(y), size)).save(folder / path, format="PNG")

    def write(folder: Path) -> int:
        # half the raw pixels and a block per file: 1.5 x what the public copy's crops take (203 MiB at 80 px)
        ensure_space(folder, len(samples) * (size * size * 3 // 2 + 4096), f"cutting {len(samples):,} crops")
        # PIL releases the GIL while it decodes and encodes: one thread per core (at most 8)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            jobs = [pool.submit(cut, folder, str(image), rows) for image, rows in samples.groupby("image")]
            try:
                for job in jobs:
                    job.result()
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        index = samples[["path", "label", "code", "image", "labels_file", "line", "x", "y"]]
        index.assign(padded=padded(samples, size)).to_csv(folder / INDEX, index=False)
        return len(samples)

    target = Path(home) / f"{size}px-{key[:16]}"
    try:
        return materialise_folder(target, expected, write, f"crops of {inv.root}")
    except PermissionError as exc:
        raise DataError(f"cannot write the crops to {target} ({exc.strerror}): set BENCH_HOME to a folder you can "
                        "write to (the crops go to $BENCH_HOME/data)") from None
