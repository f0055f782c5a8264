"""The protocol contract (in the spirit of scikit-learn's small estimator API).

A protocol is stateless configuration (a frozen dataclass: every field is recorded in the result through
``settings()``) that evaluates features on a design of its kind (:mod:`bench.core.design`):

- :class:`CellProtocol` (kind "cells") implements ``fit_predict(x_train, y_train, x_test, n_classes)``;
  the harness runs it over the design's splits (:func:`protocols.evaluate.evaluate`).
- :class:`BagProtocol` (kind "bags") implements ``fit_predict_bags(train_bags, train_labels, test_bags,
  n_classes, seed)``; the harness runs it over the patient-level splits (:func:`protocols.evaluate.evaluate_bags`).

Labels are integers 0..n_classes-1 from the label map (the union over train and test, never per split), so
probability columns line up with the label map even when a class is absent from a training fold.
"""

from __future__ import annotations

import contextlib
import contextvars
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import ClassVar, Iterator

import numpy as np
import pandas as pd

# Recorded with every result (``inputs``): bump it when a change to the shared evaluation loop (protocols.evaluate,
# bench.core.metrics) changes results, so that `bench run --overwrite only-missing` recomputes every result of the
# older code. A change to one protocol bumps that protocol's own ``version`` instead (``Protocol.version``).
# 2: ABMIL standardises features on the training bags; results record what they were computed from.
# 3: the linear probe fits in float64 with C = dim x the classes present in the training labels (the authors').
# 4: every result with class probabilities records its expected calibration error (ECE) beside the other metrics.
EVALUATION_CODE_VERSION = 4


# Where protocols may compute ("cpu", "cuda", "cuda:1"): set by the harness around an evaluation. Not a protocol
# setting, because it must not change a prediction: a protocol uses an accelerator only where its results are
# identical to the CPU path (kNN), and stays on the CPU otherwise.
_DEVICE = contextvars.ContextVar("hemabench_evaluation_device", default="cpu")


@contextlib.contextmanager
def evaluation_device(device: str) -> Iterator[None]:
    token = _DEVICE.set(str(device))
    try:
        yield
    finally:
        _DEVICE.reset(token)


def current_evaluation_device() -> str:
    return _DEVICE.get()


# Who hears of an evaluation's progress (the harness's progress bar): report(done, total, what, notes), called
# before the first split and after each, with the notes (e.g. no convergence) of the split just done.
_PROGRESS = contextvars.ContextVar("hemabench_evaluation_progress", default=None)


@contextlib.contextmanager
def evaluation_progress(report) -> Iterator[None]:
    token = _PROGRESS.set(report)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def report_split(done: int, total: int, what: str, notes: list[str] | tuple = ()) -> None:
    report = _PROGRESS.get()
    if report is not None:
        report(done, total, what, list(notes))


@dataclass
class Prediction:
    labels: np.ndarray  # (n_test,) int
    proba: np.ndarray | None = None  # (n_test, n_classes), rows sum to 1
    notes: list[str] = field(default_factory=list)


@dataclass
class BagPrediction:
    labels: np.ndarray  # (n_test_bags,) int
    proba: np.ndarray | None = None  # (n_test_bags, n_classes)
    attention: list[np.ndarray] | None = None  # per test bag: one weight per cell (n_cells,) or (n_cells, n_classes)
    notes: list[str] = field(default_factory=list)


@dataclass
class Evaluation:
    """A protocol's result on one design: metrics per split, mean and population std over splits."""

    per_fold: list[dict]
    mean: dict
    std: dict
    # cells: row, fold, label, prediction (+ proba_<class>); bags: bag, seed, fold, ...; None for a protocol that
    # predicts no label (batch effect: its scores are of the embedding, per cell in ``cells``)
    predictions: pd.DataFrame | None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    attention: pd.DataFrame | None = None  # bags: row (cell), bag, seed, fold, attention (or attention_<class>)
    cells: pd.DataFrame | None = None  # per-cell scores of a protocol without predictions: row, ... (batch effect)
    # a few-shot protocol's label-efficiency curve (bench.core.curves.episode_curve), derived from ``per_fold``
    curve: dict | None = None


