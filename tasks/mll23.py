"""MLL23 (``mll23``): peripheral-blood single cells of the Munich Leukemia Laboratory (smears of 2021-2024, five
examiners), 288 x 288 px TIFF, in 18 class folders named by the class (``basophil``, ``neutrophil_segmented``,
...), published on Zenodo (record 14277609, one archive per class) with its label and harmonisation files in
github.com/marrlab/MLL23.

Layout (docs/tasks.md, "Matek 2019 and MLL23"): ``<root>/<class>/<class>_<nnnn>.TIF``, as the authors' own
listing of their copy shows it (marrlab/MLL23's notebook: ``basophil/basophil_0001.TIF``). How each Zenodo
archive nests its folder was not verified here, so an image anywhere below a class folder belongs to that class,
as in torchvision's ``ImageFolder``. The labels are the folder names. No official split: portable stratified
5-fold CV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tasks.base import Inventory
from tasks.imagefolder import CellTask
from tasks.validation import class_inventory

# Images per class: marrlab/MLL23's labels_MLL23.csv (commit 1d6ca3e), the same counts its notebook lists from the
# authors' copy of the files (41,621). The repository's README and the data paper give other numbers (41,906 in
# the README, with e.g. 5,547 lymphocytes): docs/tasks.md says which this task pins.
MLL23_COUNTS = {
    "basophil": 616, "eosinophil": 2448, "hairy_cell": 3265, "lymphocyte": 5532, "lymphocyte_large_granular": 1849,
    "lymphocyte_neoplastic": 180, "lymphocyte_reactive": 33, "metamyelocyte": 483, "monocyte": 2510,
    "myeloblast": 8606, "myelocyte": 747, "neutrophil_band": 687, "neutrophil_segmented": 7170, "normoblast": 2071,
    "plasma_cell": 1658, "promyelocyte": 745, "promyelocyte_atypical": 2033, "smudge_cell": 988,
}
MLL23_CLASSES = tuple(sorted(MLL23_COUNTS))
FULL_SET_IMAGES = 41_621  # sum(MLL23_COUNTS.values())
DATA_DIR = "MLL23"
RECORD = "https://zenodo.org/records/14277609"
REPOSITORY = "https://github.com/marrlab/MLL23"
LICENCE = ("not verified: the Zenodo record's licence could not be read from here (the data paper is open access "
           "in Scientific Data); check the record before redistributing")
CITATION = ("S. Shetab Boushehri, S. Kazeminia, A. Gruber, C. Matek, K. Spiekermann, C. Pohlkamp, T. Haferlach, "
            "C. Marr: A large expert-annotated single-cell peripheral blood dataset for hematological disease "
            f"diagnostics. Scientific Data 12 (2025) 1773, doi:10.1038/s41597-025-06223-x; data: Zenodo {RECORD}; "
            f"labels and harmonisation: {REPOSITORY} (commit 1d6ca3e)")
OBTAIN = (f"Download the 18 class archives of MLL23 from Zenodo ({RECORD}), unzip them into one folder and pass "
          f"--data-root pointing at it (the folder holding the class folders, or the folder above a '{DATA_DIR}' "
          f"folder), or put it at $BENCH_HOME/data/{DATA_DIR}. Expected layout: <class>/<class>_<nnnn>.TIF with "
          f"the 18 class folders {', '.join(MLL23_CLASSES)}.")


@dataclass(frozen=True)
class Mll23Task(CellTask):
    """The 18 class folders of MLL23."""

    data_dir: str = DATA_DIR
    obtain: str = OBTAIN
    licence: str = LICENCE
    citation: str = CITATION
    full_set_images: int | None = FULL_SET_IMAGES
    expected_classes: ClassVar[tuple[str, ...]] = MLL23_CLASSES
    layout: ClassVar[str] = (f"{DATA_DIR}/<class>/<class>_<nnnn>.TIF (288 x 288 px TIFF; images anywhere below a "
                             f"class folder belong to it), class in {{{', '.join(MLL23_CLASSES)}}} (labels: the "
                             "folder names)")
    class_folders: ClassVar[str] = "MLL23 class folders"
    known_folders: ClassVar[tuple[str, ...]] = MLL23_CLASSES

    def inventory(self, root: Path) -> Inventory:
        return class_inventory(root, None, MLL23_CLASSES, MLL23_CLASSES, "that are not images by name")


MLL23 = Mll23Task()
