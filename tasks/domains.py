"""Tasks of several data sets (domains), named from the tasks they join (:mod:`tasks.names`):

- ``A=>B``, a **domain shift** (:class:`DomainShiftTask`): a cell protocol trained on A is tested on B, the
  DinoBloom study's external evaluation. ``@training=folds``: each of A's cross-validation folds' models is tested
  on B (the authors' way; mean ± std over folds), else one model on all of A. ``@classes=shared``: only B's cells
  of the classes both hold are scored, predictions restricted to them. ``@classes=harmonised``: the same over the
  common classes of :mod:`tasks.harmonised` (Matek's NGB and NGS are Acevedo's ``neutrophil``, ...): both tasks'
  labels are relabelled to them first.
- ``A+B+C``, the data sets **side by side** (:class:`DomainPoolTask`), with a domain column: what a batch-effect
  protocol (:mod:`protocols.batch_effect`) scores.

Each member keeps its own data folder, preprocessing and feature cache; the harness loads and extracts them one by
one and :meth:`MultiDomainTask.assemble` joins the loaded data sets into a :class:`DomainsDataset`, whose
``design`` is a :class:`~bench.core.design.DomainDesign`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from bench.core.design import DomainDesign
from bench.core.errors import DataError, UsageError
from bench.core.metrics import INTEGRATION
from tasks.base import Task

SHIFT_TRAINING = ("all", "folds")  # one model on all of the training task | each CV fold's model
# score every test cell | only the classes both tasks hold | the same over the harmonised classes (tasks.harmonised)
SHIFT_CLASSES = ("all", "shared", "harmonised")


@dataclass(frozen=True)
class MultiDomainTask(Task):
    """Several tasks' data sets as one evaluation; ``members`` are the tasks (already configured)."""

    members: tuple[Any, ...] = ()
    kind: ClassVar[str] = "domains"
    layout: ClassVar[str] = "each member task's own layout"

    def inventory(self, root: Path):
        raise UsageError(f"{self.name!r} joins {len(self.members)} data sets; check each one on its own: "
                         + ", ".join(f"bench data check {m.name}" for m in self.members))

    def member_roots(self, data_root) -> list:
        """The data folder of each member: ``data_root`` is the first member's (the training task's), the others
        are read from their default folders."""
        return [data_root] + [None] * (len(self.members) - 1)

    def load(self, data_root=None, *, data_home: Path, split_file=None) -> "DomainsDataset":
        if split_file is not None:
            raise UsageError(f"a split file does not apply to {self.name!r}: each data set is used whole")
        return self.assemble([m.load(root, data_home=data_home)
                              for m, root in zip(self.members, self.member_roots(data_root))])

    def assemble(self, datasets: list) -> "DomainsDataset":
        """The members' loaded data sets (in ``members`` order) as one."""
        kinds = {m.name: m.kind for m in self.members if m.kind != "cells"}
        if kinds:
            raise UsageError(f"{self.name!r}: every data set must be a cell task; {kinds} are not (for patients, "
                             "name a cell task of their cells, e.g. imagefolder:)")
        return DomainsDataset(self, list(datasets))

    def member_info(self, dataset, member) -> dict:
        return {**dataset.describe(), **member.settings(), "notes": list(dataset.notes), "split_file": None}


