"""LISC, Leukocyte Images for Segmentation and Classification (Rezatofighi & Soltanian-Zadeh, Computerized
Medical Imaging and Graphics 2011): ``lisc``.

Layout of the published ``LISC Database.zip`` (the first author's page)::

    LISC Database/Main Dataset/<class>/<n>.bmp           720 x 576 px fields, one class folder per cell type
    LISC Database/Main Dataset/mixt/<n>.bmp              fields of several cell types: left out (no single class)
    LISC Database/Ground Truth Segmentation/<class>/areaforexpert1/<n>_expert.bmp   masks: not used
    LISC Database/More Dataset without Ground Truth/...  images without a class folder: not used

The class folders are ``Baso``, ``eosi``, ``lymp``, ``mono``, ``neut`` (matched without regard to case); the
labels are the cell names in lower case (basophil, ...), as every white-cell task names them, so that a domain
shift to another white-cell set shares its classes by name. No official split: the portable stratified 5-fold
CV of every class-folder task (:class:`tasks.imagefolder.CellTask`). ``--data-root`` may name the ``LISC
Database`` folder, the folder above it, or its ``Main Dataset`` folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from bench.core.errors import DataError
from tasks.base import Inventory
from tasks.imagefolder import CellTask
from tasks.validation import ignore_folder, ignore_other_entries, walk_part

LISC_FOLDERS = {"Baso": "basophil", "eosi": "eosinophil", "lymp": "lymphocyte", "mono": "monocyte",
                "neut": "neutrophil"}
LISC_CLASSES = tuple(sorted(LISC_FOLDERS.values()))
MIXED = "mixt"
IMAGES, MASKS, UNLABELLED = "Main Dataset", "Ground Truth Segmentation", "More Dataset without Ground Truth"
DATA_DIR = "LISC Database"
# Main Dataset: 242 images in the 5 class folders + 8 in mixt, the 250 with ground truth (docs/tasks.md)
FULL_SET_IMAGES = 250
SOURCE = "http://users.cecs.anu.edu.au/~hrezatofighi/Data/Leukocyte%20Data.htm"
LICENCE = ("the LISC terms (the first author's page): free of charge for research and education; copying, "
           "redistribution and commercial use prohibited; obtain it from that page and cite the paper")
CITATION = ("S. H. Rezatofighi, H. Soltanian-Zadeh: Automatic recognition of five types of white blood cells in "
            "peripheral blood. Computerized Medical Imaging and Graphics 35(4) (2011) 333-343, "
            "doi:10.1016/j.compmedimag.2011.01.003")
OBTAIN = (f"Download 'LISC Database.zip' from the first author's page {SOURCE} (research and education only, no "
          f"redistribution), unzip it and pass --data-root pointing at its '{DATA_DIR}' folder (or the folder above "
          f"it), or put it at $BENCH_HOME/data/{DATA_DIR}. Expected layout: {DATA_DIR}/{IMAGES}/<class>/<n>.bmp with "
          f"the class folders {', '.join(LISC_FOLDERS)} ({MIXED} is left out).")
MIXED_REASON = f"{MIXED}: a field of several cell types, no single class"
NOT_USED = {MASKS.lower(): "segmentation mask (not used for classification)",
            UNLABELLED.lower(): f"no class label ({UNLABELLED})"}


def _child(folder: Path, name: str) -> Path | None:
    """``folder``'s sub-folder called ``name``, matched without regard to case; None where there is none."""
    if not folder.is_dir():
        return None
    return next((p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.lower() == name.lower()), None)


def _is_images_folder(folder: Path) -> bool:
    """``folder`` is LISC's ``Main Dataset`` itself: named so, and holding LISC class folders."""
    return folder.name.lower() == IMAGES.lower() and any(_child(folder, f) for f in LISC_FOLDERS)