@dataclass(frozen=True)
class Protocol(ABC):
    """What every protocol has: a name, a summary, a kind, its settings, and ``evaluate``."""

    # Empty in a built-in's module: the registry names it by the name it is registered under (protocols/__init__.py),
    # the one place a built-in's name is written. A protocol in a plugin file names itself.
    name: str = ""
    summary: str = ""
    kind = "abstract"  # class attribute, not a field: the kind of design it evaluates (cells, bags or domains)
    # The kinds of design (and of task) it takes: its own, and for a cell protocol a domain shift's too
    kinds: ClassVar[tuple[str, ...]] = ()
    # Class attribute, not a field (not a setting): bump it when a change to this protocol's code changes its
    # results, so that only its own stored results are recomputed (``code_identity``).
    version: ClassVar[int] = 1
    # The metric a result of this protocol is ranked by, where it is the protocol's own (robustness-index); None:
    # the task's main metric (weighted F1 for cells, the integration score for data sets side by side)
    main_metric: ClassVar[str | None] = None

    def settings(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("name", "summary")}

    def code_identity(self) -> dict:
        """What a result records of the code that computed it, beside the settings: ``version`` where it is not
        1, and for a protocol whose class lives outside hemabench's ``protocols`` package (a plugin file or an
        entry point) the sha256 of that class's source file, so that editing it makes its stored results stale.
        Empty for a built-in at version 1 (results written before this existed stay current)."""
        out: dict = {} if self.version == 1 else {"version": int(self.version)}
        if type(self).__module__.split(".")[0] != "protocols":
            from bench.core.files import class_source

            out["code_file"], out["code_sha256"] = class_source(type(self))
        return out

    @abstractmethod
    def evaluate(self, features: np.ndarray, design) -> Evaluation:
        """Evaluate ``features`` (one row per sample) on ``design`` (a design of this protocol's kind)."""


@dataclass(frozen=True)
class CellProtocol(Protocol):
    """A protocol on single cells: trained on a split's training rows, tested on its test rows. A domain shift's
    design (``A=>B``, :class:`~bench.core.design.DomainDesign`) is evaluated on its training and test domains."""

    kind = "cells"
    kinds: ClassVar[tuple[str, ...]] = ("cells", "domains")

    @abstractmethod
    def fit_predict(self, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int) -> Prediction:
        """Train on (x_train, y_train), predict x_test; labels and probability columns index the label map."""

    def evaluate(self, features, design) -> Evaluation:
        from protocols.evaluate import evaluate

        _check_kind(self, design)
        if design.kind == "domains":
            design = design.cells()
        return evaluate(self, features, design.labels, design.splits, design.classes, design.predictable)


@dataclass(frozen=True)
class BagProtocol(Protocol):
    """A multiple-instance protocol: trains on bags (one per patient) of cell features.

    The harness runs the cross-validation over patients and seeds; ``fit_predict_bags`` trains one model on the
    training bags (holding out its own validation bags for early stopping, drawn with ``seed``) and predicts
    the test bags.
    """

    kind = "bags"
    kinds: ClassVar[tuple[str, ...]] = ("bags",)

    @abstractmethod
    def fit_predict_bags(
        self, train_bags: list[np.ndarray], train_labels: np.ndarray, test_bags: list[np.ndarray], n_classes: int, seed: int
    ) -> BagPrediction:
        """Train on (train_bags, train_labels), predict test_bags; labels index the label map."""

    def evaluate(self, features, design) -> Evaluation:
        from protocols.evaluate import evaluate_bags

        _check_kind(self, design)
        return evaluate_bags(self, features, design)


def takes(protocol: Protocol, kind: str) -> bool:
    """Whether ``protocol`` evaluates a design (a task) of ``kind``."""
    return kind in (protocol.kinds or (protocol.kind,))


def _check_kind(protocol: Protocol, design) -> None:
    if not takes(protocol, getattr(design, "kind", "?")):
        from bench.core.errors import UsageError

        raise UsageError(
            f"protocol {protocol.name!r} evaluates {protocol.kind}, but the task gives {getattr(design, 'kind', '?')}; "
            "choose a protocol of the task's kind (`bench data info TASK` lists them)"
        )
