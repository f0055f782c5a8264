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
