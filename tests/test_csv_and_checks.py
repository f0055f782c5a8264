"""The csv:<path> door, bench data check (check_dataset) and bench data info (describe_task)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks import get_task
from tasks.base import DataError
from tasks.checks import check_dataset, describe_task
from tasks.csvfile import task_for
from tasks.splits import merge_groups
from tasks.validation import hash_and_sniff, sniff_image_format
from tests.conftest import make_image_folder

# built-ins through the registry, which names them (their module objects carry no name)
ACEVEDO, ACEVEDO_11, BMC = get_task("acevedo"), get_task("acevedo-11"), get_task("bmc")


def _csv_dataset(tmp_path: Path, with_patient: bool = True) -> Path:
    """images/<class>/<file>.png (3 classes x 15) listed in data/cells.csv with ../ paths, 5 patients per class."""
    make_image_folder(tmp_path / "set" / "images", {"a": 15, "b": 15, "c": 15}, size=16)
    rows = []
    for file in sorted((tmp_path / "set" / "images").rglob("*.png")):
        label = file.parent.name
        index = int(file.stem.rsplit("_", 1)[1])
        rows.append({"path": f"images/{label}/{file.name}", "label": label, "patient": f"{label}-p{index % 5}"})
    table = pd.DataFrame(rows)
    if not with_patient:
        table = table.drop(columns="patient")
    csv = tmp_path / "set" / "cells.csv"
    table.sample(frac=1.0, random_state=0).to_csv(csv, index=False)
    return csv


def test_csv_door_groups_patients_and_is_portable(tmp_path):
    csv = _csv_dataset(tmp_path)
    task = task_for(str(csv))
    assert task.name == f"csv:{csv}"
    data = task.load(data_home=tmp_path)
    assert data.root == csv.parent.resolve() and data.split_kind == "kfold"
    assert data.classes == ["a", "b", "c"] and len(data) == 45
    assert list(data.samples.columns) == ["path", "label", "patient", "fold", "sha256"]
    assert data.samples.groupby("patient")["fold"].nunique().max() == 1
    assert data.samples["fold"].value_counts().to_dict() == {f: 9 for f in range(5)}  # 15 patients of 3 cells
    shutil.copytree(tmp_path / "set", tmp_path / "moved" / "copy")
    moved = task_for(str(tmp_path / "moved" / "copy" / "cells.csv")).load(data_home=tmp_path)
    pd.testing.assert_frame_equal(data.samples, moved.samples)
    # without the patient column every image is its own group: balanced per class
    plain = task_for(str(_csv_dataset(tmp_path / "plain", with_patient=False))).load(data_home=tmp_path)
    per_class = plain.samples.groupby(["label", "fold"]).size().unstack(fill_value=0)
    assert (per_class.max(axis=1) - per_class.min(axis=1)).max() <= 1


def test_csv_door_with_absolute_paths_and_duplicates(tmp_path):
    images = make_image_folder(tmp_path / "img", {"x": 6, "y": 6}, size=16)
    shutil.copyfile(images / "x" / "x_000.png", images / "y" / "copy_of_x0.png")
    files = sorted(images.rglob("*.png"))
    table = pd.DataFrame({"path": [str(f) for f in files], "label": [f.parent.name for f in files]})
    (tmp_path / "lists").mkdir()
    table.to_csv(tmp_path / "lists" / "abs.csv", index=False)
    data = task_for(str(tmp_path / "lists" / "abs.csv")).load(data_home=tmp_path)
    assert data.root == images  # the images' common folder, as they are not under the CSV's folder
    fold = dict(zip(data.samples["path"], data.samples["fold"]))
    assert fold["x/x_000.png"] == fold["y/copy_of_x0.png"]
    assert any("x/x_000.png [x] = y/copy_of_x0.png [y]" in n for n in data.notes)


def test_csv_door_errors(tmp_path):
    csv = _csv_dataset(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        task_for(str(tmp_path / "none.csv")).load(data_home=tmp_path)
    (tmp_path / "set" / "nolabel.csv").write_text("path,class\nimages/a/a_000.png,a\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['label'\].*path,label"):
        task_for(str(tmp_path / "set" / "nolabel.csv")).load(data_home=tmp_path)
    table = pd.read_csv(csv)
    table.loc[len(table)] = {"path": "images/a/missing.png", "label": "a", "patient": "a-p0"}
    table.to_csv(tmp_path / "set" / "missing.csv", index=False)
    with pytest.raises(DataError, match=r"1 listed file\(s\) do not exist.*images/a/missing\.png"):
        task_for(str(tmp_path / "set" / "missing.csv")).load(data_home=tmp_path)
    table.iloc[:-1].assign(label=lambda t: t["label"].where(t.index != 3, "")).to_csv(tmp_path / "set" / "blank.csv", index=False)
    with pytest.raises(DataError, match="empty path or label"):
        task_for(str(tmp_path / "set" / "blank.csv")).load(data_home=tmp_path)
    # the check reports the missing file instead of raising
    report = check_dataset(task_for(str(tmp_path / "set" / "missing.csv")), None, tmp_path)
    assert report.missing_files == ["images/a/missing.png"] and not report.ok and report.n_images == 45


def test_merge_groups_links_shared_keys_transitively():
    groups = merge_groups(["h1", "h2", "h3", "h1", "h4"], ["p1", "p2", "p2", "p3", ""])
    assert groups[0] == groups[3] and groups[1] == groups[2]
    assert len(set(groups)) == 3


def test_sniffing_image_signatures(tmp_path):
    assert sniff_image_format(b"\xff\xd8\xff\xe0\x00\x10JFIF") == "jpeg"
    assert sniff_image_format(b"\x89PNG\r\n\x1a\n....") == "png"
    assert sniff_image_format(b"II*\x00") == "tiff" and sniff_image_format(b"BM....") == "bmp"
    assert sniff_image_format(b"<!DOCTYPE html>") is None and sniff_image_format(b"") is None
    (tmp_path / "f.jpg").write_text("not an image")
    sha, fmt = hash_and_sniff(tmp_path / "f.jpg")
    assert fmt is None and len(sha) == 64


def test_check_dataset_reports_planted_defects(tmp_path):
    root = make_image_folder(tmp_path / "cells", {"a": 6, "b": 6, "c": 4}, size=16)
    shutil.copyfile(root / "a" / "a_000.png", root / "a" / "a_dup.png")
    shutil.copyfile(root / "a" / "a_000.png", root / "b" / "b_from_a.png")
    shutil.copyfile(root / "c" / "c_000.png", root / "c" / "c_dup.png")
    (root / "b" / "b_html.jpg").write_text("<html>Forbidden</html>")
    (root / "c" / "c_truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(200)))
    (root / "c" / "readme.txt").write_text("notes")
    (root / "empty").mkdir()
    report = check_dataset(get_task(f"imagefolder:{root}"), None, tmp_path)
    assert report.root == str(root)
    assert report.class_counts == {"a": 7, "b": 7, "c": 6}  # the non-image b/b_html.jpg is not counted
    assert report.n_images == 20
    assert report.empty_classes == ["empty"]
    assert report.duplicate_groups == [["a/a_000.png", "a/a_dup.png", "b/b_from_a.png"], ["c/c_000.png", "c/c_dup.png"]]
    assert len(report.duplicate_pairs) == 4
    assert report.cross_class_duplicates == [["a/a_000.png [a]", "a/a_dup.png [a]", "b/b_from_a.png [b]"]]
    assert report.non_images == ["b/b_html.jpg"]
    assert [u.split(":")[0] for u in report.unreadable] == ["c/c_truncated.jpg"]
    assert report.ignored_files == {"c/readme.txt": "not an image by name (.txt)"}
    assert not report.ok and len(report.problems()) == 4
    text = report.format()
    assert "b/b_html.jpg" in text and "cross-class duplicate" in text and "class folder(s) without images: empty" in text
    info = report.as_dict()
    assert info["ok"] is False and len(info["duplicate_pairs"]) == 4
    clean = check_dataset(get_task(f"imagefolder:{make_image_folder(tmp_path / 'ok', {'a': 3, 'b': 3})}"), None, tmp_path)
    assert clean.ok and clean.format().endswith("no problems found")
    with pytest.raises(DataError, match="does not exist"):
        check_dataset(ACEVEDO, tmp_path / "nowhere", tmp_path)


def test_check_dataset_uses_the_task_layout(tmp_path):
    from tests.test_bmc import make_bmc

    parent = make_bmc(tmp_path, {"ABE": 3, "ART": 9})
    report = check_dataset(BMC, parent, tmp_path)  # nested ART/0001-0004/... found, parent accepted
    assert report.class_counts == {"ABE": 3, "ART": 9}
    assert "PMO" in report.missing_classes and not report.ok
    data_home = tmp_path / "home"
    (data_home / "PBC_dataset_normal_DIB" / "ig").mkdir(parents=True)
    for name in ("IG_1.png", "MMY_2.png", "MY_3.png"):
        shutil.copyfile(parent / "BM_cytomorphology_data" / "ABE" / "ABE_00001.jpg", data_home / "PBC_dataset_normal_DIB" / "ig" / name)
    fine = check_dataset(ACEVEDO_11, None, data_home)  # the default location under data_home
    assert fine.class_counts == {"metamyelocyte": 1, "myelocyte": 1}
    assert fine.left_out == ["ig/IG_1.png"] and len(fine.duplicate_pairs) == 1  # IG_1 is not checked further


def test_a_named_task_one_level_too_high_names_the_deeper_folder(tmp_path):
    """--data-root at the folder above a copy of the data set (under a name of the user's): `bench data check`
    reports it (it raised a KeyError when no image was at the expected depth) and `bench run` refuses it, both
    naming the folder one level deeper."""
    deeper = make_image_folder(tmp_path / "downloads" / "my-pbc", {"basophil": 2, "eosinophil": 2}, size=8)
    report = check_dataset(ACEVEDO, tmp_path / "downloads", tmp_path, verify=False)
    assert not report.ok and report.n_images == 0
    assert report.problems()[-1].endswith(f"did you mean --data-root {deeper} (or imagefolder:{deeper})?")
    with pytest.raises(DataError, match=f"did you mean --data-root {deeper} "):
        ACEVEDO.load(tmp_path / "downloads", data_home=tmp_path)
    assert check_dataset(ACEVEDO, deeper, tmp_path, verify=False).deeper is None


def test_describe_task_says_where_the_data_comes_from(tmp_path):
    acevedo = describe_task(ACEVEDO)
    assert "10.17632/snkd93bnjr.1" in acevedo and "CC BY 4.0" in acevedo and "PBC_dataset_normal_DIB/<class>/" in acevedo
    assert "$BENCH_HOME/data/PBC_dataset_normal_DIB" in acevedo
    bmc = describe_task(BMC, data_home=tmp_path)
    assert "Bone-Marrow-Cytomorphology_MLL_Helmholtz_Fraunhofer" in bmc and "CC BY 4.0" in bmc
    assert "ABE, ART" in bmc and "floor(0.2 x n)" in bmc and str(tmp_path / "BM_cytomorphology_data") in bmc
    assert "11" in describe_task(ACEVEDO_11).split("\n")[0]
    generic = describe_task(get_task(f"imagefolder:{tmp_path}"))
    assert "<root>/<class>/<image>" in generic and f"data: {tmp_path}" in generic
    csv = describe_task(task_for(str(tmp_path / "x.csv")))
    assert "path,label[,patient]" in csv


def test_bag_task_check_walks_label_patient_folders(tmp_path):
    from tasks.patients import BagTask
    from tasks.synthetic import write_patient_bags

    root = write_patient_bags(tmp_path / "bags", n_patients_per_label=1, cells_per_patient=2, size=32)
    task = BagTask(name="bags", summary="s", data_dir="", obtain="o", fixed_root=root)
    report = check_dataset(task, None, tmp_path, verify=False)
    assert report.n_images == sum(report.class_counts.values()) == len(pd.read_csv(root / "cells.csv"))
    assert np.all(np.array(list(report.class_counts.values())) == 2)


def test_data_cli_check_and_info(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "cells", {"a": 4, "b": 4})
    (root / "a" / "copy.png").write_bytes((root / "b" / "b_000.png").read_bytes())
    runner = CliRunner()
    checked = runner.invoke(app, ["data", "check", f"imagefolder:{root}"])
    assert checked.exit_code == 1 and "a/copy.png" in checked.output
    info = runner.invoke(app, ["data", "info", "acevedo"])
    assert info.exit_code == 0 and "Mendeley" in info.output and "CC BY 4.0" in info.output
    unknown = runner.invoke(app, ["data", "info", "acevedoo"])
    assert unknown.exit_code == 2 and "Did you mean 'acevedo'" in unknown.output
