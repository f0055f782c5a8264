"""Linear probes: multinomial logistic regression (scikit-learn, L-BFGS), as the DinoBloom authors ran it.

``linear``: no feature scaling, C = feature_dim x n_classes / 100, max_iter 1000, no class weights (the
paper). This probe is not scale-invariant: features with a large norm (e.g. a random-init ViT) can make it
collapse onto one class, so ``linear-std`` standardises features on the training fold first.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from bench.core.errors import DataError
from protocols.base import CellProtocol, Prediction


@dataclass(frozen=True)
class LinearProbe(CellProtocol):
    max_iter: int = 1000
    c_rule: str = "dim * n_classes / 100"
    standardize: bool = False

    def fit_predict(self, x_train, y_train, x_test, n_classes) -> Prediction:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        x_train = np.asarray(x_train, dtype=np.float32)
        x_test = np.asarray(x_test, dtype=np.float32)
        if self.standardize:
            scaler = StandardScaler().fit(x_train)
            x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
        present = np.unique(y_train)
        if len(present) < 2:
            raise DataError(f"the training split holds only class {present.tolist()}; a linear probe needs two")
        c = x_train.shape[1] * n_classes / 100.0
        notes = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model = LogisticRegression(C=c, max_iter=self.max_iter).fit(x_train, y_train)
        for warning in caught:
            if issubclass(warning.category, ConvergenceWarning):
                notes.append(f"L-BFGS did not converge in {self.max_iter} iterations (C={c:g}): the probe stopped "
                             "short of its optimum, so this fold's score is that of an unfinished fit and may be "
                             "lower than the converged probe's; `linear-std` (standardised features) converges "
                             "faster")
        proba = np.zeros((len(x_test), n_classes))
        proba[:, model.classes_] = model.predict_proba(x_test)
        return Prediction(labels=model.predict(x_test).astype(np.int64), proba=proba, notes=sorted(set(notes)))


LINEAR = LinearProbe("linear")
LINEAR_STD = LinearProbe("linear-std", standardize=True)
