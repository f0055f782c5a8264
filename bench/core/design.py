"""The evaluation design: what a protocol is evaluated on, made by a task's data set, read by the protocols.

A cell task gives a :class:`CellDesign` (one label per feature row; splits of rows), a bag task a
:class:`BagDesign` (patients as bags of feature rows, one label per bag; splits of bags, per seed). The task
kind decides which one exists, and a protocol evaluates the design of its own kind, so the harness never
asks which kind it holds. Labels index ``classes``, the label map: the sorted union of the labels of
everything evaluated, train and test alike (never per split).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CellDesign:
    """Single cells. ``splits``: (fold name, training rows, test rows), rows indexing the feature matrix."""

    classes: list[str]
    labels: np.ndarray  # (n_rows,) int64 index into classes
    splits: list[tuple[str, np.ndarray, np.ndarray]]
    # Domain shift scored on shared classes: the classes (indices) a prediction may take, the most probable of
    # them; the test rows hold only these classes. None: every class of the label map.
    predictable: list[int] | None = None
    kind = "cells"


@dataclass
class BagDesign:
    """Patients as bags of cells. ``bag_rows[i]``: the feature rows of bag i; ``splits``: (seed, fold number,
    training bags, test bags), bags indexing ``bag_ids``; a patient is never on both sides of a split."""

    classes: list[str]
    bag_ids: list[str]
    bag_labels: np.ndarray  # (n_bags,) int64 index into classes
    bag_rows: list[np.ndarray]
    splits: list[tuple[int, int, np.ndarray, np.ndarray]]
    kind = "bags"


@dataclass
class DomainDesign:
    """Cells of several data sets (domains), made by a multi-domain task: ``A=>B`` (train on A, test on B: a
    domain shift) or ``A+B+C`` (the domains side by side: a batch effect). ``domain_of[i]``: the index into
    ``domains`` of row i; ``usable``: the rows whose image could be read. ``splits`` (fold name, training rows,
    test rows) exist where the task gives the domains roles (``A=>B``); a cell protocol evaluates them
    (:meth:`cells`), a protocol of several domains reads the domain column."""

    classes: list[str]
    labels: np.ndarray  # (n_rows,) int64 index into classes
    domains: list[str]  # the data sets' names, in the task's order
    domain_of: np.ndarray  # (n_rows,) int64 index into domains
    usable: np.ndarray  # (n_rows,) bool
    splits: list[tuple[str, np.ndarray, np.ndarray]]
    predictable: list[int] | None = None  # as CellDesign.predictable (a shift scored on the shared classes)
    kind = "domains"

    def cells(self) -> CellDesign:
        """The training and test rows of a domain shift, as a cell protocol evaluates them."""
        if not self.splits:
            from bench.core.errors import UsageError

            raise UsageError(f"the data sets {' + '.join(self.domains)} are side by side, with no training and test "
                             "roles: a cell protocol needs a domain shift, named TRAIN=>TEST (e.g. "
                             f"{'=>'.join(self.domains[:2])})")
        return CellDesign(self.classes, self.labels, self.splits, self.predictable)


@dataclass
class PerturbationDesign(DomainDesign):
    """One data set in several versions (``TASK@perturbation=all``): ``domains[0]`` the clean images, the others
    each a perturbation of them, ``n_cells`` rows each in the same order (row ``v * n_cells + i`` is cell i in
    version v). ``splits`` hold the clean version's rows (0 .. n_cells - 1): a probe trained on the clean training
    cells is tested on the test cells in every version."""

    n_cells: int = 0
    kind = "perturbations"

    def version_rows(self, rows: np.ndarray, version: int) -> np.ndarray:
        """The rows of version ``version`` of the clean rows ``rows``."""
        return np.asarray(rows) + version * self.n_cells