@dataclass(frozen=True)
class DomainShiftTask(MultiDomainTask):
    """``TRAIN=>TEST``: trained on the first member, tested on the second."""

    training: str = "all"
    classes: str = "all"
    protocol_kinds: ClassVar[tuple[str, ...]] = ("cells", "domains")  # a cell protocol trained on one, tested on the other

    def __post_init__(self) -> None:
        for what, value, allowed in (("training", self.training, SHIFT_TRAINING),
                                     ("classes", self.classes, SHIFT_CLASSES)):
            if value not in allowed:
                raise UsageError(f"@{what}= must be one of {', '.join(allowed)}, got {value!r} (in {self.name!r})")
        if self.training == "folds" and not getattr(self.members[0], "k_fold", False):
            raise UsageError(f"@training=folds needs a training task with k-fold cross-validation; "
                             f"{self.members[0].name!r} has none")
        if self.classes == "harmonised":
            self.harmonised_maps()  # a task without a map is a usage error before any work

    def harmonised_maps(self) -> tuple[dict, dict]:
        """(train, test) label -> harmonised class (:func:`tasks.harmonised.pair_maps`)."""
        from tasks.harmonised import pair_maps

        train, test = self.members
        return pair_maps(train.name, test.name)

    @property
    def evaluation(self) -> str:
        train, test = self.members
        how = (f"each of {train.name}'s cross-validation folds' models tested on all of {test.name} (mean over folds)"
               if self.training == "folds" else f"one model trained on all of {train.name}, tested on all of {test.name}")
        scored = {"shared": "; scored on the classes both hold",
                  "harmonised": "; scored on the harmonised classes both hold (tasks/harmonised.py)"}
        return how + scored.get(self.classes, "")

    def settings(self) -> dict:
        harmonised = {}
        if self.classes == "harmonised":  # the map is part of what a result is computed from
            harmonised = {"harmonised_classes": dict(zip(("train", "test"), self.harmonised_maps()))}
        return {**self.members[0].settings(), "shift_training": self.training, "shift_classes": self.classes,
                **harmonised}


@dataclass(frozen=True)
class DomainPoolTask(MultiDomainTask):
    """``A+B+C``: the data sets side by side, for a protocol of several domains (batch effect)."""

    main_metric: str = INTEGRATION
    protocols: tuple[str, ...] = ("batch-effect",)
    protocol_kinds: ClassVar[tuple[str, ...]] = ("domains",)  # no training and test roles: no cell protocol

    def member_roots(self, data_root) -> list:
        if data_root is not None:
            raise UsageError(f"--data-root does not apply to {self.name!r}: each data set is read from its own "
                             "default folder (or name it imagefolder:<path>)")
        return [None] * len(self.members)

    @property
    def evaluation(self) -> str:
        return f"{', '.join(m.name for m in self.members)} side by side, every readable cell of each"

    def settings(self) -> dict:
        return {"domains": {m.name: m.settings() for m in self.members}}


