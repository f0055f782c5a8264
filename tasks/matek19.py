"""AML-Cytomorphology_LMU (``matek-19``): 18,365 peripheral-blood leukocytes of 100 AML patients and 100 controls
(Munich University Hospital, 2014-2017), one TIFF per cell, in 15 class folders named by abbreviation, with the
collection's ``annotations.dat``.

Layout of the TCIA download (docs/tasks.md, "Matek 2019 and MLL23")::

    AML-Cytomorphology_LMU/<CLASS>/<CLASS>_<nnnn>.tiff    the images, CLASS in MATEK_CLASSES
    annotations.dat                                       beside the class folders or one level above them

``annotations.dat`` has one line per image, ``<CLASS>/<CLASS>_<nnnn>.tiff <label> <reading 2> <reading 3>``:
the label (always the folder's class) and, for the subset re-annotated to measure the examiners' variability,
two further readings (``UNC``: no class could be assigned; ``nan``: not re-annotated). The labels here are the
folders' abbreviations, the first annotation, as the authors trained on; the re-annotations are counted in the
notes. An image is matched to its line by its ``<CLASS>_<nnnn>`` id, so copies whose file names carry a suffix
(``BAS_0001 (2021_05_21 20_42_39 UTC).tiff``, ``.tiff.tiff``) still match. No official split: portable stratified
5-fold CV.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from bench.core.errors import DataError
from tasks.base import Inventory
from tasks.imagefolder import CellTask
from tasks.validation import class_inventory, listed

# The abbreviations of the folders and of annotations.dat, with the meaning the collection's abbreviations.txt
# gives (its "bilobled" written "bilobed")
MATEK_MEANINGS = {
    "BAS": "basophil", "EBO": "erythroblast", "EOS": "eosinophil", "KSC": "smudge cell",
    "LYA": "lymphocyte (atypical)", "LYT": "lymphocyte (typical)", "MMZ": "metamyelocyte", "MOB": "monoblast",
    "MON": "monocyte", "MYB": "myelocyte", "MYO": "myeloblast", "NGB": "neutrophil (band)",
    "NGS": "neutrophil (segmented)", "PMB": "promyelocyte (bilobed)", "PMO": "promyelocyte",
}
MATEK_CLASSES = tuple(sorted(MATEK_MEANINGS))
# Images per class: the first annotations of the published annotations.dat (18,365 lines; the same counts as
# marrlab/MLL23's labels_harmonised.csv / labels_unharmonised.csv, commit 1d6ca3e)
MATEK_COUNTS = {"BAS": 79, "EBO": 78, "EOS": 424, "KSC": 15, "LYA": 11, "LYT": 3937, "MMZ": 15, "MOB": 26,
                "MON": 1789, "MYB": 42, "MYO": 3268, "NGB": 109, "NGS": 8484, "PMB": 18, "PMO": 70}
FULL_SET_IMAGES = 18_365
ANNOTATIONS = "annotations.dat"
UNCLASSIFIED, NOT_READ = "UNC", "nan"  # a re-annotation that assigned no class; no re-annotation
DATA_DIR = "AML-Cytomorphology_LMU"
DOI = "10.7937/tcia.2019.36f5o9ld"
LICENCE = ("CC BY 3.0 (the Cancer Imaging Archive's licence for the collection, as MedIMeta's card of it "
           "records; the TCIA page itself could not be read from here)")
CITATION = ("C. Matek, S. Schwarz, K. Spiekermann, C. Marr: Human-level recognition of blast cells in acute myeloid "
            "leukaemia with convolutional neural networks. Nature Machine Intelligence 1 (2019) 538-544, "
            "doi:10.1038/s42256-019-0101-9; data: C. Matek, S. Schwarz, C. Marr, K. Spiekermann: A Single-cell "
            "Morphological Dataset of Leukocytes from AML Patients and Non-malignant Controls "
            f"(AML-Cytomorphology_LMU), The Cancer Imaging Archive (2019), doi:{DOI}")
OBTAIN = (f"Download the AML-Cytomorphology_LMU collection from The Cancer Imaging Archive (https://doi.org/{DOI}: "
          f"the images, with IBM Aspera Connect, and {ANNOTATIONS}) and pass --data-root pointing at the folder "
          f"holding the 15 class folders (or a folder above it: '{DATA_DIR}' and 'AML-Cytomorphology' inside it are "
          f"descended into), with {ANNOTATIONS} beside the class folders or one level above; or put it at "
          f"$BENCH_HOME/data/{DATA_DIR}. Expected layout: <CLASS>/<CLASS>_<nnnn>.tiff, CLASS in "
          f"{', '.join(MATEK_CLASSES)}.")
_LINE = re.compile(r"^(?P<folder>[^/\s]+)/(?P<name>\S+)$")
_ID = re.compile(r"^[A-Za-z]{3}_\d+")


def image_id(file_name: str) -> str | None:
    """The ``<CLASS>_<nnnn>`` an image file's name starts with (its line in annotations.dat), or None."""
    match = _ID.match(file_name)
    return match.group(0) if match else None


@dataclass(frozen=True)
class Annotation:
    """One line of annotations.dat: the listed path, the label, and the re-annotations (empty: none)."""

    path: str
    label: str
    readings: tuple[str, ...]


