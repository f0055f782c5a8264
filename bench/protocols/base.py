"""The protocol contract (in the spirit of scikit-learn's small estimator API).

A protocol is stateless configuration with ``fit_predict(X_train, y_train, X_test, n_classes)``. Labels are
integers 0..n_classes-1 from the task's label map (the union over train and test, never per split), so
probability columns line up with the label map even when a class is absent from a training fold.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Prediction:
    labels: np.ndarray  # (n_test,) int
    proba: np.ndarray | None = None  # (n_test, n_classes), rows sum to 1
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Protocol(ABC):
    name: str
    summary: str
    kind = "cells"  # class attribute, not a field: what a protocol consumes (cells or bags)

    def settings(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("name", "summary")}

    @abstractmethod
    def fit_predict(self, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int) -> Prediction:
        """Train on (x_train, y_train), predict x_test; labels and probability columns index the label map."""


@dataclass
class BagPrediction:
    labels: np.ndarray  # (n_test_bags,) int
    proba: np.ndarray | None = None  # (n_test_bags, n_classes)
    attention: list[np.ndarray] | None = None  # per test bag: one weight per cell (n_cells,) or (n_cells, n_classes)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BagProtocol(ABC):
    """A multiple-instance protocol: trains on bags (one per patient) of cell features.

    The harness runs the cross-validation over patients and seeds; ``fit_predict_bags`` trains one model on the
    training bags (holding out its own validation bags for early stopping, drawn with ``seed``) and predicts
    the test bags.
    """

    name: str
    summary: str
    kind = "bags"

    def settings(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("name", "summary")}

    @abstractmethod
    def fit_predict_bags(
        self, train_bags: list[np.ndarray], train_labels: np.ndarray, test_bags: list[np.ndarray], n_classes: int, seed: int
    ) -> BagPrediction:
        """Train on (train_bags, train_labels), predict test_bags; labels index the label map."""
