"""Chula-RBC-12 (``chula-rbc-12``): red-cell shapes on the blood smears of the Chula RBC-12 data set
(github.com/Chula-PIC-Lab/Chula-RBC-12-Dataset, MIT), one sample per labelled point.

Layout of the repository (its root is the data folder)::

    Dataset/<id>.jpg    738 smear images, 640 x 480 px (1000x, DS-Fi2-L3 Nikon microscope)
    Label/<id>.txt      623 labels files, one line "x y code" per red cell, codes 0-12 (the README's classes)

Each point becomes a crop of :data:`CROP_SIZE` px centred on it (:mod:`tasks.crops`: padded with black at the
image's border), cut on the first run under ``$BENCH_HOME/data/chula-rbc-12-crops`` and reused after. Folds:
portable stratified 5-fold CV grouped by smear, so that no smear has cells on both sides; byte-identical smear
images (the public copy has 22 pairs, labelled apart) are one smear.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from bench.core.errors import DataError, SplitError, UsageError
from tasks.base import CellDataset, Inventory
from tasks.crops import CROP_VERSION, FILL, materialise_crops, padded
from tasks.imagefolder import CellTask
from tasks.points import PointInventory, point_inventory
from tasks.splits import merge_groups, stratified_group_folds
from tasks.validation import finish_dataset, listed

# The README's codes and names (lower case, words joined by "_", as acevedo-11 names its classes)
CLASSES_BY_CODE = {0: "normal_cell", 1: "macrocyte", 2: "microcyte", 3: "spherocyte", 4: "target_cell",
                   5: "stomatocyte", 6: "ovalocyte", 7: "teardrop", 8: "burr_cell", 9: "schistocyte",
                   10: "uncategorised", 11: "hypochromia", 12: "elliptocyte"}
CHULA_CLASSES = tuple(sorted(CLASSES_BY_CODE.values()))
IMAGES, LABELS = "Dataset", "Label"
DATA_DIR = "Chula-RBC-12-Dataset"
CROPS_DIR = "chula-rbc-12-crops"  # under the data home ($BENCH_HOME/data), never inside the clone
# Twice the median red cell: on the public copy's 16,799 cells that stand alone, the equivalent diameter is 38 px
# (median; macrocytes 50), and 98.7 % of them lie whole inside the 80-px square centred on their point (teardrops
# 94.6 %, with their tails); 64 px holds 94.9 % (macrocytes 80 %, teardrops 73 %). docs/tasks.md, "Chula-RBC-12".
CROP_SIZE = 80
FULL_SET_POINTS = 22_106  # the labels files of the public copy (the README says "over 20,000 RBC cells")
REPOSITORY = "https://github.com/Chula-PIC-Lab/Chula-RBC-12-Dataset"
LICENCE = "MIT (the repository's LICENSE, Chula PIC Lab 2021)"
CITATION = ("K. Naruenatthanaset, T. H. Chalidabhongse, D. Palasuwan, N. Anantrasirichai, A. Palasuwan: Red Blood "
            "Cell Segmentation with Overlapping Cell Separation and Classification on Imbalanced Dataset. "
            "arXiv:2012.01321 (2020; v6 2023)")
OBTAIN = (f"git clone {REPOSITORY} and pass --data-root pointing at the clone (the folder holding '{IMAGES}' and "
          f"'{LABELS}'), or put the clone at $BENCH_HOME/data/{DATA_DIR}. The crops are cut on the first run, under "
          f"$BENCH_HOME/data/{CROPS_DIR}.")


@dataclass(frozen=True)
class ChulaTask(CellTask):
    """The labelled points of Chula-RBC-12, each cut out as a ``crop_size``-px crop."""

    crop_size: int = CROP_SIZE
    data_dir: str = DATA_DIR
    obtain: str = OBTAIN
    licence: str = LICENCE
    citation: str = CITATION
    full_set_images: int | None = FULL_SET_POINTS  # samples: one crop per point
    expected_classes: ClassVar[tuple[str, ...]] = CHULA_CLASSES
    layout: ClassVar[str] = (f"<root>/{IMAGES}/<id>.jpg with <root>/{LABELS}/<id>.txt: one line 'x y code' per red "
                             "cell (x: column, y: row, from the top left; code 0-12: "
                             + ", ".join(f"{c} {n}" for c, n in CLASSES_BY_CODE.items()) + ")")
    groups: ClassVar[str] = ("the smear: every crop of one smear image, and of byte-identical images, shares a fold; "
                             "smears stratified by their most common class")

    def __post_init__(self) -> None:
        if self.fold_scheme != "portable":
            raise UsageError(f"@folds={self.fold_scheme} does not apply to {self.name!r}: its one fold scheme keeps "
                             "every cell of a smear in one fold (the portable folds grouped by smear)")
        if self.crop_size < 8:
            raise UsageError(f"crop_size must be at least 8 px, got {self.crop_size}")

    @property
    def evaluation(self) -> str:
        return (f"portable stratified {self.n_folds}-fold CV (seed {self.split_seed}) grouped by smear: all crops of "
                "one smear image, and of byte-identical images, in one fold, smears stratified by their most common "
                "class; mean over folds")

    def resolve_root(self, data_root, data_home: Path) -> Path:
        if self.fixed_root is not None:
            return self.fixed_root
        root = Path(data_root).expanduser().resolve() if data_root else Path(data_home) / self.data_dir
        # the images' or the labels' own folder given instead of the clone
        return root.parent if root.name in (IMAGES, LABELS) and (root.parent / LABELS).is_dir() else root

    def inventory(self, root: Path) -> PointInventory:
        """The points of the clone (reads, never writes: ``bench data check`` reports this)."""
        return point_inventory(root, IMAGES, LABELS, CLASSES_BY_CODE, self.obtain, CHULA_CLASSES)

    def load(self, data_root=None, *, data_home: Path, split_file=None) -> CellDataset:
        """The crops of every point (cut on the first call under ``<data_home>/chula-rbc-12-crops``) with folds
        grouped by smear; a clone with defective lines is refused, naming each file and line."""
        root = self.existing_root(data_root, data_home)
        points = self.inventory(root)
        refused = points.refusals()
        if refused:
            raise DataError(f"task {self.name!r}: the labels under {root} have defects: " + "; ".join(refused)
                            + f". Correct or delete those lines (`bench data check {self.name} --data-root {root}` "
                            "lists them all), or clone the repository again")
        if points.samples.empty:
            raise DataError(f"task {self.name!r}: no labelled points under {root}. {self.obtain}")
        crops = materialise_crops(points, Path(data_home) / CROPS_DIR, self.crop_size)
        edge = int(padded(points.samples, self.crop_size).sum())
        notes = points.notes + [
            f"crops of {self.crop_size} x {self.crop_size} px centred on each point, cut from {root} into {crops}; "
            f"{edge} of {len(points.samples)} reach past their image's border, padded with black"]
        if points.missing_files:
            notes.append(f"{len(points.missing_files)} labels file(s) name an absent image; their points are not "
                         f"used: {listed(points.missing_files, 10)}")
        inventory = Inventory(crops, points.samples[["path", "label", "smear"]], notes=notes,
                              missing_classes=points.missing_classes)
        dataset = finish_dataset(self.name, inventory, lambda samples: self.assign(samples, split_file))
        if points.missing_files:
            dataset.warnings.append(notes[-1])
        return dataset

    def group_keys(self, samples: pd.DataFrame):
        """Crops of one smear (byte-identical images are one smear) and byte-identical crops share a fold."""
        return merge_groups(samples["sha256"].tolist(), samples["smear"].tolist())

    def assign(self, samples: pd.DataFrame, split_file=None):
        """The portable folds over whole smears, each smear stratified by its most common class (ties: the first
        name), which keeps a class's share of a fold nearer 1/k than the class of the smear's first crop does (on
        the public copy, seed 0: 2.3 against 4.0 points from 20 % on average over classes and folds); or the split
        file's, refused where it puts cells of one smear on both sides."""
        groups = pd.Series(self.group_keys(samples), index=samples.index)
        if split_file is not None:
            sides, kind = super().assign(samples, split_file)
            split = pd.Series(sides, index=samples.index).groupby(groups).nunique()
            both = sorted({p.split("/")[0] for p in samples["path"][groups.isin(split.index[split > 1])]})
            if both:
                raise SplitError(f"split file {split_file} puts cells of {len(both)} smear(s) in train and in test "
                                 f"({listed(both, 10)}; paths <smear>/<smear>_<line>.png): put every crop of a smear, "
                                 "and of its byte-identical twins, on one side")
            return sides, kind
        counts = samples.groupby([groups, samples["label"]]).size().rename("n").reset_index()
        counts.columns = ["group", "label", "n"]
        top = counts.sort_values(["group", "n", "label"], ascending=[True, False, True]).drop_duplicates("group")
        strata = groups.map(dict(zip(top["group"], top["label"])))
        return stratified_group_folds(samples["path"], strata, groups, self.n_folds, self.split_seed), "kfold"

    def settings(self) -> dict:
        return {**super().settings(), "crop_size": self.crop_size, "crop_fill": list(FILL),
                "crop_version": CROP_VERSION}


CHULA_RBC_12 = ChulaTask()