def read_annotations(path: Path) -> dict[str, Annotation]:
    """``annotations.dat`` as image id -> :class:`Annotation`; a line that is not ``<CLASS>/<file> <label>
    [<reading> [<reading>]]`` with known classes is an error naming the file and the line."""
    codes = set(MATEK_CLASSES)
    table: dict[str, Annotation] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}, line {number} ({line.strip()[:80]!r})"
        match = _LINE.match(fields[0]) if 2 <= len(fields) <= 4 else None
        if match is None:
            raise DataError(f"{where}: expected '<CLASS>/<CLASS>_<nnnn>.tiff <label> [<re-annotation> "
                            f"[<re-annotation>]]'; is this the collection's {ANNOTATIONS}?")
        label, readings = fields[1], tuple(r for r in fields[2:] if r != NOT_READ)
        unknown = [c for c in (label, match["folder"]) if c not in codes] + [
            r for r in readings if r not in codes and r != UNCLASSIFIED]
        if unknown:
            raise DataError(f"{where}: {unknown} not among the 15 classes ({', '.join(MATEK_CLASSES)}) nor "
                            f"{UNCLASSIFIED!r}/{NOT_READ!r}")
        if label != match["folder"]:
            raise DataError(f"{where}: the image is listed in folder {match['folder']} but labelled {label}; the "
                            f"published {ANNOTATIONS} labels every image by its folder: restore the file")
        key = image_id(match["name"])
        if key is None or key in table:
            why = "its file name does not start with <CLASS>_<nnnn>" if key is None else "its id is listed twice"
            raise DataError(f"{where}: {why}; restore the collection's {ANNOTATIONS}")
        table[key] = Annotation(fields[0], label, readings)
    return table


def find_annotations(root: Path) -> Path | None:
    """annotations.dat beside the class folders or one level above them (the TCIA download's place)."""
    return next((p for p in (root / ANNOTATIONS, root.parent / ANNOTATIONS) if p.is_file()), None)


def reannotation_note(annotations: list[Annotation]) -> str:
    """How the re-annotated images' further readings compare with their label, in one sentence."""
    read = [a for a in annotations if a.readings]
    agree = sum(all(r == a.label for r in a.readings) for a in read)
    other = sum(any(r not in (a.label, UNCLASSIFIED) for r in a.readings) for a in read)
    unclassified = sum(UNCLASSIFIED in a.readings for a in read)
    return (f"{ANNOTATIONS}: {len(read):,} of the {len(annotations):,} images were re-annotated; every further "
            f"reading agrees with the label for {agree:,}, {other:,} have a reading of another class and "
            f"{unclassified:,} a reading {UNCLASSIFIED} (no class assigned). The labels are the first annotation "
            "(the class folder)")


@dataclass(frozen=True)
class MatekTask(CellTask):
    """The 15 class folders of AML-Cytomorphology_LMU, checked against its annotations.dat."""

    data_dir: str = DATA_DIR
    obtain: str = OBTAIN
    licence: str = LICENCE
    citation: str = CITATION
    full_set_images: int | None = FULL_SET_IMAGES
    expected_classes: ClassVar[tuple[str, ...]] = MATEK_CLASSES
    layout: ClassVar[str] = (f"{DATA_DIR}/<CLASS>/<CLASS>_<nnnn>.tiff (400 x 400 px TIFF) with {ANNOTATIONS} "
                             "beside the class folders or one level above; labels: the folders' abbreviations, "
                             + ", ".join(f"{code} {meaning}" for code, meaning in MATEK_MEANINGS.items()))
    class_folders: ClassVar[str] = f"AML-Cytomorphology_LMU class folders ({', '.join(MATEK_CLASSES)})"
    known_folders: ClassVar[tuple[str, ...]] = MATEK_CLASSES
    nested_folders: ClassVar[tuple[str, ...]] = ("AML-Cytomorphology",)

    def inventory(self, root: Path) -> Inventory:
        inv = class_inventory(root, 0, MATEK_CLASSES, MATEK_CLASSES, "that are not images by name")
        annotations_path = find_annotations(root)
        if annotations_path is None:
            inv.notes.append(f"{ANNOTATIONS} not found in {root} nor {root.parent}: labels from the class folders "
                             "only; the re-annotations are not read and absent images cannot be named")
            return inv
        table = read_annotations(annotations_path)
        samples = inv.samples
        ids = [image_id(path.rsplit("/", 1)[-1]) or "" for path in samples["path"]]
        listed_rows = [key in table for key in ids]
        seen: dict[str, str] = {}
        for path, label, key in zip(samples["path"], samples["label"], ids):
            if key not in table:
                inv.ignore(path, f"not in {ANNOTATIONS}")
            elif key in seen:
                raise DataError(f"{root / seen[key]} and {root / path} are both image {key} of {annotations_path}: "
                                "keep one (remove the other copy)")
            elif table[key].label != label:
                raise DataError(f"{root / path} is in folder {label}, but {annotations_path} labels {key} "
                                f"{table[key].label}: move it back to {table[key].label}/")
            else:
                seen[key] = path
        inv.samples = samples[listed_rows].reset_index(drop=True)
        unlisted = [p for p, ok in zip(samples["path"], listed_rows) if not ok]
        if unlisted:
            inv.notes.append(f"{len(unlisted)} image(s) not in {ANNOTATIONS} are not used: {listed(unlisted)}")
        inv.missing_files = sorted(table[key].path for key in set(table) - set(seen))
        if inv.missing_files:
            inv.notes.append(f"{len(inv.missing_files):,} image(s) listed in {ANNOTATIONS} are absent: "
                             f"{listed(inv.missing_files)}")
        inv.notes.append(reannotation_note([table[key] for key in sorted(seen)]))
        return inv

    def settings(self) -> dict:
        return {**super().settings(), "labels": f"class folder (the first annotation of {ANNOTATIONS})"}


MATEK_19 = MatekTask()
