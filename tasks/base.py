"""Task specs and the data sets they load: samples (relative path, label, fold) under one root folder."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from tasks.splits import read_fixed_split, stratified_folds

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
CELL_PROTOCOLS = ("knn-1", "knn-20", "linear")


class DataError(ValueError):
    """A data set that is missing, empty or malformed; the message names the path and the fix."""


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class CellDataset:
    """A labelled set of cell images. ``samples``: path (relative, POSIX), label, fold, sha256 [, patient].

    ``fold`` holds the test-fold number for k-fold tasks, or "train"/"test" for fixed splits. ``classes`` is
    the label map: the sorted union of all labels, train and test alike.
    """

    task: str
    root: Path
    samples: pd.DataFrame
    split_kind: str  # "kfold" | "fixed" | "patients"
    ignored_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # findings worth recording with results (duplicates, bad files)

    @property
    def classes(self) -> list[str]:
        return sorted(self.samples["label"].unique())

    def __len__(self) -> int:
        return len(self.samples)

    def absolute_paths(self) -> list[Path]:
        return [self.root / p for p in self.samples["path"]]

    def label_indices(self) -> np.ndarray:
        lookup = {label: i for i, label in enumerate(self.classes)}
        return self.samples["label"].map(lookup).to_numpy(dtype=np.int64)

    def splits(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(fold name, train row indices, test row indices) for every evaluation split."""
        fold = self.samples["fold"].astype(str).to_numpy()
        if self.split_kind == "fixed":
            return [("test", np.flatnonzero(fold == "train"), np.flatnonzero(fold == "test"))]
        return [(name, np.flatnonzero(fold != name), np.flatnonzero(fold == name)) for name in sorted(set(fold))]

    def content_fingerprint(self) -> str:
        """sha256 over (relative path, file sha256) in path order: what the features depend on."""
        digest = hashlib.sha256()
        for path, sha in sorted(zip(self.samples["path"], self.samples["sha256"])):
            digest.update(f"{path}\0{sha}\n".encode())
        return digest.hexdigest()

    def split_fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path, label, fold in sorted(zip(self.samples["path"], self.samples["label"], self.samples["fold"].astype(str))):
            digest.update(f"{path}\0{label}\0{fold}\n".encode())
        return digest.hexdigest()

    def describe(self) -> dict:
        return {
            "task": self.task,
            "root": str(self.root),
            "n_samples": len(self),
            "classes": self.classes,
            "class_counts": {k: int(v) for k, v in self.samples["label"].value_counts().sort_index().items()},
            "split_kind": self.split_kind,
            "content_sha256": self.content_fingerprint(),
            "split_sha256": self.split_fingerprint(),
        }


def scan_image_folder(root: Path) -> tuple[pd.DataFrame, list[str]]:
    """``<root>/<class>/<image>`` -> (DataFrame path,label sorted by path, ignored non-image files)."""
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"data folder {root} has no class sub-folders; expected the layout <root>/<class>/<image>")
    rows, ignored, empty = [], [], []
    for class_dir in class_dirs:
        n_before = len(rows)
        for file in sorted(class_dir.iterdir()):
            if file.name.startswith(".") or not file.is_file():
                continue
            relative = file.relative_to(root).as_posix()
            if file.suffix.lower() in IMAGE_EXTENSIONS:
                rows.append((relative, class_dir.name))
            else:
                ignored.append(relative)
        if len(rows) == n_before:
            empty.append(class_dir.name)
    if empty:
        raise DataError(
            f"class folder(s) {empty} under {root} hold no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
            "remove the empty folders or add images"
        )
    samples = pd.DataFrame(rows, columns=["path", "label"])
    return samples, ignored


