"""The task contract: a :class:`Task` has a typed :class:`TaskCard` and loads a data set that makes its own
evaluation design.

Every task, built-in or your own (``--task path/to/file.py:TASK``, docs/tasks.md), is a frozen dataclass
derived from :class:`Task`: its fields say where the data is and how it is split, ``card`` says what it is
(name, summary, licence, citation, how to obtain it, layout, classes, main metric, protocols, kind), and

- ``resolve_root(data_root, data_home)``: the data folder (or file) a run reads;
- ``inventory(root)``: what is there, before any check (:class:`Inventory`); ``bench data check`` reads it;
- ``load(data_root, data_home=..., split_file=...)``: the validated data set (:class:`CellDataset`, or
  :class:`BagDataset` for bag tasks) whose ``design(keep, classes)`` is what the protocols evaluate;
- ``settings()``: the split settings recorded in every result.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import pandas as pd

from bench.core.design import BagDesign, CellDesign
from bench.core.errors import DataError
from bench.core.metrics import MAIN_METRIC

CELL_PROTOCOLS = ("knn-1", "knn-20", "linear")
BAG_PROTOCOLS = ("abmil-paper", "abmil-gated")


@dataclass(frozen=True)
class TaskCard:
    """What a task is, for people (``bench list``, ``bench data info``) and for the result records.

    A card holds no fact of its own: :attr:`Task.card` reads every field from the task's attribute of the same
    name (``classes`` from ``expected_classes``, the one field named otherwise), where each is described."""

    name: str
    summary: str
    kind: str
    protocols: tuple[str, ...]
    main_metric: str
    obtain: str
    layout: str
    evaluation: str
    licence: str
    citation: str
    classes: tuple[str, ...]  # the task's expected_classes; empty: whatever the data holds
    full_set_images: int | None
    canonical_split_sha256: str | None
    preprocessing: str

    # the card's field -> the task's attribute it is read from, where their names differ
    SOURCES: ClassVar[dict[str, str]] = {"classes": "expected_classes"}


@dataclass
class Inventory:
    """What a task finds under its data folder before any check: ``samples`` (path relative to ``root``,
    label[, patient]) sorted by path, plus everything that is not used and why."""

    root: Path
    samples: pd.DataFrame
    ignored: list[str] = field(default_factory=list)  # files (folders end in "/") outside the layout or not images
    left_out: list[str] = field(default_factory=list)  # images deliberately not used (detail in ``notes``)
    empty_classes: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # folders that are not part of the layout
    missing_classes: list[str] = field(default_factory=list)  # classes the task expects but the folder lacks
    missing_files: list[str] = field(default_factory=list)  # listed in a manifest but absent
    notes: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # why a path in ``ignored`` or ``left_out`` is not used

    def ignore(self, path: str, reason: str) -> None:
        """List ``path`` (relative to ``root``) as not used, for ``reason`` (a few words: "hidden", ...)."""
        self.ignored.append(path)
        self.reasons[path] = reason

    def not_used(self) -> dict[str, str]:
        """Every path in ``ignored`` and ``left_out`` -> why it is not used (paths without a reason in
        ``reasons`` get a generic one)."""
        out = {path: self.reasons.get(path, "outside the task's layout") for path in self.ignored}
        out.update({path: self.reasons.get(path, "left out by the task (see notes)") for path in self.left_out})
        return out


@dataclass(frozen=True)
class Task(ABC):
    """The fields every task has; subclasses add their split settings and implement the methods below.

    ``prepare(root)`` may create the data (the synthetic tasks do); real tasks say where to get it
    (``obtain``). ``data_dir`` is the folder under ``$BENCH_HOME/data`` used when no --data-root is given;
    ``fixed_root`` pins the data to one place (``imagefolder:<path>``).
    """

    # Empty in a built-in's module: the registry names it by the name it is registered under (tasks/__init__.py),
    # the one place a built-in's name is written. A task in a plugin file names itself (or is named by the file).
    name: str = ""
    summary: str = ""
    data_dir: str = ""
    obtain: str = ""  # how to get the data
    main_metric: str = MAIN_METRIC
    licence: str = ""
    citation: str = ""
    prepare: Callable[[Path], object] | None = field(default=None, repr=False, compare=False)
    fixed_root: Path | None = None
    protocols: tuple[str, ...] = ()  # run when --protocol is not given
    # The published size of the full data set, in image files (e.g. 17,092 for Acevedo); recorded with every
    # result (``size_settings``) so that the leaderboard marks a result on fewer images as a subset.
    full_set_images: int | None = None
    # The canonical split's digest (``CellDataset.split_fingerprint``: sha256 over the sorted (path, label, fold)
    # rows), pinned where it is known; recorded with every result so that the leaderboard keeps results on another
    # split (other folds, a subset, other labels) apart from the canonical ones, and `bench verify` checks it.
    canonical_split_sha256: str | None = None
    # The canonical split itself, shipped with hemabench (``tasks/data/<file>``: path, label, fold; gzip CSV) where
    # it is pinned: `bench verify` takes a submission's labels and folds from it, never from the submission.
    canonical_split_file: str | None = None
    # What happens to an image before the extractor's own transform (tasks.transforms.PREPROCESSING): "direct"
    # (nothing), or "authors-cv" (a PIL bicubic resize to 224 x 224 first, as the DinoBloom authors' code did for
    # the cross-validated Acevedo). Recorded with every result; `-t acevedo@preprocessing=direct` chooses the other.
    # A task with a preprocessing of its own overrides ``image_transform``.
    preprocessing: str = "direct"
    # A perturbation applied to every original image first (tasks.perturbations, for robustness): "none", or a
    # name of tasks.perturbations.PERTURBATIONS; `-t acevedo@perturbation=blur` chooses one, and
    # `-t acevedo@perturbation=all` evaluates them all beside the clean images (a PerturbationTask).
    perturbation: str = "none"
    kind: ClassVar[str]  # "cells" or "bags": the kind of design its data set makes, and of protocols it takes
    layout: ClassVar[str] = ""  # the expected files
    expected_classes: ClassVar[tuple[str, ...]] = ()  # empty: whatever the data holds

    @property
    def card(self) -> TaskCard:
        """The task's :class:`TaskCard`: each field read from the task (lists as tuples)."""
        values: dict[str, Any] = {f.name: getattr(self, TaskCard.SOURCES.get(f.name, f.name)) for f in fields(TaskCard)}
        card: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return TaskCard(**card)

    @property
    @abstractmethod
    def evaluation(self) -> str:
        """How the task splits its data, in words."""

    def resolve_root(self, data_root: str | Path | None, data_home: Path) -> Path:
        if self.fixed_root is not None:
            return Path(self.fixed_root)
        return Path(data_root).expanduser().resolve() if data_root else Path(data_home) / self.data_dir

    def existing_root(self, data_root: str | Path | None, data_home: Path) -> Path:
        """The data folder (generated first where the task generates its data), or an error saying how to get it."""
        root = self.resolve_root(data_root, data_home)
        if self.prepare is not None:
            self.prepare(root)
        if not root.exists():
            raise DataError(f"task {self.name!r}: data folder {root} does not exist. {self.obtain}".strip())
        return root

    @abstractmethod
    def inventory(self, root: Path) -> Inventory:
        """What is under ``root``, before any check."""

    @abstractmethod
    def load(self, data_root: str | Path | None = None, *, data_home: Path, split_file: str | Path | None = None):
        """The validated data set with its splits."""

    @abstractmethod
    def settings(self) -> dict:
        """The split settings, recorded with every result (with ``size_settings()`` where the task has a
        published size)."""

    def image_transform(self):
        """The task's preprocessing, before the extractor's transform (:mod:`tasks.transforms`): the built-in one
        ``preprocessing`` names, or None. A task with its own overrides this, returning an ``ImageTransform``."""
        from tasks.transforms import PREPROCESSING

        return PREPROCESSING[self.preprocessing]

    def prepared_transform(self):
        """What the harness applies before the extractor's transform: the perturbation, if the name asks for one,
        then :meth:`image_transform` (:func:`tasks.transforms.perturbed`)."""
        from tasks.transforms import perturbed

        return perturbed(self.perturbation, self.image_transform())

    def canonical_split(self):
        """The pinned canonical split as a DataFrame (path, label, fold; all text), read from the file shipped with
        hemabench and checked against ``canonical_split_sha256``; None where none is shipped."""
        if self.canonical_split_file is None:
            return None
        from tasks.splits import read_canonical_split

        return read_canonical_split(self.canonical_split_file, self.canonical_split_sha256)

    def split_status(self, dataset) -> tuple[str, list[str]]:
        """(status, details) of a loaded data set's split against the task's canonical one, for `bench data split`:
        "the pinned canonical split", or what differs, file by file (:func:`tasks.splits.split_differences`)."""
        pinned = self.canonical_split_sha256
        if pinned is None:
            return "no canonical split is pinned for this task", []
        if dataset.split_fingerprint() == pinned:
            return "the pinned canonical split", []
        from tasks.splits import split_differences

        canonical = self.canonical_split()
        return (f"NOT the pinned canonical split ({pinned})",
                [] if canonical is None else split_differences(dataset.samples, canonical))

    def size_settings(self) -> dict:
        """``{"full_set_images": N}`` for a task with a published full-set size and ``{"canonical_split_sha256":
        ...}`` for one with a pinned split: what the result record needs, beside the data set's counts and split
        digest, to tell a subset or another split from the canonical full set."""
        out: dict[str, Any] = {} if self.full_set_images is None else {"full_set_images": int(self.full_set_images)}
        if self.canonical_split_sha256 is not None:
            out["canonical_split_sha256"] = self.canonical_split_sha256
        return out


