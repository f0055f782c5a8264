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

    def settings(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("name", "summary")}

    @abstractmethod
    def fit_predict(self, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int) -> Prediction:
        """Train on (x_train, y_train), predict x_test; labels and probability columns index the label map."""
