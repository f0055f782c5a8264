"""ABMIL protocols (protocols.mil): planted signal (at any feature scale, and in real cells), shuffled labels,
attention, best state, standardisation, determinism."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from bench.core.design import BagDesign
from protocols import get_protocol
from protocols.mil import standardization, validation_split
from tasks.splits import patient_splits
from tests.conftest import PBC as SHARED_PBC
from tests.conftest import real_data_absent

# built-ins through the registry, which names them (their module objects carry no name)
ABMIL_PAPER, ABMIL_GATED = get_protocol("abmil-paper"), get_protocol("abmil-gated")
CLASSES = ["A", "B", "C", "D"]
# Fewer epochs and a larger learning rate than the paper's (150, 1e-3) keep these tests fast; early stopping,
# the schedule and everything else are the real ones.
FAST = {"epochs": 50, "lr": 5e-3}
PAPER = dataclasses.replace(ABMIL_PAPER, **FAST)
GATED = dataclasses.replace(ABMIL_GATED, **FAST)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def planted_bags(n_classes=4, per_class=10, dim=16, seed=0, shift=4.0):
    """Bags of 30-60 N(0,1) cells; in a bag of class c, 10-20 % "marker" cells are shifted by ``shift`` along
    class c's direction (orthonormal directions). Returns (features, bag_rows, labels, marker mask per row)."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:, :n_classes].T
    features, rows, labels, markers, start = [], [], [], [], 0
    for c in range(n_classes):
        for _ in range(per_class):
            n = int(rng.integers(30, 61))
            x = rng.normal(size=(n, dim))
            marker = np.zeros(n, dtype=bool)
            marker[rng.choice(n, max(1, round(rng.uniform(0.1, 0.2) * n)), replace=False)] = True
            x[marker] += shift * directions[c]
            features.append(x), markers.append(marker), rows.append(np.arange(start, start + n)), labels.append(c)
            start += n
    return np.concatenate(features).astype(np.float32), rows, np.array(labels), np.concatenate(markers)


def marker_filler_bags(n_classes=5, per_class=8, n_markers=10, n_filler=20, dim=16, scale=1.0, seed=0):
    """Issue 11's layout on synthetic cells: cell types are prototypes + N(0, 0.5^2) noise; a bag of class c holds
    ``n_markers`` fresh cells of type c and the same ``n_filler`` cells of a filler type (shared by every bag).
    Features are multiplied by ``scale``. Returns (features, bag_rows, labels)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(n_classes + 1, dim))
    filler = prototypes[n_classes] + 0.5 * rng.normal(size=(n_filler, dim))
    features, rows, labels, start = [], [], [], 0
    for c in range(n_classes):
        for _ in range(per_class):
            features.append(np.concatenate([prototypes[c] + 0.5 * rng.normal(size=(n_markers, dim)), filler]))
            rows.append(np.arange(start, start + n_markers + n_filler)), labels.append(c)
            start += n_markers + n_filler
    return (scale * np.concatenate(features)).astype(np.float32), rows, np.array(labels)


def evaluate_bags(protocol, features, rows, labels, ids, seeds, classes=CLASSES):
    """Patient-level 5-fold CV per seed, as a bag task's data set designs it."""
    labels = np.asarray(labels)
    return protocol.evaluate(features, BagDesign(classes, ids, labels, rows, patient_splits(ids, labels, 5, seeds)))


@pytest.fixture(scope="module")
def planted():
    features, rows, labels, markers = planted_bags()
    ids = [f"patient{i:03d}" for i in range(len(labels))]
    return features, rows, labels, markers, ids


@pytest.fixture(scope="module")
def planted_runs(planted):
    features, rows, labels, _, ids = planted
    torch.set_num_threads(1)
    return {p.name: evaluate_bags(p, features, rows, labels, ids, seeds=(0,)) for p in (PAPER, GATED)}


def bags_of(features, rows):
    return [features[r] for r in rows]


