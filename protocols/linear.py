"""Linear probes: multinomial logistic regression (scikit-learn, L-BFGS), as the DinoBloom authors ran it.

``linear``: no feature scaling, C = feature_dim x (number of classes in the training labels) / 100 (the
authors' ``np.unique(train_labels)``, not the size of the label map), max_iter 1000, no class weights, fitted
in float64 (their features reach scikit-learn as float64 arrays; a float32 fit changes predictions wherever
L-BFGS stops unconverged). This probe is not scale-invariant: features with a large norm (e.g. a random-init
ViT) can make it collapse onto one class, so ``linear-std`` standardises features on the training fold first.

On a CUDA evaluation device (``protocols.base.evaluation_device``) the same scikit-learn estimator runs through
its array-API dispatch on float64 torch tensors there: the loss and gradient (the BLAS work) run on the GPU,
scipy's L-BFGS-B on the CPU with scikit-learn's own options. A converged fit is the same optimum as the CPU
path's, to the solver's tolerance, so the predictions are the same (a cell whose two best classes' probabilities
differ by less than ~1e-6 could go either way). An *unconverged* fit is not: where L-BFGS stops at max_iter
depends on every rounding (1.5 % of predictions differed between numpy and torch on one CPU in a measured
pure-noise case), so such a fold is refitted on the CPU and the device's iterate discarded.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from bench.core.errors import DataError
from protocols.base import CellProtocol, Prediction, current_evaluation_device


def paper_c(dim: int, y_train: np.ndarray) -> float:
    """The authors' inverse regularisation: feature dim x the number of classes in the training labels / 100."""
    return dim * len(np.unique(y_train)) / 100.0


def _fit(x_train, y_train, c: float, max_iter: int):
    """A fitted LogisticRegression (on whatever array namespace the inputs are in) and whether it converged."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = LogisticRegression(C=c, max_iter=max_iter).fit(x_train, y_train)
    return model, not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def scipy_array_api_enabled() -> bool:
    """Whether scipy was imported with its array-API support on, which scikit-learn's dispatch needs
    (``SCIPY_ARRAY_API=1`` before scipy's first import: the ``bench`` command sets it,
    :func:`bench.core.settings.use_scipy_array_api`)."""
    try:
        from scipy._lib._array_api import SCIPY_ARRAY_API  # private, but the only record of how scipy started
    except ImportError:
        return False
    return bool(SCIPY_ARRAY_API) and os.environ.get("SCIPY_ARRAY_API") == "1"


def fit_predict_on_device(x_train, y_train, x_test, c: float, max_iter: int, device: str):
    """(labels, proba over the training classes, converged) from scikit-learn's array-API path on ``device``."""
    import sklearn
    import torch

    with sklearn.config_context(array_api_dispatch=True):
        xt = torch.as_tensor(x_train, dtype=torch.float64, device=device)
        yt = torch.as_tensor(y_train, dtype=torch.int64, device=device)
        model, converged = _fit(xt, yt, c, max_iter)
        xs = torch.as_tensor(x_test, dtype=torch.float64, device=device)
        proba = model.predict_proba(xs).cpu().numpy()
        labels = model.predict(xs).cpu().numpy()
    return labels, proba, converged


@dataclass(frozen=True)
class LinearProbe(CellProtocol):
    max_iter: int = 1000
    c_rule: str = "dim * n_train_classes / 100"
    standardize: bool = False
    fit_dtype: str = "float64"

    def fit_predict(self, x_train, y_train, x_test, n_classes) -> Prediction:
        from sklearn.preprocessing import StandardScaler

        x_train = np.asarray(x_train, dtype=np.float64)
        x_test = np.asarray(x_test, dtype=np.float64)
        y_train = np.asarray(y_train)
        if self.standardize:
            scaler = StandardScaler().fit(x_train)
            x_train, x_test = np.asarray(scaler.transform(x_train)), np.asarray(scaler.transform(x_test))
        present = np.unique(y_train)
        if len(present) < 2:
            raise DataError(f"the training split holds only class {present.tolist()}; a linear probe needs two")
        c = paper_c(x_train.shape[1], y_train)
        notes = []
        fitted = self._on_device(x_train, y_train, x_test, c, notes)
        if fitted is None:
            model, converged = _fit(x_train, y_train, c, self.max_iter)
            fitted = model.predict(x_test), model.predict_proba(x_test), converged
        labels, class_proba, converged = fitted
        if not converged:
            notes.append(f"L-BFGS did not converge in {self.max_iter} iterations (C={c:g}): the probe stopped "
                         "short of its optimum, so this fold's score is that of an unfinished fit and may be "
                         "lower than the converged probe's; `linear-std` (standardised features) converges "
                         "faster")
        proba = np.zeros((len(x_test), n_classes))
        proba[:, present] = class_proba
        return Prediction(labels=np.asarray(labels).astype(np.int64), proba=proba, notes=sorted(set(notes)))

    def _on_device(self, x_train, y_train, x_test, c: float, notes: list):
        """The device fit when the evaluation device is CUDA and it converged; None for the CPU path."""
        device = current_evaluation_device()
        if not device.startswith("cuda"):
            return None
        if not scipy_array_api_enabled():
            notes.append(f"the linear probe ran on the CPU, not {device}: scikit-learn's GPU path needs "
                         "SCIPY_ARRAY_API=1 set before scipy is first imported (export it, or call "
                         "bench.core.settings.use_scipy_array_api() before your script's other imports)")
            return None
        import torch

        try:
            labels, proba, converged = fit_predict_on_device(x_train, y_train, x_test, c, self.max_iter, device)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            notes.append(f"the linear probe ran on the CPU: {device} ran out of memory (the predictions are the same)")
            return None
        if not converged:
            notes.append(f"the linear probe did not converge on {device}, so it was refitted on the CPU: an "
                         "unconverged L-BFGS iterate depends on rounding, and the CPU's is the reference")
            return None
        return labels, proba, True


LINEAR = LinearProbe()
LINEAR_STD = LinearProbe(standardize=True)
