"""Robustness to the perturbations of :mod:`tasks.transforms` (``stain``, ``blur``, ``jpeg``, ``rescale``):
``TASK@perturbation=all`` is a :class:`PerturbationTask`, the task's images clean and under every perturbation,
side by side, each cell in every version, which :mod:`protocols.robustness` scores. (``TASK@perturbation=NAME``
alone is the cell task on perturbed images, :meth:`tasks.base.Task.prepared_transform`.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from bench.core.design import PerturbationDesign
from bench.core.errors import DataError
from bench.core.metrics import PERTURBED_F1
from tasks.domains import DomainsDataset, MultiDomainTask
from tasks.transforms import CLEAN, PERTURBATIONS


@dataclass(frozen=True)
class PerturbationTask(MultiDomainTask):
    """``TASK@perturbation=all``: the task's images clean and under every perturbation, side by side, each cell
    in every version: what :mod:`protocols.robustness` scores. Members: the clean task, then one per perturbation
    (each its own feature cache)."""

    main_metric: str = PERTURBED_F1
    protocols: tuple[str, ...] = ("robustness",)
    protocol_kinds: ClassVar[tuple[str, ...]] = ("perturbations",)
    perturbations: tuple[str, ...] = field(default_factory=lambda: tuple(PERTURBATIONS))

    def member_roots(self, data_root) -> list:
        return [data_root] * len(self.members)  # one data set, in every version

    @property
    def evaluation(self) -> str:
        return (f"{self.members[0].name}'s splits, the probe trained on the clean training cells and tested on the "
                f"test cells clean and under each of {', '.join(self.perturbations)}; each cell's feature compared "
                "with its clean one")

    def settings(self) -> dict:
        return {**self.members[0].settings(),
                "perturbations": {p: PERTURBATIONS[p].spec() for p in self.perturbations}}

    def assemble(self, datasets: list) -> "PerturbedDataset":
        return PerturbedDataset(self, list(datasets))


@dataclass
class PerturbedDataset(DomainsDataset):
    """The data set in every version: the same samples in the same order in each part."""

    task: PerturbationTask

    def __post_init__(self) -> None:
        super().__post_init__()
        first = self.parts[0].samples["path"].tolist()
        for member, part in zip(self.task.members[1:], self.parts[1:]):
            if part.samples["path"].tolist() != first:
                raise DataError(f"{member.name!r} does not hold the same images as {self.task.members[0].name!r}: "
                                "the data folder changed while it was read; run again")

    def member_warnings(self) -> list[str]:
        return list(self.parts[0].warnings)  # one data set: its own warnings, once

    def design(self, keep: np.ndarray, classes: list[str]) -> PerturbationDesign:
        """The clean task's splits over the rows of the first part; a row is usable where every version of the
        image could be read."""
        self.warnings = self.member_warnings()
        n, versions = len(self.parts[0]), len(self.parts)
        usable = keep.reshape(versions, n).all(axis=0)
        clean = self.parts[0].design(usable, classes)
        labels = np.asarray(np.searchsorted(classes, self.samples["label"].to_numpy()), dtype=np.int64)
        names = [CLEAN, *self.task.perturbations]
        return PerturbationDesign(list(classes), labels, names, np.repeat(np.arange(versions), n),
                                  np.tile(usable, versions), clean.splits, n_cells=n)

    def describe(self, label: str) -> dict:
        clean = self.task.member_info(self.parts[0], self.task.members[0])
        return {**clean, "task": label, "main_metric": self.task.main_metric,
                "perturbations": {p: PERTURBATIONS[p].spec() for p in self.task.perturbations}}