@dataclass
class CellDataset:
    """A labelled set of cell images. ``samples``: path (relative, POSIX), label, fold, sha256 [, patient].

    ``fold`` holds the test-fold number for k-fold tasks, or "train"/"test" for fixed splits. ``classes`` is
    the label map: the sorted union of all labels, train and test alike. ``ignored_files``: every file (or
    folder, ending in "/") under ``root`` that is not used -> why (a list is accepted: reason "not used").
    """

    task: str
    root: Path
    samples: pd.DataFrame
    split_kind: str  # "kfold" | "fixed" | "patients"
    ignored_files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # findings worth recording with results (duplicates, bad files)
    # Files named like images that the task's folders hold, used or not (left out by the task, or not images by
    # their signature): what a published full-set size counts. None: the samples are all there is.
    n_images_found: int | None = None
    # findings that make results incomparable with the full benchmark (absent classes): each run warns of them
    warnings: list[str] = field(default_factory=list)
    # Which of its rules a task's split followed on this copy, where that depends on the files present (BMC: the
    # authors' test list or the generated rule); recorded with every result. None: the one rule of its settings.
    split_rule: str | None = None

    MAX_IGNORED_LISTED: ClassVar[int] = 200  # in ``describe()`` (the result record); the count is always complete

    def __post_init__(self) -> None:
        if not isinstance(self.ignored_files, dict):
            self.ignored_files = {str(path): "not used" for path in self.ignored_files}  # pyright: ignore[reportGeneralTypeIssues]  # (a list)

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

    def design(self, keep: np.ndarray, classes: list[str]) -> CellDesign:
        """The splits over the rows in ``keep`` (rows whose image could be read), labels indexing ``classes``."""
        labels = np.searchsorted(classes, self.samples["label"].to_numpy())
        splits = [(name, train[keep[train]], test[keep[test]]) for name, train, test in self.splits()]
        return CellDesign(list(classes), labels, splits)

    def content_fingerprint(self) -> str:
        """sha256 over (relative path, file sha256) in path order: what the features depend on."""
        digest = hashlib.sha256()
        for path, sha in sorted(zip(self.samples["path"], self.samples["sha256"])):
            digest.update(f"{path}\0{sha}\n".encode())
        return digest.hexdigest()

    def split_fingerprint(self) -> str:
        from bench.core.files import split_digest

        return split_digest(self.samples["path"], self.samples["label"], self.samples["fold"].astype(str))

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
            "n_images_found": len(self) if self.n_images_found is None else int(self.n_images_found),
            **({} if self.split_rule is None else {"split_rule": self.split_rule}),
            **self.describe_ignored(),
        }

    def describe_ignored(self) -> dict:
        """The files under the root that are not used, for the result record: their complete count, the count
        per reason, and the first ``MAX_IGNORED_LISTED`` of them (in path order) with their reason."""
        per_reason = Counter(self.ignored_files.values())
        first = sorted(self.ignored_files)[: self.MAX_IGNORED_LISTED]
        return {
            "n_ignored_files": len(self.ignored_files),
            "ignored_by_reason": dict(sorted(per_reason.items())),
            "ignored_files": [{"path": path, "reason": self.ignored_files[path]} for path in first],
        }


