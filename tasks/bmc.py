"""Bone Marrow Cytomorphology (the DinoBloom paper's "BMC" benchmark): ``bmc``.

Data: C. Matek, S. Krappe, C. Münzenmayer, T. Haferlach, C. Marr, "Highly accurate differentiation of bone
marrow cell morphologies using deep neural networks on a large image data set", Blood 138 (2021); The Cancer
Imaging Archive collection "Bone-Marrow-Cytomorphology_MLL_Helmholtz_Fraunhofer", CC BY 4.0. 171,374 JPEG
images of 21 classes.

Layout. The published folder is ``BM_cytomorphology_data/<CLASS>/...``. Small classes hold their images
directly (``ABE/ABE_00001.jpg``); the large ones are split into sub-folders of 1,000 images
(``ART/0001-1000/ART_00001.jpg``, ``NGS/18001-19000/...``). Both forms are accepted, also mixed and also for a
copy someone flattened: files directly in ``<CLASS>/`` and files one folder below it are the class's images;
deeper folders are ignored and reported. ``--data-root`` may point at ``BM_cytomorphology_data`` or at the
folder above it.

Split: one fixed train/test split (``split_kind="fixed"``, samples' ``fold`` = "train"/"test"):
(a) canonical, used whenever the copy holds every file of it: the DinoBloom authors' own test list, shipped with
    hemabench as ``tasks/data/bmc.authors-test.csv.gz`` (``<CLASS>/<file name>`` of the 34,266 rows of
    ``dinov2/eval/splits/bm_test.csv`` in marrlab/DinoBloom, commit 6c5e86d, Apache-2.0; pinned by
    ``AUTHORS_TEST_SHA256``); every other image is train (their ``bm_train.csv`` is not in the public repository's
    snapshot, "the rest" is what its name says);
(b) where a copy lacks any of those files, generated per class: test = floor(0.2 x class count) images, the
    first ones in ``sha256(seed, "<CLASS>/<file name>")`` order, with a note naming the absent files. The key
    leaves out the 1,000-image sub-folder so that the nested and a flattened copy split alike. On the real class
    counts both give the paper's test counts (ABE 1 ... PMO 2398, 34,266 images), but not the same images:
    6,923 test images in common (20.2 %, chance gives 20.0 %; docs/tasks.md, "BMC");
(c) ``--split-file``: the authors' CSV files (``Image Path,Label``, absolute paths from their machine; see
    :func:`read_authors_split`) or a ``path,split`` CSV of our own.
Which of (a) and (b) a copy got is its data set's ``split_rule``, recorded with every result; the board marks
a full-set result on (b) "not the canonical split".
Byte-identical files are not regrouped here (that would change the per-class counts); the loader reports
any that straddle train and test in ``notes``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from bench.core.errors import SplitError
from tasks.base import CellDataset, Inventory
from tasks.imagefolder import CellTask
from tasks.splits import fixed_class_split, n_test_per_class, read_fixed_split
from tasks.validation import class_inventory, listed

BMC_CLASS_NAMES = {
    "ABE": "abnormal eosinophil",
    "ART": "artefact",
    "BAS": "basophil",
    "BLA": "blast",
    "EBO": "erythroblast",
    "EOS": "eosinophil",
    "FGC": "faggot cell",
    "HAC": "hairy cell",
    "KSC": "smudge cell",
    "LYI": "immature lymphocyte",
    "LYT": "lymphocyte",
    "MMZ": "metamyelocyte",
    "MON": "monocyte",
    "MYB": "myelocyte",
    "NGB": "band neutrophil",
    "NGS": "segmented neutrophil",
    "NIF": "not identifiable",
    "OTH": "other cell",
    "PEB": "proerythroblast",
    "PLM": "plasma cell",
    "PMO": "promyelocyte",
}
BMC_CLASSES = tuple(sorted(BMC_CLASS_NAMES))
# Test images per class in the paper's split (DESIGN.md): floor(0.2 x class count).
PAPER_TEST_COUNTS = {
    "ABE": 1, "ART": 3926, "BAS": 88, "BLA": 2394, "EBO": 5479, "EOS": 1176, "FGC": 9, "HAC": 81, "KSC": 8,
    "LYI": 13, "LYT": 5248, "MMZ": 611, "MON": 808, "MYB": 1311, "NGB": 1993, "NGS": 5884, "NIF": 707,
    "OTH": 58, "PEB": 548, "PLM": 1525, "PMO": 2398,
}
TEST_FRACTION = 0.2
AUTHORS_COLUMNS = ("Image Path", "Label")
# The authors' test list (module docstring, (a)): sha256 over its sorted "<CLASS>/<file name>\n" lines.
AUTHORS_TEST_LIST = "bmc.authors-test.csv.gz"
AUTHORS_TEST_SHA256 = "f0feace24b0356759199798365712a03f4b9f65d293ad75f5dc851510022db14"
AUTHORS_RULE = "the DinoBloom authors' test list (bm_test.csv, marrlab/DinoBloom 6c5e86d)"
GENERATED_RULE = "generated: per class floor(test_fraction x n) test images in sha256(seed, CLASS/file name) order"

DATA_DIR = "BM_cytomorphology_data"
FULL_SET_IMAGES = 171_374  # Matek et al. 2021 (TCIA collection): JPEG images in the 21 class folders
LICENCE = "CC BY 4.0"
CITATION = (
    "C. Matek, S. Krappe, C. Münzenmayer, T. Haferlach, C. Marr: Highly accurate differentiation of bone marrow "
    "cell morphologies using deep neural networks on a large image data set. Blood 138 (2021); TCIA collection "
    "Bone-Marrow-Cytomorphology_MLL_Helmholtz_Fraunhofer"
)
OBTAIN = (
    "Download the collection 'Bone-Marrow-Cytomorphology_MLL_Helmholtz_Fraunhofer' (Matek et al. 2021, CC BY "
    "4.0) from The Cancer Imaging Archive (https://www.cancerimagingarchive.net), and pass --data-root pointing "
    f"at its '{DATA_DIR}' folder (or the folder above it), or put it at $BENCH_HOME/data/{DATA_DIR}. Expected "
    f"layout: {DATA_DIR}/<CLASS>/[<sub-folder>/]<CLASS>_<nnnnn>.jpg with the 21 class codes "
    f"{' '.join(BMC_CLASSES)}."
)


def split_keys(paths, labels) -> list[str]:
    """``<CLASS>/<file name>`` per sample (sub-folders left out); the relative path where a name repeats
    within a class."""
    paths = [str(p) for p in paths]
    keys = [f"{label}/{p.rsplit('/', 1)[-1]}" for p, label in zip(paths, labels)]
    seen = pd.Series(keys)
    repeated = set(seen[seen.duplicated(keep=False)])
    return [p if k in repeated else k for p, k in zip(paths, keys)]


def generated_split(paths, labels, seed: int = 0, test_fraction: float = TEST_FRACTION) -> np.ndarray:
    """The generated BMC split ("train"/"test" per sample): per class floor(test_fraction x n) test images."""
    return fixed_class_split(split_keys(paths, labels), labels, test_fraction, seed)


@lru_cache(maxsize=4)
def read_test_list(file_name: str, sha256: str) -> frozenset[str]:
    """A shipped test list (``tasks/data/<file_name>``: one ``<CLASS>/<file name>`` per row under the header
    ``path``), refused unless its sorted rows give the pinned digest ``sha256``."""
    from tasks.splits import SPLITS_DIR

    path = SPLITS_DIR / file_name
    try:
        rows = pd.read_csv(path, dtype=str, keep_default_na=False)["path"].tolist()
    except (OSError, ValueError, KeyError) as exc:
        raise SplitError(f"the BMC test list {path} shipped with hemabench cannot be read ({exc}); reinstall "
                         "hemabench") from exc
    if hashlib.sha256("".join(f"{r}\n" for r in sorted(rows)).encode()).hexdigest() != sha256:
        raise SplitError(f"the BMC test list {path} shipped with hemabench does not give its pinned digest {sha256}; "
                         "reinstall hemabench")
    return frozenset(rows)


# ----------------------------------------------------------------------------------------------
# The authors' split files
# ----------------------------------------------------------------------------------------------
def split_file_kind(csv_path: str | Path) -> str:
    """"authors" (``Image Path,Label``) or "paths" (``path,split``) from the CSV's header."""
    header = list(pd.read_csv(csv_path, nrows=0).columns)
    if all(c in header for c in AUTHORS_COLUMNS):
        return "authors"
    if {"path", "split"} <= set(header):
        return "paths"
    raise SplitError(
        f"split file {csv_path} has columns {header}; expected 'path,split' or the authors' 'Image Path,Label'"
    )