@dataclass(frozen=True)
class LiscTask(CellTask):
    """LISC's ``Main Dataset``: 5 class folders of whole microscope fields, portable stratified 5-fold CV."""

    data_dir: str = DATA_DIR
    obtain: str = OBTAIN
    licence: str = LICENCE
    citation: str = CITATION
    full_set_images: int | None = FULL_SET_IMAGES
    expected_classes: ClassVar[tuple[str, ...]] = LISC_CLASSES
    layout: ClassVar[str] = (f"{DATA_DIR}/{IMAGES}/<class>/<n>.bmp, class in {{{', '.join(LISC_FOLDERS)}}} "
                             f"(labels: {', '.join(LISC_FOLDERS.values())}); {IMAGES}/{MIXED} (several cell types) "
                             f"is left out, {MASKS} and {UNLABELLED} are not used")
    class_folders: ClassVar[str] = f"LISC class folders ({', '.join(LISC_FOLDERS)}, {MIXED})"

    def resolve_root(self, data_root, data_home: Path) -> Path:
        if self.fixed_root is not None:
            return Path(self.fixed_root)
        root = Path(data_root).expanduser().resolve() if data_root else Path(data_home) / self.data_dir
        nested = _child(root, DATA_DIR)
        if _child(root, IMAGES) is None and nested is not None:
            return nested  # the folder above 'LISC Database'
        return root.parent if _is_images_folder(root) else root

    def folder_hint(self, root: Path) -> str | None:
        """The did-you-mean for ``root`` (:func:`tasks.validation.folder_hint`): none in a copy (it holds 'Main
        Dataset'), else a folder beside or below it that holds one."""
        if _child(root, IMAGES) is not None or not root.is_dir():
            return None
        below = [p for p in sorted(root.iterdir()) if p.is_dir() and _child(p, IMAGES) is not None]
        found = below[0] if below else root.parent if _child(root.parent, IMAGES) is not None else None
        return None if found is None else f"did you mean --data-root {found} (the folder holding '{IMAGES}')?"

    def inventory(self, root: Path) -> Inventory:
        images = _child(root, IMAGES)
        if images is None:
            hint = self.folder_hint(root)
            raise DataError(f"task {self.name!r}: {root} holds no '{IMAGES}' folder; " + (
                hint or f"point --data-root at the unzipped '{DATA_DIR}' folder (the one holding '{IMAGES}' and "
                        f"'{MASKS}'), or put it at $BENCH_HOME/data/{DATA_DIR}"))
        part = walk_part(root, images.name, depth=0)
        inv = Inventory(root, pd.DataFrame(columns=["path", "label"]))
        for path in part.ignored:
            inv.ignore(path, part.reasons[path])
        names = {folder.lower(): label for folder, label in LISC_FOLDERS.items()}
        keys = part.samples["label"].str.lower()
        mixed = (keys == MIXED).to_numpy()
        known = keys.isin(names).to_numpy()
        inv.unexpected = sorted({f"{images.name}/{f}" for f in part.samples.loc[~(known | mixed), "label"]}
                                | {f"{images.name}/{f}" for f in part.empty_classes
                                   if f.lower() not in names and f.lower() != MIXED})
        inv.empty_classes = [f"{images.name}/{f}" for f in part.empty_classes if f.lower() in names]
        inv.samples = part.samples[known].assign(label=keys[known].map(names)).reset_index(drop=True)
        inv.left_out = part.samples.loc[mixed, "path"].tolist()
        inv.reasons.update({path: MIXED_REASON for path in inv.left_out})
        if inv.left_out:
            inv.notes.append(f"{self.name or 'lisc'} leaves out the {len(inv.left_out)} image(s) of {images.name}/"
                             f"{MIXED}: each shows cells of several types, so none has a single class")
        present = set(inv.samples["label"])
        inv.missing_classes = [f"{images.name}/{f}" for f, label in LISC_FOLDERS.items() if label not in present]
        used = [images.name]
        for entry in sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower() in NOT_USED):
            used.append(entry.name)
            ignore_folder(inv, entry.name, NOT_USED[entry.name.lower()])
        ignore_other_entries(inv, used, lambda name: f"outside the LISC layout ({IMAGES}, {MASKS})")
        return inv


LISC = LiscTask()
