"""Patient-level classification from bags of cells (multiple-instance learning): :class:`BagTask`.

Layout ``<root>/<label>/<patient>/<cell image>``, or a manifest CSV (``patient,label,path``) given as the data
root. Evaluation: repeated patient-level stratified k-fold CV (``n_folds`` x ``seeds``, see
:func:`tasks.splits.patient_splits`); a patient is never in two folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from bench.core.errors import DataError
from bench.core.files import sha256_file
from tasks.base import BAG_PROTOCOLS, BagDataset, Inventory, Task
from tasks.validation import check_classes, read_bag_manifest, scan_patient_folder, walk_class_folders


@dataclass(frozen=True)
class BagTask(Task):
    n_folds: int = 5
    seeds: tuple[int, ...] = (0, 1, 2)
    protocols: tuple[str, ...] = BAG_PROTOCOLS
    kind: ClassVar[str] = "bags"
    layout: ClassVar[str] = "<root>/<label>/<patient>/<cell image>, or a patient,label,path CSV"

    @property
    def evaluation(self) -> str:
        return f"patient-level stratified {self.n_folds}-fold CV, repeated for seeds {list(self.seeds)}"

    def inventory(self, root: Path) -> Inventory:
        if root.is_file() and root.suffix.lower() == ".csv":  # a manifest given as the data root
            common, samples = read_bag_manifest(root)
            return Inventory(common, samples)
        return walk_class_folders(root, depth=1)

    def load(self, data_root=None, *, data_home: Path, split_file=None) -> BagDataset:
        if split_file is not None:
            raise DataError(f"task {self.name!r} draws patient-level folds itself; --split-file does not apply")
        root = self.existing_root(data_root, data_home)
        ignored: dict[str, str] = {}
        if root.is_file() and root.suffix.lower() == ".csv":
            root, samples = read_bag_manifest(root)
        elif root.is_dir():
            samples = scan_patient_folder(root)
            walked = walk_class_folders(root, depth=1)  # what is under the root and not used, with the reason
            ignored = walked.not_used()
            used = set(samples["path"])
            ignored.update({p: "not in a patient folder" for p in walked.samples["path"] if p not in used})
        else:
            raise DataError(f"task {self.name!r}: {root} is neither a data folder nor a .csv manifest. {self.obtain}")
        check_classes(samples, root, levels=2)  # <label>/<patient>/<image>
        samples["fold"] = ""
        samples["sha256"] = [sha256_file(root / p) for p in samples["path"]]
        return BagDataset(self.name, root, samples, "patients", ignored, n_folds=self.n_folds, seeds=tuple(self.seeds))

    def settings(self) -> dict:
        return {"n_folds": self.n_folds, "seeds": list(self.seeds), "main_metric": self.main_metric, "unit": "patient",
                **self.size_settings()}