@pytest.mark.parametrize("name", ["abmil-paper", "abmil-gated"])
def test_planted_signal_is_learned(planted_runs, name):
    evaluation = planted_runs[name]
    assert len(evaluation.per_fold) == 5  # 5 folds x 1 seed (two seeds: test_shuffled_labels_give_chance)
    # measured over five data sets x two seeds: paper 0.99-1.00, gated 0.975-1.00 (standardize=False: 0.99-1.0,
    # 0.96-1.0; these features are N(0, 1) already)
    assert evaluation.mean["balanced_accuracy"] >= 0.9, evaluation.per_fold
    assert not evaluation.warnings


@pytest.mark.parametrize("scale", [pytest.param(1e-3, marks=pytest.mark.slow), 1e3])  # the tiny scale: -m slow
# both heads share the standardisation that makes the scale irrelevant; the paper's head runs under -m slow (suite time)
@pytest.mark.parametrize("protocol", [pytest.param(PAPER, marks=pytest.mark.slow), GATED], ids=lambda p: p.name)
def test_marker_and_filler_signal_is_learned_at_any_feature_scale(protocol, scale):
    """Issue 11: 10 marker cells of the bag's type + 20 filler cells shared by all bags, 5 classes, features of a
    tiny or a large scale (colour histograms are ~1/32 per value). Without standardisation (the authors' raw
    features) both heads stay near chance at both scales (measured 0.20-0.32: at 1e-3 the logits barely move
    from their initial values, at 1e3 SGD overshoots); with it, 1.00 at both scales."""
    features, rows, labels = marker_filler_bags(scale=scale)
    ids = [f"patient{i:03d}" for i in range(len(labels))]
    evaluation = evaluate_bags(protocol, features, rows, labels, ids, seeds=(0,), classes=list("ABCDE"))
    assert evaluation.mean["balanced_accuracy"] >= 0.9, evaluation.per_fold  # chance 0.2


@pytest.mark.parametrize("protocol", [ABMIL_PAPER, ABMIL_GATED], ids=lambda p: p.name)
def test_standardized_fit_does_not_depend_on_feature_scale(protocol):
    features, rows, labels = marker_filler_bags(seed=1)
    train, test = np.arange(0, 40, 2), np.arange(1, 40, 2)
    quick = dataclasses.replace(protocol, epochs=10, lr=5e-3)
    outputs = []
    for scale in (1e-3, 1.0, 1e3):
        bags = bags_of((features * np.float32(scale)), rows)
        outputs.append(quick.fit_predict_bags([bags[i] for i in train], labels[train], [bags[i] for i in test], 5, 0))
    for other in outputs[1:]:
        np.testing.assert_allclose(other.proba, outputs[0].proba, atol=1e-4)
        assert np.array_equal(other.labels, outputs[0].labels)
    # it learned something (measured: mean top probability 0.73 paper, 0.87 gated; all 20 test bags right)
    assert outputs[0].proba.max(axis=1).mean() > 0.5 and (outputs[0].labels == labels[test]).mean() >= 0.9


def test_standardization_statistics():
    rng = np.random.default_rng(0)
    bags = [rng.normal(3.0, 5.0, size=(n, 4)) for n in (10, 20, 30)]
    for bag in bags:
        bag[:, 2] = 7.0  # constant over the cells used: scale 0 (the feature is ignored, as it carries nothing)
    bags[2][:, 3] = 1e6  # outside the index: must not count
    shift, scale = standardization(bags, np.array([0, 1]), 4)
    cells = np.concatenate(bags[:2])
    np.testing.assert_allclose(shift, cells.mean(axis=0))
    np.testing.assert_allclose(scale[[0, 1, 3]], 1 / cells.std(axis=0)[[0, 1, 3]])
    assert scale[2] == 0.0
    standardized = (cells - shift) * scale
    np.testing.assert_allclose(standardized.std(axis=0), [1, 1, 0, 1])
    np.testing.assert_allclose(standardized.mean(axis=0), 0, atol=1e-12)
    shift, scale = standardization(bags, np.array([], dtype=np.int64), 4)  # no bags: the identity
    assert (shift == 0).all() and (scale == 1).all()


# the paper's head in the default run; the gated one (the slower here, 11 s) under -m slow
@pytest.mark.parametrize("protocol", [PAPER, pytest.param(GATED, marks=pytest.mark.slow)], ids=lambda p: p.name)
def test_shuffled_labels_give_chance(planted, protocol):
    features, rows, labels, _, ids = planted
    shuffled = np.random.default_rng(100).permutation(labels)
    evaluation = evaluate_bags(protocol, features, rows, shuffled, ids, seeds=(0, 1))
    # chance is 0.25; measured 0.19-0.28 over five data sets x two seeds (standardize=False: 0.15-0.31)
    assert evaluation.mean["balanced_accuracy"] < 0.5, evaluation.per_fold


