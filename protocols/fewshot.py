"""Few-shot: how well a frozen embedding classifies cells from n labelled cells per class, n = 1, 2, 4, ... 128.

The paper's "few-shot" claim, measured the way the pathology foundation-model papers do (UNI, Chen et al. 2024;
SimpleShot, Wang et al. 2019):

- ``fewshot-simpleshot``: SimpleShot's CL2N nearest centroid. The support set's mean is subtracted from every
  feature (support and test), each is L2-normalised, each class's prototype is the mean of its normalised support
  features, and a test cell takes the class of the nearest prototype (Euclidean): what scikit-learn's
  ``StandardScaler(with_std=False)`` -> ``Normalizer()`` -> ``NearestCentroid()`` does (:func:`simpleshot` says
  why it is written out).
- ``fewshot-linear``: the paper's linear probe (:mod:`protocols.linear`: multinomial logistic regression,
  L-BFGS, C = dim x classes in the support / 100) fitted on the support set.

Episodes: ``episodes`` seeded draws (at least 100 by default). Episode e uses the design's split e mod F (F
splits: a k-fold task's folds, a fixed split's one), and for each shot count n draws, from that split's
training rows, n cells of every class without replacement (``numpy.random.default_rng([seed, e, n])``, the
classes in label-map order); a class with fewer than n training cells gives all it has, which the result says,
and a shot count larger than every class's training cells in every split is not evaluated (it would repeat the
largest one), which the result says too.
The episode is scored on all of that split's test rows, so every model sees the same supports and test cells.

Metrics per episode: weighted F1, accuracy, balanced accuracy and (linear) the ECE, not the macro AUROC: 800
one-vs-rest AUROCs would cost more than the fits (11 ms against 6 ms each on 30 cells).

The record (:mod:`bench.core.curves`): one ``per_fold`` entry per episode, holding its metrics at every n under
``shots`` and, as its own metrics, their mean over the shot counts; the record's mean ± std are over episodes,
and its ``curve`` gives every n's mean with a 95 % t interval over episodes. No per-cell predictions are stored
(they would be episodes x shot counts x the test set).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from bench.core.curves import episode_curve
from bench.core.errors import DataError, UsageError
from bench.core.metrics import ECE, MACRO_AUROC, METRICS, counted_label_metrics, expected_calibration_error
from protocols.base import CellProtocol, Evaluation, Prediction, _check_kind, report_split

SHOTS = (1, 2, 4, 8, 16, 32, 64, 128)
CLASSIFIERS = ("simpleshot", "linear")


def simpleshot(x_support: np.ndarray, y_support: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """SimpleShot (CL2N): the predicted labels of ``x_test`` by the nearest prototype of the centred,
    L2-normalised support features (ties: the lowest label).

    Written in numpy rather than as scikit-learn's ``StandardScaler(with_std=False) -> Normalizer() ->
    NearestCentroid()`` pipeline, which gives the same labels (tests/test_fewshot.py checks it) but costs ~50 ms
    a fit in input validation and its distance dispatcher: 800 fits per task and model. The test set's
    distances are computed in chunks, so a large test set never needs (n_test x dim) twice over."""
    support = np.asarray(x_support, dtype=np.float64)
    centre = support.mean(axis=0)
    classes = np.unique(y_support)
    normalised = _unit(support - centre)
    prototypes = np.stack([normalised[y_support == c].mean(axis=0) for c in classes])
    out = np.empty(len(x_test), dtype=np.int64)
    for start in range(0, len(x_test), 8192):
        query = _unit(np.asarray(x_test[start:start + 8192], dtype=np.float64) - centre)
        # squared Euclidean distance up to the query's own norm (1, the same for every prototype)
        distance = (prototypes ** 2).sum(axis=1)[None, :] - 2 * query @ prototypes.T
        out[start:start + len(query)] = classes[np.argmin(distance, axis=1)]
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero, as scikit-learn's Normalizer leaves it)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def episode_metrics(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None) -> dict:
    """An episode's metrics: the label metrics (counted, :func:`bench.core.metrics.counted_label_metrics`) and, with
    probabilities, the ECE; no macro AUROC (800 one-vs-rest AUROCs would cost more than the fits)."""
    out = {MACRO_AUROC: None, ECE: None if proba is None else expected_calibration_error(y_true, y_pred, proba)}
    return {**counted_label_metrics(y_true, y_pred), **out}


def draw_support(train: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """(rows, short classes): ``n`` rows of every class among the ``train`` rows, drawn without replacement, in
    label-map order; ``short``: class -> the fewer rows it had (all taken)."""
    rows, short = [], {}
    train_labels = labels[train]
    for c in np.unique(train_labels):
        pool = train[train_labels == c]
        if len(pool) <= n:
            rows.append(pool)
            if len(pool) < n:
                short[int(c)] = len(pool)
        else:
            rows.append(np.sort(rng.choice(pool, n, replace=False)))
    return np.concatenate(rows), short


@dataclass(frozen=True)
class FewShot(CellProtocol):
    """Settings (all recorded): the classifier (simpleshot or linear), the shot counts, episodes per shot
    count and the seed of the draws."""

    classifier: str = "simpleshot"
    shots: tuple[int, ...] = SHOTS
    episodes: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.classifier not in CLASSIFIERS:
            raise UsageError(f"few-shot classifier must be one of {', '.join(CLASSIFIERS)}, got {self.classifier!r}")
        if not self.shots or any(int(n) < 1 for n in self.shots):
            raise UsageError(f"few-shot shot counts must be whole numbers of at least 1, got {list(self.shots)}")
        if self.episodes < 1:
            raise UsageError(f"few-shot episodes must be at least 1, got {self.episodes}")

    def fit_predict(self, x_train, y_train, x_test, n_classes) -> Prediction:
        """The classifier on the given training cells (an episode's support set)."""
        if self.classifier == "linear":
            from protocols.linear import LINEAR

            return LINEAR.fit_predict(x_train, y_train, x_test, n_classes)
        return Prediction(labels=simpleshot(x_train, y_train, x_test))

    def evaluate(self, features, design) -> Evaluation:
        from protocols.evaluate import aggregate, restrict

        _check_kind(self, design)
        if design.kind == "domains":
            design = design.cells()
        t0 = time.perf_counter()
        labels, classes, splits = np.asarray(design.labels), list(design.classes), design.splits
        if not splits:
            raise DataError("few-shot needs a split with training and test rows; the design holds none")
        largest = max(int(np.bincount(labels[np.asarray(train)]).max()) for _, train, _ in splits if len(train))
        shots = [int(n) for n in self.shots if int(n) <= largest]
        if not shots:
            raise DataError(f"few-shot: every shot count {list(self.shots)} exceeds the training cells of every "
                            f"class (at most {largest}); use a protocol with smaller shot counts or a larger data set")
        per_fold, notes, short = [], Counter(), {}
        if len(shots) < len(self.shots):
            notes[f"shot counts {[int(n) for n in self.shots if int(n) > largest]} not evaluated: no class has that "
                  f"many training cells in any split (at most {largest})"] = 0
        report_split(0, self.episodes, "episode 1")
        for e in range(self.episodes):
            fold, train, test = splits[e % len(splits)]
            if len(train) == 0 or len(test) == 0:
                raise DataError(f"split {fold!r} has {len(train)} training and {len(test)} test samples; both must "
                                "be > 0")
            by_shots = {}
            for n in shots:
                support, missing = draw_support(np.asarray(train), labels, int(n), np.random.default_rng([self.seed, e,
                                                                                                          int(n)]))
                for c, have in missing.items():
                    short[(int(n), fold, classes[c])] = have
                prediction = self.fit_predict(features[support], labels[support], features[test], len(classes))
                if design.predictable is not None:
                    prediction = restrict(prediction, design.predictable, self.name)
                notes.update(prediction.notes)
                by_shots[str(int(n))] = {"n_train": int(len(support)),
                                         **episode_metrics(labels[test], prediction.labels, prediction.proba)}
            episode = {"fold": f"episode {e}", "episode": e, "split": str(fold), "n_test": int(len(test))}
            for metric in METRICS:
                values = [s[metric] for s in by_shots.values()]
                episode[metric] = None if None in values else float(np.mean(values))
            per_fold.append({**episode, "shots": by_shots})
            report_split(e + 1, self.episodes, f"episode {e + 1}")
        mean, std = aggregate(per_fold)
        fits = self.episodes * len(shots)
        warnings = [note if not count else f"{note} (in {count} of {fits} fits)" for note, count in sorted(notes.items())]
        warnings.extend(_short_notes(short, len(splits)))
        return Evaluation(per_fold, mean, std, None, warnings, time.perf_counter() - t0, curve=episode_curve(per_fold))


def _short_notes(short: dict, n_splits: int) -> list[str]:
    """One line per shot count: the classes with fewer training cells than n in some split (all were taken),
    each with the fewest it had and in how many splits."""
    by_n: dict[int, dict[str, list[int]]] = {}
    for (n, _fold, name), have in sorted(short.items()):
        by_n.setdefault(n, {}).setdefault(name, []).append(have)
    return [f"{n}-shot: classes with fewer than {n} training cells give all they have: "
            + ", ".join(f"{name} ({min(haves)}{'' if len(haves) == 1 else ' at fewest'}, in {len(haves)} of "
                        f"{n_splits} split(s))" for name, haves in names.items())
            for n, names in by_n.items()]


FEWSHOT_SIMPLESHOT = FewShot(classifier="simpleshot")
FEWSHOT_LINEAR = FewShot(classifier="linear")