def scan_patient_folder(root: Path) -> pd.DataFrame:
    """``<root>/<label>/<patient>/<cell image>`` (the AML Hehr layout) -> DataFrame path, label, patient."""
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    rows = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for patient_dir in sorted(p for p in label_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            cells = [f for f in sorted(patient_dir.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
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


def check_classes(samples: pd.DataFrame, where: Path) -> None:
    labels = samples["label"].unique()
    if len(labels) < 2:
        raise DataError(f"data set at {where} has {len(labels)} class(es) {list(labels)}; classification needs at least 2")


@dataclass(frozen=True)
class CellTask:
    """A cell-classification task on an image-folder layout with portable stratified k-fold CV.

    ``prepare(root)`` may create the data (the synthetic tasks do); real tasks tell the user where to get it
    (``obtain``). ``data_dir`` is the folder name under ``$BENCH_HOME/data`` used when no --data-root is given.
    """

    name: str
    summary: str
    data_dir: str
    obtain: str
    n_folds: int = 5
    split_seed: int = 0
    protocols: tuple[str, ...] = CELL_PROTOCOLS
    main_metric: str = "weighted_f1"
    prepare: Callable[[Path], None] | None = field(default=None, repr=False, compare=False)
    fixed_root: Path | None = None  # for ad-hoc tasks on a given folder (imagefolder:<path>)
    kind = "cells"

    def resolve_root(self, data_root: str | Path | None, data_home: Path) -> Path:
        if self.fixed_root is not None:
            return self.fixed_root
        return Path(data_root).expanduser().resolve() if data_root else data_home / self.data_dir

    def existing_root(self, data_root: str | Path | None, data_home: Path) -> Path:
        """The data folder (generated first where the task generates its data), or an error saying how to get it."""
        root = self.resolve_root(data_root, data_home)
        if self.prepare is not None:
            self.prepare(root)
        if not root.is_dir():
            raise DataError(f"task {self.name!r}: data folder {root} does not exist. {self.obtain}")
        return root

    def load(
        self, data_root: str | Path | None = None, *, data_home: Path, split_file: str | Path | None = None
    ) -> CellDataset:
        """The data set with its folds; ``split_file`` (``path,split`` CSV) replaces k-fold by a fixed split."""
        root = self.existing_root(data_root, data_home)
        samples, ignored = scan_image_folder(root)
        check_classes(samples, root)
        if split_file is not None:
            samples["fold"] = read_fixed_split(split_file, samples["path"]).to_numpy()
        else:
            samples["fold"] = stratified_folds(samples["path"], samples["label"], self.n_folds, self.split_seed)
        samples["sha256"] = [sha256_of(root / p) for p in samples["path"]]
        return CellDataset(self.name, root, samples, "fixed" if split_file is not None else "kfold", ignored)

    def settings(self) -> dict:
        return {"n_folds": self.n_folds, "split_seed": self.split_seed, "main_metric": self.main_metric}


@dataclass
class BagDataset(CellDataset):
    """Cells grouped into bags (one per patient). ``samples``: path, label (the patient's), patient, sha256,
    fold (unused: the harness deals patients to folds per seed)."""

    def bags(self) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
        """(patient ids, label index per patient, sample rows per patient), patients in sorted order."""
        lookup = {label: i for i, label in enumerate(self.classes)}
        groups = self.samples.groupby("patient", sort=True).indices
        patients = sorted(groups)
        labels = np.array([lookup[self.samples["label"].iat[groups[p][0]]] for p in patients], dtype=np.int64)
        return patients, labels, [np.asarray(groups[p]) for p in patients]

    def describe(self) -> dict:
        info = super().describe()
        patients = self.samples.groupby("patient")["label"].first()
        info["n_patients"] = int(len(patients))
        info["patient_counts"] = {k: int(v) for k, v in patients.value_counts().sort_index().items()}
        return info


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


@dataclass(frozen=True)
class BagTask:
    """Patient-level classification from bags of cells (multiple-instance learning).

    Layout ``<root>/<label>/<patient>/<cell image>``, or a manifest CSV (``patient,label,path``) given as
    the data root. Evaluation: repeated patient-level stratified k-fold CV (``n_folds`` x ``seeds``).
    """

    name: str
    summary: str
    data_dir: str
    obtain: str
    n_folds: int = 5
    seeds: tuple[int, ...] = (0, 1, 2)
    protocols: tuple[str, ...] = ("abmil-paper", "abmil-gated")
    main_metric: str = "weighted_f1"
    prepare: Callable[[Path], None] | None = field(default=None, repr=False, compare=False)
    fixed_root: Path | None = None
    kind = "bags"

    def load(self, data_root=None, *, data_home: Path, split_file=None) -> BagDataset:
        if split_file is not None:
            raise DataError(f"task {self.name!r} draws patient-level folds itself; --split-file does not apply")
        root = self.fixed_root or (Path(data_root).expanduser().resolve() if data_root else data_home / self.data_dir)
        if self.prepare is not None:
            self.prepare(root)
        if root.is_file() and root.suffix.lower() == ".csv":
            root, samples = read_bag_manifest(root)
        elif root.is_dir():
            samples = scan_patient_folder(root)
        else:
            raise DataError(f"task {self.name!r}: data folder {root} does not exist. {self.obtain}")
        check_classes(samples, root)
        samples["fold"] = ""
        samples["sha256"] = [sha256_of(root / p) for p in samples["path"]]
        return BagDataset(self.name, root, samples, "patients", [])

    def settings(self) -> dict:
        return {"n_folds": self.n_folds, "seeds": list(self.seeds), "main_metric": self.main_metric, "unit": "patient"}
