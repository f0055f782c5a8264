"""The DinoBloom authors' evaluation as they ran it (issue 18): Acevedo's preprocessing (a PIL bicubic pre-resize),
their folds (StratifiedKFold without shuffling over the sorted names), and their domain shift (each fold's model
on the external set), each against an independent reference; and scoring a domain shift on the shared classes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from torchvision import transforms
from typer.testing import CliRunner

from bench.cli import app
from tests.conftest import make_image_folder

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def authors_transform(path):
    """The authors' cross-validation code, verbatim in spirit: PIL's default resize, then their transform."""
    image = Image.open(path).convert("RGB").resize((224, 224))
    return transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                               transforms.Normalize(MEAN, STD)])(image)


def _entry(pre_resize):
    from extractors import get_extractor
    from tasks.transforms import PreResize

    return get_extractor("vit-s14-random").replace(task_transform=None if pre_resize is None else PreResize(pre_resize))


def _rgb_files(tmp_path, n=4):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = tmp_path / f"cell_{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (363, 360, 3), dtype=np.uint8)).save(path, quality=92)
        paths.append(path)
    return paths


def _harness(paths, entry):
    from bench.extract import ImageFiles

    dataset = ImageFiles(paths, entry.transform(), entry.input_size, False)
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def test_authors_cv_preprocessing_equals_their_code_on_generated_cells(tmp_path):
    paths = _rgb_files(tmp_path)
    ours = _harness(paths, _entry(224))
    theirs = torch.stack([authors_transform(p) for p in paths])
    assert float((ours - theirs).abs().max()) == 0.0
    assert float((_harness(paths, _entry(None)) - theirs).abs().max()) > 0.05  # the direct path differs


def test_authors_cv_preprocessing_equals_their_code_on_real_cells(pbc_subset):
    paths = sorted(pbc_subset.rglob("*.jpg"))[::10]
    ours = _harness(paths, _entry(224))
    theirs = torch.stack([authors_transform(p) for p in paths])
    assert float((ours - theirs).abs().max()) == 0.0


def test_gpu_decode_path_pre_resizes_like_pil(tmp_path):
    """The device path (run here on CPU tensors) with the pre-resize: within one 8-bit level of PIL's, as without."""
    from tests.test_decode import LEVEL, device_path

    paths = _rgb_files(tmp_path)
    entry = _entry(224)
    expected = _harness(paths, entry)
    from bench.decode import decode_batch
    from bench.extract import EncodedFiles, collate_encoded

    loader = torch.utils.data.DataLoader(EncodedFiles(paths, False), batch_size=len(paths), collate_fn=collate_encoded)
    (encoded, indices, _), = list(loader)
    images, ok = decode_batch(encoded, [paths[i] for i in indices], device="cpu", size=224, mean=MEAN, std=STD,
                              interpolation="bilinear", pre_resize=224)
    assert ok.all() and float((images - expected).abs().max()) <= LEVEL + 1e-5
    without, _ = device_path(paths, _entry(None))
    assert float((without - expected).abs().max()) > 10 * LEVEL
    del without


def test_acevedo_uses_the_authors_cv_preprocessing_and_records_it():
    from bench.runner import BuiltExtractor, named_task, preprocessed
    from tasks import get_task

    assert get_task("acevedo").card.preprocessing == "authors-cv"
    assert get_task("bmc").card.preprocessing == "direct"
    entry = _entry(None)
    built = BuiltExtractor(entry, None, {"transform": entry.transform_spec(), "name": entry.name})
    acevedo = preprocessed(built, get_task("acevedo"))
    assert acevedo.entry.task_transform.size == 224
    assert acevedo.fingerprint["transform"]["pre_resize"] == [224, 224, "bicubic"]  # the key of features cached before
    assert "pre_resize" not in preprocessed(built, get_task("bmc")).fingerprint["transform"]
    direct, name = named_task("acevedo@preprocessing=direct")
    assert direct.preprocessing == "direct" and direct.settings()["preprocessing"] == "direct"
    assert name == "acevedo@preprocessing=direct"