@pytest.mark.parametrize("name", ["abmil-paper", "abmil-gated"])
def test_attention_concentrates_on_marker_cells(planted, planted_runs, name):
    _, _, labels, markers, _ = planted
    cells = planted_runs[name].attention
    assert cells is not None and len(cells) == len(markers)  # every cell of every test bag, once (one seed)
    bag_label = {f"patient{i:03d}": c for i, c in enumerate(labels)}
    if name == "abmil-paper":
        columns = [f"attention_{c}" for c in CLASSES]
        assert set(columns) <= set(cells.columns)
        weights = cells[columns].to_numpy()[np.arange(len(cells)), cells["bag"].map(bag_label).to_numpy()]
    else:
        weights = cells["attention"].to_numpy()
    on_marker = markers[cells["row"].to_numpy()]
    # the true class's column puts much more weight on a marker cell than on a background cell
    assert weights[on_marker].mean() > 3 * weights[~on_marker].mean()
    # and most of each bag's attention mass lies on its markers (10-20 % of its cells)
    mass = cells.assign(w=weights, m=on_marker).query("m").groupby(["bag", "seed"])["w"].sum()
    assert mass.mean() > 0.5


def test_best_state_is_restored_not_the_last():
    """A weak signal and 30 % wrong labels, a large learning rate, no early stop: the validation loss falls for a
    few epochs (the signal), then rises (the noise is memorised). The restored weights must be a copy of those
    of the minimum, neither the last ones (the authors' defect) nor the first ones."""
    features, rows, labels, _ = planted_bags(seed=0, shift=2.0)
    rng = np.random.default_rng(8)
    noisy = labels.copy()
    flip = rng.choice(len(labels), 12, replace=False)
    noisy[flip] = (noisy[flip] + rng.integers(1, 4, len(flip))) % 4
    protocol = dataclasses.replace(ABMIL_PAPER, epochs=40, lr=1e-2, patience=40)  # patience >= epochs: runs all
    snapshots = {}

    def record(epoch, model, val_loss):
        snapshots[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    bags = bags_of(features, rows)
    fitted = protocol.fit(bags, noisy, 4, seed=0, on_epoch=record)
    losses = np.array(fitted.val_losses)
    assert fitted.epochs_run == 40 and len(losses) == 40 and len(snapshots) == 40
    best = int(np.argmin(losses))
    assert fitted.best_epoch == best
    # preconditions (measured: minimum 0.88 at epoch 6, last 2.24; 0.89 and 2.59 with standardize=False): an
    # interior minimum, a clearly worse end
    assert 0 < best < 39 and losses[-1] > losses[best] + 0.5 and losses[0] > losses[best]
    final = fitted.model.state_dict()
    for key, value in final.items():
        assert torch.equal(value, snapshots[best][key]), key
    for other in (0, 39):
        assert any(not torch.equal(value, snapshots[other][key]) for key, value in final.items())

    # and fit_predict_bags predicts with exactly that state
    test_bags = bags[:5]
    prediction = protocol.fit_predict_bags(bags, noisy, test_bags, 4, seed=0)
    fitted.model.eval()
    with torch.no_grad():
        logits = [fitted.model(torch.from_numpy(b))[0].double() for b in test_bags]
        expected = torch.softmax(torch.stack(logits), dim=1).numpy()
    np.testing.assert_allclose(prediction.proba, expected, rtol=0, atol=1e-12)


def test_early_stopping_stops_after_patience(planted):
    features, rows, labels, _, _ = planted
    shuffled = np.random.default_rng(7).permutation(labels)
    protocol = dataclasses.replace(ABMIL_GATED, epochs=200, lr=2e-2, patience=5)
    fitted = protocol.fit(bags_of(features, rows), shuffled, 4, seed=0)
    assert fitted.epochs_run < 200
    assert fitted.epochs_run == fitted.best_epoch + 5 + 1
    assert min(fitted.val_losses[fitted.best_epoch + 1 :]) >= fitted.val_losses[fitted.best_epoch]


@pytest.mark.parametrize("standardize", [True, False])
def test_validation_bags_are_never_trained_on(planted, standardize):
    """The head sees exactly the training bags (standardised with the statistics of their cells only)."""
    features, rows, labels, _, _ = planted
    bags = [np.ascontiguousarray(features[r]) for r in rows]  # float32, contiguous
    seen = []

    class Spy(type(PAPER)):
        def build(self, dim, n_classes):
            head = super().build(dim, n_classes)
            forward = head.forward

            def spying(x):
                if head.training:
                    seen.append(x.detach().clone())
                return forward(x)

            head.forward = spying
            return head

    fields = {f.name: getattr(PAPER, f.name) for f in dataclasses.fields(PAPER)}
    spy = Spy(**fields | {"epochs": 3, "standardize": standardize})
    fitted = spy.fit(bags, labels, 4, seed=3)
    assert len(fitted.val_index) == 8  # 20 % of 10 bags per class, 4 classes
    inputs = [torch.from_numpy(b) for b in bags]
    if standardize:  # the model keeps the statistics of the training cells (not of the validation bags)
        cells = np.concatenate([bags[i] for i in fitted.train_index]).astype(np.float64)
        np.testing.assert_allclose(fitted.model.shift.numpy(), cells.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(fitted.model.scale.numpy(), 1 / cells.std(axis=0), rtol=1e-6)
        inputs = [(x - fitted.model.shift) * fitted.model.scale for x in inputs]
    else:
        assert not hasattr(fitted.model, "shift")  # the authors' raw features

    def which(x):
        return [i for i, y in enumerate(inputs) if y.shape == x.shape and torch.equal(x, y)]

    trained = [which(x) for x in seen]
    assert all(len(found) == 1 for found in trained)
    assert len(seen) == 3 * len(fitted.train_index)
    assert {found[0] for found in trained} == set(fitted.train_index.tolist())


def test_validation_split_is_stratified_and_seeded():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 2 + [3])
    train, val = validation_split(labels, 0.2, seed=0)
    assert len(np.intersect1d(train, val)) == 0 and sorted(np.concatenate([train, val])) == list(range(len(labels)))
    assert np.bincount(labels[val], minlength=4).tolist() == [2, 1, 1, 0]  # >= 1 per class with >= 2 bags
    assert np.array_equal(validation_split(labels, 0.2, seed=0)[1], val)
    others = [validation_split(labels, 0.2, seed=s)[1] for s in range(1, 6)]
    assert any(not np.array_equal(o, val) for o in others)
    assert len(validation_split(labels, 0.0, seed=0)[1]) == 0


def test_same_seed_is_identical_other_seed_splits_differently(planted):
    features, rows, labels, _, _ = planted
    bags = bags_of(features, rows)
    train, test = list(range(0, 40, 2)), list(range(1, 40, 2))
    protocol = dataclasses.replace(ABMIL_PAPER, epochs=5)
    train_bags, test_bags = [bags[i] for i in train], [bags[i] for i in test]

    def run(seed):
        return protocol.fit_predict_bags(train_bags, labels[train], test_bags, 4, seed)

    first, again, other = run(11), run(11), run(12)
    assert np.array_equal(first.proba, again.proba) and np.array_equal(first.labels, again.labels)
    assert all(np.array_equal(a, b) for a, b in zip(first.attention, again.attention))
    assert not np.array_equal(first.proba, other.proba)
    assert np.array_equal(protocol.fit(train_bags, labels[train], 4, 11).val_index,
                          protocol.fit(train_bags, labels[train], 4, 11).val_index)
    assert not np.array_equal(protocol.fit(train_bags, labels[train], 4, 11).val_index,
                              protocol.fit(train_bags, labels[train], 4, 12).val_index)
    # the global torch RNG is neither used nor disturbed
    state = torch.get_rng_state()
    run(11)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("protocol", [ABMIL_PAPER, ABMIL_GATED], ids=lambda p: p.name)
def test_shapes_and_absent_classes(planted, protocol):
    features, rows, labels, _, _ = planted
    bags = bags_of(features, rows)
    keep = [i for i in range(40) if labels[i] in (0, 1, 3)]  # class 2 (and 4, 5) absent from training
    remap = {0: 0, 1: 1, 3: 5}
    train_labels = np.array([remap[labels[i]] for i in keep])
    test_bags = [bags[i] for i in (5, 25, 35)]
    prediction = dataclasses.replace(protocol, epochs=3).fit_predict_bags(
        [bags[i] for i in keep], train_labels, test_bags, 6, seed=0
    )
    assert prediction.proba.shape == (3, 6) and prediction.labels.shape == (3,)
    np.testing.assert_allclose(prediction.proba.sum(axis=1), 1.0, atol=1e-12)
    assert np.array_equal(prediction.labels, prediction.proba.argmax(axis=1))
    assert len(prediction.attention) == 3
    for weights, bag in zip(prediction.attention, test_bags):
        assert weights.dtype.kind == "f"
        expected = (len(bag), 6) if protocol.name == "abmil-paper" else (len(bag),)
        assert weights.shape == expected
        np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-5)
        assert (weights >= 0).all()


