"""Chula-RBC-12 (``chula-rbc-12``, issue 29): red-cell shapes from points on whole smears, one crop per point.

On generated copies of the repository's layout (``Dataset/<id>.jpg``, ``Label/<id>.txt`` with "x y code" lines):
the counts, each crop's pixels against a slice of its smear cut by hand, the black border, folds that never split
a smear, crops reused and cut again when a labels file changes, ``bench data check`` writing nothing and naming
every defective line, and a run refusing them. Where ``HEMABENCH_CHULA`` names a clone of
github.com/Chula-PIC-Lab/Chula-RBC-12-Dataset, the real copy against the counts its labels files give."""

from __future__ import annotations

import dataclasses
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench.cli import app
from bench.core.errors import DataError, SplitError, UsageError

CHULA = os.environ.get("HEMABENCH_CHULA")  # a clone of github.com/Chula-PIC-Lab/Chula-RBC-12-Dataset
NAMES = ["normal_cell", "macrocyte", "microcyte", "spherocyte", "target_cell", "stomatocyte", "ovalocyte", "teardrop",
         "burr_cell", "schistocyte", "uncategorised", "hypochromia", "elliptocyte"]  # the README's codes 0-12


def _smear(path: Path, size=(48, 40)) -> np.ndarray:
    """A smear image of ``size`` (width, height) with random pixels; its pixels as PIL decodes the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=95)
    return np.asarray(Image.open(path).convert("RGB"))


def _clone(root: Path, labels: dict[str, list[str]], unlabelled=("4",), size=(48, 40)) -> Path:
    """``Dataset/<id>.jpg`` for every id of ``labels`` (and ``unlabelled``), ``Label/<id>.txt`` with its lines,
    a README and a .DS_Store as in the public repository."""
    for stem, lines in labels.items():
        if not stem.startswith("no-image-"):
            _smear(root / "Dataset" / f"{stem}.jpg", size)
        (root / "Label").mkdir(parents=True, exist_ok=True)
        (root / "Label" / f"{stem.removeprefix('no-image-')}.txt").write_text("".join(f"{line}\n" for line in lines))
    for stem in unlabelled:
        _smear(root / "Dataset" / f"{stem}.jpg", size)
    (root / "README.md").write_text("# Chula RBC-12-Dataset\n")
    (root / "Label" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return root


CLEAN = {"1": ["20 20 0", "10 12 3", "30 25 0", "2 3 6"],  # the last one at the top left corner
         "2": ["24 20 3", "40 30 6", "8 33 0"],
         "3": ["12 12 6", "36 28 3", "45 38 0"]}  # bottom right


def _task(crop_size: int = 16):
    from tasks import get_task

    return dataclasses.replace(get_task("chula-rbc-12"), crop_size=crop_size)


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*"))}


def test_the_card_says_what_the_data_are():
    from tasks import get_task

    task = get_task("chula-rbc-12")
    card = task.card
    assert (card.name, card.kind, card.full_set_images, task.crop_size) == ("chula-rbc-12", "cells", 22_106, 80)
    assert card.licence.startswith("MIT") and "Naruenatthanaset" in card.citation and "2012.01321" in card.citation
    assert sorted(card.classes) == sorted(NAMES) and "Chula-PIC-Lab/Chula-RBC-12-Dataset" in card.obtain
    assert "grouped by smear" in card.evaluation and "x y code" in card.layout
    assert task.settings()["crop_size"] == 80 and task.settings()["crop_fill"] == [0, 0, 0]
    done = CliRunner().invoke(app, ["data", "info", "chula-rbc-12"])
    assert done.exit_code == 0 and "12 elliptocyte" in " ".join(done.output.split()), done.output
    with pytest.raises(UsageError, match="every cell of a smear in one fold"):
        get_task("chula-rbc-12@folds=authors")


def test_crops_are_slices_of_their_smear_centred_on_the_point_and_black_past_its_border(tmp_path):
    clone = _clone(tmp_path / "clone", CLEAN)
    dataset = _task(16).load(clone, data_home=tmp_path / "data")
    assert dataset.root.parent == tmp_path / "data" / "chula-rbc-12-crops" and dataset.root.name.startswith("16px-")
    assert len(dataset) == 10 and dataset.describe()["n_images_found"] == 10
    expected_labels = {f"{s}/{s}_{i + 1:03d}.png": NAMES[int(line.split()[2])]
                       for s, lines in CLEAN.items() for i, line in enumerate(lines)}
    assert dict(zip(dataset.samples["path"], dataset.samples["label"])) == expected_labels
    smear1 = np.asarray(Image.open(clone / "Dataset" / "1.jpg").convert("RGB"))
    crop = np.asarray(Image.open(dataset.root / "1" / "1_001.png"))  # (20, 20): inside the image
    assert crop.shape == (16, 16, 3) and np.array_equal(crop, smear1[12:28, 12:28])
    corner = np.asarray(Image.open(dataset.root / "1" / "1_004.png"))  # (2, 3): rows 3-8..3+8, columns 2-8..2+8
    hand = np.zeros((16, 16, 3), dtype=np.uint8)
    hand[5:, 6:] = smear1[0:11, 0:10]
    assert np.array_equal(corner, hand) and not corner[:5].any() and not corner[:, :6].any()
    smear3 = np.asarray(Image.open(clone / "Dataset" / "3.jpg").convert("RGB"))  # 48 x 40: (45, 38) at the far corner
    far = np.asarray(Image.open(dataset.root / "3" / "3_003.png"))
    hand = np.zeros((16, 16, 3), dtype=np.uint8)
    hand[:10, :11] = smear3[30:40, 37:48]
    assert np.array_equal(far, hand)
    index = pd.read_csv(dataset.root / "crops.csv")
    assert set(index.loc[index["padded"], "path"]) == {"1/1_004.png", "2/2_003.png", "3/3_003.png"}
    assert any("3 of 10 reach past their image's border, padded with black" in note for note in dataset.notes)
    default = _task(80).load(clone, data_home=tmp_path / "data")  # the card's 80 px: all of a 48 x 40 smear, and black
    big = np.asarray(Image.open(default.root / "1" / "1_001.png"))
    assert big.shape == (80, 80, 3) and np.array_equal(big[20:60, 20:68], smear1) and big[:20].max() == 0


def test_folds_keep_every_smear_whole_and_byte_identical_smears_together(tmp_path):
    rng = np.random.default_rng(3)
    labels = {str(s): [f"{rng.integers(0, 48)} {rng.integers(0, 40)} {rng.choice([0, 3, 6, 8])}" for _ in range(6)]
              for s in range(1, 21)}
    clone = _clone(tmp_path / "clone", labels)
    (clone / "Dataset" / "21.jpg").write_bytes((clone / "Dataset" / "7.jpg").read_bytes())  # one smear, labelled twice
    (clone / "Label" / "21.txt").write_text("5 6 0\n20 30 8\n")
    dataset = _task(16).load(clone, data_home=tmp_path / "data")
    smear = dataset.samples["path"].str.split("/").str[0]
    folds_per_smear = dataset.samples.groupby(smear)["fold"].nunique()
    assert (folds_per_smear == 1).all() and dataset.samples["fold"].nunique() == 5
    fold_of = dataset.samples.groupby(smear)["fold"].first()
    assert fold_of["7"] == fold_of["21"]
    for name, train, test in dataset.splits():  # no smear on both sides
        assert not set(smear.iloc[train]) & set(smear.iloc[test]), name
    assert any("Dataset/21.jpg = Dataset/7.jpg" in note for note in dataset.notes)
    settings = _task(16).settings()
    assert "smear" in settings["groups"] and settings["split_seed"] == 0
    again = _task(16).load(clone, data_home=tmp_path / "elsewhere")  # portable: the same folds wherever the crops lie
    assert again.split_fingerprint() == dataset.split_fingerprint()
    split = pd.DataFrame({"path": dataset.samples["path"], "split": np.where(smear.isin(["1", "2", "7"]), "test",
                                                                              "train")})
    split.to_csv(tmp_path / "split.csv", index=False)
    with pytest.raises(SplitError, match=r"cells of 2 smear\(s\) in train and in test \(21, 7;"):  # 21 is 7's twin
        _task(16).load(clone, data_home=tmp_path / "data", split_file=tmp_path / "split.csv")
    split.loc[smear.to_numpy() == "21", "split"] = "test"
    split.to_csv(tmp_path / "split.csv", index=False)
    fixed = _task(16).load(clone, data_home=tmp_path / "data", split_file=tmp_path / "split.csv")
    assert fixed.split_kind == "fixed" and (fixed.samples["fold"] == "test").sum() == 6 * 3 + 2


def test_crops_are_reused_and_cut_again_when_a_labels_file_changes(tmp_path):
    clone = _clone(tmp_path / "clone", CLEAN)
    home = tmp_path / "data"
    first = _task(16).load(clone, data_home=home)
    before = _files(home)
    second = _task(16).load(clone, data_home=home)
    assert second.root == first.root and _files(home) == before  # nothing written the second time
    assert second.content_fingerprint() == first.content_fingerprint()
    (clone / "Label" / "2.txt").write_text("24 20 3\n40 30 6\n8 33 0\n30 10 12\n")  # one more cell
    changed = _task(16).load(clone, data_home=home)
    assert changed.root != first.root and changed.root.parent == first.root.parent and first.root.is_dir()
    assert len(changed) == 11 and "elliptocyte" in changed.classes and (changed.root / "2" / "2_004.png").is_file()
    assert _task(24).load(clone, data_home=home).root.name.startswith("24px-")  # another size, another folder
    assert not list(clone.rglob("*.png")) and not (clone / "crops.csv").exists()  # never inside the clone


def test_a_run_reads_the_crops_from_the_data_home(tmp_path, bench_home):
    clone = _clone(tmp_path / "clone", CLEAN | {str(s): ["20 20 0", "30 25 3", "12 14 6"] for s in range(5, 12)})
    done = CliRunner().invoke(app, ["run", "-e", "color-histogram", "-t", "chula-rbc-12", "-p", "knn-1",
                                    "--data-root", str(clone), "--results", str(tmp_path / "r"), "--no-progress"])
    assert done.exit_code == 0, done.output
    import json

    record = json.loads(next((tmp_path / "r").rglob("knn-1.json")).read_text())
    assert record["task"]["n_samples"] == 31 and record["task"]["root"].startswith(str(bench_home / "data"))
    assert (record["task"]["crop_size"], record["task"]["n_images_found"], record["task"]["full_set_images"]) == (
        80, 31, 22_106)
    assert any("crops of 80 x 80 px" in note for note in record["task"]["notes"])


DEFECTIVE = {"1": ["20 20 0", "10 12 3", "20 20 0"],  # line 3 repeats line 1
             "2": ["24 20 3", "40 x 6", "8 33 13", "70 5 0", "", "30 30 0 1"],  # lines 2, 3, 4 and 6 are defective
             "no-image-9": ["5 5 0"]}


def test_data_check_reports_points_and_every_defect_by_file_and_line_and_writes_nothing(tmp_path, bench_home):
    clone = _clone(tmp_path / "clone", DEFECTIVE)
    before = _files(tmp_path)
    done = CliRunner().invoke(app, ["data", "check", "chula-rbc-12", "--data-root", str(clone)])
    assert done.exit_code == 1, done.output
    output = done.output
    assert _files(tmp_path) == before and not bench_home.exists()  # nothing written, no crops cut
    assert "4 points in 2 classes" in output  # 1.txt's three (one repeated) and 2.txt's line 1
    assert any(line.split() == ["normal_cell", "2"] for line in output.splitlines()), output
    assert any(line.split() == ["spherocyte", "2"] for line in output.splitlines()), output
    assert "Label/2.txt:2: '40 x 6'" in output and "Label/2.txt:6: '30 30 0 1'" in output
    assert "Label/2.txt:3: code 13 (not 0-12)" in output
    assert "Label/2.txt:4: (70, 5) outside Dataset/2.jpg (48 x 40 px)" in output
    assert "Label/1.txt:1 and 3: (20, 20)" in output
    assert "Dataset/9.* (for Label/9.txt, 1 point(s))" in output
    assert "no labels file (1): Dataset/4.jpg" in output and "hidden (1): Label/.DS_Store" in output
    assert "README.md" in output
    for problem in ("2 malformed line(s)", "1 code(s) outside", "1 point(s) outside their image",
                    "1 point(s) given twice", "1 listed file(s) do not exist", "expected class(es) absent"):
        assert any(line.startswith(f"problem: {problem}") for line in output.splitlines()), (problem, output)
    from tasks import get_task
    from tasks.checks import check_dataset

    clean = check_dataset(get_task("chula-rbc-12"), _clone(tmp_path / "clean", CLEAN), tmp_path)
    assert clean.n_images == 10 and clean.unit == "points" and not clean.defects and not clean.duplicate_groups
    assert clean.problems() == [f"expected class(es) absent: {', '.join(sorted(set(NAMES) - {'normal_cell', 'spherocyte', 'ovalocyte'}))}"]


def test_a_run_refuses_defective_lines_naming_the_file_the_line_and_the_fix(tmp_path):
    clone = _clone(tmp_path / "clone", DEFECTIVE)
    with pytest.raises(DataError) as refused:
        _task(16).load(clone, data_home=tmp_path / "data")
    message = str(refused.value)
    assert "Label/2.txt:2: '40 x 6'" in message and "Label/2.txt:3: code 13" in message
    assert "Label/2.txt:4: (70, 5) outside Dataset/2.jpg" in message
    assert f"bench data check chula-rbc-12 --data-root {clone}" in message and "Correct or delete" in message
    assert not (tmp_path / "data").exists()  # refused before anything is cut
    (clone / "Label" / "2.txt").write_text("24 20 3\n")  # fixed
    dataset = _task(16).load(clone, data_home=tmp_path / "data")
    assert len(dataset) == 4  # the repeated point kept under both lines, the labels file without image left out
    assert any("byte-identical" in note and "1/1_001.png = 1/1_003.png" in note for note in dataset.notes)
    assert any("name an absent image" in w for w in dataset.warnings)
    (clone / "Dataset" / "2.jpg").write_text("<html>404</html>")  # a labelled smear that is not an image
    with pytest.raises(DataError, match=r"1 labelled image\(s\) cannot be read: Dataset/2.jpg: "):
        _task(16).load(clone, data_home=tmp_path / "data")
    with pytest.raises(DataError, match="holds no 'Dataset' and 'Label' folders.*git clone"):
        _task(16).load(tmp_path / "data", data_home=tmp_path / "data")


# -- the real copy --------------------------------------------------------------------------------------------------
needs_clone = pytest.mark.skipif(not CHULA, reason="the Chula-RBC-12 clone is not here: set HEMABENCH_CHULA to a clone "
                                                   "of github.com/Chula-PIC-Lab/Chula-RBC-12-Dataset")


def _counted_by_hand(clone: Path) -> pd.Series:
    """Points per class, read straight from the labels files with numpy."""
    files = sorted((clone / "Label").glob("*.txt"))
    codes = np.concatenate([np.loadtxt(f, dtype=np.int64, ndmin=2).reshape(-1, 3)[:, 2] for f in files
                            if f.stat().st_size])
    return pd.Series(codes).map(dict(enumerate(NAMES))).value_counts()


@needs_clone
def test_the_real_copy_holds_22106_points_on_738_images_and_623_labels_files(tmp_path):
    from tasks import get_task
    from tasks.checks import check_dataset

    clone = Path(CHULA or "")
    report = check_dataset(get_task("chula-rbc-12"), clone, tmp_path, verify=False)
    assert not list(tmp_path.iterdir())  # nothing written
    assert report.n_images == 22_106 and report.class_counts == _counted_by_hand(clone).to_dict()
    assert report.class_counts == {"normal_cell": 6330, "macrocyte": 689, "microcyte": 461, "spherocyte": 3449,
                                   "target_cell": 2753, "stomatocyte": 1996, "ovalocyte": 2140, "teardrop": 307,
                                   "burr_cell": 785, "schistocyte": 897, "uncategorised": 184, "hypochromia": 1063,
                                   "elliptocyte": 1052}
    assert len(list((clone / "Dataset").glob("*.jpg"))) == 738 and len(list((clone / "Label").glob("*.txt"))) == 623
    assert report.notes[0].startswith("738 images, 623 labels files, 22106 points on 621 images; 115 image(s)")
    assert not report.defects and not report.missing_files and not report.missing_classes and not report.unreadable
    assert len(report.duplicate_groups) == 22 and all(len(group) == 2 for group in report.duplicate_groups)
    assert sum(reason == "no labels file" for reason in report.ignored_files.values()) == 115


@needs_clone
def test_the_real_crops_keep_smears_whole(tmp_path):
    from tasks import get_task

    clone = Path(CHULA or "")
    dataset = get_task("chula-rbc-12").load(clone, data_home=tmp_path)
    assert len(dataset) == 22_106 and len(list(dataset.root.rglob("*.png"))) == 22_106
    index = pd.read_csv(dataset.root / "crops.csv")
    samples = dataset.samples.merge(index[["path", "image"]], on="path")
    assert (samples.groupby("image")["fold"].nunique() == 1).all()
    twins = samples.groupby("image")["fold"].first()
    assert twins["Dataset/560.jpg"] == twins["Dataset/607.jpg"]  # byte-identical smears, labelled apart
    assert int(index["padded"].sum()) == 4004
    for _, row in index[~index["padded"]].iloc[::2000].iterrows():
        smear = np.asarray(Image.open(clone / row["image"]).convert("RGB"))
        crop = np.asarray(Image.open(dataset.root / row["path"]))
        assert np.array_equal(crop, smear[row["y"] - 40:row["y"] + 40, row["x"] - 40:row["x"] + 40])
