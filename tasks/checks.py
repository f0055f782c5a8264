"""Data-set validation: what is in a task's folder, what is wrong with it, and where the data comes from.

Two pure functions for the CLI (``bench data check TASK --data-root DIR``, ``bench data info TASK``):

* :func:`check_dataset` -> :class:`DataReport`: class counts, empty classes, byte-identical duplicates (pairs,
  and the ones that cross classes), files named like images that are not images (magic bytes), images PIL
  cannot read (``verify``), non-image files that are ignored. It reads the folder; it never writes, never
  generates data and never raises for a defect (only for a data folder that does not exist).
* :func:`describe_task` -> str: where to obtain the data, licence, citation, expected layout, evaluation.

The loaders of the real data sets (``tasks.acevedo``, ``tasks.bmc``, ``tasks.csvfile``) share the helpers
below: :func:`hash_and_sniff` (sha256 and image magic bytes in one read) and :func:`finish_dataset` (hash,
drop non-images, report duplicates in the dataset's ``notes`` for the harness to store in each result, assign
folds).

A task may describe its own layout to :func:`check_dataset` through duck typing: ``inventory(root) ->
Inventory`` (and ``resolve_root``); ``licence``, ``citation``, ``layout``, ``expected_classes`` attributes are
read with ``getattr`` by :func:`describe_task`. Other tasks get a generic ``<root>/<class>/<file>`` walk.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from tasks.base import IMAGE_EXTENSIONS, CellDataset, DataError, check_classes

# First bytes of the image formats the loaders accept (IMAGE_EXTENSIONS), and GIF/WebP for the report.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"BM", "bmp"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)
MAX_LISTED = 50  # per kind of defect in a note; the counts are always complete


def sniff_image_format(head: bytes) -> str | None:
    """The image format the first bytes announce, or None (not an image: HTML error page, text, empty...)."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def hash_and_sniff(path: Path, chunk: int = 1 << 20) -> tuple[str, str | None]:
    """(sha256 hex digest, image format from the magic bytes or None) in a single read of the file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        block = fh.read(chunk)
        fmt = sniff_image_format(block[:16])
        while block:
            digest.update(block)
            block = fh.read(chunk)
    return digest.hexdigest(), fmt


def _listed(items: list[str], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" ... and {len(items) - limit} more" if len(items) > limit else "")


@dataclass
@dataclass
class Inventory:
    """What a task finds under its data folder before any check: ``samples`` (path relative to ``root``,
    label[, patient]) sorted by path, plus everything that is not used and why."""

    root: Path
    samples: pd.DataFrame
    ignored: list[str] = field(default_factory=list)  # files that are not images by extension, or out of layout
    left_out: list[str] = field(default_factory=list)  # images deliberately not used (reason in ``notes``)
    empty_classes: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # folders that are not part of the layout
    missing_classes: list[str] = field(default_factory=list)  # classes the task expects but the folder lacks
    missing_files: list[str] = field(default_factory=list)  # listed in a manifest but absent
    notes: list[str] = field(default_factory=list)


def duplicate_groups(samples: pd.DataFrame) -> list[list[int]]:
    """Row indices of every set of >= 2 samples with the same sha256, each sorted by path, groups by path."""
    groups = []
    for _, rows in samples.groupby("sha256", sort=False).indices.items():
        if len(rows) > 1:
            groups.append(sorted(rows.tolist(), key=lambda i: samples["path"].iat[i]))
    return sorted(groups, key=lambda g: samples["path"].iat[g[0]])


def class_inventory(root: Path, depth: int, known: Iterable[str], expected: Iterable[str], what: str) -> "Inventory":
    """``walk_class_folders`` plus the folders that are not known classes, the expected classes that are absent,
    and a note on ignored files (``what`` says which)."""
    inv = walk_class_folders(root, depth=depth)
    known = set(known)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    inv.unexpected = [f for f in folders if f not in known]
    inv.missing_classes = [c for c in expected if c not in folders]
    if inv.ignored:
        inv.notes.append(f"{len(inv.ignored)} file(s) or folder(s) {what} are ignored: "
                         + ", ".join(inv.ignored[:20]) + (" ..." if len(inv.ignored) > 20 else ""))
    return inv


def checked_inventory(task, root: Path, known: str, data_dir: str) -> "Inventory":
    """``task.inventory(root)``, refusing foreign folders and empty classes, noting absent classes."""
    inv = task.inventory(root)
    if inv.unexpected:
        raise DataError(
            f"task {task.name!r}: {root} holds folder(s) {inv.unexpected} that are not {known}; point --data-root "
            f"at the {data_dir} folder"
        )
    if inv.empty_classes:
        raise DataError(f"task {task.name!r}: class folder(s) {inv.empty_classes} under {root} hold no images")
    if inv.missing_classes:
        inv.notes.append(
            f"class folder(s) absent (results are not comparable to the full benchmark): {', '.join(inv.missing_classes)}"
        )
    return inv


def finish_dataset(
    task: str,
    inventory: Inventory,
    assign: Callable[[pd.DataFrame], tuple[np.ndarray, str]],
) -> CellDataset:
    """Hash every image (sniffing its magic bytes on the way), drop and report non-images, report duplicates,
    then ``assign(samples) -> (fold per row, split kind)``; the samples passed to ``assign`` carry sha256.

    Byte-identical files are kept (each under its own label); how they are split is up to ``assign`` (the
    k-fold tasks put each group in one fold); a group that ends up on both sides of a split is reported.
    """
    root, samples = inventory.root, inventory.samples.reset_index(drop=True).copy()
    notes = list(inventory.notes)
    ignored = list(inventory.ignored) + list(inventory.left_out)
    facts = [hash_and_sniff(root / p) for p in samples["path"]]
    samples["sha256"] = [sha for sha, _ in facts]
    not_images = [p for p, (_, fmt) in zip(samples["path"], facts) if fmt is None]
    if not_images:
        notes.append(
            f"{len(not_images)} file(s) named like images are not images (no image signature in their first "
            f"bytes) and are not used: {_listed(not_images)}"
        )
        ignored.extend(not_images)
        samples = samples[~samples["path"].isin(not_images)].reset_index(drop=True)
    if samples.empty:
        raise DataError(f"task {task!r}: no usable images under {root}")
    check_classes(samples, root)

    folds, split_kind = assign(samples)
    samples["fold"] = folds
    groups = duplicate_groups(samples)
    if groups:
        paths, labels, fold = samples["path"], samples["label"], samples["fold"].astype(str)
        same = [g for g in groups if labels.iloc[g].nunique() == 1]
        cross = [g for g in groups if labels.iloc[g].nunique() > 1]
        split = [g for g in groups if fold.iloc[g].nunique() > 1]
        n_files = sum(len(g) for g in groups)
        unit = "fold" if split_kind == "kfold" else "side of the split"
        notes.append(
            f"{len(groups)} set(s) of byte-identical images ({n_files} files, "
            f"{sum(len(g) * (len(g) - 1) // 2 for g in groups)} pair(s)); all are kept"
            + (f", each set in one {unit}" if not split else f"; {len(split)} set(s) straddle the split")
            + (f". Within one class: {_listed([' = '.join(paths.iloc[g]) for g in same])}" if same else "")
        )
        if cross:
            notes.append(
                f"{len(cross)} set(s) of byte-identical images carry different labels (kept, each under its "
                "own label, "
                + (f"in one {unit}" if not any(fold.iloc[g].nunique() > 1 for g in cross) else f"not all in one {unit}")
                + "): "
                + _listed([" = ".join(f"{paths.iat[i]} [{labels.iat[i]}]" for i in g) for g in cross])
            )
        if split and split_kind == "fixed":
            notes.append(
                f"{len(split)} set(s) of byte-identical images are split between train and test: "
                + _listed([" = ".join(f"{paths.iat[i]} [{fold.iat[i]}]" for i in g) for g in split])
            )
    columns = ["path", "label"] + (["patient"] if "patient" in samples else []) + ["fold", "sha256"]
    return CellDataset(task, root, samples[columns], split_kind, ignored, notes)


# ----------------------------------------------------------------------------------------------
# bench data check
# ----------------------------------------------------------------------------------------------
@dataclass
class DataReport:
    """The result of :func:`check_dataset`. Paths are relative to ``root``."""

    task: str
    root: str
    n_images: int  # files that are images (by signature), per class in class_counts
    class_counts: dict[str, int]
    empty_classes: list[str] = field(default_factory=list)
    missing_classes: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    duplicate_groups: list[list[str]] = field(default_factory=list)
    cross_class_duplicates: list[list[str]] = field(default_factory=list)  # "path [label]" entries
    non_images: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "path: error"
    ignored_files: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def duplicate_pairs(self) -> list[tuple[str, str]]:
        return [(g[i], g[j]) for g in self.duplicate_groups for i in range(len(g)) for j in range(i + 1, len(g))]

    def problems(self) -> list[str]:
        """One line per kind of defect that makes the data set differ from a clean copy."""
        out = []
        if self.missing_files:
            out.append(f"{len(self.missing_files)} listed file(s) do not exist: {_listed(self.missing_files, 5)}")
        if self.unexpected:
            out.append(f"folder(s) outside the expected layout: {_listed(self.unexpected, 10)}")
        if self.empty_classes:
            out.append(f"class folder(s) without images: {', '.join(self.empty_classes)}")
        if self.missing_classes:
            out.append(f"expected class(es) absent: {', '.join(self.missing_classes)}")
        if self.non_images:
            out.append(f"{len(self.non_images)} file(s) named like images are not images: {_listed(self.non_images, 5)}")
        if self.unreadable:
            out.append(f"{len(self.unreadable)} image(s) cannot be read: {_listed(self.unreadable, 5)}")
        if self.duplicate_groups:
            out.append(
                f"{len(self.duplicate_pairs)} pair(s) of byte-identical images in {len(self.duplicate_groups)} set(s)"
                f", {len(self.cross_class_duplicates)} set(s) across classes"
            )
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()

    def as_dict(self) -> dict:
        info = asdict(self)
        info["duplicate_pairs"] = [list(p) for p in self.duplicate_pairs]
        info["problems"] = self.problems()
        info["ok"] = self.ok
        return info

    def format(self) -> str:
        lines = [f"task {self.task}: {self.root}", f"{self.n_images} images in {len(self.class_counts)} classes"]
        width = max((len(c) for c in self.class_counts), default=0)
        lines += [f"  {c:<{width}}  {n:>7}" for c, n in self.class_counts.items()]
        lines += [f"note: {n}" for n in self.notes]
        if self.ignored_files:
            lines.append(f"ignored (not images by name, or outside the layout): {_listed(self.ignored_files, 10)}")
        for group in self.cross_class_duplicates:
            lines.append(f"cross-class duplicate: {' = '.join(group)}")
        problems = self.problems()
        lines += [f"problem: {p}" for p in problems] or ["no problems found"]
        return "\n".join(lines)


def _task_root(task, data_root, data_home: Path) -> Path:
    if hasattr(task, "resolve_root"):
        return Path(task.resolve_root(data_root, Path(data_home)))
    fixed = getattr(task, "fixed_root", None)
    if fixed is not None:
        return Path(fixed)
    return Path(data_root).expanduser().resolve() if data_root else Path(data_home) / task.data_dir


def walk_class_folders(root: Path, depth: int = 0) -> Inventory:
    """Generic ``<root>/<class>/[<sub>/ x depth]<file>`` inventory; the class is the first path component."""
    rows, ignored, empty = [], [], []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        n_before = len(rows)
        level = [class_dir]
        for d in range(depth + 1):
            below = []
            for folder in level:
                for entry in sorted(folder.iterdir()):
                    if entry.name.startswith("."):
                        continue
                    relative = entry.relative_to(root).as_posix()
                    if entry.is_dir():
                        if d < depth:
                            below.append(entry)
                        else:
                            ignored.append(relative + "/")
                    elif entry.suffix.lower() in IMAGE_EXTENSIONS:
                        rows.append((relative, class_dir.name))
                    else:
                        ignored.append(relative)
            level = below
        if len(rows) == n_before:
            empty.append(class_dir.name)
    ignored += sorted(p.name for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    samples = pd.DataFrame(rows, columns=["path", "label"]).sort_values("path", ignore_index=True)
    return Inventory(root, samples, ignored=ignored, empty_classes=empty)


def _inventory(task, root: Path) -> Inventory:
    if hasattr(task, "inventory"):
        return task.inventory(root)
    if root.is_file() and root.suffix.lower() == ".csv":  # a bag manifest given as the data root
        from tasks.base import read_bag_manifest

        common, samples = read_bag_manifest(root)
        return Inventory(common, samples)
    return walk_class_folders(root, depth=1 if getattr(task, "kind", "cells") == "bags" else 0)


def check_dataset(task, data_root=None, data_home: Path | None = None, *, verify: bool = True) -> DataReport:
    """Inspect the task's data folder and report, without changing or generating anything.

    ``verify``: open every image with PIL and ``verify()`` it (header and structure; cheap). Raises
    :class:`~tasks.base.DataError` only when the data folder does not exist (with the task's ``obtain`` text).
    """
    root = _task_root(task, data_root, Path(data_home) if data_home is not None else Path.cwd())
    if not root.exists():
        raise DataError(f"task {task.name!r}: data folder {root} does not exist. {getattr(task, 'obtain', '')}".strip())
    inv = _inventory(task, root)
    samples = inv.samples.reset_index(drop=True).copy()
    present = [(inv.root / p).is_file() for p in samples["path"]]
    samples = samples[present].reset_index(drop=True)
    facts = [hash_and_sniff(inv.root / p) for p in samples["path"]]
    samples["sha256"] = [sha for sha, _ in facts]
    non_images = [p for p, (_, fmt) in zip(samples["path"], facts) if fmt is None]
    unreadable = []
    if verify:
        from PIL import Image

        for path, (_, fmt) in zip(samples["path"], facts):
            if fmt is None:
                continue
            try:
                with Image.open(inv.root / path) as image:
                    image.verify()
            except Exception as exc:  # PIL raises many types for broken files
                unreadable.append(f"{path}: {type(exc).__name__}: {exc}")
    groups = duplicate_groups(samples)
    paths, labels = samples["path"], samples["label"]
    counts = samples.loc[~samples["path"].isin(non_images), "label"].value_counts()
    return DataReport(
        task=task.name,
        root=str(inv.root),
        n_images=int(counts.sum()),
        class_counts={str(k): int(counts.get(k, 0)) for k in sorted(counts.index)},
        empty_classes=list(inv.empty_classes),
        missing_classes=list(inv.missing_classes),
        unexpected=list(inv.unexpected),
        duplicate_groups=[paths.iloc[g].tolist() for g in groups],
        cross_class_duplicates=[
            [f"{paths.iat[i]} [{labels.iat[i]}]" for i in g] for g in groups if labels.iloc[g].nunique() > 1
        ],
        non_images=non_images,
        unreadable=unreadable,
        ignored_files=list(inv.ignored),
        left_out=list(inv.left_out),
        missing_files=list(inv.missing_files),
        notes=list(inv.notes),
    )


# ----------------------------------------------------------------------------------------------
# bench data info
# ----------------------------------------------------------------------------------------------
def describe_task(task, data_home: Path | None = None) -> str:
    """Where to obtain the task's data, its licence and citation, the expected layout and the evaluation."""
    lines = [f"{task.name}: {task.summary}"]
    kind = getattr(task, "kind", "cells")
    protocols = ", ".join(getattr(task, "protocols", ()))
    lines.append(f"kind: {kind}; protocols: {protocols}; main metric: {getattr(task, 'main_metric', '?')}")
    evaluation = getattr(task, "evaluation", None)
    if evaluation is None:
        if kind == "bags":
            evaluation = (f"patient-level stratified {task.n_folds}-fold CV, repeated for seeds "
                          f"{list(getattr(task, 'seeds', ()))}")
        else:
            evaluation = f"portable stratified {task.n_folds}-fold CV (seed {task.split_seed})"
    lines.append(f"evaluation: {evaluation}")
    for label, attr in (("licence", "licence"), ("citation", "citation")):
        value = getattr(task, attr, None)
        if value:
            lines.append(f"{label}: {value}")
    lines.append(f"obtain: {task.obtain}")
    layout = getattr(task, "layout", None)
    if layout is None:
        layout = ("<root>/<label>/<patient>/<cell image>, or a patient,label,path CSV" if kind == "bags"
                  else "<root>/<class>/<image> (" + ", ".join(sorted(IMAGE_EXTENSIONS)) + ")")
    lines.append(f"expected layout: {layout}")
    expected = getattr(task, "expected_classes", None)
    if expected:
        lines.append(f"classes ({len(expected)}): {', '.join(expected)}")
    fixed = getattr(task, "fixed_root", None)
    if fixed is not None:
        lines.append(f"data: {fixed}")
    elif task.data_dir:
        where = Path(data_home) / task.data_dir if data_home is not None else f"$BENCH_HOME/data/{task.data_dir}"
        lines.append(f"default location: {where} (or pass --data-root)")
    return "\n".join(lines)


def resolve_data_root(data_root, data_home: Path, data_dir: str, class_names) -> Path:
    """``--data-root`` (or ``<data_home>/<data_dir>``), descending into ``<root>/<data_dir>`` when the root is
    the folder above the data set (it holds ``data_dir`` but none of the class folders)."""
    root = Path(data_root).expanduser().resolve() if data_root else Path(data_home) / data_dir
    nested = root / data_dir
    if nested.is_dir() and not any((root / c).is_dir() for c in class_names):
        return nested
    return root