def test_too_few_bags_train_without_early_stopping():
    rng = np.random.default_rng(0)
    bags = [rng.normal(size=(n, 8)).astype(np.float32) for n in (5, 9, 7)]
    protocol = dataclasses.replace(ABMIL_PAPER, epochs=4)
    fitted = protocol.fit(bags, np.array([0, 1, 2]), 3, seed=0)  # one bag per class: no validation split
    assert len(fitted.val_index) == 0 and fitted.epochs_run == 4 and fitted.best_epoch is None
    prediction = protocol.fit_predict_bags(bags, np.array([0, 1, 2]), bags[:1], 3, seed=0)
    assert any("without early stopping" in note for note in prediction.notes)
    assert prediction.proba.shape == (1, 3)


def test_bad_bags_are_refused():
    good = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="non-empty"):
        ABMIL_GATED.fit_predict_bags([good, np.zeros((0, 4), np.float32)], np.array([0, 1]), [good], 2, 0)
    with pytest.raises(ValueError, match="dim"):
        ABMIL_GATED.fit_predict_bags([good, np.zeros((3, 5), np.float32)], np.array([0, 1]), [good], 2, 0)
    with pytest.raises(ValueError, match="labels"):
        ABMIL_GATED.fit_predict_bags([good, good], np.array([0, 2]), [good], 2, 0)


