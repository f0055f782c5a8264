"""``matek-19`` (AML-Cytomorphology_LMU) and ``mll23`` on generated copies of their published layouts, the harmonised
class map (tasks/harmonised.py) against the MLL23 authors' label files, and ``A=>B@classes=harmonised`` on
generated data sets of different label vocabularies; where a real copy is named by an environment variable, its
counts against the published ones."""

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

MATEK = os.environ.get("HEMABENCH_MATEK19")  # the TCIA download: the folder holding annotations.dat
MLL23_COPY = os.environ.get("HEMABENCH_MLL23")  # the 18 Zenodo archives unzipped into one folder

# marrlab/MLL23 labels_harmonised.csv (commit 1d6ca3e): harmonised label, MLL23 label and count, Matek19 label and
# count, Acevedo20 label (file-name prefix or folder)
MLL23_HARMONISED_CSV = [
    ("neutrophil_segmented", "neutrophil_segmented", 7170, "NGS", 8484, "SNE"),
    ("myeloblast", "myeloblast", 8606, "MYO", 3268, None),
    ("lymphocyte", "lymphocyte", 5532, "LYT", 3937, "lymphocyte"),
    ("eosinophil", "eosinophil", 2448, "EOS", 424, "eosinophil"),
    ("monocyte", "monocyte", 2510, "MON", 1789, "monocyte"),
    ("erythroblast", "normoblast", 2071, "EBO", 78, "erythroblast"),
    ("neutrophil_band", "neutrophil_band", 687, "NGB", 109, "BNE"),
    ("myelocyte", "myelocyte", 747, "MYB", 42, "MY"),
    ("basophil", "basophil", 616, "BAS", 79, "basophil"),
    ("metamyelocyte", "metamyelocyte", 483, "MMZ", 15, "MMY"),
    ("promyelocyte", "promyelocyte", 745, "PMO", 70, "PMY"),
]
# its labels_unharmonised.csv: MLL23 and Matek19 labels (with counts) on each row
MLL23_UNHARMONISED_CSV = [("hairy_cell", 3265, None, None), ("promyelocyte_atypical", 2033, None, None),
                          ("lymphocyte_large_granular", 1849, None, None), ("plasma_cell", 1658, None, None),
                          ("smudge_cell", 988, "KSC", 15), ("lymphocyte_neoplastic", 180, None, None),
                          ("lymphocyte_reactive", 33, None, None), (None, None, "MOB", 26), (None, None, "PMB", 18),
                          (None, None, "LYA", 11)]
ACEVEDO_11_BY_PREFIX = {"SNE": "segmented_neutrophil", "BNE": "band_neutrophil", "MY": "myelocyte",
                        "MMY": "metamyelocyte", "PMY": "promyelocyte"}


