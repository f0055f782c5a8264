"""BCCD white cells (``bccd-wbc``): the white-cell crops of the BCCD data set as apple2373/BCCD publishes them,
``BCCD_cropped/<Class>/<image>.jpg`` (351 JPEG crops, 5 classes; ``torchvision.datasets.ImageFolder`` layout).

The crops were cut from the BCCD smear images (Shenggan/BCCD_Dataset, MIT) around the annotated white cell, the
labels taken from the Kaggle "blood-cells" ``labels.csv`` (apple2373/BCCD's README). There is no official split:
the portable stratified 5-fold CV of every class-folder task (:class:`tasks.imagefolder.CellTask`). Basophils are
3 images: a fold's test set holds at most one, and most training folds hold two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tasks.base import Inventory
from tasks.imagefolder import CellTask
from tasks.validation import class_inventory

BCCD_FOLDERS = ("Basophil", "Eosinophil", "Lymphocyte", "Monocyte", "Neutrophil")
# The labels: the folder names in lower case, as every other white-cell task names them (acevedo, sslseg-1/2), so
# that a domain shift between them (bccd-wbc=>acevedo) shares its classes by name
BCCD_CLASSES = tuple(folder.lower() for folder in BCCD_FOLDERS)
DATA_DIR = "BCCD_cropped"
FULL_SET_IMAGES = 351  # apple2373/BCCD's README: 207 + 88 + 33 + 20 + 3
REPOSITORY = "https://github.com/apple2373/BCCD"
LICENCE = "MIT (the BCCD data set's; apple2373/BCCD, which publishes the crops, states none)"
CITATION = ("BCCD Dataset, github.com/Shenggan/BCCD_Dataset (MIT, 2017); white-cell crops and labels: "
            "github.com/apple2373/BCCD (commit 7751031)")
OBTAIN = (f"git clone {REPOSITORY} and pass --data-root pointing at the clone's '{DATA_DIR}' folder (or the clone), "
          f"or put that folder at $BENCH_HOME/data/{DATA_DIR}. Expected layout: {DATA_DIR}/<class>/<image>.jpg with "
          f"the 5 class folders {', '.join(BCCD_FOLDERS)}.")


@dataclass(frozen=True)
class BccdTask(CellTask):
    """The 5 class folders of ``BCCD_cropped``."""

    data_dir: str = DATA_DIR
    obtain: str = OBTAIN
    licence: str = LICENCE
    citation: str = CITATION
    full_set_images: int | None = FULL_SET_IMAGES
    expected_classes: ClassVar[tuple[str, ...]] = BCCD_CLASSES
    layout: ClassVar[str] = (f"{DATA_DIR}/<Class>/<image>.jpg, Class in {{{', '.join(BCCD_FOLDERS)}}} (labels: the "
                             "folder names in lower case)")
    class_folders: ClassVar[str] = f"BCCD class folders ({', '.join(BCCD_FOLDERS)})"
    known_folders: ClassVar[tuple[str, ...]] = BCCD_FOLDERS

    def inventory(self, root: Path) -> Inventory:
        inv = class_inventory(root, 0, BCCD_FOLDERS, BCCD_FOLDERS, "that are not images by name")
        inv.samples = inv.samples.assign(label=inv.samples["label"].str.lower())
        inv.missing_classes = [c.lower() for c in inv.missing_classes]
        return inv


BCCD_WBC = BccdTask()