def test_settings_record_every_hyper_parameter():
    paper, gated = ABMIL_PAPER.settings(), ABMIL_GATED.settings()
    json.dumps([paper, gated])
    assert ABMIL_PAPER.name == "abmil-paper" and ABMIL_GATED.name == "abmil-gated"
    expected = {"epochs": 150, "lr": 1e-3, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0, "patience": 20,
                "schedule": "cosine", "val_fraction": 0.2, "attention_dim": 128, "standardize": True}
    for settings in (paper, gated):
        assert expected.items() <= settings.items()
    assert paper["classifier_hidden"] == 64 and "classifier_hidden" not in gated
    assert "DinoBloom" in paper["head"] and "Ilse" in gated["head"]


PBC = SHARED_PBC / "labeled"
PBC_MARKERS = ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte")  # label L's marker cell type


@pytest.fixture(scope="module")
def pbc_planted():
    """Issue 11's layout in real cells, as ``benchmarks/bench_mil_planted.py`` builds it: 40 patients, 5 labels
    (8 each); label L's patients get 10 distinct PBC cells of type PBC_MARKERS[L] and the same 20 filler cells
    (monocyte, neutrophil, platelet); ``color-histogram`` features as the harness computes them."""
    if not (PBC / "basophil").is_dir():
        pytest.skip(real_data_absent(PBC))
    from PIL import Image

    from extractors import get_extractor

    rng = np.random.default_rng(0)
    files = {c: sorted((PBC / c).glob("*.jpg")) for c in PBC_MARKERS + ("monocyte", "neutrophil", "platelet")}
    pool = [f for c in ("monocyte", "neutrophil", "platelet") for f in files[c]]
    filler = [pool[i] for i in rng.choice(len(pool), 20, replace=False)]
    paths, rows, labels = [], [], []
    for label, cell_type in enumerate(PBC_MARKERS):
        picks = rng.choice(len(files[cell_type]), 80, replace=False)
        for j in range(8):
            rows.append(np.arange(len(paths), len(paths) + 30)), labels.append(label)
            paths += [files[cell_type][k] for k in picks[10 * j:10 * j + 10]] + filler
    entry = get_extractor("color-histogram")
    model, transform = entry.build().eval(), entry.transform()
    distinct = sorted(set(paths))
    with torch.inference_mode():
        histograms = model(torch.stack([transform(Image.open(f).convert("RGB")) for f in distinct])).numpy()
    found = dict(zip(distinct, histograms))
    features = np.stack([found[f] for f in paths]).astype(np.float32)
    ids = [f"patient{label}{j:02d}" for label in range(5) for j in range(8)]
    return features, rows, np.array(labels), ids


