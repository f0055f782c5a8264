"""Validation shared by every task: what is under a data folder (:class:`~tasks.base.Inventory`), image
signatures (magic bytes), byte-identical duplicates, and :func:`finish_dataset`, the one path from an
inventory to a validated :class:`~tasks.base.CellDataset` that every cell task takes (non-images dropped and
reported, duplicates reported and grouped as the task's split says, every file not used listed).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from bench.core.errors import DataError
from bench.core.files import sha256_and_head
from bench.core.images import identify, image_extensions, sniff_format
from tasks.base import CellDataset, Inventory

MAX_LISTED = 50  # per kind of defect in a note; the counts are always complete

# Why a file under a data folder is not used (Inventory.reasons, CellDataset.ignored_files, bench data check).
HIDDEN = "hidden"
BROKEN_SYMLINK = "broken symlink"
SYMLINK_LOOP = "symlink loop"
NOT_UNDER_CLASS = "not under a class folder"
NO_SIGNATURE = "not an image (no image signature)"
TOO_DEEP = "folder deeper than the layout"
NOT_REGULAR = "not a regular file"
UNREADABLE = "cannot be read"  # followed by the system's reason
DEFECTS = (BROKEN_SYMLINK, SYMLINK_LOOP, UNREADABLE)  # reasons that ``bench data check`` counts as problems


def is_defect(reason: str) -> bool:
    return reason.startswith(DEFECTS)


def not_image_by_name(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return f"not an image by name ({suffix or 'no extension'})"


sniff_image_format = sniff_format  # the format the first bytes announce (common formats only), or None


def hash_and_sniff(path: Path) -> tuple[str, str | None]:
    """(sha256 hex digest, image format or None) in one read of the file: the format from the magic bytes of
    the common formats, else (rare: a second look, at the header only) the one PIL recognises (any format PIL
    decodes: TGA, PCX, ...); None means not an image (an HTML error page, text, an empty file...)."""
    sha, head = sha256_and_head(path, 16)
    return sha, sniff_format(head) or identify(path)


def listed(items: list[str], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" ... and {len(items) - limit} more" if len(items) > limit else "")


def check_classes(samples: pd.DataFrame, where: Path, levels: int = 1) -> None:
    """At least two classes; with fewer, the error names the folder one level deeper that looks like the data set,
    if there is one (``levels``: the folder levels between a data set's root and its images, as in
    :func:`deeper_roots`)."""
    labels = samples["label"].unique()
    if len(labels) < 2:
        hint = deeper_hint(Path(where), levels)
        raise DataError(f"data set at {where} has {len(labels)} class(es) {list(labels)}; classification needs at least 2"
                        + (f"; {hint}" if hint else ""))


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(folder) if not e.name.startswith(".") and e.is_dir())
    except OSError:
        return []


def _holds_images(folder: Path, levels: int) -> bool:
    """Image files ``levels`` folders below ``folder`` (0: in it)."""
    if levels > 0:
        return any(_holds_images(sub, levels - 1) for sub in _subfolders(folder))
    extensions = image_extensions()
    try:
        return any(Path(e.name).suffix.lower() in extensions and e.is_file() for e in os.scandir(folder))
    except OSError:
        return False


def deeper_roots(root: Path, levels: int = 1) -> list[Path]:
    """The sub-folders of ``root`` that look like a data set themselves, when ``root`` was given one level too
    high (``<root>/<data set>/<class>/<image>``): each holds at least two folders with images ``levels`` folders
    down (1: ``<class>/<image>``; 2: ``<label>/<patient>/<image>``)."""
    return [child for child in _subfolders(root)
            if sum(_holds_images(sub, levels - 1) for sub in _subfolders(child)) >= 2]


def deeper_hint(root: Path, levels: int = 1) -> str | None:
    """A did-you-mean naming the folder one level deeper that looks like the data set (:func:`deeper_roots`), or
    None."""
    found = deeper_roots(root, levels)
    if not found:
        return None
    others = f" (other candidates: {listed([str(f) for f in found[1:]], 5)})" if len(found) > 1 else ""
    return (f"the class folders seem to be one level deeper: did you mean --data-root {found[0]} (or "
            f"imagefolder:{found[0]})?{others}")


def duplicate_groups(samples: pd.DataFrame) -> list[list[int]]:
    """Row indices of every set of >= 2 samples with the same sha256, each sorted by path, groups by path."""
    groups = []
    for _, rows in samples.groupby("sha256", sort=False).indices.items():
        if len(rows) > 1:
            # (pandas-stubs types a cell as any scalar, which need not sort; paths are str)
            groups.append(sorted(rows.tolist(), key=lambda i: samples["path"].iat[i]))  # pyright: ignore[reportCallIssue, reportArgumentType, reportAttributeAccessIssue]
    return sorted(groups, key=lambda g: samples["path"].iat[g[0]])  # pyright: ignore[reportCallIssue, reportArgumentType]


def walk_class_folders(root: Path, depth: int | None = None) -> Inventory:
    """Generic ``<root>/<class>/[<sub>/...]<file>`` inventory; the class is the first path component.

    ``depth``: how many folder levels below a class folder hold images (``None``: any, like torchvision's
    ``ImageFolder``; 0: files directly in the class folder). Every entry under ``root`` that is not a sample is
    listed in ``ignored`` with its reason in ``reasons``: hidden files and folders (``.name``, listed as one entry,
    not walked), files that are not images by name, files outside a class folder, folders deeper than
    ``depth``, broken symlinks and symlink loops (never followed), and what is not a regular file or cannot be
    read. Symlinks to files and folders are followed.
    """
    if not root.is_dir():
        raise DataError(f"data folder {root} is not a folder; expected the layout <root>/<class>/<image>")
    extensions = image_extensions()
    rows: list[tuple[str, str]] = []
    inv = Inventory(root, pd.DataFrame(columns=["path", "label"]))

    def walk(folder: Path, level: int, ancestors: frozenset, label: str | None) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            inv.ignore(folder.relative_to(root).as_posix() + "/", f"{UNREADABLE} ({exc.strerror or exc})")
            return
        for entry in entries:
            relative = Path(entry.path).relative_to(root).as_posix()
            kind, key, reason = _entry_kind(entry)
            if entry.name.startswith("."):
                inv.ignore(relative + ("/" if kind == "dir" else ""), HIDDEN)
            elif reason:
                inv.ignore(relative, reason)
            elif kind == "dir":
                if key in ancestors:
                    inv.ignore(relative + "/", SYMLINK_LOOP)
                elif label is None:
                    n_before = len(rows)
                    walk(Path(entry.path), 0, ancestors | {key}, entry.name)
                    if len(rows) == n_before:
                        inv.empty_classes.append(entry.name)
                elif depth is not None and level >= depth:
                    inv.ignore(relative + "/", TOO_DEEP)
                else:
                    walk(Path(entry.path), level + 1, ancestors | {key}, label)
            elif label is None:
                inv.ignore(relative, NOT_UNDER_CLASS)
            elif Path(entry.name).suffix.lower() in extensions:
                rows.append((relative, label))
            else:
                inv.ignore(relative, not_image_by_name(entry.name))

    walk(root, 0, frozenset({_dir_key(os.stat(root))}), None)
    inv.samples = pd.DataFrame(rows, columns=["path", "label"]).sort_values("path", ignore_index=True)
    return inv


def _dir_key(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _entry_kind(entry: os.DirEntry) -> tuple[str, tuple[int, int] | None, str | None]:
    """("dir" | "file" | "other", the folder's (device, inode) for loop detection, reason it cannot be used or
    None), following symlinks."""
    try:
        stat = os.stat(entry.path)  # follows symlinks
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "other", None, SYMLINK_LOOP
        if entry.is_symlink() and exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "other", None, BROKEN_SYMLINK
        return "other", None, f"{UNREADABLE} ({exc.strerror or exc})"
    if S_ISDIR(stat.st_mode):
        return "dir", _dir_key(stat), None
    if S_ISREG(stat.st_mode):
        return "file", None, None
    return "other", None, NOT_REGULAR


def class_inventory(root: Path, depth: int | None, known: Iterable[str], expected: Iterable[str], what: str) -> Inventory:
    """``walk_class_folders`` plus the folders that are not known classes, the expected classes that are absent,
    and a note on ignored files (``what`` says which)."""
    inv = walk_class_folders(root, depth=depth)
    known = set(known)
    folders = sorted(set(inv.samples["label"]) | set(inv.empty_classes))
    inv.unexpected = [f for f in folders if f not in known]
    inv.missing_classes = [c for c in expected if c not in folders]
    if inv.ignored:
        inv.notes.append(f"{len(inv.ignored)} file(s) or folder(s) {what} are ignored: "
                         + ", ".join(inv.ignored[:20]) + (" ..." if len(inv.ignored) > 20 else ""))
    return inv


def walk_part(root: Path, part: str, depth: int | None = None) -> Inventory:
    """``walk_class_folders`` over ``root/part``, one folder of a data set laid out in several (Raabin-WBC's
    ``Train`` and ``TestA``, LISC's ``Main Dataset``), with every path relative to ``root``: samples
    ``<part>/<class>/<file>`` labelled with their class folder's name as it is, ignored entries prefixed alike."""
    inv = walk_class_folders(root / part, depth=depth)
    out = Inventory(root, inv.samples.assign(path=[f"{part}/{p}" for p in inv.samples["path"]]))
    for path in inv.ignored:
        out.ignore(f"{part}/{path}", inv.reasons[path])
    out.empty_classes = list(inv.empty_classes)
    return out


def ignore_folder(inv: Inventory, part: str, reason: str) -> None:
    """List every file under ``inv.root/part`` as not used, for ``reason`` (a part of the published data a task
    does not read: segmentation masks, the other test set); hidden entries and defects keep their own reason."""
    walked = walk_part(inv.root, part)
    for path in walked.samples["path"]:
        inv.ignore(path, reason)
    for path in walked.ignored:
        own = walked.reasons[path]
        inv.ignore(path, own if own == HIDDEN or is_defect(own) else reason)


def ignore_other_entries(inv: Inventory, used: Iterable[str], reason: Callable[[str], str]) -> None:
    """List the entries directly under ``inv.root`` other than the folders named in ``used`` as not used: hidden
    ones as hidden, broken symlinks as such, a folder as one entry (``name/``), for ``reason(name)``."""
    used = set(used)
    for entry in sorted(inv.root.iterdir(), key=lambda p: p.name):
        if entry.name in used:
            continue
        folder = entry.is_dir()
        path = entry.name + ("/" if folder else "")
        if entry.name.startswith("."):
            inv.ignore(path, HIDDEN)
        elif entry.is_symlink() and not entry.exists():
            inv.ignore(path, BROKEN_SYMLINK)
        else:
            inv.ignore(path, reason(entry.name))


def folder_hint(task, root: Path) -> str | None:
    """The did-you-mean for a data folder given one level too high: the task's own ``folder_hint(root)`` where it
    has one (a layout of named folders, such as Raabin-WBC's ``Train``/``TestA``, knows what to look for), else
    :func:`deeper_hint` (the images one folder level down for a cell task, two for a bag task)."""
    own: Callable[[Path], str | None] | None = getattr(task, "folder_hint", None)
    return own(root) if own is not None else deeper_hint(root, 1 if task.kind == "cells" else 2)


def checked_inventory(task, root: Path) -> Inventory:
    """``task.inventory(root)``, refusing foreign folders and empty classes, noting absent expected classes."""
    inv = task.inventory(root)
    if inv.unexpected:
        hint = folder_hint(task, root)
        raise DataError(
            f"task {task.name!r}: {root} holds folder(s) {inv.unexpected} that are not {task.class_folders}; "
            + (hint if hint else f"point --data-root at the {task.data_dir or 'data'} folder, or move the foreign "
                                 "folder(s) out of it")
        )
    if inv.empty_classes:
        raise DataError(f"task {task.name!r}: class folder(s) {inv.empty_classes} under {root} hold no images; "
                        "remove the empty folders or add images")
    return inv  # absent expected classes become the data set's warnings (finish_dataset)


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
    ignored = inventory.not_used()
    facts = [hash_and_sniff(root / p) for p in samples["path"]]
    samples["sha256"] = [sha for sha, _ in facts]
    not_images = [p for p, (_, fmt) in zip(samples["path"], facts) if fmt is None]
    if not_images:
        notes.append(
            f"{len(not_images)} file(s) named like images are not images (no image signature in their first "
            f"bytes) and are not used: {listed(not_images)}"
        )
        ignored.update({p: NO_SIGNATURE for p in not_images})
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
            + (f". Within one class: {listed([' = '.join(paths.iloc[g]) for g in same])}" if same else "")
        )
        if cross:
            notes.append(
                f"{len(cross)} set(s) of byte-identical images carry different labels (kept, each under its "
                "own label, "
                + (f"in one {unit}" if not any(fold.iloc[g].nunique() > 1 for g in cross) else f"not all in one {unit}")
                + "): "
                + listed([" = ".join(f"{paths.iat[i]} [{labels.iat[i]}]" for i in g) for g in cross])
            )
        if split and split_kind == "fixed":
            notes.append(
                f"{len(split)} set(s) of byte-identical images are split between train and test: "
                + listed([" = ".join(f"{paths.iat[i]} [{fold.iat[i]}]" for i in g) for g in split])
            )
    columns = ["path", "label"] + (["patient"] if "patient" in samples else []) + ["fold", "sha256"]
    n_found = len(inventory.samples) + len(inventory.left_out)  # before non-images were dropped
    warnings = [f"class folder(s) absent under {root} (results are not comparable to the full benchmark): "
                f"{', '.join(inventory.missing_classes)}"] if inventory.missing_classes else []
    return CellDataset(task, root, samples[columns], split_kind, ignored, notes, n_images_found=n_found,
                       warnings=warnings)


