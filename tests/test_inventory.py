"""Every file under a task's root is either used or listed with its reason (imagefolder:, bags, bench data check)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from tasks import get_task
from tasks.base import CellDataset
from tasks.checks import check_dataset
from tests.conftest import make_image_folder


def _messy_tree(tmp_path: Path) -> Path:
    root = make_image_folder(tmp_path / "cells", {"a": 3, "b": 3}, size=16)
    pixels = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert("P").save(root / "a" / "x.gif")
    Image.fromarray(pixels).save(root / "a" / "y.webp", lossless=True)
    Image.fromarray(pixels[..., 0]).save(root / "b" / "z.tga")  # no magic bytes: PIL identifies it
    (root / "a" / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(pixels).save(root / "a" / "sub" / "deeper" / "nested.png")  # belongs to class a
    Image.fromarray(pixels).save(root / "a" / ".hidden.png")
    (root / "a" / ".cache").mkdir()
    Image.fromarray(pixels).save(root / "a" / ".cache" / "thumb.png")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "readme.md").write_text("cells")
    (root / "a" / "notes.txt").write_text("notes")
    (root / "b" / "fake.jpg").write_text("<html>403 Forbidden</html>")
    os.symlink(root / "a" / "gone.png", root / "a" / "broken.png")  # target does not exist
    os.symlink("..", root / "a" / "sub" / "up")  # a folder link back to a/: a loop
    os.symlink(root / "b" / "self", root / "b" / "self")  # a link to itself (ELOOP)
    os.symlink(".", root / "again")  # the root inside itself
    return root


EXPECTED_IGNORED = {
    ".DS_Store": "hidden",
    "a/.cache/": "hidden",
    "a/.hidden.png": "hidden",
    "a/broken.png": "broken symlink",
    "a/notes.txt": "not an image by name (.txt)",
    "a/sub/up/": "symlink loop",
    "again/": "symlink loop",
    "b/fake.jpg": "not an image (no image signature)",
    "b/self": "symlink loop",
    "readme.md": "not under a class folder",
}
EXPECTED_USED = {
    "a/a_000.png", "a/a_001.png", "a/a_002.png", "a/x.gif", "a/y.webp", "a/sub/deeper/nested.png",
    "b/b_000.png", "b/b_001.png", "b/b_002.png", "b/z.tga",
}


def test_imagefolder_uses_every_image_and_lists_the_rest_with_the_reason(tmp_path):
    root = _messy_tree(tmp_path)
    data = get_task(f"imagefolder:{root}").load(data_home=tmp_path)
    assert set(data.samples["path"]) == EXPECTED_USED
    assert dict(zip(data.samples["path"], data.samples["label"]))["a/sub/deeper/nested.png"] == "a"
    assert data.ignored_files == EXPECTED_IGNORED
    # nothing under the root escapes: each entry is used, or it (or a folder above it) is listed
    listed = set(data.ignored_files)
    for folder, dirs, files in os.walk(root):  # does not follow folder links
        for name in dirs + files:
            relative = Path(folder, name).relative_to(root).as_posix()
            if os.path.isdir(Path(folder, name)) and not os.path.islink(Path(folder, name)):
                continue  # a real folder: its files are checked
            above = [relative[: i + 1] for i, c in enumerate(relative) if c == "/"]
            assert relative in EXPECTED_USED or relative in listed or relative + "/" in listed \
                or any(a in listed for a in above), relative
    info = data.describe()  # what the result record's task section carries
    assert info["n_ignored_files"] == 10
    assert info["ignored_by_reason"] == {"broken symlink": 1, "hidden": 3, "not an image (no image signature)": 1,
                                         "not an image by name (.txt)": 1, "not under a class folder": 1,
                                         "symlink loop": 3}
    assert info["ignored_files"][0] == {"path": ".DS_Store", "reason": "hidden"}
    assert {e["path"]: e["reason"] for e in info["ignored_files"]} == EXPECTED_IGNORED


def test_data_check_lists_the_same_files(tmp_path):
    root = _messy_tree(tmp_path)
    report = check_dataset(get_task(f"imagefolder:{root}"), None, tmp_path, verify=True)
    assert report.non_images == ["b/fake.jpg"] and report.unreadable == []
    assert report.ignored_files == {p: r for p, r in EXPECTED_IGNORED.items() if p != "b/fake.jpg"}
    assert report.class_counts == {"a": 6, "b": 4}
    problems = "\n".join(report.problems())
    assert "4 broken symlink(s), symlink loop(s) or unreadable entries" in problems and "a/broken.png" in problems
    text = report.format()
    assert "not used: 9 file(s) or folder(s)" in text and "  hidden (3): .DS_Store, a/.cache/, a/.hidden.png" in text


def test_clean_tree_uses_every_file_and_lists_nothing(tmp_path):
    root = make_image_folder(tmp_path / "clean", {"a": 4, "b": 4}, size=16)
    data = get_task(f"imagefolder:{root}").load(data_home=tmp_path)
    assert list(data.samples["path"]) == sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    assert data.ignored_files == {} and data.describe()["n_ignored_files"] == 0


def test_describe_caps_the_list_but_not_the_count():
    table = pd.DataFrame({"path": ["a/1.png", "b/1.png"], "label": ["a", "b"], "fold": [0, 1], "sha256": ["x", "y"]})
    samples = CellDataset("t", Path("."), table, "kfold",
                          {f"junk/{i:04d}.txt": "not an image by name (.txt)" for i in range(250)})
    info = samples.describe()
    assert info["n_ignored_files"] == 250 and len(info["ignored_files"]) == CellDataset.MAX_IGNORED_LISTED == 200
    assert info["ignored_files"][-1]["path"] == "junk/0199.txt"
    legacy = CellDataset("t", Path("."), samples.samples, "kfold", ["x.txt"])  # a plain list still works
    assert legacy.ignored_files == {"x.txt": "not used"}


def test_bag_folder_lists_files_outside_patient_folders(tmp_path):
    from tasks.patients import BagTask
    from tasks.synthetic import write_patient_bags

    root = write_patient_bags(tmp_path / "bags", n_patients_per_label=2, cells_per_patient=2, size=16)
    label = min(p for p in root.iterdir() if p.is_dir())
    patient = min(p for p in label.iterdir() if p.is_dir())
    cell = min(patient.iterdir())
    (patient / ".hidden.png").write_bytes(cell.read_bytes())
    (label / "stray.png").write_bytes(cell.read_bytes())
    task = BagTask(name="bags", summary="s", obtain="o", fixed_root=root)
    data = task.load(data_home=tmp_path)
    hidden, stray = (p.relative_to(root).as_posix() for p in (patient / ".hidden.png", label / "stray.png"))
    assert hidden not in set(data.samples["path"]) and stray not in set(data.samples["path"])
    assert data.ignored_files[hidden] == "hidden"
    assert data.ignored_files[stray] == "not in a patient folder"
