"""The two white-cell data sets of zxaoyou/segmentation_WBC (Zheng et al., Micron 2018) as classification tasks:
``sslseg-1`` (Dataset 1: 300 images of 120 x 120 px, Jiangxi Tecom, yellowish background) and ``sslseg-2``
(Dataset 2: 100 images of 300 x 300 px, from the CellaVision blog).

Layout of the repository (its root is the data folder)::

    Dataset 1/001.bmp ... 300.bmp      the images (BMP)
    Dataset 1/001.png ...              their segmentation masks (not used here)
    Class Labels of Dataset 1.csv      image ID, class label 1-5
    Dataset 2/...  Class Labels of Dataset 2.csv

Labels 1-5 are neutrophil, lymphocyte, monocyte, eosinophil, basophil (the repository's README). The README warns
that some labels were added by the authors without an expert's check: every result records that note. No
official split: portable stratified 5-fold CV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from bench.core.errors import DataError
from tasks.base import Inventory
from tasks.imagefolder import CellTask

CLASSES_BY_CODE = {1: "neutrophil", 2: "lymphocyte", 3: "monocyte", 4: "eosinophil", 5: "basophil"}
SSLSEG_CLASSES = tuple(sorted(CLASSES_BY_CODE.values()))
DATA_DIR = "segmentation_WBC"
REPOSITORY = "https://github.com/zxaoyou/segmentation_WBC"
LICENCE = "GPL-3.0 (the repository's LICENSE)"
ACKNOWLEDGE = {1: "Jiangxi Tecom Science Corporation, China", 2: "the CellaVision blog (blog.cellavision.com)"}
CITATION = ("X. Zheng, Y. Wang, G. Wang, J. Liu: Fast and robust segmentation of white blood cell images by "
            "self-supervised learning. Micron 107 (2018) 55-71, doi:10.1016/j.micron.2018.01.010")
LABEL_WARNING = ("the data set's README warns that some class labels were added by its authors and not checked by "
                 "a domain expert (the data set was made for segmentation)")


@dataclass(frozen=True)
class SegmentationWbcTask(CellTask):
    """One of the repository's two data sets: its images, labelled by its class-label CSV."""

    dataset: int = 1
    data_dir: str = DATA_DIR
    licence: str = LICENCE
    citation: str = CITATION
    expected_classes: ClassVar[tuple[str, ...]] = SSLSEG_CLASSES
    layout: ClassVar[str] = ("<root>/Dataset N/<id>.bmp with '<root>/Class Labels of Dataset N.csv' (image ID, class "
                             "label 1-5: neutrophil, lymphocyte, monocyte, eosinophil, basophil); masks <id>.png "
                             "beside the images are not used")

    @property
    def folder(self) -> str:
        return f"Dataset {self.dataset}"

    @property
    def labels_file(self) -> str:
        return f"Class Labels of Dataset {self.dataset}.csv"

    def resolve_root(self, data_root, data_home: Path) -> Path:
        if self.fixed_root is not None:
            return self.fixed_root
        root = Path(data_root).expanduser().resolve() if data_root else Path(data_home) / self.data_dir
        # the data set's own folder given instead of the repository's root: its labels file is one level up
        return root.parent if root.name == self.folder and (root.parent / self.labels_file).is_file() else root

    def inventory(self, root: Path) -> Inventory:
        labels_path = root / self.labels_file
        if not labels_path.is_file():
            raise DataError(f"task {self.name!r}: {labels_path} does not exist; point --data-root at the clone of "
                            f"{REPOSITORY} (the folder holding '{self.folder}' and '{self.labels_file}')")
        table = pd.read_csv(labels_path)
        if len(table.columns) < 2:
            raise DataError(f"{labels_path}: expected two columns (image ID, class label 1-5), got {list(table.columns)}")
        ids, codes = table.iloc[:, 0], table.iloc[:, 1]
        unknown = sorted({str(c) for c in codes if c not in CLASSES_BY_CODE})
        if unknown:
            raise DataError(f"{labels_path}: class label(s) {unknown} are not 1-5 (neutrophil, lymphocyte, monocyte, "
                            "eosinophil, basophil)")
        listed = {f"{self.folder}/{int(i):03d}.bmp": CLASSES_BY_CODE[int(c)] for i, c in zip(ids, codes)}
        present = {p: label for p, label in listed.items() if (root / p).is_file()}
        inv = Inventory(root, pd.DataFrame({"path": list(present), "label": list(present.values())})
                        .sort_values("path", ignore_index=True))
        inv.missing_files = sorted(set(listed) - set(present))
        inv.missing_classes = [c for c in SSLSEG_CLASSES if c not in set(present.values())]
        folder = root / self.folder
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            relative = f"{self.folder}/{path.name}"
            if relative not in listed:
                inv.ignore(relative, "segmentation mask" if path.suffix.lower() == ".png" else f"not in {self.labels_file}")
        inv.notes.append(f"{self.name}: {LABEL_WARNING}")
        if inv.missing_files:
            inv.notes.append(f"{len(inv.missing_files)} image(s) listed in {self.labels_file} are absent: "
                             + ", ".join(inv.missing_files[:10]) + (" ..." if len(inv.missing_files) > 10 else ""))
        return inv


def _obtain(dataset: int) -> str:
    return (f"git clone {REPOSITORY} and pass --data-root pointing at the clone (the folder holding 'Dataset "
            f"{dataset}' and 'Class Labels of Dataset {dataset}.csv'), or put the clone at $BENCH_HOME/data/{DATA_DIR}.")


def _citation(dataset: int) -> str:
    return f"{CITATION}; the README asks to acknowledge {ACKNOWLEDGE[dataset]} for Dataset {dataset}"


SSLSEG_1 = SegmentationWbcTask(dataset=1, full_set_images=300, obtain=_obtain(1), citation=_citation(1))
SSLSEG_2 = SegmentationWbcTask(dataset=2, full_set_images=100, obtain=_obtain(2), citation=_citation(2))
