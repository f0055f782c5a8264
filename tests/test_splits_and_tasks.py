import shutil

import numpy as np
import pandas as pd
import pytest

from tasks import get_task
from tasks.base import DataError
from tasks.splits import SplitError, read_fixed_split, stratified_folds, write_split_csv
from tasks.validation import scan_patient_folder
from tests.conftest import make_image_folder


def _table(n_per_class=(23, 17, 9)):
    rows = [(f"{label}/img_{i:03d}.png", label) for label, n in zip("xyz", n_per_class) for i in range(n)]
    return pd.DataFrame(rows, columns=["path", "label"])


def test_folds_do_not_depend_on_listing_order():
    table = _table()
    folds = dict(zip(table["path"], stratified_folds(table["path"], table["label"], 5, seed=0)))
    shuffled = table.sample(frac=1.0, random_state=7)
    refolds = dict(zip(shuffled["path"], stratified_folds(shuffled["path"], shuffled["label"], 5, seed=0)))
    assert folds == refolds
    other_seed = stratified_folds(table["path"], table["label"], 5, seed=1)
    assert list(folds.values()) != list(other_seed)


def test_folds_are_stratified_and_balanced():
    table = _table()
    table["fold"] = stratified_folds(table["path"], table["label"], 5, seed=0)
    per_class = table.groupby(["label", "fold"]).size().unstack(fill_value=0)
    assert (per_class.max(axis=1) - per_class.min(axis=1)).max() <= 1
    sizes = table["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 1


def test_fold_assignment_survives_copying_the_data_elsewhere(tmp_path):
    task_a = get_task(f"imagefolder:{make_image_folder(tmp_path / 'a', {'p': 11, 'q': 8})}")
    data_a = task_a.load(data_home=tmp_path)
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "b")
    data_b = get_task(f"imagefolder:{tmp_path / 'elsewhere' / 'b'}").load(data_home=tmp_path)
    pd.testing.assert_frame_equal(data_a.samples, data_b.samples)
    assert data_a.content_fingerprint() == data_b.content_fingerprint()
    out = write_split_csv(data_a.samples, tmp_path / "split.csv")
    assert list(pd.read_csv(out).columns) == ["path", "label", "fold"]


def test_fixed_split_csv(tmp_path):
    paths = pd.Series(["a/1.png", "a/2.png", "b/1.png"])
    (tmp_path / "s.csv").write_text("path,split\na/1.png,train\nb/1.png,test\na/2.png,train\n")
    assert read_fixed_split(tmp_path / "s.csv", paths).tolist() == ["train", "train", "test"]
    (tmp_path / "bad.csv").write_text("path,split\na/1.png,train\nb/1.png,validation\na/2.png,train\n")
    with pytest.raises(SplitError, match="'train' or 'test'"):
        read_fixed_split(tmp_path / "bad.csv", paths)
    (tmp_path / "short.csv").write_text("path,split\na/1.png,train\n")
    with pytest.raises(SplitError, match="not in the file"):
        read_fixed_split(tmp_path / "short.csv", paths)
    # one image in both train and test (issue 26: it was scored as a test cell the probe had been trained on)
    (tmp_path / "both.csv").write_text("path,split\na/1.png,train\nb/1.png,test\na/2.png,train\na/1.png,test\n")
    with pytest.raises(SplitError, match=r"a/1\.png is listed 2 times \(test and train\)"):
        read_fixed_split(tmp_path / "both.csv", paths)


def test_label_map_is_the_union_and_splits_cover_everything(image_folder, tmp_path):
    data = get_task(f"imagefolder:{image_folder}").load(data_home=tmp_path)
    assert data.classes == ["a", "b", "c"]
    tested = np.concatenate([test for _, _, test in data.splits()])
    assert sorted(tested) == list(range(len(data)))
    for _, train, test in data.splits():
        assert not set(train) & set(test)


def test_bad_layouts_get_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        get_task(f"imagefolder:{tmp_path / 'nowhere'}").load(data_home=tmp_path)
    make_image_folder(tmp_path / "one", {"only": 5})
    with pytest.raises(DataError, match="at least 2"):
        get_task(f"imagefolder:{tmp_path / 'one'}").load(data_home=tmp_path)
    make_image_folder(tmp_path / "empty", {"a": 5, "b": 5})
    (tmp_path / "empty" / "c").mkdir()
    (tmp_path / "empty" / "c" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"\['c'\].*hold no images"):
        get_task(f"imagefolder:{tmp_path / 'empty'}").load(data_home=tmp_path)