def _image(path: Path, colour, size: int = 16, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    (image.convert(mode) if mode != "RGB" else image).save(path, format="TIFF" if path.suffix.lower() in
                                                           (".tif", ".tiff") else None)


def _matek_download(root: Path, counts: dict[str, int], readings: dict[str, tuple[str, str]] | None = None,
                    absent: tuple[str, ...] = ()) -> Path:
    """The TCIA download: ``root/AML-Cytomorphology_LMU/<CLASS>/<CLASS>_<nnnn>.tiff`` (RGBA TIFF, as the
    collection's are) and ``root/annotations.dat`` (4 fields a line, ``nan`` where not re-annotated)."""
    readings = readings or {}
    lines = []
    for c, (code, n) in enumerate(counts.items()):
        for i in range(1, n + 1):
            name = f"{code}_{i:04d}"
            if name not in absent:
                _image(root / "AML-Cytomorphology_LMU" / code / f"{name}.tiff", (50 + 30 * c, 100, 160), mode="RGBA")
            second, third = readings.get(name, ("nan", "nan"))
            lines.append(f"{code}/{name}.tiff {code} {second} {third}")
    (root / "annotations.dat").write_text("\n".join(lines) + "\n")
    return root


def _mll23_copy(root: Path, counts: dict[str, int]) -> Path:
    for c, (folder, n) in enumerate(counts.items()):
        for i in range(1, n + 1):
            _image(root / "MLL23" / folder / f"{folder}_{i:04d}.TIF", (40 + 25 * c, 90, 170))
    return root


def _acevedo_copy(root: Path, counts: dict[str, tuple[str, int]]) -> Path:
    """``root/PBC_dataset_normal_DIB/<class>/<PREFIX>_<id>.jpg``."""
    for c, (folder, (prefix, n)) in enumerate(counts.items()):
        for i in range(n):
            _image(root / "PBC_dataset_normal_DIB" / folder / f"{prefix}_{1000 * c + i}.jpg", (200 - 30 * c, 80, 120))
    return root


def _check(task: str, root: Path, exit_code: int = 0) -> str:
    done = CliRunner().invoke(app, ["data", "check", task, "--data-root", str(root)])
    assert done.exit_code == exit_code, done.output
    return done.output


# -- matek-19 -------------------------------------------------------------------------------------------------------

def test_matek_reads_the_tcia_download_and_its_annotations(tmp_path):
    counts = {"BAS": 3, "EOS": 4, "LYT": 5, "NGS": 6, "NGB": 3}
    readings = {"BAS_0001": ("BAS", "BAS"), "EOS_0002": ("EOS", "UNC"), "NGS_0003": ("NGB", "NGS"),
                "LYT_0004": ("UNC", "UNC")}
    download = _matek_download(tmp_path / "tcia", counts, readings, absent=("LYT_0005",))
    # a copy whose file name carries a download suffix still matches its line; a file no line lists is not used
    (download / "AML-Cytomorphology_LMU" / "NGB" / "NGB_0003.tiff").rename(
        download / "AML-Cytomorphology_LMU" / "NGB" / "NGB_0003 (2021_05_21 20_42_39 UTC).tiff")
    _image(download / "AML-Cytomorphology_LMU" / "EOS" / "extra_cell.tiff", (1, 2, 3))
    output = _check("matek-19", download, exit_code=1)  # the folder above: descends into AML-Cytomorphology_LMU
    assert f"{download / 'AML-Cytomorphology_LMU'}" in output and "20 images in 5 classes" in output
    assert "problem: 1 listed file(s) do not exist: LYT/LYT_0005.tiff" in output  # absent from this copy
    assert "problem: expected class(es) absent: EBO, KSC, LYA" in output
    from tasks import get_task

    task = get_task("matek-19")
    dataset = task.load(download, data_home=tmp_path)
    assert dataset.samples["label"].value_counts().to_dict() == {"BAS": 3, "EOS": 4, "LYT": 4, "NGS": 6, "NGB": 3}
    assert dataset.ignored_files == {"EOS/extra_cell.tiff": "not in annotations.dat"}
    notes = " ".join(dataset.notes)
    assert "1 image(s) listed in annotations.dat are absent: LYT/LYT_0005.tiff" in notes
    assert ("4 of the 20 images were re-annotated; every further reading agrees with the label for 1, 1 have a "
            "reading of another class and 2 a reading UNC") in notes
    assert "absent" in " ".join(dataset.warnings) and "KSC" in " ".join(dataset.warnings)  # classes not here
    assert task.card.full_set_images == 18_365 and len(task.card.classes) == 15
    assert "KSC smudge cell" in task.card.layout and "PMB promyelocyte (bilobed)" in task.card.layout
    # the newer download's folder name, and the class folders given directly with annotations.dat one level up
    (download / "AML-Cytomorphology_LMU").rename(download / "AML-Cytomorphology")
    assert len(task.load(download, data_home=tmp_path)) == 20
    assert len(task.load(download / "AML-Cytomorphology", data_home=tmp_path)) == 20


def test_matek_errors_name_the_file_and_the_fix(tmp_path):
    from tasks import get_task

    task = get_task("matek-19")
    download = _matek_download(tmp_path / "tcia", {"BAS": 3, "EOS": 3})
    images = download / "AML-Cytomorphology_LMU"
    annotations = download / "annotations.dat"
    text = annotations.read_text()
    annotations.write_text(text.replace("EOS/EOS_0002.tiff EOS nan nan", "EOS/EOS_0002.tiff"))
    with pytest.raises(DataError, match=r"annotations.dat, line 5 \('EOS/EOS_0002.tiff'\): expected"):
        task.load(download, data_home=tmp_path)
    annotations.write_text(text.replace("EOS/EOS_0002.tiff EOS nan nan", "EOS/EOS_0002.tiff EOS XYZ nan"))
    with pytest.raises(DataError, match=r"line 5 .*\['XYZ'\] not among the 15 classes"):
        task.load(download, data_home=tmp_path)
    annotations.write_text(text)
    (images / "EOS" / "EOS_0002.tiff").rename(images / "BAS" / "EOS_0002.tiff")
    with pytest.raises(DataError, match=r"BAS/EOS_0002.tiff is in folder BAS, but .* labels EOS_0002 EOS: move it "
                                        r"back to EOS/"):
        task.load(download, data_home=tmp_path)
    (images / "BAS" / "EOS_0002.tiff").rename(images / "EOS" / "EOS_0002.tiff")
    (images / "EOS" / "EOS_0002.tiff.tiff").write_bytes((images / "EOS" / "EOS_0002.tiff").read_bytes())
    with pytest.raises(DataError, match=r"EOS_0002.tiff and .*EOS_0002.tiff.tiff are both image EOS_0002"):
        task.load(download, data_home=tmp_path)
    (images / "EOS" / "EOS_0002.tiff.tiff").unlink()
    _image(images / "augmented" / "BAS_9999.tiff", (1, 2, 3))
    with pytest.raises(DataError, match=r"\['augmented'\] that are not AML-Cytomorphology_LMU class folders"):
        task.load(download, data_home=tmp_path)
    (images / "augmented" / "BAS_9999.tiff").unlink()
    (images / "augmented").rmdir()
    annotations.unlink()  # the class folders alone: labels from them, said in the notes
    dataset = task.load(download, data_home=tmp_path)
    assert len(dataset) == 6 and any("annotations.dat not found" in note for note in dataset.notes)


def test_matek_reads_the_published_annotation_lines():
    """Lines as the collection's annotations.dat writes them (its first, a re-annotated and a disputed one)."""
    import tempfile

    from tasks.matek19 import read_annotations

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "annotations.dat"
        path.write_text("BAS/BAS_0001.tiff BAS nan nan\nBAS/BAS_0021.tiff BAS UNC UNC\n"
                        "EBO/EBO_0014.tiff EBO LYT EBO\n\n")
        table = read_annotations(path)
    assert {key: (a.label, a.readings) for key, a in table.items()} == {
        "BAS_0001": ("BAS", ()), "BAS_0021": ("BAS", ("UNC", "UNC")), "EBO_0014": ("EBO", ("LYT", "EBO"))}


# -- mll23 ----------------------------------------------------------------------------------------------------------

def test_mll23_reads_its_class_folders(tmp_path):
    from tasks import get_task
    from tasks.mll23 import MLL23_CLASSES, MLL23_COUNTS

    counts = {**{c: 1 for c in MLL23_CLASSES if c != "monocyte"}, "myeloblast": 5, "neutrophil_segmented": 4}
    copy = _mll23_copy(tmp_path / "zenodo", counts)
    _image(copy / "MLL23" / "monocyte" / "monocyte" / "monocyte_0001.TIF", (9, 9, 9))  # an archive's own folder
    output = _check("mll23", copy)  # the folder above: descends into MLL23
    assert "25 images in 18 classes" in output
    task = get_task("mll23")
    dataset = task.load(copy, data_home=tmp_path)
    assert dataset.samples["label"].value_counts().to_dict() == {**counts, "monocyte": 1}
    assert task.card.full_set_images == sum(MLL23_COUNTS.values()) == 41_621 and len(task.card.classes) == 18
    assert "not verified" in task.card.licence
    (copy / "MLL23" / "Basophil").mkdir()
    _image(copy / "MLL23" / "Basophil" / "x.TIF", (1, 2, 3))
    with pytest.raises(DataError, match=r"\['Basophil'\] that are not MLL23 class folders"):
        task.load(copy, data_home=tmp_path)


# -- the harmonised map ---------------------------------------------------------------------------------------------

def test_the_map_is_the_mll23_authors_harmonisation_with_each_source():
    from tasks.acevedo import ACEVEDO_11_CLASSES, ACEVEDO_CLASSES
    from tasks.bccd import BCCD_CLASSES
    from tasks.harmonised import COMMON_CLASSES, HARMONISED, SOURCES
    from tasks.matek19 import MATEK_CLASSES, MATEK_COUNTS
    from tasks.mll23 import MLL23_CLASSES, MLL23_COUNTS
    from tasks.segmentation_wbc import SSLSEG_CLASSES

    for harmonised, mll23, mll23_n, matek, matek_n, acevedo in MLL23_HARMONISED_CSV:
        assert HARMONISED["mll23"][mll23] == (harmonised, "mll23") and MLL23_COUNTS[mll23] == mll23_n
        assert HARMONISED["matek-19"][matek] == (harmonised, "mll23") and MATEK_COUNTS[matek] == matek_n
        if acevedo is not None:
            assert HARMONISED["acevedo-11"][ACEVEDO_11_BY_PREFIX.get(acevedo) or acevedo][0] == harmonised
    for mll23, mll23_n, matek, matek_n in MLL23_UNHARMONISED_CSV:  # a shared row is one class, the others none
        common = mll23 if mll23 and matek else None
        if mll23:
            assert HARMONISED["mll23"][mll23][0] == common and MLL23_COUNTS[mll23] == mll23_n
        if matek:
            assert HARMONISED["matek-19"][matek][0] == common and MATEK_COUNTS[matek] == matek_n
    assert sum(MATEK_COUNTS.values()) == 18_365
    vocabulary = {"acevedo": ACEVEDO_CLASSES, "acevedo-11": ACEVEDO_11_CLASSES, "matek-19": MATEK_CLASSES,
                  "mll23": MLL23_CLASSES, "bccd-wbc": BCCD_CLASSES, "sslseg-1": SSLSEG_CLASSES,
                  "sslseg-2": SSLSEG_CLASSES}
    for task, labels in vocabulary.items():  # every class of every task is in its map, mapped or not
        assert sorted(HARMONISED[task]) == sorted(labels), task
    for task, entries in HARMONISED.items():
        for label, (common, source) in entries.items():
            assert source in SOURCES and (common is None or common in COMMON_CLASSES), (task, label)
            assert common is not None or label not in COMMON_CLASSES  # an unmapped class never poses as a common one


def test_the_docs_table_is_the_map():
    """docs/tasks.md's table of the harmonised classes shows tasks/harmonised.py, cell by cell."""
    import re

    from tasks.harmonised import HARMONISED

    text = (Path(__file__).resolve().parents[1] / "docs" / "tasks.md").read_text()
    table = text.split("| common class |", 1)[1].split("\n\n", 1)[0].splitlines()
    header = [c.strip() for c in table[0].split("|")[:-2]]  # (after "| common class |"; before "source")
    columns = [re.findall(r"`([^`]+)`", cell) for cell in header]
    shown: dict[str, dict[str, str | None]] = {task: {} for tasks in columns for task in tasks}
    for line in table[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        common = None if cells[0] == "no counterpart" else re.findall(r"`([^`]+)`", cells[0])[0]
        for tasks, cell in zip(columns, cells[1:]):
            for label in ([] if cell == "—" else cell.split(", ")):
                for task in tasks:
                    shown[task][label] = common
    assert shown == {task: {label: common for label, (common, _) in HARMONISED[task].items()} for task in shown}
    assert sorted(shown) == sorted(HARMONISED)


def test_a_pair_shares_the_coarse_class_one_of_them_has():
    from tasks.harmonised import pair_maps

    matek, acevedo = pair_maps("matek-19", "acevedo")
    assert matek["NGB"] == matek["NGS"] == acevedo["neutrophil"] == "neutrophil"
    assert matek["PMO"] == matek["MYB"] == matek["MMZ"] == acevedo["ig"] == "immature_granulocyte"
    assert matek["MYO"] == "myeloblast" and matek["MOB"] is None and acevedo["platelet"] is None
    matek, acevedo_11 = pair_maps("matek-19", "acevedo-11")
    assert matek["NGB"] == acevedo_11["band_neutrophil"] == "neutrophil_band" and matek["PMO"] == "promyelocyte"
    mll23, bccd = pair_maps("mll23", "bccd-wbc")
    assert mll23["neutrophil_band"] == mll23["neutrophil_segmented"] == bccd["neutrophil"] == "neutrophil"
    assert mll23["promyelocyte"] == "promyelocyte" and mll23["normoblast"] == "erythroblast"
    with pytest.raises(UsageError, match=r"'imagefolder:x' has no harmonised class map .* @classes=shared"):
        pair_maps("imagefolder:x", "acevedo")


def test_the_harmonised_design_relabels_both_sides_and_names_what_is_not_scored():
    from tasks.base import CellDataset
    from tasks.domains import DomainShiftTask
    from tasks.imagefolder import CellTask

    def data(name, labels):
        samples = pd.DataFrame({"path": [f"{name}{i}.png" for i in range(len(labels))], "label": labels,
                                "fold": [str(i % 2) for i in range(len(labels))],
                                "sha256": [f"{name}{i}" for i in range(len(labels))]})
        return CellDataset(name, Path("/x"), samples, "kfold")

    matek, acevedo = CellTask(name="matek-19"), CellTask(name="acevedo")
    task = DomainShiftTask(name="matek-19=>acevedo@classes=harmonised", members=(matek, acevedo), classes="harmonised")
    joined = task.assemble([data("m", ["NGS", "NGB", "MOB", "LYT", "PMO"]),
                            data("a", ["neutrophil", "platelet", "ig", "lymphocyte", "basophil"])])
    assert joined.samples["label"].tolist() == ["neutrophil", "neutrophil", "MOB", "lymphocyte", "immature_granulocyte",
                                                "neutrophil", "platelet", "immature_granulocyte", "lymphocyte",
                                                "basophil"]
    design = joined.design(np.ones(10, dtype=bool), joined.classes)
    ((_, train, test),) = design.splits
    assert train.tolist() == [0, 1, 2, 3, 4] and test.tolist() == [5, 7, 8]  # platelet, basophil: not scored
    assert [design.classes[i] for i in design.predictable or []] == ["immature_granulocyte", "lymphocyte",
                                                                     "neutrophil"]
    warnings = " ".join(joined.warnings)
    assert "classes only in the training task 'matek-19': ['MOB']" in warnings
    assert "scored on the 3 harmonised classes both tasks hold" in warnings and "['basophil', 'platelet']" in warnings
    info = joined.describe("matek-19=>acevedo@classes=harmonised")
    assert info["shared_classes"] == ["immature_granulocyte", "lymphocyte", "neutrophil"]
    assert info["harmonised_classes"]["train"]["NGB"] == "neutrophil" and info["train"]["classes"] == [
        "LYT", "MOB", "NGB", "NGS", "PMO"]  # each member's own description keeps its own labels
    assert task.settings()["harmonised_classes"]["test"]["ig"] == "immature_granulocyte"
    folds = DomainShiftTask(name="matek-19=>acevedo@training=folds@classes=harmonised", members=(matek, acevedo),
                            training="folds", classes="harmonised")
    joined = folds.assemble([data("m", ["NGS", "NGB", "MOB", "LYT", "PMO"]),
                             data("a", ["neutrophil", "platelet", "ig", "lymphocyte", "basophil"])])
    keep = np.array([True, False, True, True, True, True, True, True, True, True])
    design = joined.design(keep, joined.classes)  # each fold's training part of matek-19, its readable rows
    assert [(name, train.tolist(), test.tolist()) for name, train, test in design.splits] == [
        ("0", [3], [5, 7, 8]), ("1", [0, 2, 4], [5, 7, 8])]


def test_names_take_the_harmonised_variant():
    from tasks import get_task
    from tasks.names import parse

    assert parse("a=>b@classes=harmonised").variants == (("classes", "harmonised"),)
    task = get_task("matek-19=>acevedo-11@classes=harmonised@folds=authors")
    assert task.name == "matek-19=>acevedo-11@folds=authors@classes=harmonised" and task.classes == "harmonised"
    with pytest.raises(UsageError, match="has no harmonised class map"):
        get_task("bmc=>acevedo@classes=harmonised")
    done = CliRunner().invoke(app, ["run", "-e", "color-histogram", "-t", "bmc=>acevedo@classes=harmonised"])
    assert done.exit_code == 2 and "has no harmonised class map" in done.output


def test_a_harmonised_shift_between_two_vocabularies_runs_end_to_end(tmp_path, bench_home):
    """matek-19 (abbreviations) => acevedo (folder names): no class name is shared, the harmonised classes are."""
    data = bench_home / "data"
    _matek_download(tmp_path / "tcia", {"NGS": 6, "NGB": 4, "PMO": 5, "LYT": 6, "MOB": 3})
    data.mkdir(parents=True, exist_ok=True)
    (tmp_path / "tcia" / "AML-Cytomorphology_LMU").rename(data / "AML-Cytomorphology_LMU")
    (tmp_path / "tcia" / "annotations.dat").rename(data / "annotations.dat")  # one level above the class folders
    _acevedo_copy(data / "pbc", {"neutrophil": ("SNE", 4), "ig": ("MY", 3), "lymphocyte": ("LY", 4),
                                 "platelet": ("PLATELET", 2)})
    (data / "pbc" / "PBC_dataset_normal_DIB").rename(data / "PBC_dataset_normal_DIB")
    runner = CliRunner()
    shared = runner.invoke(app, ["run", "-e", "color-histogram", "-t", "matek-19=>acevedo@classes=shared", "-p",
                                 "knn-1", "--results", str(tmp_path / "r"), "--no-progress"])
    assert shared.exit_code == 1 and "share no class" in shared.output  # by name: nothing in common
    done = runner.invoke(app, ["run", "-e", "color-histogram", "-t", "matek-19=>acevedo@classes=harmonised", "-p",
                               "knn-1", "--results", str(tmp_path / "r"), "--no-progress"])
    assert done.exit_code == 0, done.output
    record = json.loads(next((tmp_path / "r").rglob("knn-1.json")).read_text())
    assert record["task"]["task"] == "matek-19=>acevedo@classes=harmonised"
    assert record["task"]["shared_classes"] == ["immature_granulocyte", "lymphocyte", "neutrophil"]
    assert record["task"]["harmonised_classes"]["train"]["PMO"] == "immature_granulocyte"
    assert record["metrics"]["per_fold"][0]["n_test"] == 11  # platelets not scored
    assert any("test cells of ['platelet'] are not scored" in w for w in record["warnings"])
    predictions = pd.read_csv(next((tmp_path / "r").rglob("knn-1.predictions.csv")))
    assert set(predictions["label"]) == {"immature_granulocyte", "lymphocyte", "neutrophil"}
    assert set(predictions["prediction"]) <= {"immature_granulocyte", "lymphocyte", "neutrophil"}


def test_data_info_shows_the_harmonised_classes():
    done = CliRunner().invoke(app, ["data", "info", "mll23"])
    assert done.exit_code == 0, done.output
    text = " ".join(done.output.split())
    assert "normoblast -> erythroblast" in text and "no counterpart (trained on, never scored): hairy_cell" in text
    assert "zenodo.org/records/14277609" in text


# -- real copies ----------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not MATEK, reason="the AML-Cytomorphology_LMU download is not here: set HEMABENCH_MATEK19 to the "
                                      "folder holding its annotations.dat and image folder (TCIA, "
                                      "doi:10.7937/tcia.2019.36f5o9ld)")
def test_the_real_matek_copy_holds_the_published_counts():
    from tasks import get_task
    from tasks.matek19 import MATEK_COUNTS

    dataset = get_task("matek-19").load(Path(MATEK or ""), data_home=Path(MATEK or ""))
    assert dataset.samples["label"].value_counts().to_dict() == MATEK_COUNTS
    assert any("1,905 of the 18,365 images were re-annotated" in note for note in dataset.notes)


@pytest.mark.skipif(not MLL23_COPY, reason="the MLL23 copy is not here: set HEMABENCH_MLL23 to the folder the 18 "
                                           "Zenodo archives (zenodo.org/records/14277609) were unzipped into")
def test_the_real_mll23_copy_holds_the_label_files_counts():
    from tasks import get_task
    from tasks.mll23 import MLL23_COUNTS

    dataset = get_task("mll23").load(Path(MLL23_COPY or ""), data_home=Path(MLL23_COPY or ""))
    assert dataset.samples["label"].value_counts().to_dict() == MLL23_COUNTS  # labels_MLL23.csv