@dataclass
class DomainsDataset:
    """The members' data sets joined: ``samples`` is theirs one after the other with a ``domain`` column (rows
    in that order are the feature rows); ``parts[i]`` is member i's own data set."""

    task: MultiDomainTask
    parts: list
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        frames = [p.samples.assign(domain=m.name) for m, p in zip(self.task.members, self.parts)]
        self.notes = [note for p in self.parts for note in p.notes]
        task = self.task
        if isinstance(task, DomainShiftTask) and task.classes == "harmonised":  # labels as the harmonised classes
            from tasks.harmonised import relabel

            maps = task.harmonised_maps()
            frames = [f.assign(label=relabel(f["label"], m)) for f, m in zip(frames, maps)]
            self.notes.append("harmonised classes (tasks/harmonised.py): " + "; ".join(
                f"{member.name} " + ", ".join(f"{label} -> {common}" for label, common in m.items() if common)
                for member, m in zip(self.task.members, maps)))
        self.samples = pd.concat(frames, ignore_index=True)
        self.warnings = self.member_warnings()

    @property
    def harmonised(self) -> bool:
        return isinstance(self.task, DomainShiftTask) and self.task.classes == "harmonised"

    def shift_classes(self) -> tuple[list[str], list[str], list[str]]:
        """A shift's (training classes, test classes, shared classes), as labelled here (harmonised or not); with
        harmonised classes only common classes are shared (a class without one never is)."""
        labels, n_train = self.samples["label"].to_numpy(), len(self.parts[0])
        train, test = sorted(set(labels[:n_train])), sorted(set(labels[n_train:]))
        shared = sorted(set(train) & set(test))
        if self.harmonised:
            from tasks.harmonised import COMMON_CLASSES

            shared = [c for c in shared if c in COMMON_CLASSES]
        return train, test, shared

    def member_warnings(self) -> list[str]:
        """The members' own warnings: a shift's test task's marked as such, each of several named."""
        if isinstance(self.task, DomainShiftTask):
            return list(self.parts[0].warnings) + [f"test task: {w}" for w in self.parts[1].warnings]
        return [f"{m.name}: {w}" for m, p in zip(self.task.members, self.parts) for w in p.warnings]

    @property
    def classes(self) -> list[str]:
        return sorted(self.samples["label"].unique())

    def __len__(self) -> int:
        return len(self.samples)

    def offsets(self) -> list[int]:
        return list(np.cumsum([0] + [len(p) for p in self.parts]))

    def design(self, keep: np.ndarray, classes: list[str]) -> DomainDesign:
        """Every row of every member, ``keep`` the readable ones; a shift's splits as :class:`DomainShiftTask`
        says. The warnings of the design (classes on one side only, the shared-class scoring) join
        ``warnings`` (each call starts again from the members' own)."""
        self.warnings = self.member_warnings()
        labels = np.asarray(np.searchsorted(classes, self.samples["label"].to_numpy()), dtype=np.int64)
        domain_of = np.repeat(np.arange(len(self.parts)), [len(p) for p in self.parts])
        names = [m.name for m in self.task.members]
        if not isinstance(self.task, DomainShiftTask):
            offsets = self.offsets()
            held = [set(p.samples["label"].to_numpy()[keep[a:b]]) for p, a, b in zip(self.parts, offsets, offsets[1:])]
            only_some = sorted(set(classes) - set.intersection(*held))
            if only_some:
                self.warnings.append(f"classes not held by every task, left out of the scores: {only_some}")
            return DomainDesign(list(classes), labels, names, domain_of, keep.copy(), [])
        (train_task, test_task), (train, _) = self.task.members, self.parts
        n_train = len(train)
        train_classes, test_classes, shared = self.shift_classes()
        test_rows = n_train + np.flatnonzero(keep[n_train:])
        predictable = None
        if self.task.classes != "all":
            if not shared:
                which = "harmonised class" if self.harmonised else "class"
                raise DataError(f"{train_task.name!r} and {test_task.name!r} share no {which}: nothing to score "
                                f"with @classes={self.task.classes}")
            predictable = [classes.index(c) for c in shared]
            test_rows = test_rows[np.isin(self.samples["label"].to_numpy()[test_rows], shared)]
        if self.task.training == "folds":  # the authors': each CV fold's model (trained on its 80 %) on the test task
            readable = keep[:n_train]
            splits = [(fold, rows[readable[rows]], test_rows) for fold, rows, _ in train.splits()]
        else:
            splits = [("test", np.flatnonzero(keep[:n_train]), test_rows)]
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        if only_train:
            self.warnings.append(f"classes only in the training task {train_task.name!r}: {only_train}")
        if only_test:
            self.warnings.append(f"classes only in the test task {test_task.name!r}: {only_test} "
                                 "(never predicted: no training data)")
        if predictable is not None:
            left = sorted(set(test_classes) - set(shared))
            which = "harmonised classes" if self.harmonised else "classes"
            self.warnings.append(f"scored on the {len(shared)} {which} both tasks hold ({', '.join(shared)}), "
                                 "predictions restricted to them" + (f"; test cells of {left} are not scored" if left
                                                                     else ""))
        return DomainDesign(list(classes), labels, names, domain_of, keep.copy(), splits, predictable)

    def describe(self, label: str) -> dict:
        """The record's task section: each member's own description under ``train``/``test`` (a shift) or
        ``domains`` (side by side)."""
        infos = [self.task.member_info(p, m) for m, p in zip(self.task.members, self.parts)]
        if isinstance(self.task, DomainShiftTask):
            shared = self.shift_classes()[2]
            harmonised = ({"harmonised_classes": dict(zip(("train", "test"), self.task.harmonised_maps()))}
                          if self.harmonised else {})
            return {"task": label, "train": infos[0], "test": infos[1], "main_metric": self.task.main_metric,
                    "shift_training": self.task.training, "shift_classes": self.task.classes,
                    **({"shared_classes": shared} if self.task.classes != "all" else {}), **harmonised}
        held = [set(p.classes) for p in self.parts]
        return {"task": label, "main_metric": self.task.main_metric,
                "domains": {m.name: info for m, info in zip(self.task.members, infos)},
                "shared_classes": sorted(set.intersection(*held))}