def test_synthetic_task_generates_its_data_on_first_use(bench_home):
    data = get_task("synthetic-wbc").load(data_home=bench_home / "data")
    assert data.root == bench_home / "data" / "synthetic-wbc-v1"
    assert len(data) == 300 and len(data.classes) == 6
    assert (data.root / "GENERATED.json").is_file()


def test_patient_bags_read_back_with_the_patient_loader(tmp_path):
    from tasks.synthetic import write_patient_bags

    root = write_patient_bags(tmp_path / "bags", n_patients_per_label=2, cells_per_patient=3, size=32)
    samples = scan_patient_folder(root)
    assert len(samples) == 4 * 2 * 3
    assert samples.groupby("patient").size().eq(3).all()
    truth = pd.read_csv(root / "cells.csv")
    assert sorted(samples["path"]) == sorted(truth["path"])


def test_simulated_patients_use_each_cell_once_and_follow_their_profile():
    from tasks.simulated_bags import simulate_patients

    cells = pd.DataFrame({"path": [f"{c}/{i}.png" for c in "abc" for i in range(200)], "label": [c for c in "abc" for _ in range(200)]})
    bags = simulate_patients(cells, cells_per_patient=24, max_patients=10, excess=0.5, seed=0)
    assert bags["path"].is_unique and set(bags["path"]) <= set(cells["path"])
    assert bags.groupby("patient").size().eq(24).all()
    assert set(bags["label"]) == {"control", "a-excess", "b-excess", "c-excess"}
    share = bags[bags["label"] == "b-excess"]["cell_class"].eq("b").mean()
    assert 0.55 < share < 0.8  # expected 0.5 + 0.5 / 3 = 0.67
    pd.testing.assert_frame_equal(bags, simulate_patients(cells, cells_per_patient=24, max_patients=10, seed=0))


def test_bags_door_needs_enough_cells(tmp_path):
    root = make_image_folder(tmp_path / "few", {"a": 20, "b": 20}, size=8)
    with pytest.raises(DataError, match="at least 5 per diagnosis"):
        get_task(f"bags:imagefolder:{root}").load(data_home=tmp_path)
    root = make_image_folder(tmp_path / "many", {"a": 260, "b": 260}, size=8)
    data = get_task(f"bags:imagefolder:{root}").load(data_home=tmp_path)
    patients, labels, rows = data.bags()
    assert len(patients) >= 15 and any("SIMULATED" in note for note in data.notes)
    assert sum(len(r) for r in rows) == len(data.samples) and data.samples["path"].is_unique


def _aml_layout(root, patients_per_label=2, cells=3):
    from tasks.aml import AML_LABELS

    rows = []
    for li, label in enumerate(AML_LABELS):
        for p in range(patients_per_label):
            patient = f"pat{li}{p}"
            make_image_folder(root / label / patient, {"cells": cells}, size=8, seed=li * 10 + p)
            for f in sorted((root / label / patient / "cells").iterdir()):
                target = root / label / patient / f.name
                f.rename(target)
                rows.append((patient, label, target))
            (root / label / patient / "cells").rmdir()
    return rows


def test_aml_hehr_reads_the_patient_layout_and_a_manifest(tmp_path):
    rows = _aml_layout(tmp_path / "AML_Hehr")
    task = get_task("aml-hehr")
    data = task.load(tmp_path / "AML_Hehr", data_home=tmp_path)
    patients, labels, bag_rows = data.bags()
    assert len(patients) == 10 and sorted(data.classes) == sorted({r[1] for r in rows})
    assert all(len(r) == 3 for r in bag_rows)
    assert data.describe()["n_patients"] == 10
    manifest = tmp_path / "elsewhere" / "manifest.csv"
    manifest.parent.mkdir()
    pd.DataFrame([(p, label, str(path)) for p, label, path in rows], columns=["patient", "label", "path"]).to_csv(
        manifest, index=False
    )
    from_csv = task.load(manifest, data_home=tmp_path)
    assert from_csv.bags()[0] == patients and from_csv.content_fingerprint() == data.content_fingerprint()
    with pytest.raises(DataError, match="patient-level folds"):
        task.load(tmp_path / "AML_Hehr", data_home=tmp_path, split_file=manifest)
    bad = tmp_path / "bad.csv"
    bad.write_text("patient,label,path\nX,NPM1,missing.png\n")
    with pytest.raises(DataError, match="do not exist"):
        task.load(bad, data_home=tmp_path)
