"""Tasks whose samples are points on whole images, not image files: one labels file per image, one point per line
(``x y code``, integers; x the column and y the row of a pixel, from the top left), as Chula-RBC-12 publishes them
(``Label/<id>.txt`` beside ``Dataset/<id>.jpg``).

:func:`point_inventory` reads such a layout and writes nothing: its :class:`PointInventory` lists the points (one
row each, naming the labels file and line it came from) and what is wrong with them, each finding naming its file
and line: malformed lines, codes outside the task's classes, points outside their image, a point given twice in one
labels file, labels files whose image is absent; and, beside the points, the images without a labels file,
byte-identical images and the files outside the layout. ``bench data check`` reports it
(:func:`tasks.checks.check_dataset`); the task's ``load`` refuses a copy with defective lines and cuts the crops
(:mod:`tasks.crops`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image

from bench.core.errors import DataError
from bench.core.images import image_extensions
from tasks.base import Inventory
from tasks.validation import HIDDEN, TOO_DEEP, hash_and_sniff, listed, not_image_by_name

NO_LABELS = "no labels file"
OUTSIDE_LAYOUT = "outside the layout"
_INTEGER = re.compile(r"[+-]?\d+")
COLUMNS = ["path", "label", "code", "image", "labels_file", "line", "x", "y", "width", "height", "smear"]


@dataclass
class PointInventory(Inventory):
    """The points of a point layout. ``samples``: one row per usable point: path (the crop it becomes,
    ``<image id>/<image id>_<line:03d>.png``), label, code, image and labels_file (relative to ``root``), line
    (1-based), x, y, the image's width and height, and smear (its image's sha256: byte-identical images are one
    smear). Points on a defective line, outside their image or of an absent or unreadable image are not samples;
    each defect is listed by file and line."""

    malformed: list[str] = field(default_factory=list)  # "Label/3.txt:12: 'a b'"
    bad_codes: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)  # the same (x, y) twice in one labels file (both kept)
    unreadable: list[str] = field(default_factory=list)  # labelled images whose header cannot be read
    non_images: list[str] = field(default_factory=list)  # named like images, no image signature
    identical_images: list[list[str]] = field(default_factory=list)  # sets of byte-identical images
    empty_files: list[str] = field(default_factory=list)  # labels files without a single line
    images: dict[str, str] = field(default_factory=dict)  # every image (by signature) -> sha256
    labels_sha256: dict[str, str] = field(default_factory=dict)  # every labels file -> sha256

    def _kinds(self) -> list[tuple[str, list[str], bool]]:
        """(kind, entries, whether a run refuses it) of every defect a labels file can have."""
        return [("malformed line(s) (expected 'x y code': three integers)", self.malformed, True),
                ("code(s) outside the task's classes", self.bad_codes, True),
                ("point(s) outside their image", self.outside, True),
                ("point(s) given twice in one labels file (both kept)", self.repeated, False)]

    def defects(self) -> dict[str, list[str]]:
        """What is wrong with the points, by kind (the kinds found only), each entry naming file and line."""
        return {kind: entries for kind, entries, _ in self._kinds() if entries}

    def refusals(self) -> list[str]:
        """The defects a run refuses, one line per kind (a point given twice is kept, under each of its lines)."""
        unreadable = [("labelled image(s) cannot be read", self.unreadable, True)]
        return [f"{len(entries)} {kind}: {listed(entries, 5)}" for kind, entries, refused in self._kinds() + unreadable
                if entries and refused]


def read_labels_file(path: Path, relative: str, codes: dict[int, str]):
    """(points as (line, x, y, code) tuples, malformed entries, bad-code entries, sha256) of one labels file."""
    data = path.read_bytes()
    points, malformed, bad = [], [], []
    for number, line in enumerate(data.decode("utf-8-sig", errors="replace").split("\n"), start=1):
        fields = line.split()  # (a "\r" of Windows line ends is white space)
        if not fields:
            continue  # a blank line says nothing
        if len(fields) != 3 or not all(_INTEGER.fullmatch(f) for f in fields):
            malformed.append(f"{relative}:{number}: {line.strip()[:60]!r}")
            continue
        x, y, code = (int(f) for f in fields)
        if code not in codes:
            bad.append(f"{relative}:{number}: code {code} (not {min(codes)}-{max(codes)})")
            continue
        points.append((number, x, y, code))
    return points, malformed, bad, hashlib.sha256(data).hexdigest()


def _entries(folder: Path) -> list[os.DirEntry]:
    return sorted(os.scandir(folder), key=lambda e: e.name)


def point_inventory(root: Path, images_dir: str, labels_dir: str, codes: dict[int, str], obtain: str,
                    expected: tuple[str, ...] = ()) -> PointInventory:
    """The points of ``<root>/<labels_dir>/<id>.txt`` on ``<root>/<images_dir>/<id>.<image extension>``; ``codes``
    maps each code to its class. Reads (and hashes) every file of the layout; writes nothing."""
    if not (root / images_dir).is_dir() or not (root / labels_dir).is_dir():
        raise DataError(f"{root} holds no '{images_dir}' and '{labels_dir}' folders. {obtain}")
    inv = PointInventory(root, pd.DataFrame(columns=COLUMNS))
    for entry in _entries(root):
        if entry.name not in (images_dir, labels_dir):
            inv.ignore(entry.name + ("/" if entry.is_dir() else ""), HIDDEN if entry.name.startswith(".") else
                       f"{OUTSIDE_LAYOUT} ({images_dir}/, {labels_dir}/)")
    images = _images(inv, images_dir)
    by_stem = {Path(p).stem: p for p in [*inv.non_images, *images]}  # a labelled non-image: unreadable
    labelled, rows = set(), []
    for entry in _entries(root / labels_dir):
        relative = f"{labels_dir}/{entry.name}"
        if entry.name.startswith("."):
            inv.ignore(relative + ("/" if entry.is_dir() else ""), HIDDEN)
        elif entry.is_dir():
            inv.ignore(relative + "/", TOO_DEEP)
        elif Path(entry.name).suffix.lower() != ".txt":
            inv.ignore(relative, f"not a labels file ({Path(entry.name).suffix.lower() or 'no extension'})")
        else:
            rows += _points_of(inv, Path(entry.path), relative, by_stem, images_dir, codes)
            labelled.add(Path(entry.name).stem)
    for stem, image in by_stem.items():
        if stem not in labelled and image in images:
            inv.ignore(image, NO_LABELS)
    inv.samples = pd.DataFrame(rows, columns=COLUMNS).sort_values("path", ignore_index=True)
    inv.missing_classes = [c for c in expected if c not in set(inv.samples["label"])]
    _note(inv, set(Path(p).stem for p in images) - labelled)
    return inv


def _images(inv: PointInventory, images_dir: str) -> dict[str, str]:
    """The images of the layout (relative path -> sha256), listing what is not one; byte-identical sets noted."""
    extensions, by_sha = image_extensions(), defaultdict(list)
    for entry in _entries(inv.root / images_dir):
        relative = f"{images_dir}/{entry.name}"
        if entry.name.startswith("."):
            inv.ignore(relative + ("/" if entry.is_dir() else ""), HIDDEN)
        elif entry.is_dir():
            inv.ignore(relative + "/", TOO_DEEP)
        elif Path(entry.name).suffix.lower() not in extensions:
            inv.ignore(relative, not_image_by_name(entry.name))
        else:
            sha, fmt = hash_and_sniff(Path(entry.path))
            if fmt is None:
                inv.non_images.append(relative)
            else:
                inv.images[relative] = sha
                by_sha[sha].append(relative)
    inv.identical_images = sorted(group for group in by_sha.values() if len(group) > 1)
    return inv.images


def _points_of(inv: PointInventory, path: Path, relative: str, by_stem: dict[str, str], images_dir: str,
               codes: dict[int, str]) -> list[tuple]:
    points, malformed, bad, sha = read_labels_file(path, relative, codes)
    inv.labels_sha256[relative] = sha
    if not (points or malformed or bad):
        inv.empty_files.append(relative)
    inv.malformed += malformed
    inv.bad_codes += bad
    stem = path.stem
    image = by_stem.get(stem)
    if image is None:
        inv.missing_files.append(f"{images_dir}/{stem}.* (for {relative}, {len(points)} point(s))")
        return []
    try:
        with Image.open(inv.root / image) as opened:
            width, height = opened.size
    except Exception as exc:  # PIL raises many types for broken headers
        inv.unreadable.append(f"{image}: {type(exc).__name__}: {exc}")
        return []
    seen: dict[tuple[int, int], int] = {}
    rows = []
    for line, x, y, code in points:
        if not (0 <= x < width and 0 <= y < height):
            inv.outside.append(f"{relative}:{line}: ({x}, {y}) outside {image} ({width} x {height} px)")
            continue
        if (x, y) in seen:
            inv.repeated.append(f"{relative}:{seen[x, y]} and {line}: ({x}, {y})")
        seen.setdefault((x, y), line)
        rows.append((f"{stem}/{stem}_{line:03d}.png", codes[code], code, image, relative, line, x, y, width, height,
                     inv.images[image]))
    return rows


def _note(inv: PointInventory, unlabelled: set[str]) -> None:
    inv.notes.append(f"{len(inv.images)} images, {len(inv.labels_sha256)} labels files, {len(inv.samples)} points on "
                     f"{inv.samples['image'].nunique()} images; {len(unlabelled)} image(s) have no labels file")
    if inv.empty_files:
        inv.notes.append(f"{len(inv.empty_files)} labels file(s) hold no points: {listed(inv.empty_files, 10)}")
    if inv.identical_images:
        inv.notes.append(f"{len(inv.identical_images)} set(s) of byte-identical images (one smear each: their crops "
                         f"share a fold): {listed([' = '.join(g) for g in inv.identical_images], 10)}")