@pytest.mark.slow
def test_pbc_planted_reference_finds_the_signal(pbc_planted):
    """Precondition of the test below: the signal is in the pooled colour histograms (measured 0.940)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, rows, labels, ids = pbc_planted
    assert features.shape == (1200, 96) and features.max() < 1  # the tiny scale of a histogram
    pooled = np.stack([features[r].mean(axis=0) for r in rows])
    scores = []
    for _, _, train, test in patient_splits(ids, labels, 5, (0, 1, 2)):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(pooled[train], labels[train])
        scores.append(balanced_accuracy_score(labels[test], model.predict(pooled[test])))
    assert np.mean(scores) >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("protocol", [ABMIL_PAPER, ABMIL_GATED], ids=lambda p: p.name)
def test_pbc_planted_signal_is_learned(pbc_planted, protocol):
    """Issue 11 with the registered defaults (150 epochs, lr 1e-3, patience 20) and aml-hehr's folds (seeds 0,
    1, 2 x 5): measured gated 0.900, paper 0.740 (0.193 and 0.200 with standardize=False; chance 0.20). The
    paper head's gap to the reference is early stopping on 5 validation bags (0.860 with val_fraction=0)."""
    features, rows, labels, ids = pbc_planted
    evaluation = evaluate_bags(protocol, features, rows, labels, ids, seeds=(0, 1, 2), classes=list(PBC_MARKERS))
    assert evaluation.mean["balanced_accuracy"] >= 0.6, evaluation.per_fold


def test_bag_protocols_warn_when_predictions_collapse_or_one_class_dominates():
    """Like the cell protocols: a split predicted as one class is named; over all splits, a class taking most
    predictions but at most half of the labels is named with its counts (34 of 40 patients "control")."""
    from dataclasses import dataclass

    from bench.core.design import BagDesign
    from protocols.base import BagPrediction, BagProtocol

    @dataclass(frozen=True)
    class MostlyFirst(BagProtocol):
        def fit_predict_bags(self, train_bags, train_labels, test_bags, n_classes, seed):
            labels = np.zeros(len(test_bags), dtype=np.int64)
            labels[-1:] = 1 if seed == 1 else 0  # seed 1 predicts two classes: no collapse there
            return BagPrediction(labels=labels)

    labels = np.array([0, 1, 2, 3] * 5)
    bags = [np.full((3, 2), i, dtype=np.float32) for i in range(len(labels))]
    rows, start = [], 0
    for bag in bags:
        rows.append(np.arange(start, start + len(bag)))
        start += len(bag)
    features = np.concatenate(bags)
    halves = [np.arange(0, 10), np.arange(10, 20)]
    splits = [(0, 0, halves[1], halves[0]), (1, 1, halves[0], halves[1])]
    design = BagDesign(["control", "a", "b", "c"], [f"p{i}" for i in range(20)], labels, rows, splits)
    result = MostlyFirst("mostly-first").evaluate(features, design)
    collapsed = [n for n in result.warnings if "collapsed to one class" in n]
    assert collapsed == [n for n in collapsed if n.startswith("seed 0 fold 0")] and len(collapsed) == 1
    assert "'control'" in collapsed[0]
    dominated = [n for n in result.warnings if "dominated by one class" in n]
    assert len(dominated) == 1 and dominated[0].startswith(
        "predictions are dominated by one class: 19 of 20 predicted 'control', while 5 are 'control'; ")
