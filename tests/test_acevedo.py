"""acevedo / acevedo-11 on the real PBC subset (../shared/data/pbc, skipped when absent), and the grouped
stratified folds they use (synthetic path lists, always run)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks import get_task
from tasks.acevedo import ACEVEDO_11_CLASSES, ACEVEDO_CLASSES, DATA_DIR
from tasks.base import DataError
from tasks.checks import check_dataset
from tasks.splits import stratified_folds, stratified_group_folds
from tests.conftest import PBC, real_data_absent

# built-ins through the registry, which names them (their module objects carry no name)
ACEVEDO, ACEVEDO_11 = get_task("acevedo"), get_task("acevedo-11")
PER_FINE_LABEL = 8  # images per manifest label_fine (13 of them, the rarest has 9): 104 images


# ----------------------------------------------------------------------------------------------
# stratified_group_folds on path lists
# ----------------------------------------------------------------------------------------------
def _grouped_table(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for label, n in zip("xyz", (37, 23, 14)):
        for i in range(n):
            rows.append((f"{label}/img_{i:03d}.jpg", label, f"{label}{i}"))
    table = pd.DataFrame(rows, columns=["path", "label", "group"])
    # groups of 2-4 members inside classes, and two cross-class groups
    for start in rng.choice(30, size=5, replace=False):
        table.loc[(table["label"] == "x") & table["path"].str[-7:-4].astype(int).between(start, start + 2), "group"] = f"gx{start}"
    table.loc[table["path"].isin(["x/img_036.jpg", "z/img_000.jpg"]), "group"] = "cross1"
    table.loc[table["path"].isin(["y/img_010.jpg", "z/img_013.jpg", "z/img_012.jpg"]), "group"] = "cross2"
    return table


def test_group_folds_keep_groups_together_and_stay_balanced():
    table = _grouped_table()
    table["fold"] = stratified_group_folds(table["path"], table["label"], table["group"], 5, seed=0)
    assert table.groupby("group")["fold"].nunique().max() == 1
    sizes = table["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 2, sizes.to_dict()
    per_class = table.groupby(["label", "fold"]).size().unstack(fill_value=0)
    assert (per_class.max(axis=1) - per_class.min(axis=1)).max() <= 3, per_class
    assert set(table["fold"]) == set(range(5))


def test_group_folds_are_portable_and_ignore_group_spelling():
    table = _grouped_table()
    folds = dict(zip(table["path"], stratified_group_folds(table["path"], table["label"], table["group"], 5, 0)))
    shuffled = table.sample(frac=1.0, random_state=3)
    renamed = shuffled["group"].map(lambda g: f"other-{g[::-1]}")
    again = dict(zip(shuffled["path"], stratified_group_folds(shuffled["path"], shuffled["label"], renamed, 5, 0)))
    assert folds == again
    other_seed = stratified_group_folds(table["path"], table["label"], table["group"], 5, seed=1)
    assert list(folds.values()) != list(other_seed)


def test_group_folds_without_groups_equal_the_plain_folds():
    table = _grouped_table()
    plain = stratified_folds(table["path"], table["label"], 5, seed=4)
    grouped = stratified_group_folds(table["path"], table["label"], table["path"], 5, seed=4)
    assert (plain == grouped).all()


def test_cross_class_group_is_stratified_on_its_first_path():
    # Two classes of 5; one extra 'b' sample duplicates an 'a' sample whose path sorts first -> counts as 'a'.
    paths = [f"a/{i}.jpg" for i in range(5)] + [f"b/{i}.jpg" for i in range(5)] + ["b/9.jpg"]
    labels = ["a"] * 5 + ["b"] * 6
    groups = list(range(10)) + [0]
    folds = stratified_group_folds(paths, labels, groups, 5, seed=0)
    assert folds[0] == folds[10]
    # the 'b' singles are spread over all 5 folds; the 'a' units (one of size 2) too
    assert sorted(folds[5:10]) == [0, 1, 2, 3, 4] and sorted(folds[:5]) == [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------------------------
# The real subset in the Acevedo layout
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def manifest() -> pd.DataFrame:
    csv = PBC / "labeled" / "manifest.csv"
    if not csv.is_file():
        pytest.skip(real_data_absent(csv.parent))
    table = pd.read_csv(csv, dtype=str)
    picked = table.sort_values("sha256").groupby("label_fine", group_keys=False).head(PER_FINE_LABEL)
    return picked.sort_values("path", ignore_index=True)


def _build_layout(parent: Path, manifest: pd.DataFrame, copy: bool = False) -> Path:
    """``<parent>/PBC_dataset_normal_DIB/<class>/<file>`` as symlinks (or copies) to the real images."""
    root = parent / DATA_DIR
    for rel in manifest["path"]:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        source = PBC / "labeled" / rel
        if copy:
            shutil.copyfile(source, target)
        else:
            os.symlink(source.resolve(), target)
    return parent


@pytest.fixture
def layout(tmp_path, manifest) -> Path:
    return _build_layout(tmp_path / "download", manifest)


def test_acevedo_has_the_8_folder_classes_and_balanced_folds(layout, manifest, tmp_path):
    data = ACEVEDO.load(layout, data_home=tmp_path)  # --data-root at the folder above the data set
    assert data.root == layout / DATA_DIR
    same = ACEVEDO.load(layout / DATA_DIR, data_home=tmp_path)  # ... or at the data set itself
    pd.testing.assert_frame_equal(data.samples, same.samples)
    assert data.classes == list(ACEVEDO_CLASSES)
    assert len(data) == len(manifest) == 13 * PER_FINE_LABEL
    assert data.split_kind == "kfold" and list(data.samples.columns) == ["path", "label", "fold", "sha256"]
    assert dict(zip(data.samples["path"], data.samples["sha256"])) == dict(zip(manifest["path"], manifest["sha256"]))
    assert dict(zip(data.samples["path"], data.samples["label"])) == dict(zip(manifest["path"], manifest["label"]))
    per_class = data.samples.groupby(["label", "fold"]).size().unstack(fill_value=0)
    assert per_class.shape == (8, 5)
    assert (per_class.max(axis=1) - per_class.min(axis=1)).max() <= 1
    sizes = data.samples["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 1
    assert data.notes == []


def test_union_label_map_and_splits_cover_every_image(layout, tmp_path):
    data = ACEVEDO.load(layout, data_home=tmp_path)
    indices = data.label_indices()
    assert [data.classes[i] for i in indices] == data.samples["label"].tolist()
    splits = data.splits()
    assert [name for name, _, _ in splits] == ["0", "1", "2", "3", "4"]
    assert sorted(np.concatenate([test for _, _, test in splits])) == list(range(len(data)))
    for _, train, test in splits:
        assert not set(train) & set(test)
        assert set(indices[train]) == set(range(8))  # every class is trained on in every fold


def test_acevedo_11_labels_match_the_manifest(layout, manifest, tmp_path):
    data = ACEVEDO_11.load(layout, data_home=tmp_path)
    assert data.classes == list(ACEVEDO_11_CLASSES) and len(ACEVEDO_11_CLASSES) == 11
    unspecified = manifest["label_fine"].isin(["ig", "neutrophil"])
    kept = manifest[~unspecified]
    assert dict(zip(data.samples["path"], data.samples["label"])) == dict(zip(kept["path"], kept["label_fine"]))
    left_out = sorted(manifest.loc[unspecified, "path"])
    assert len(left_out) == 2 * PER_FINE_LABEL
    assert sorted(p for p in data.ignored_files if p in left_out) == left_out
    note = next(n for n in data.notes if "leaves out" in n)
    assert f"leaves out {len(left_out)} image(s)" in note
    assert f"{PER_FINE_LABEL} ig/IG_*" in note and f"{PER_FINE_LABEL} neutrophil/NEUTROPHIL_*" in note
    per_class = data.samples.groupby(["label", "fold"]).size().unstack(fill_value=0)
    assert per_class.shape == (11, 5) and (per_class.max(axis=1) - per_class.min(axis=1)).max() <= 1


def test_folds_survive_a_copy_elsewhere(layout, manifest, tmp_path):
    data = ACEVEDO.load(layout, data_home=tmp_path)
    elsewhere = _build_layout(tmp_path / "other" / "machine", manifest.sample(frac=1.0, random_state=1), copy=True)
    moved = ACEVEDO.load(elsewhere / DATA_DIR, data_home=tmp_path)
    pd.testing.assert_frame_equal(data.samples, moved.samples)
    assert data.split_fingerprint() == moved.split_fingerprint()
    # the split function itself does not care about listing order
    shuffled = data.samples.sample(frac=1.0, random_state=5)
    refolds = stratified_group_folds(shuffled["path"], shuffled["label"], shuffled["sha256"], 5, 0)
    assert dict(zip(shuffled["path"], refolds)) == dict(zip(data.samples["path"], data.samples["fold"]))


def test_planted_duplicates_and_non_image_are_reported(layout, tmp_path):
    root = layout / DATA_DIR
    basophil = sorted((root / "basophil").iterdir())[0]
    eosinophil = sorted((root / "eosinophil").iterdir())[0]
    shutil.copyfile(basophil, root / "basophil" / "BA_0000001.jpg")  # within one class
    shutil.copyfile(eosinophil, root / "lymphocyte" / "LY_0000001.jpg")  # across classes
    (root / "monocyte" / "MO_0000001.jpg").write_text("<html><body>404 Not Found</body></html>")
    (root / "platelet" / "Thumbs.db").write_bytes(b"\x00" * 16)

    data = ACEVEDO.load(layout, data_home=tmp_path)
    fold = dict(zip(data.samples["path"], data.samples["fold"]))
    label = dict(zip(data.samples["path"], data.samples["label"]))
    within = (f"basophil/{basophil.name}", "basophil/BA_0000001.jpg")
    cross = (f"eosinophil/{eosinophil.name}", "lymphocyte/LY_0000001.jpg")
    assert fold[within[0]] == fold[within[1]]
    assert fold[cross[0]] == fold[cross[1]]
    assert (label[cross[0]], label[cross[1]]) == ("eosinophil", "lymphocyte")  # both labels kept
    assert "monocyte/MO_0000001.jpg" not in label
    assert "monocyte/MO_0000001.jpg" in data.ignored_files and "platelet/Thumbs.db" in data.ignored_files
    notes = "\n".join(data.notes)
    assert "2 set(s) of byte-identical images" in notes and "each set in one fold" in notes
    cross_note = next(n for n in data.notes if "different labels" in n)
    assert f"{cross[0]} [eosinophil] = {cross[1]} [lymphocyte]" in cross_note
    assert "not images" in notes and "monocyte/MO_0000001.jpg" in notes
    # acevedo-11 sees the same defects
    fine = ACEVEDO_11.load(layout, data_home=tmp_path)
    assert any("different labels" in n for n in fine.notes)

    report = check_dataset(ACEVEDO, layout, tmp_path)
    assert report.non_images == ["monocyte/MO_0000001.jpg"]
    assert len(report.duplicate_pairs) == 2 and len(report.cross_class_duplicates) == 1
    assert report.unreadable == [] and not report.ok


def test_bad_acevedo_folders_get_clear_errors(layout, tmp_path):
    with pytest.raises(DataError, match="does not exist.*Mendeley"):
        ACEVEDO.load(tmp_path / "nowhere", data_home=tmp_path)
    (layout / DATA_DIR / "unknown_cells").mkdir()
    with pytest.raises(DataError, match=r"\['unknown_cells'\].*not Acevedo classes"):
        ACEVEDO.load(layout, data_home=tmp_path)
    report = check_dataset(ACEVEDO, layout, tmp_path)  # the check reports instead of raising
    assert report.unexpected == ["unknown_cells"] and report.empty_classes == ["unknown_cells"]


def test_a_run_on_a_folder_missing_classes_warns_and_records_it(tmp_path):
    """Two of Acevedo's eight class folders: `bench run` says so as a warning, and the result records it."""
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from bench.cli import app
    from tests.conftest import TINY

    rng = np.random.default_rng(0)
    for c, label in enumerate(("basophil", "eosinophil")):
        (tmp_path / DATA_DIR / label).mkdir(parents=True)
        for i in range(10):
            pixels = np.clip(60 + 80 * c + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / DATA_DIR / label / f"{label.upper()[:2]}_{i}.jpg")
    done = CliRunner().invoke(app, ["run", "-e", TINY, "-t", "acevedo", "--data-root", str(tmp_path), "-p", "knn-1",
                                    "--results", str(tmp_path / "r"), "--no-progress"])
    assert done.exit_code == 0, done.output
    assert "warning (acevedo): class folder(s) absent" in done.output and "erythroblast, ig, lymphocyte" in done.output
    assert "ok (1 warning(s))" in done.output
    record = json.loads(next((tmp_path / "r").rglob("knn-1.json")).read_text())
    assert any("class folder(s) absent" in w and "platelet" in w for w in record["warnings"])