def _parts(path: str) -> list[str]:
    return [p for p in re.split(r"[\\/]+", str(path).strip()) if p]


def match_authors_rows(csv_path: str | Path, samples: pd.DataFrame) -> np.ndarray:
    """Row numbers in ``samples`` (path relative to the data root, label = class code) of every row of an
    authors' ``Image Path,Label`` CSV, matched by class folder + file name (the absolute prefix, from another
    machine, is ignored; a sub-folder settles a name that repeats within a class). Raises SplitError listing
    rows that match nothing, match several files, disagree on the label, or repeat."""
    csv_path = Path(csv_path)
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    missing = [c for c in AUTHORS_COLUMNS if c not in table.columns]
    if missing:
        raise SplitError(f"split file {csv_path} lacks column(s) {missing}; expected header 'Image Path,Label'")
    index: dict[tuple[str, str], list[int]] = {}
    ours = [p.split("/") for p in samples["path"]]
    for i, (parts, label) in enumerate(zip(ours, samples["label"])):
        index.setdefault((label, parts[-1]), []).append(i)
    matched, unmatched, ambiguous, mismatched = [], [], [], []
    for line, (path, label) in enumerate(zip(table["Image Path"], table["Label"]), start=2):
        parts = _parts(path)
        where = f"line {line}: {path}"
        if not parts:
            unmatched.append(f"{where} (empty path)")
            continue
        name, folders = parts[-1], parts[:-1]
        at = max((k for k, f in enumerate(folders) if f in BMC_CLASS_NAMES), default=None)
        code = folders[at] if at is not None else (label if label in BMC_CLASS_NAMES else None)
        if code is None:
            unmatched.append(f"{where} (no class folder in the path and label {label!r} is not a class code)")
            continue
        if label in BMC_CLASS_NAMES and label != code:
            mismatched.append(f"{where} (label {label} but class folder {code})")
            continue
        candidates = index.get((code, name), [])
        if len(candidates) > 1 and at is not None:  # a sub-folder in the row may settle a repeated name
            middle = folders[at + 1:]
            candidates = [i for i in candidates if ours[i][1:-1] == middle] or candidates
        if not candidates:
            unmatched.append(where)
        elif len(candidates) > 1:
            ambiguous.append(f"{where} -> {[samples['path'].iat[i] for i in candidates]}")
        else:
            matched.append(candidates[0])
    counts = pd.Series(matched).value_counts() if matched else pd.Series(dtype=int)
    repeated = [samples["path"].iat[i] for i in counts[counts > 1].index]
    problems = []
    for what, items in (("match no file of the data set", unmatched), ("match several files", ambiguous),
                        ("disagree with the class folder", mismatched)):
        if items:
            problems.append(f"{len(items)} row(s) {what}, e.g. {items[:3]}")
    if repeated:
        problems.append(f"{len(repeated)} file(s) are listed more than once, e.g. {repeated[:3]}")
    if problems:
        raise SplitError(f"split file {csv_path} (matched by class folder + file name): " + "; ".join(problems))
    return np.asarray(matched, dtype=np.int64)