@dataclass
class BagDataset(CellDataset):
    """Cells grouped into bags (one per patient). ``samples``: path, label (the patient's), patient, sha256,
    fold (unused: patients are dealt to ``n_folds`` folds once per seed in ``seeds``)."""

    n_folds: int = 5
    seeds: tuple[int, ...] = (0, 1, 2)

    def bags(self) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
        """(patient ids, label index per patient, sample rows per patient), patients in sorted order."""
        lookup = {label: i for i, label in enumerate(self.classes)}
        groups = self.samples.groupby("patient", sort=True).indices
        patients = sorted(groups)  # pyright: ignore[reportArgumentType]  # (pandas-stubs: keys are any Hashable)
        labels = np.array([lookup[self.samples["label"].iat[groups[p][0]]] for p in patients], dtype=np.int64)  # pyright: ignore[reportArgumentType]  # (a str)
        return patients, labels, [np.asarray(groups[p]) for p in patients]

    def design(self, keep: np.ndarray, classes: list[str]) -> BagDesign:
        """Patients as bags of their readable cells, dealt to folds per seed (:func:`tasks.splits.patient_splits`)."""
        from tasks.splits import patient_splits

        patients, _, rows = self.bags()
        first = [self.samples["label"].iat[r[0]] for r in rows]
        labels = np.searchsorted(classes, first).astype(np.int64)  # pyright: ignore[reportCallIssue, reportArgumentType]  # (str)
        rows = [r[keep[r]] for r in rows]
        return BagDesign(list(classes), patients, labels, rows, patient_splits(patients, labels, self.n_folds, self.seeds))

    def describe(self) -> dict:
        info = super().describe()
        patients = self.samples.groupby("patient")["label"].first()
        info["n_patients"] = int(len(patients))
        info["patient_counts"] = {k: int(v) for k, v in patients.value_counts().sort_index().items()}
        return info
