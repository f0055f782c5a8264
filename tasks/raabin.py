"""Raabin-WBC (Kouzehkanan et al., Scientific Reports 2022): ``raabin-wbc`` and ``raabin-wbc-testb``.

Data: the published double-labelled cropped cells (raabindata.com, "free data"): 575 x 575 px JPEG crops of
one white cell each, labelled by two experts, in three folders, each with the class folders ``Basophil``,
``Eosinophil``, ``Lymphocyte``, ``Monocyte``, ``Neutrophil``::

    <root>/Train/<Class>/<image>.jpg     training images
    <root>/TestA/<Class>/<image>.jpg     test set A: the same microscopes and cameras as Train
    <root>/TestB/<Class>/<image>.jpg     test set B: other microscopes/cameras (a shifted test set)

The rest of Raabin-WBC (the whole smear images with cell locations, the single-labelled crops, the nucleus and
cytoplasm ground truths) is not read.

Split: the published one, by folder (``split_kind="fixed"``, samples' ``fold`` "train"/"test"): ``raabin-wbc``
trains on Train and tests on TestA, ``raabin-wbc-testb`` trains on Train and tests on TestB; the test set a task
does not use is listed as not used. Folder names are matched without regard to case, "-", "_" or spaces
(``Test-A`` is TestA); labels are the class folders' names in lower case, as every white-cell task names them,
so that a domain shift to another white-cell set shares its classes by name. TestB need not hold every class:
a class it lacks is noted, not warned about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from bench.core.errors import DataError
from tasks.base import Inventory
from tasks.imagefolder import CellTask
from tasks.splits import read_fixed_split
from tasks.validation import deeper_hint, ignore_folder, ignore_other_entries, walk_part

RAABIN_FOLDERS = ("Basophil", "Eosinophil", "Lymphocyte", "Monocyte", "Neutrophil")
RAABIN_CLASSES = tuple(folder.lower() for folder in RAABIN_FOLDERS)
TRAIN, TEST_A, TEST_B = "Train", "TestA", "TestB"
SPLIT_FOLDERS = (TRAIN, TEST_A, TEST_B)
DATA_DIR = "Raabin-WBC"
# Train + TestA: 10,175 + 4,339 images (docs/tasks.md, "Raabin-WBC and LISC": where the counts come from)
FULL_SET_IMAGES = 14_514
SOURCE = "https://raabindata.com/free-data/"
LICENCE = ("not stated as far as found: raabindata.com offers Raabin-WBC as free-access data and asks users to "
           "cite Kouzehkanan et al. 2022; check the site's terms before redistributing")
CITATION = ("Z. M. Kouzehkanan, S. Saghari, S. Tavakoli, P. Rostami, M. Abaszadeh, F. Mirzadeh, E. S. Satlsar, "
            "M. Gheidishahran, F. Gorgi, S. Mohammadi, R. Hosseini: A large dataset of white blood cells containing "
            "cell locations and types, along with segmented nuclei and cytoplasm. Scientific Reports 12, 1123 "
            "(2022), doi:10.1038/s41598-021-04426-x")
OTHER_TEST = {TEST_A: "the in-domain test set TestA (task raabin-wbc)",
              TEST_B: "the shifted test set TestB (task raabin-wbc-testb)"}


def folder_key(name: str) -> str:
    """A folder name as it is matched: lower case, without spaces, "-" and "_" (``Test-A`` -> ``testa``)."""
    return re.sub(r"[\s_-]+", "", name).lower()


def _obtain(test: str) -> str:
    return (f"Download Raabin-WBC's double-labelled cropped cells (the {', '.join(SPLIT_FOLDERS)} archives) from "
            f"{SOURCE}, unzip them into one folder and pass --data-root pointing at it (the folder holding {TRAIN} "
            f"and {test}), or put it at $BENCH_HOME/data/{DATA_DIR}. Expected layout: "
            f"<root>/{TRAIN}/<Class>/<image>.jpg and <root>/{test}/<Class>/<image>.jpg with the class folders "
            f"{', '.join(RAABIN_FOLDERS)}.")


@dataclass(frozen=True)
class RaabinTask(CellTask):
    """Raabin-WBC's published split: trained on Train, tested on ``test_folder`` (TestA or TestB)."""

    test_folder: str = TEST_A
    data_dir: str = DATA_DIR
    licence: str = LICENCE
    citation: str = CITATION
    k_fold: ClassVar[bool] = False
    expected_classes: ClassVar[tuple[str, ...]] = RAABIN_CLASSES
    layout: ClassVar[str] = (f"<root>/{{{','.join(SPLIT_FOLDERS)}}}/<Class>/<image>.jpg, Class in "
                             f"{{{', '.join(RAABIN_FOLDERS)}}} (labels: the folder names in lower case); "
                             f"raabin-wbc reads {TRAIN} and {TEST_A}, raabin-wbc-testb {TRAIN} and {TEST_B}")
    class_folders: ClassVar[str] = f"Raabin-WBC class folders ({', '.join(RAABIN_FOLDERS)})"
    known_folders: ClassVar[tuple[str, ...]] = SPLIT_FOLDERS  # --data-root may name the folder above Raabin-WBC

    def __post_init__(self) -> None:
        if self.test_folder not in OTHER_TEST:
            raise ValueError(f"test_folder must be {TEST_A} or {TEST_B}, got {self.test_folder!r}")

    @property
    def evaluation(self) -> str:
        where = ("the same microscopes and cameras as Train" if self.test_folder == TEST_A
                 else "other microscopes and cameras than Train: a shifted test set")
        return (f"the published split: trained on {TRAIN}, tested on {self.test_folder} ({where}); or a "
                "path,split file via --split-file")

    def published_folds(self, paths) -> np.ndarray:
        """"train"/"test" per relative path, by its first folder (Train, or the task's test folder)."""
        first = pd.Series(paths, dtype=str).str.split("/", n=1).str[0].map(folder_key)
        return np.where(first == folder_key(TRAIN), "train", "test").astype(object)

    def inventory(self, root: Path) -> Inventory:
        folders = {folder_key(p.name): p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
        missing = [s for s in (TRAIN, self.test_folder) if folder_key(s) not in folders]
        if missing:
            raise DataError(self._missing_message(root, missing, folders))
        used = [folders[folder_key(TRAIN)], folders[folder_key(self.test_folder)]]
        inv = Inventory(root, pd.DataFrame(columns=["path", "label"]))
        frames = []
        for split, name in zip((TRAIN, self.test_folder), used):
            part = walk_part(root, name, depth=0)
            labels = part.samples["label"].str.lower()
            known = labels.isin(RAABIN_CLASSES).to_numpy()
            inv.unexpected += sorted({f"{name}/{f}" for f in part.samples.loc[~known, "label"]}
                                     | {f"{name}/{f}" for f in part.empty_classes if f.lower() not in RAABIN_CLASSES})
            inv.empty_classes += [f"{name}/{f}" for f in part.empty_classes if f.lower() in RAABIN_CLASSES]
            for path in part.ignored:
                inv.ignore(path, part.reasons[path])
            samples = part.samples[known].assign(label=labels[known])
            frames.append(samples)
            counts = samples["label"].value_counts()
            inv.notes.append(f"{name}: {len(samples):,} images (" + ", ".join(
                f"{c} {int(counts.get(c, 0)):,}" for c in RAABIN_CLASSES) + ")")
            absent = [c for c in RAABIN_CLASSES if c not in counts.index]
            if absent and split == TEST_B:
                inv.notes.append(f"{name} holds no {', '.join(absent)} image: trained on, not tested")
            elif absent:
                inv.missing_classes += [f"{name}/{RAABIN_FOLDERS[RAABIN_CLASSES.index(c)]}" for c in absent]
        inv.samples = pd.concat(frames, ignore_index=True).sort_values("path", ignore_index=True)
        other = next(s for s in (TEST_A, TEST_B) if s != self.test_folder)
        if folder_key(other) in folders:
            used.append(folders[folder_key(other)])
            ignore_folder(inv, used[-1], f"not read by {self.name or 'this task'}: {OTHER_TEST[other]}")
        ignore_other_entries(inv, used, lambda name: f"outside the Raabin-WBC layout ({', '.join(SPLIT_FOLDERS)})")
        return inv

    def _missing_message(self, root: Path, missing: list[str], folders: dict[str, str]) -> str:
        where = f"task {self.name!r}: {root} holds no {' and no '.join(missing)} folder"
        if {f.lower() for f in folders.values()} & set(RAABIN_CLASSES):
            return (f"{where}; it holds class folders, so it seems to be one of Raabin-WBC's "
                    f"{', '.join(SPLIT_FOLDERS)} folders: point --data-root at the folder above it, which holds "
                    f"{TRAIN} and {self.test_folder}")
        fix = (f"point --data-root at the folder holding Raabin-WBC's {TRAIN} and {self.test_folder} folders "
               f"(unzipped from {SOURCE}), or put them at $BENCH_HOME/data/{DATA_DIR}")
        return f"{where}; {self.folder_hint(root) or fix}"

    def folder_hint(self, root: Path) -> str | None:
        """The did-you-mean for ``root`` (:func:`tasks.validation.folder_hint`): none in a copy (it holds Train),
        else a folder below it that holds split folders of class folders."""
        held = {folder_key(p.name) for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
        return None if folder_key(TRAIN) in held else deeper_hint(root, 2)

    def assign(self, samples: pd.DataFrame, split_file=None):
        """The published split by folder, or a ``path,split`` file."""
        if split_file is not None:
            return read_fixed_split(split_file, samples["path"]).to_numpy(), "fixed"
        return self.published_folds(samples["path"]), "fixed"

    def split_status(self, dataset) -> tuple[str, list[str]]:
        folds = dataset.samples["fold"].astype(str).to_numpy()
        if (folds == self.published_folds(dataset.samples["path"])).all():
            return (f"the published split: {int((folds == 'train').sum()):,} {TRAIN} images to train on, "
                    f"{int((folds == 'test').sum()):,} {self.test_folder} images to test on"), []
        return f"a split from --split-file, not the published {TRAIN} -> {self.test_folder} one", []

    def settings(self) -> dict:
        return {"split": "fixed", "train_folder": TRAIN, "test_folder": self.test_folder,
                "main_metric": self.main_metric, "preprocessing": self.preprocessing, **self.size_settings()}


RAABIN_WBC = RaabinTask(obtain=_obtain(TEST_A), full_set_images=FULL_SET_IMAGES)
# TestB's published size is not pinned here (docs/tasks.md): no subset marking for raabin-wbc-testb
RAABIN_WBC_TESTB = RaabinTask(test_folder=TEST_B, obtain=_obtain(TEST_B))
