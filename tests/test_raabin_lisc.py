"""Raabin-WBC (``raabin-wbc``, ``raabin-wbc-testb``: the published Train -> TestA / TestB split) and LISC (``lisc``:
class folders of whole fields, ``mixt`` left out, masks not used) on generated copies of their published layouts
(issue 29), and, where a copy is named by an environment variable, on the real data against the published counts."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench.cli import app
from bench.core.errors import DataError, UsageError

RAABIN = os.environ.get("HEMABENCH_RAABIN")  # the folder holding Raabin-WBC's Train, TestA and TestB
LISC_COPY = os.environ.get("HEMABENCH_LISC")  # the unzipped 'LISC Database' folder

CLASSES = ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")
TRAIN = {"Basophil": 2, "Eosinophil": 3, "Lymphocyte": 4, "Monocyte": 3, "Neutrophil": 6}
TEST_A = {"Basophil": 1, "Eosinophil": 2, "Lymphocyte": 2, "Monocyte": 2, "Neutrophil": 3}
TEST_B = {"Eosinophil": 2, "Lymphocyte": 1, "Monocyte": 1, "Neutrophil": 4}  # no basophil


def _image(path: Path, colour, size=24) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(str(path).encode()))
    pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def _raabin(root: Path, splits=(("Train", TRAIN), ("TestA", TEST_A), ("TestB", TEST_B))) -> Path:
    for split, counts in splits:
        for c, (folder, n) in enumerate(counts.items()):
            for i in range(n):
                _image(root / split / folder / f"{split}_{folder}_{i:03d}.jpg", (50 + 40 * c, 100, 160))
    (root / "README.txt").write_text("Raabin-WBC double-labelled cells\n")
    return root


LISC_COUNTS = {"Baso": 4, "eosi": 3, "lymp": 4, "mono": 3, "neut": 5, "mixt": 2}


def _lisc(root: Path, counts=LISC_COUNTS) -> Path:
    for c, (folder, n) in enumerate(counts.items()):
        masks = root / "Ground Truth Segmentation" / folder / "areaforexpert1"
        masks.mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            _image(root / "Main Dataset" / folder / f"{i}.bmp", (60 + 30 * c, 90, 170))
            Image.fromarray(np.zeros((20, 24), dtype=np.uint8)).save(masks / f"{i}_expert.bmp")
    _image(root / "More Dataset without Ground Truth" / "alll" / "1.bmp", (10, 20, 30))
    return root


def _check(task: str, root: Path, code: int = 0) -> str:
    done = CliRunner().invoke(app, ["data", "check", task, "--data-root", str(root)])
    assert done.exit_code == code, done.output
    return done.output


def _count_line(output: str, label: str, n: int) -> bool:
    return any(line.split() == [label, str(n)] for line in output.splitlines())


def test_raabin_wbc_trains_on_train_and_tests_on_test_a(tmp_path):
    copy = _raabin(tmp_path / "Raabin-WBC")
    output = _check("raabin-wbc", copy)
    n_train, n_test = sum(TRAIN.values()), sum(TEST_A.values())
    assert f"{n_train + n_test} images in 5 classes" in output
    for folder, label in zip(TRAIN, CLASSES):
        assert _count_line(output, label, TRAIN[folder] + TEST_A[folder]), (label, output)
    assert f"note: Train: {n_train} images (basophil 2, eosinophil 3, lymphocyte 4, monocyte 3, neutrophil 6)" in output
    assert f"note: TestA: {n_test} images (basophil 1," in output
    assert "not read by raabin-wbc: the shifted test set TestB (task raabin-wbc-testb) (8)" in output
    assert "outside the Raabin-WBC layout (Train, TestA, TestB) (1): README.txt" in output

    from tasks import get_task

    task = get_task("raabin-wbc")
    dataset = task.load(copy, data_home=tmp_path)
    assert dataset.split_kind == "fixed" and dataset.classes == list(CLASSES)
    folds = dict(zip(dataset.samples["path"], dataset.samples["fold"]))
    assert {p.split("/")[0] for p, f in folds.items() if f == "train"} == {"Train"}
    assert {p.split("/")[0] for p, f in folds.items() if f == "test"} == {"TestA"}
    assert dataset.samples.loc[dataset.samples["path"].str.startswith("Train/Basophil/"), "label"].eq("basophil").all()
    [(name, train, test)] = dataset.splits()
    assert (name, len(train), len(test)) == ("test", n_train, n_test)
    assert dataset.describe()["n_images_found"] == n_train + n_test and not dataset.warnings
    assert dataset.describe()["ignored_by_reason"]["not read by raabin-wbc: the shifted test set TestB (task "
                                                   "raabin-wbc-testb)"] == sum(TEST_B.values())
    assert task.card.full_set_images == 14_514 and task.settings()["test_folder"] == "TestA"
    status, details = task.split_status(dataset)
    assert status == f"the published split: {n_train} Train images to train on, {n_test} TestA images to test on"
    assert not details


def test_raabin_wbc_testb_tests_on_the_shifted_set_and_notes_its_absent_classes(tmp_path):
    copy = _raabin(tmp_path / "Raabin-WBC")
    output = _check("raabin-wbc-testb", copy)  # TestB without basophils is the published kind of copy: no problem
    assert "note: TestB holds no basophil image" in output and "no problems found" in output
    assert "not read by raabin-wbc-testb: the in-domain test set TestA (task raabin-wbc)" in output

    from tasks import get_task

    task = get_task("raabin-wbc-testb")
    dataset = task.load(copy, data_home=tmp_path)
    test = dataset.samples[dataset.samples["fold"] == "test"]
    assert set(test["path"].str.split("/").str[0]) == {"TestB"} and len(test) == sum(TEST_B.values())
    assert "basophil" not in set(test["label"]) and dataset.classes == list(CLASSES)  # the label map: train's too
    assert not dataset.warnings and task.card.full_set_images is None
    assert "TestB" in task.card.evaluation and "shifted" in task.card.summary


def test_raabin_folder_names_and_data_root_are_forgiving_where_unambiguous(tmp_path):
    copy = _raabin(tmp_path / "above" / "Raabin-WBC", splits=(("train", TRAIN), ("Test-A", TEST_A)))
    from tasks import get_task

    task = get_task("raabin-wbc")
    dataset = task.load(tmp_path / "above", data_home=tmp_path)  # the folder above Raabin-WBC: descends
    assert dataset.root == copy and set(dataset.samples["path"].str.split("/").str[0]) == {"train", "Test-A"}
    assert (dataset.samples["fold"] == "test").sum() == sum(TEST_A.values())
    home = tmp_path / "home"  # the default folder, $BENCH_HOME/data/Raabin-WBC
    _raabin(home / "Raabin-WBC", splits=(("Train", TRAIN), ("TestA", TEST_A)))
    assert len(task.load(None, data_home=home)) == sum(TRAIN.values()) + sum(TEST_A.values())


def test_raabin_layout_errors_name_the_folder_and_the_fix(tmp_path):
    from tasks import get_task

    task = get_task("raabin-wbc")
    only_train = _raabin(tmp_path / "only-train", splits=(("Train", TRAIN), ("TestB", TEST_B)))
    with pytest.raises(DataError, match=r"only-train holds no TestA folder; point --data-root at the folder "
                                        r"holding Raabin-WBC's Train and TestA"):
        task.load(only_train, data_home=tmp_path)
    testb = get_task("raabin-wbc-testb").load(only_train, data_home=tmp_path)  # TestB is all it needs besides Train
    assert len(testb) == sum(TRAIN.values()) + sum(TEST_B.values())
    with pytest.raises(DataError, match=r"holds no Train and no TestA folder; it holds class folders, so it seems "
                                        r"to be one of Raabin-WBC's Train, TestA, TestB folders: point --data-root at "
                                        r"the folder above it"):
        task.load(only_train / "Train", data_home=tmp_path)
    copy = _raabin(tmp_path / "copy")
    _image(copy / "Train" / "Platelet" / "p.jpg", (1, 2, 3))
    with pytest.raises(DataError, match=r"\['Train/Platelet'\] that are not Raabin-WBC class folders .*; point "
                                        r"--data-root at the Raabin-WBC folder, or move the foreign folder\(s\) out"):
        task.load(copy, data_home=tmp_path)
    assert "problem: folder(s) outside the expected layout: Train/Platelet" in _check("raabin-wbc", copy, code=1)
    (copy / "Train" / "Platelet" / "p.jpg").unlink()
    (copy / "Train" / "Platelet").rmdir()
    for image in (copy / "Train" / "Monocyte").iterdir():
        image.unlink()
    (copy / "Train" / "Monocyte").rmdir()
    dataset = task.load(copy, data_home=tmp_path)  # a class absent from Train: loaded, but not comparable
    assert dataset.warnings and "Train/Monocyte" in dataset.warnings[0]
    assert "problem: expected class(es) absent: Train/Monocyte" in _check("raabin-wbc", copy, code=1)
    with pytest.raises(DataError, match="does not exist"):
        task.load(tmp_path / "nowhere", data_home=tmp_path)
    with pytest.raises(UsageError, match="folds"):
        get_task("raabin-wbc@folds=authors")  # one fixed split: no folds to choose


def test_raabin_takes_a_split_file_instead_of_the_published_split(tmp_path):
    copy = _raabin(tmp_path / "Raabin-WBC")
    from tasks import get_task

    task = get_task("raabin-wbc")
    paths = task.load(copy, data_home=tmp_path).samples["path"]
    split = tmp_path / "mine.csv"
    pd.DataFrame({"path": paths, "split": ["test" if i % 4 == 0 else "train" for i in range(len(paths))]}).to_csv(
        split, index=False)
    dataset = task.load(copy, data_home=tmp_path, split_file=split)
    assert (dataset.samples["fold"] == "test").sum() == (len(paths) + 3) // 4
    assert task.split_status(dataset)[0].startswith("a split from --split-file")


def test_lisc_reads_the_class_folders_and_leaves_out_mixed_fields_and_masks(tmp_path):
    copy = _lisc(tmp_path / "LISC Database")
    output = _check("lisc", copy)
    n = sum(v for k, v in LISC_COUNTS.items() if k != "mixt")
    assert f"{n} images in 5 classes" in output
    for folder, label in (("Baso", "basophil"), ("eosi", "eosinophil"), ("lymp", "lymphocyte"), ("mono", "monocyte"),
                          ("neut", "neutrophil")):
        assert _count_line(output, label, LISC_COUNTS[folder]), (label, output)
    assert "left out by the task (2): Main Dataset/mixt/1.bmp, Main Dataset/mixt/2.bmp" in output
    assert f"segmentation mask (not used for classification) ({sum(LISC_COUNTS.values())})" in output
    assert "no class label (More Dataset without Ground Truth) (1)" in output and "no problems found" in output

    from tasks import get_task

    task = get_task("lisc")
    dataset = task.load(copy, data_home=tmp_path)
    assert dataset.classes == list(CLASSES) and dataset.split_kind == "kfold"
    assert sorted(set(dataset.samples["fold"])) == [0, 1, 2, 3, 4]
    assert dict(zip(dataset.samples["path"], dataset.samples["label"]))["Main Dataset/Baso/1.bmp"] == "basophil"
    assert dataset.describe()["n_images_found"] == sum(LISC_COUNTS.values())  # mixt counted, as the full set is
    assert dataset.ignored_files["Main Dataset/mixt/1.bmp"] == "mixt: a field of several cell types, no single class"
    assert any("leaves out the 2 image(s) of Main Dataset/mixt" in note for note in dataset.notes)
    assert task.card.full_set_images == 250 and "redistribution" in task.card.licence
    assert task.load(copy / "Main Dataset", data_home=tmp_path).root == copy  # its own images folder: one up
    assert task.load(tmp_path, data_home=tmp_path).root == copy  # the folder above 'LISC Database'


def test_lisc_layout_errors_name_the_folder_and_the_fix(tmp_path):
    from tasks import get_task

    task = get_task("lisc")
    empty = tmp_path / "unzipped"
    empty.mkdir()
    with pytest.raises(DataError, match=r"unzipped holds no 'Main Dataset' folder; point --data-root at the unzipped "
                                        r"'LISC Database' folder"):
        task.load(empty, data_home=tmp_path)
    copy = _lisc(tmp_path / "LISC Database")
    renamed = copy.rename(tmp_path / "lisc-2011")
    with pytest.raises(DataError, match=r"did you mean --data-root .*lisc-2011 \(the folder holding 'Main Dataset'\)"):
        task.load(tmp_path, data_home=tmp_path)  # the folder above a renamed copy
    with pytest.raises(DataError, match=r"did you mean --data-root .*lisc-2011 \(the folder"):
        task.load(renamed / "Ground Truth Segmentation", data_home=tmp_path)  # a folder inside it
    copy = renamed.rename(tmp_path / "LISC Database")
    _image(copy / "Main Dataset" / "plat" / "1.bmp", (5, 5, 5))
    with pytest.raises(DataError, match=r"\['Main Dataset/plat'\] that are not LISC class folders"):
        task.load(copy, data_home=tmp_path)
    checked = _check("lisc", copy, code=1)
    assert "problem: folder(s) outside the expected layout: Main Dataset/plat" in checked
    assert "did you mean" not in checked  # a copy holds 'Main Dataset': no did-you-mean (not into the masks)
    (copy / "Main Dataset" / "plat" / "1.bmp").unlink()
    (copy / "Main Dataset" / "plat").rmdir()
    for image in (copy / "Main Dataset" / "neut").iterdir():
        image.unlink()
    with pytest.raises(DataError, match=r"class folder\(s\) \['Main Dataset/neut'\] under .* hold no images"):
        task.load(copy, data_home=tmp_path)


def test_a_domain_shift_from_raabin_to_lisc_shares_classes_by_name(tmp_path, monkeypatch):
    """raabin-wbc=>lisc over generated copies put where each task looks by default."""
    home = tmp_path / "home"
    monkeypatch.setenv("BENCH_HOME", str(home))
    _raabin(home / "data" / "Raabin-WBC", splits=(("Train", TRAIN), ("TestA", TEST_A)))
    _lisc(home / "data" / "LISC Database")
    done = CliRunner().invoke(app, ["run", "-e", "color-histogram", "-t", "raabin-wbc=>lisc", "-p", "knn-1",
                                    "--results", str(tmp_path / "r"), "--no-progress"])
    assert done.exit_code == 0, done.output
    record = json.loads(next((tmp_path / "r").rglob("knn-1.json")).read_text())
    assert record["task"]["train"]["n_samples"] == sum(TRAIN.values()) + sum(TEST_A.values())  # all of A
    assert record["task"]["test"]["n_samples"] == sum(v for k, v in LISC_COUNTS.items() if k != "mixt")
    assert not any("classes only in the test task" in w for w in record["warnings"])  # names shared: lower case


def test_list_tasks_details_shows_the_new_tasks(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("BENCH_HOME", str(home))
    _lisc(home / "data" / "LISC Database", counts={"Baso": 1, "eosi": 1})
    done = CliRunner().invoke(app, ["list", "tasks", "--details"])
    assert done.exit_code == 0, done.output
    rows = {line.split()[0]: line for line in done.output.splitlines() if line.strip()}
    assert "here:" in rows["lisc"] and " 250 " in rows["lisc"]
    assert rows["raabin-wbc"].rstrip().endswith("absent") and "14,514" in rows["raabin-wbc"]
    assert rows["raabin-wbc-testb"].rstrip().endswith("absent")


@pytest.mark.skipif(not RAABIN, reason="the Raabin-WBC copy is not here: set HEMABENCH_RAABIN to the folder holding "
                                       "its Train, TestA and TestB (double-labelled crops, raabindata.com)")
def test_the_real_raabin_copy_holds_the_published_counts():
    from tasks import get_task

    dataset = get_task("raabin-wbc").load(Path(RAABIN), data_home=Path(RAABIN))
    train = dataset.samples[dataset.samples["fold"] == "train"]["label"].value_counts().to_dict()
    assert train == {"neutrophil": 6231, "lymphocyte": 2427, "monocyte": 561, "eosinophil": 744, "basophil": 212}
    assert len(dataset) == 14_514 and (dataset.samples["fold"] == "test").sum() == 4_339
    shifted = get_task("raabin-wbc-testb").load(Path(RAABIN), data_home=Path(RAABIN))
    assert (shifted.samples["fold"] == "train").sum() == 10_175


@pytest.mark.skipif(not LISC_COPY, reason="the LISC copy is not here: set HEMABENCH_LISC to the unzipped "
                                          "'LISC Database' folder (first author's page, research use only)")
def test_the_real_lisc_copy_holds_the_published_counts():
    from tasks import get_task

    dataset = get_task("lisc").load(Path(LISC_COPY), data_home=Path(LISC_COPY))
    counts = dataset.samples["label"].value_counts().to_dict()
    assert counts == {"basophil": 53, "eosinophil": 39, "lymphocyte": 52, "monocyte": 48, "neutrophil": 50}
    assert dataset.describe()["n_images_found"] == 250