def _sibling(csv_path: Path, old: str, new: str) -> Path | None:
    name = csv_path.name
    at = name.lower().rfind(old)
    if at < 0:
        return None
    candidate = csv_path.with_name(name[:at] + new + name[at + len(old):])
    return candidate if candidate.is_file() else None


def read_authors_split(csv_path: str | Path, samples: pd.DataFrame) -> np.ndarray:
    """"train"/"test" per sample from the authors' split files (``bm_test.csv`` / ``bm_train.csv``, one
    ``Image Path,Label`` row per image).

    Give the test list. When a file of the same name with "test" replaced by "train" lies beside it, that is
    read as the train list and the two must cover the data set exactly (no file in both, none in neither);
    without it, every file not in the test list is train. Given only a train list (name with "train", no
    test list beside it), this is an error: the test set would be guessed.
    """
    csv_path = Path(csv_path)
    test_csv, train_csv = csv_path, _sibling(csv_path, "test", "train")
    if "test" not in csv_path.name.lower() and "train" in csv_path.name.lower():
        test_csv, train_csv = _sibling(csv_path, "train", "test"), csv_path
        if test_csv is None:
            raise SplitError(f"split file {csv_path} is a train list and no test list lies beside it; "
                             "pass the test list (e.g. bm_test.csv)")
    out = np.full(len(samples), "train", dtype=object)
    test_rows = match_authors_rows(test_csv, samples)
    out[test_rows] = "test"
    if train_csv is not None:
        train_rows = match_authors_rows(train_csv, samples)
        both = sorted(set(train_rows) & set(test_rows))
        neither = sorted(set(range(len(samples))) - set(train_rows) - set(test_rows))
        if both or neither:
            raise SplitError(
                f"split files {test_csv.name} and {train_csv.name} do not partition the data set: {len(both)} file(s) "
                f"in both (e.g. {[samples['path'].iat[i] for i in both[:3]]}), {len(neither)} in neither "
                f"(e.g. {[samples['path'].iat[i] for i in neither[:3]]})"
            )
    return out


