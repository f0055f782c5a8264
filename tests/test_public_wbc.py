"""The public white-cell data sets as tasks (issue 29): ``bccd-wbc`` (apple2373/BCCD) and ``sslseg-1`` / ``sslseg-2``
(zxaoyou/segmentation_WBC), on generated copies of their layouts and, where a clone is named by an environment
variable, on the real public copies against the counts their READMEs and label files publish."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench.cli import app
from bench.core.errors import DataError

BCCD = os.environ.get("HEMABENCH_BCCD")  # a clone of github.com/apple2373/BCCD
SEGMENTATION_WBC = os.environ.get("HEMABENCH_SEGMENTATION_WBC")  # a clone of github.com/zxaoyou/segmentation_WBC


def _image(path: Path, colour, size=24) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def _bccd_clone(root: Path, counts: dict[str, int]) -> Path:
    for c, (folder, n) in enumerate(counts.items()):
        for i in range(n):
            _image(root / "BCCD_cropped" / folder / f"BloodImage_{c:03d}{i:02d}_1.jpg", (60 + 40 * c, 90, 150))
    (root / "README.md").write_text("BCCD\n")
    return root


def _segmentation_clone(root: Path, dataset: int, codes: list[int]) -> Path:
    folder = root / f"Dataset {dataset}"
    lines = ["image ID,class label"]
    for i, code in enumerate(codes, start=1):
        _image(folder / f"{i:03d}.bmp", (40 * code, 120, 200 - 30 * code))
        Image.fromarray(np.zeros((24, 24), dtype=np.uint8)).save(folder / f"{i:03d}.png")  # its mask
        lines.append(f"{i},{code}")
    (root / f"Class Labels of Dataset {dataset}.csv").write_text("\n".join(lines) + "\n")
    return root


def _check(task: str, root: Path) -> str:
    done = CliRunner().invoke(app, ["data", "check", task, "--data-root", str(root)])
    assert done.exit_code == 0, done.output
    return done.output


def test_bccd_reads_the_clone_and_names_classes_in_lower_case(tmp_path):
    clone = _bccd_clone(tmp_path / "BCCD", {"Basophil": 2, "Eosinophil": 5, "Lymphocyte": 4, "Monocyte": 3,
                                            "Neutrophil": 7})
    output = _check("bccd-wbc", clone)  # the clone: descends into BCCD_cropped
    assert f"{clone / 'BCCD_cropped'}" in output and "21 images in 5 classes" in output
    for label, n in (("basophil", 2), ("eosinophil", 5), ("lymphocyte", 4), ("monocyte", 3), ("neutrophil", 7)):
        assert any(line.split() == [label, str(n)] for line in output.splitlines()), (label, output)
    from tasks import get_task

    dataset = get_task("bccd-wbc").load(clone, data_home=tmp_path)
    assert dataset.classes == ["basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    assert dataset.describe()["n_images_found"] == 21 and get_task("bccd-wbc").card.full_set_images == 351
    (clone / "BCCD_cropped" / "Platelet").mkdir()
    _image(clone / "BCCD_cropped" / "Platelet" / "p.jpg", (1, 2, 3))
    with pytest.raises(DataError, match=r"\['Platelet'\] that are not BCCD class folders"):
        get_task("bccd-wbc").load(clone, data_home=tmp_path)


def test_segmentation_wbc_labels_come_from_its_csv_and_masks_are_not_images_of_the_task(tmp_path):
    codes = [1, 1, 2, 3, 4, 5, 2, 1, 3, 4]
    clone = _segmentation_clone(tmp_path / "segmentation_WBC", 1, codes)
    from tasks import get_task

    task = get_task("sslseg-1")
    dataset = task.load(clone, data_home=tmp_path)
    names = {1: "neutrophil", 2: "lymphocyte", 3: "monocyte", 4: "eosinophil", 5: "basophil"}  # the README's order
    expected = {f"Dataset 1/{i:03d}.bmp": names[code] for i, code in enumerate(codes, start=1)}
    assert dict(zip(dataset.samples["path"], dataset.samples["label"])) == expected
    assert set(dataset.ignored_files.values()) == {"segmentation mask"} and len(dataset.ignored_files) == len(codes)
    assert any("not checked by a domain expert" in note for note in dataset.notes)
    same = task.load(clone / "Dataset 1", data_home=tmp_path)  # the data set's own folder: its labels are above
    assert same.root == clone and len(same) == len(codes)
    with pytest.raises(DataError, match="Class Labels of Dataset 2.csv does not exist"):
        get_task("sslseg-2").load(clone, data_home=tmp_path)
    (clone / "Dataset 1" / "010.bmp").unlink()
    fewer = task.load(clone, data_home=tmp_path)
    assert len(fewer) == 9 and any("1 image(s) listed in Class Labels of Dataset 1.csv are absent" in n
                                   for n in fewer.notes)
    (clone / "Class Labels of Dataset 1.csv").write_text("image ID,class label\n1,7\n")
    with pytest.raises(DataError, match=r"class label\(s\) \['7'\] are not 1-5"):
        task.load(clone, data_home=tmp_path)


def test_a_domain_shift_between_two_public_layouts_shares_classes_by_name(tmp_path, monkeypatch):
    """bccd-wbc=>sslseg-2 over generated copies put where each task looks by default."""
    home = tmp_path / "home"
    monkeypatch.setenv("BENCH_HOME", str(home))
    _bccd_clone(home / "data" / "bccd-clone", {"Basophil": 3, "Eosinophil": 6, "Lymphocyte": 6, "Monocyte": 6,
                                                "Neutrophil": 6})
    (home / "data" / "bccd-clone" / "BCCD_cropped").rename(home / "data" / "BCCD_cropped")
    _segmentation_clone(home / "data" / "segmentation_WBC", 2, [1, 2, 3, 4, 1, 2, 3, 4, 1, 2])
    done = CliRunner().invoke(app, ["run", "-e", "color-histogram", "-t", "bccd-wbc=>sslseg-2", "-p", "knn-1",
                                    "--results", str(tmp_path / "r"), "--no-progress"])
    assert done.exit_code == 0, done.output
    import json

    record = json.loads(next((tmp_path / "r").rglob("knn-1.json")).read_text())
    assert record["task"]["train"]["n_samples"] == 27 and record["task"]["test"]["n_samples"] == 10
    assert record["metrics"]["per_fold"][0]["n_test"] == 10
    assert not any("classes only in the test task" in w for w in record["warnings"])  # names shared: lower case


@pytest.mark.skipif(not BCCD, reason="the BCCD clone is not here: set HEMABENCH_BCCD to a clone of "
                                     "github.com/apple2373/BCCD")
def test_the_real_bccd_copy_holds_the_published_counts():
    from tasks import get_task

    dataset = get_task("bccd-wbc").load(Path(BCCD), data_home=Path(BCCD))
    counts = dataset.samples["label"].value_counts().to_dict()
    assert counts == {"neutrophil": 207, "eosinophil": 88, "lymphocyte": 33, "monocyte": 20, "basophil": 3}  # README


@pytest.mark.skipif(not SEGMENTATION_WBC, reason="the segmentation_WBC clone is not here: set "
                                                 "HEMABENCH_SEGMENTATION_WBC to a clone of "
                                                 "github.com/zxaoyou/segmentation_WBC")
def test_the_real_segmentation_wbc_copies_hold_their_label_files_counts():
    import pandas as pd

    from tasks import get_task

    names = {1: "neutrophil", 2: "lymphocyte", 3: "monocyte", 4: "eosinophil", 5: "basophil"}
    for task, dataset_number, n in (("sslseg-1", 1, 300), ("sslseg-2", 2, 100)):
        dataset = get_task(task).load(Path(SEGMENTATION_WBC), data_home=Path(SEGMENTATION_WBC))
        table = pd.read_csv(Path(SEGMENTATION_WBC) / f"Class Labels of Dataset {dataset_number}.csv")
        expected = table.iloc[:, 1].map(names).value_counts().to_dict()
        assert len(dataset) == n and dataset.samples["label"].value_counts().to_dict() == expected
        assert len(dataset.ignored_files) == n  # every image's mask


def test_list_tasks_details_says_whose_data_are_here(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("BENCH_HOME", str(home))
    _bccd_clone(home / "data" / "clone", {"Basophil": 1, "Neutrophil": 1})
    (home / "data" / "clone" / "BCCD_cropped").rename(home / "data" / "BCCD_cropped")
    done = CliRunner().invoke(app, ["list", "tasks", "--details"])
    assert done.exit_code == 0, done.output
    rows = {line.split()[0]: line for line in done.output.splitlines() if line.strip()}
    assert "here:" in rows["bccd-wbc"] and "351" in rows["bccd-wbc"]
    assert rows["acevedo"].rstrip().endswith("absent") and "17,092" in rows["acevedo"]
    assert "embedded" in rows["synthetic-wbc"]
    assert "absent from" in done.output and "sslseg-1" in " ".join(done.output.split()).rsplit("absent from", 1)[1]
