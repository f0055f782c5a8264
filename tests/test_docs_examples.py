"""The one-file examples of docs/extractors.md, docs/tasks.md and docs/protocols.md work as written, checked
against independent references (scikit-learn on the exported features, the files planted in the folder)."""

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from sklearn.neighbors import NearestCentroid
from typer.testing import CliRunner

from bench.cli import app
from tests.conftest import REPO, TINY, make_image_folder

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def doc_file(doc: str, name: str, folder) -> str:
    """Write the python block of ``docs/<doc>`` that starts with ``# <name>`` to ``folder/<name>``."""
    for block in re.findall(r"```python\n(.*?)```", (REPO / "docs" / doc).read_text(), flags=re.S):
        if block.startswith(f"# {name}\n"):
            (folder / name).write_text(block)
            return str(folder / name)
    raise AssertionError(f"docs/{doc} has no python block starting with '# {name}'")


def test_extractor_in_one_file(image_folder, tmp_path):
    path = doc_file("extractors.md", "my_extractor.py", tmp_path)
    checked = _run("check-extractor", f"{path}:SmallViT")
    assert checked.exit_code == 0 and "dim 192" in checked.output, checked.output
    done = _run("run", "-e", f"{path}:SmallViT", "-t", f"imagefolder:{image_folder}", "-p", "knn-1",
                "--results", tmp_path / "r", "--no-progress")
    assert done.exit_code == 0, done.output
    record = json.loads(next((tmp_path / "r").rglob("knn-1.json")).read_text())
    assert record["extractor"]["summary"] == "timm ViT-Ti/16, CLS token."
    assert record["extractor"]["fingerprint"]["dim"] == 192 and record["extractor"]["fingerprint"]["code_sha256"]


def test_task_in_one_file(tmp_path):
    path = doc_file("tasks.md", "prefix_task.py", tmp_path)
    classes = make_image_folder(tmp_path / "classes", {"BAS": 6, "EOS": 6, "LYM": 6}, size=16)
    flat = tmp_path / "flat"
    flat.mkdir()
    for image in sorted(classes.rglob("*.png")):
        shutil.copy(image, flat / image.name)  # make_image_folder names files <label>_<i>.png
    shutil.copy(flat / "BAS_000.png", flat / "EOS_copy.png")  # byte-identical across classes
    (flat / "LYM_html.png").write_text("<html>not an image</html>")
    (flat / "readme.txt").write_text("notes")
    task = f"{path}:LAB_CELLS"
    checked = _run("data", "check", task, "--data-root", flat)
    assert checked.exit_code == 1  # problems found: a non-image and a cross-class duplicate
    assert "LYM_html.png" in checked.output and "BAS_000.png [BAS] = EOS_copy.png [EOS]" in checked.output
    done = _run("run", "-e", TINY, "-t", task, "--data-root", flat, "-p", "knn-1", "--results", tmp_path / "r",
                "--no-progress")
    assert done.exit_code == 0, done.output
    record = json.loads(next((tmp_path / "r").rglob("knn-1.json")).read_text())
    assert record["task"]["class_counts"] == {"BAS": 6, "EOS": 7, "LYM": 6}
    assert any("LYM_html.png" in note for note in record["task"]["notes"])
    predictions = pd.read_csv(next((tmp_path / "r").rglob("knn-1.predictions.csv"))).set_index("path")
    assert predictions.loc["BAS_000.png", "fold"] == predictions.loc["EOS_copy.png", "fold"]  # one fold per copy set
    info = _run("data", "info", task)
    assert info.exit_code == 0 and "<root>/<LABEL>_<id>.<ext>" in info.output and "lab_cells" in info.output


def test_protocol_in_one_file(image_folder, tmp_path):
    path = doc_file("protocols.md", "centroid_protocol.py", tmp_path)
    protocol = f"{path}:NEAREST_CENTROID"
    done = _run("run", "-e", TINY, "-t", f"imagefolder:{image_folder}", "-p", protocol, "--results", tmp_path / "r",
                "--no-progress")
    assert done.exit_code == 0, done.output
    record = json.loads(next((tmp_path / "r").rglob("*.json")).read_text())
    assert record["protocol"]["settings"] == {"shrink_threshold": None}
    assert record["protocol"]["summary"] == "nearest class mean, Euclidean"
    exported = _run("extract", "-e", TINY, "-t", f"imagefolder:{image_folder}", "--export", tmp_path / "x",
                    "--no-progress")
    assert exported.exit_code == 0, exported.output
    features, index = np.load(tmp_path / "x" / "features.npy"), pd.read_csv(tmp_path / "x" / "index.csv")
    for fold in record["metrics"]["per_fold"]:
        test = (index["fold"].astype(str) == fold["fold"]).to_numpy()
        reference = NearestCentroid().fit(features[~test], index["label"][~test]).predict(features[test])
        assert fold["weighted_f1"] == pytest.approx(f1_score(index["label"][test], reference, average="weighted"))