# ----------------------------------------------------------------------------------------------
# The task
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BMCTask(CellTask):
    """BMC: 21 class folders (flat or one sub-folder level), one fixed per-class 80/20 split."""

    test_fraction: float = TEST_FRACTION
    # the canonical test list shipped in tasks/data (module docstring, (a)) and its digest; None: always generate
    authors_test_list: str | None = AUTHORS_TEST_LIST
    authors_test_sha256: str | None = AUTHORS_TEST_SHA256
    k_fold: ClassVar[bool] = False
    full_set_images: int | None = FULL_SET_IMAGES
    licence: str = LICENCE
    citation: str = CITATION
    layout: ClassVar[str] = (f"{DATA_DIR}/<CLASS>/<CLASS>_<nnnnn>.jpg or "
                             f"{DATA_DIR}/<CLASS>/<first>-<last>/<CLASS>_<nnnnn>.jpg")
    expected_classes: ClassVar[tuple[str, ...]] = BMC_CLASSES
    class_folders: ClassVar[str] = f"BMC class codes ({' '.join(BMC_CLASSES)})"
    known_folders: ClassVar[tuple[str, ...]] = BMC_CLASSES

    @property
    def evaluation(self) -> str:
        generated = (f"per class floor({self.test_fraction} x n) test images in sha256(seed {self.split_seed}, "
                     "CLASS/file) order")
        if self.authors_test_list is None:
            return f"one fixed split: {generated}, or split files via --split-file"
        return (f"one fixed split: the DinoBloom authors' 34,266 test images (their bm_test.csv, shipped) where the "
                f"copy holds them all, else {generated}; or split files via --split-file")

    def authors_coverage(self, samples: pd.DataFrame) -> tuple[np.ndarray, list[str]] | None:
        """(is each sample on the authors' test list, the listed files this copy lacks as ``CLASS/file name``);
        None where the task has no list."""
        if self.authors_test_list is None:
            return None
        listed = read_test_list(self.authors_test_list, self.authors_test_sha256)
        keys = [f"{label}/{str(p).rsplit('/', 1)[-1]}" for p, label in zip(samples["path"], samples["label"])]
        return np.fromiter((k in listed for k in keys), dtype=bool, count=len(keys)), sorted(listed - set(keys))

    def split_status(self, dataset) -> tuple[str, list[str]]:
        coverage = None if dataset.split_rule is None else self.authors_coverage(dataset.samples)
        if coverage is None:
            return "a split from --split-file" if dataset.split_rule is None else dataset.split_rule, []
        on_list, absent = coverage
        if not absent:
            return f"the canonical split, {AUTHORS_RULE}: all {int(on_list.sum()):,} listed test images are here", []
        return (f"NOT the canonical split: {dataset.split_rule}",
                [f"{len(absent):,} of the authors' {len(absent) + int(on_list.sum()):,} listed test images are not in "
                 f"this copy: {listed(absent, 10)}"])

    def inventory(self, root: Path) -> Inventory:
        return class_inventory(root, 1, BMC_CLASS_NAMES, BMC_CLASSES, "outside the layout or not images by name")

    def load(self, data_root=None, *, data_home: Path, split_file=None) -> CellDataset:
        dataset = super().load(data_root, data_home=data_home, split_file=split_file)
        if split_file is not None:
            return dataset
        coverage = self.authors_coverage(dataset.samples)
        if coverage is not None and not coverage[1]:
            dataset.split_rule = AUTHORS_RULE
            return dataset
        dataset.split_rule = GENERATED_RULE
        if coverage is not None:
            dataset.notes.append(f"{len(coverage[1]):,} of the DinoBloom authors' listed test images are not in this "
                                 f"copy (`bench data split {self.name}` names them), so the split is generated, not "
                                 "theirs")
        counts = dataset.samples["label"].value_counts()
        # (labels: str; pandas-stubs types an index value as any Hashable, which need not sort)
        small = sorted(c for c, n in counts.items() if n_test_per_class(int(n), self.test_fraction) == 0)  # pyright: ignore[reportArgumentType]
        if small:
            dataset.notes.append(f"class(es) with too few images for a test image at {self.test_fraction:g}: "
                                 f"{', '.join(small)} (train only)")
        return dataset

    def assign(self, samples: pd.DataFrame, split_file=None):
        """The authors' test list where every file of it is here, else the generated per-class split; or a
        ``path,split`` file, or the authors' split files (module docstring)."""
        if split_file is None:
            coverage = self.authors_coverage(samples)
            if coverage is not None and not coverage[1]:
                return np.where(coverage[0], "test", "train").astype(object), "fixed"
            return generated_split(samples["path"], samples["label"], self.split_seed, self.test_fraction), "fixed"
        if split_file_kind(split_file) == "paths":
            return read_fixed_split(split_file, samples["path"]).to_numpy(), "fixed"
        return read_authors_split(split_file, samples), "fixed"

    def settings(self) -> dict:
        return {"split": "fixed", "test_fraction": self.test_fraction, "split_seed": self.split_seed,
                "split_key": "sha256(seed, CLASS/file name)", "main_metric": self.main_metric,
                **({} if self.authors_test_list is None else {"canonical_split_rule": AUTHORS_RULE,
                                                              "authors_test_sha256": self.authors_test_sha256}),
                "preprocessing": self.preprocessing,
                **self.size_settings()}


BMC = BMCTask(data_dir=DATA_DIR, obtain=OBTAIN)