def test_authors_folds_equal_stratified_kfold_over_the_sorted_names():
    from tasks.splits import authors_folds

    rng = np.random.default_rng(3)
    names = [f"{c}/{c.upper()}_{i:05d}.jpg" for c in ("basophil", "eosinophil", "platelet") for i in
             rng.choice(99999, size=int(rng.integers(11, 30)), replace=False)]
    labels = [n.split("/")[0] for n in names]
    shuffled = rng.permutation(len(names))  # the input order must not matter
    ours = authors_folds(pd.Series(names)[shuffled], pd.Series(labels)[shuffled], 5)
    order = sorted(range(len(names)), key=lambda i: names[i])
    expected = np.empty(len(names), dtype=np.int64)
    for fold, (_, test) in enumerate(StratifiedKFold(5).split(np.zeros(len(names)), [labels[i] for i in order])):
        expected[np.asarray(order)[test]] = fold
    np.testing.assert_array_equal(ours, expected[shuffled])


def test_folds_authors_is_its_own_result_and_split(tmp_path):
    cells = make_image_folder(tmp_path / "cells", {"a": 11, "b": 9, "c": 10})
    results = tmp_path / "results"
    runner = CliRunner()
    for variant in ("", "@folds=authors"):
        done = runner.invoke(app, ["run", "-e", "color-histogram", "-t", f"imagefolder:{cells}{variant}", "-p", "knn-1",
                                   "--results", str(results), "--no-progress"])
        assert done.exit_code == 0, done.output
    records = {json.loads(p.read_text())["task"]["task"]: p for p in results.rglob("knn-1.json")}
    assert sorted(records) == [f"imagefolder:{cells}", f"imagefolder:{cells}@folds=authors"]
    record = json.loads(records[f"imagefolder:{cells}@folds=authors"].read_text())
    assert record["task"]["folds"] == "authors"
    table = pd.read_csv(str(records[f"imagefolder:{cells}@folds=authors"]).replace(".json", ".predictions.csv"))
    names = sorted(table["path"])
    labels = [n.split("/")[0] for n in names]
    expected = {names[i]: fold for fold, (_, test) in enumerate(StratifiedKFold(5).split(names, labels))
                for i in test}
    assert dict(zip(table["path"], table["fold"])) == expected


def _export(runner, task, out):
    done = runner.invoke(app, ["extract", "-e", "color-histogram", "-t", task, "--export", str(out), "--no-progress"])
    assert done.exit_code == 0, done.output
    return np.load(out / "features.npy"), pd.read_csv(out / "index.csv")


def _shift(tmp_path, target_classes, variant):
    """A kNN-20 domain shift of colour histograms from classes a, b, c to ``target_classes``, named with ``variant``;
    (the result's path, its record, and each side's exported features and index)."""
    source = make_image_folder(tmp_path / "source", {"a": 10, "b": 10, "c": 10}, seed=1)
    target = make_image_folder(tmp_path / "target", {c: 6 for c in target_classes}, seed=2)
    runner = CliRunner()
    done = runner.invoke(app, ["run", "-e", "color-histogram", "-t", f"imagefolder:{source}=>imagefolder:{target}"
                               f"{variant}", "-p", "knn-20", "--results", str(tmp_path / "r"), "--no-progress"])
    assert done.exit_code == 0, done.output
    path = next((tmp_path / "r").rglob("knn-20.json"))
    return (path, json.loads(path.read_text()), _export(runner, f"imagefolder:{source}", tmp_path / "e1"),
            _export(runner, f"imagefolder:{target}", tmp_path / "e2"))


def test_per_fold_domain_shift_equals_each_folds_model_tested_externally(tmp_path):
    _, record, (x_train, train_index), (x_test, test_index) = _shift(tmp_path, "abc", "@training=folds")
    assert record["task"]["task"].endswith("@training=folds") and len(record["metrics"]["per_fold"]) == 5
    for fold in record["metrics"]["per_fold"]:
        rows = (train_index["fold"].astype(str) != str(fold["fold"])).to_numpy()
        model = KNeighborsClassifier(20).fit(x_train[rows], train_index["label"][rows])
        expected = f1_score(test_index["label"], model.predict(x_test), average="weighted")
        assert fold["n_test"] == len(x_test) and fold["weighted_f1"] == pytest.approx(expected, abs=1e-12)