def scan_patient_folder(root: Path) -> pd.DataFrame:
    """``<root>/<label>/<patient>/<cell image>`` (the AML Hehr layout) -> DataFrame path, label, patient."""
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    rows = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for patient_dir in sorted(p for p in label_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            cells = [f for f in sorted(patient_dir.iterdir())
                     if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in image_extensions()]
            if not cells:
                raise DataError(f"patient folder {patient_dir} holds no images; remove it or add the patient's cells")
            rows.extend((f.relative_to(root).as_posix(), label_dir.name, patient_dir.name) for f in cells)
    if not rows:
        raise DataError(f"data folder {root} holds no <label>/<patient>/<image> files")
    samples = pd.DataFrame(rows, columns=["path", "label", "patient"])
    shared = samples.groupby("patient")["label"].nunique()
    if (shared > 1).any():
        raise DataError(f"patient id(s) {shared[shared > 1].index.tolist()[:5]} appear under several labels in {root}")
    return samples


def read_bag_manifest(csv_path: Path) -> tuple[Path, pd.DataFrame]:
    """A ``patient,label,path`` CSV (paths relative to the CSV's folder, or absolute) -> (root, samples)."""
    table = pd.read_csv(csv_path, dtype=str)
    missing = {"patient", "label", "path"} - set(table.columns)
    if missing:
        raise DataError(f"manifest {csv_path} lacks column(s) {sorted(missing)}; expected header 'patient,label,path'")
    root = csv_path.parent.resolve()
    paths = [Path(p) if Path(p).is_absolute() else root / p for p in table["path"]]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise DataError(f"manifest {csv_path}: {len(absent)} listed file(s) do not exist, e.g. {absent[:3]}")
    common = Path(os.path.commonpath([str(p) for p in paths])) if paths else root
    common = common if common.is_dir() else common.parent
    samples = pd.DataFrame({
        "path": [p.relative_to(common).as_posix() for p in paths], "label": table["label"], "patient": table["patient"],
    })
    return common, samples.sort_values("path", ignore_index=True)


def resolve_data_root(data_root, data_home: Path, data_dir: str, class_names, nested: tuple[str, ...] = ()) -> Path:
    """``--data-root`` (or ``<data_home>/<data_dir>``), descending into ``<root>/<data_dir>`` when the root is
    the folder above the data set (it holds ``data_dir`` but none of the class folders). ``nested``: other names
    the published download puts between a folder and the class folders (AML-Cytomorphology_LMU's
    ``AML-Cytomorphology``); with them the descent goes on for one more level while no class folder is found."""
    root = Path(data_root).expanduser().resolve() if data_root else Path(data_home) / data_dir
    for _ in range(2 if nested else 1):
        inner = next((root / name for name in (data_dir, *nested) if (root / name).is_dir()), None)
        if inner is None or any((root / c).is_dir() for c in class_names):
            return root
        root = inner
    return root
