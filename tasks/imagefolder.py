"""Cell classification on a class-folder layout, ``<root>/<class>/<image>``: :class:`CellTask`, the base of every
cell task, and the ``imagefolder:<path>`` scheme. As in torchvision's ``ImageFolder``, images in sub-folders of
a class folder belong to that class; any format PIL decodes is an image (:mod:`bench.core.images`).

Loading takes the one validation path of every cell task (:func:`tasks.validation.finish_dataset`): files
that are not images by their signature are left out and reported, byte-identical files are grouped into one
fold and reported, and every file not used is listed in ``ignored_files``. Evaluation: portable stratified
k-fold CV (:func:`tasks.splits.stratified_group_folds`, groups = byte-identical files), or a fixed
``path,split`` file given as ``--split-file``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from tasks.base import CELL_PROTOCOLS, CellDataset, Inventory, Task
from tasks.splits import authors_folds, read_fixed_split, stratified_group_folds
from tasks.validation import checked_inventory, finish_dataset, resolve_data_root, walk_class_folders


@dataclass(frozen=True)
class CellTask(Task):
    """A cell-classification task on ``<root>/<class>/<image>`` with portable stratified k-fold CV."""

    n_folds: int = 5
    split_seed: int = 0
    protocols: tuple[str, ...] = CELL_PROTOCOLS
    # "portable" (tasks.splits.stratified_group_folds) or "authors" (tasks.splits.authors_folds: the DinoBloom
    # authors' StratifiedKFold without shuffling, over the sorted paths); `-t TASK@folds=authors` chooses
    fold_scheme: str = "portable"
    kind: ClassVar[str] = "cells"
    k_fold: ClassVar[bool] = True  # False: a fixed train/test split (BMC), where @folds= means nothing
    layout: ClassVar[str] = ("<root>/<class>/<image> (images in sub-folders belong to the class; any format PIL "
                             "decodes: jpg, png, tif, bmp, gif, webp, ...)")
    groups: ClassVar[str] = "sha256 (byte-identical files share a fold)"
    class_folders: ClassVar[str] = "class folders"  # what the folders under the root must be, for errors
    # A published layout's class folders (Acevedo, BMC, BCCD): --data-root may then name the folder above the data
    # set's own ``data_dir`` (tasks.validation.resolve_data_root); empty: the root as given
    known_folders: ClassVar[tuple[str, ...]] = ()
    # Folders the published download puts between the folder given and the class folders, beside ``data_dir``
    nested_folders: ClassVar[tuple[str, ...]] = ()

    @property
    def evaluation(self) -> str:
        if self.fold_scheme == "authors":
            return (f"the DinoBloom authors' {self.n_folds}-fold CV: StratifiedKFold without shuffling over the "
                    "sorted paths (duplicates not grouped); mean over folds")
        return (f"portable stratified {self.n_folds}-fold CV (seed {self.split_seed}), byte-identical files grouped "
                "into one fold; mean over folds")

    def resolve_root(self, data_root, data_home: Path) -> Path:
        if self.fixed_root is not None or not self.known_folders:
            return super().resolve_root(data_root, data_home)
        return resolve_data_root(data_root, data_home, self.data_dir, self.known_folders, self.nested_folders)

    def inventory(self, root: Path) -> Inventory:
        return walk_class_folders(root, depth=None)

    def load(self, data_root=None, *, data_home: Path, split_file=None) -> CellDataset:
        """The data set with its folds; ``split_file`` (``path,split`` CSV) replaces k-fold by a fixed split."""
        root = self.existing_root(data_root, data_home)
        inventory = checked_inventory(self, root)
        return finish_dataset(self.name, inventory, lambda samples: self.assign(samples, split_file))

    def assign(self, samples: pd.DataFrame, split_file=None):
        """(fold per sample, split kind): the split file's train/test, the authors' folds (``fold_scheme``
        "authors"), or the portable k folds grouping identical files."""
        if split_file is not None:
            return read_fixed_split(split_file, samples["path"]).to_numpy(), "fixed"
        if self.fold_scheme == "authors":
            return authors_folds(samples["path"], samples["label"], self.n_folds), "kfold"
        return stratified_group_folds(samples["path"], samples["label"], self.group_keys(samples), self.n_folds,
                                      self.split_seed), "kfold"

    def group_keys(self, samples: pd.DataFrame):
        """Samples that must share a fold: byte-identical files (subclasses add patients)."""
        return samples["sha256"]

    def settings(self) -> dict:
        portable = self.fold_scheme == "portable"
        return {"n_folds": self.n_folds, "split_seed": self.split_seed if portable else None,
                "main_metric": self.main_metric, "groups": self.groups if portable else None,
                "folds": self.fold_scheme, "preprocessing": self.preprocessing, **self.size_settings()}


def task_for(path: str) -> CellTask:
    """The task for ``imagefolder:<path>`` (resolved against the working directory)."""
    root = Path(path).expanduser().resolve()
    return CellTask(name=f"imagefolder:{path}", summary=f"image folder {root}",
                    obtain="Check the path after 'imagefolder:'.", fixed_root=root)