def test_shared_class_scoring_restricts_predictions_and_test_cells(tmp_path):
    path, record, (x_train, train_index), (x_test, test_index) = _shift(tmp_path, "bcd", "@classes=shared")
    assert record["task"]["shared_classes"] == ["b", "c"]
    assert any("scored on the 2 classes both tasks hold" in w and "['d']" in w for w in record["warnings"])
    table = pd.read_csv(str(path).replace(".json", ".predictions.csv"))
    assert set(table["label"]) == {"b", "c"} and set(table["prediction"]) <= {"b", "c"} and len(table) == 12
    keep = test_index["label"].isin(["b", "c"]).to_numpy()
    proba = KNeighborsClassifier(20).fit(x_train, train_index["label"]).predict_proba(x_test[keep])  # columns a, b, c
    expected = np.array(["b", "c"])[np.argmax(proba[:, 1:], axis=1)]
    assert record["metrics"]["per_fold"][0]["weighted_f1"] == pytest.approx(
        f1_score(test_index["label"][keep], expected, average="weighted"), abs=1e-12)


def test_shift_variants_need_a_domain_shift(tmp_path):
    cells = make_image_folder(tmp_path / "cells", {"a": 6, "b": 6})
    done = CliRunner().invoke(app, ["run", "-e", "color-histogram", "-t", f"imagefolder:{cells}@classes=shared",
                                    "--no-progress", "--results", str(tmp_path / "r")])
    assert done.exit_code == 2 and "applies to a domain shift, named TRAIN=>TEST" in done.output


def test_a_task_with_its_own_preprocessing_is_composed_and_fingerprinted(tmp_path, monkeypatch):
    """A plugin task's ImageTransform runs before the extractor's transform, and its class, spec and source file's
    sha256 are in the features' identity: editing the file makes other features (another cache key)."""
    cells = make_image_folder(tmp_path / "cells", {"a": 6, "b": 6}, size=16)
    plugin = tmp_path / "cropped.py"
    source = f"""
from dataclasses import dataclass
from tasks.imagefolder import CellTask
from tasks.transforms import ImageTransform

class CentreCrop(ImageTransform):
    def __call__(self, image):
        return image.crop((4, 4, 12, 12))
    def spec(self):
        return {{"crop": [4, 4, 12, 12]}}

@dataclass(frozen=True)
class Cropped(CellTask):
    def image_transform(self):
        return CentreCrop()

TASK = Cropped(name="cropped", fixed_root={str(cells)!r})
"""
    plugin.write_text(source)
    from bench.runner import BuiltExtractor, preprocessed
    from extractors import get_extractor
    from tasks import get_task

    entry = get_extractor("color-histogram")
    built = BuiltExtractor(entry, None, {"transform": entry.transform_spec(), "name": entry.name})
    task = get_task(f"{plugin}:TASK")
    cropped = preprocessed(built, task)
    identity = cropped.fingerprint["transform"]["task_transform"]
    assert identity["spec"] == {"crop": [4, 4, 12, 12]} and identity["class"].endswith(":CentreCrop")
    image = Image.new("RGB", (16, 16), (255, 0, 0))
    image.paste((0, 0, 255), (4, 4, 12, 12))  # blue inside the crop, red outside
    assert float(cropped.entry.transform()(image)[0].max()) < float(entry.transform()(image)[0].max())
    plugin.write_text(source + "\n# edited\n")
    edited = preprocessed(built, get_task(f"{plugin}:TASK")).fingerprint["transform"]["task_transform"]
    assert edited["code_sha256"] != identity["code_sha256"]
    done = CliRunner().invoke(app, ["run", "-e", "color-histogram", "-t", f"{plugin}:TASK", "-p", "knn-1",
                                    "--results", str(tmp_path / "r"), "--no-progress"])
    assert done.exit_code == 0, done.output
    record = json.loads(next((tmp_path / "r").rglob("knn-1.json")).read_text())
    assert record["extractor"]["fingerprint"]["transform"]["task_transform"]["spec"] == {"crop": [4, 4, 12, 12]}
