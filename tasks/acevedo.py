"""Acevedo peripheral-blood cells (the DinoBloom paper's "Acevedo" benchmark): ``acevedo`` (8 folder classes)
and ``acevedo-11`` (11 classes from the file-name prefix).

The specification (data, layout, the label decisions for ``acevedo-11``, duplicates, folds) is in
docs/tasks.md, section "Acevedo".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from tasks.base import Inventory
from tasks.imagefolder import CellTask
from tasks.validation import class_inventory

ACEVEDO_CLASSES = ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet")
# Finer labels from the file-name prefix (the part before the first "_"), in the folders that have them.
FINE_PREFIXES = {
    "ig": {"MMY": "metamyelocyte", "MY": "myelocyte", "PMY": "promyelocyte"},
    "neutrophil": {"BNE": "band_neutrophil", "SNE": "segmented_neutrophil"},
}
UNSPECIFIED_PREFIXES = {"ig": "IG", "neutrophil": "NEUTROPHIL"}  # left out of acevedo-11 (docs/tasks.md)
ACEVEDO_11_CLASSES = tuple(sorted(
    [c for c in ACEVEDO_CLASSES if c not in FINE_PREFIXES] + [f for m in FINE_PREFIXES.values() for f in m.values()]
))

DATA_DIR = "PBC_dataset_normal_DIB"
FULL_SET_IMAGES = 17_092  # Acevedo et al. 2020: the published data set's JPEG images in the 8 class folders
LICENCE = "CC BY 4.0"
CITATION = (
    "A. Acevedo, A. Merino, S. Alférez, Á. Molina, L. Boldú, J. Rodellar: A dataset of microscopic peripheral "
    "blood cell images for development of automatic recognition systems. Data in Brief 30 (2020); "
    "Mendeley Data, doi:10.17632/snkd93bnjr.1"
)
OBTAIN = (
    "Download the Acevedo et al. 2020 peripheral blood cell data set from Mendeley Data "
    "(https://data.mendeley.com/datasets/snkd93bnjr/1, doi 10.17632/snkd93bnjr.1, CC BY 4.0), unzip it, and "
    f"pass --data-root pointing at its '{DATA_DIR}' folder (or the folder above it), or put it at "
    f"$BENCH_HOME/data/{DATA_DIR}. Expected layout: {DATA_DIR}/<class>/<PREFIX>_<id>.jpg with the 8 class "
    f"folders {', '.join(ACEVEDO_CLASSES)}."
)


def fine_label(folder: str, file_name: str) -> str | None:
    """The acevedo-11 label of ``<folder>/<file_name>``; None for an unspecified or unknown prefix."""
    if folder not in FINE_PREFIXES:
        return folder
    prefix = file_name.split("_", 1)[0].upper()
    return FINE_PREFIXES[folder].get(prefix)


@dataclass(frozen=True)
class AcevedoTask(CellTask):
    """The Acevedo layout with 8 folder classes, or (``fine_labels``) the 11 prefix classes."""

    fine_labels: bool = False
    full_set_images: int | None = FULL_SET_IMAGES  # acevedo-11 too: images in the folders, before it leaves any out
    preprocessing: str = "authors-cv"  # the authors' CV code pre-resized with PIL's bicubic default (docs/tasks.md)
    licence: str = LICENCE
    citation: str = CITATION
    layout: ClassVar[str] = f"{DATA_DIR}/<class>/<PREFIX>_<id>.jpg, class in {{{', '.join(ACEVEDO_CLASSES)}}}"
    class_folders: ClassVar[str] = f"Acevedo classes ({', '.join(ACEVEDO_CLASSES)})"
    known_folders: ClassVar[tuple[str, ...]] = ACEVEDO_CLASSES

    @property
    def expected_classes(self) -> tuple[str, ...]:
        return ACEVEDO_11_CLASSES if self.fine_labels else ACEVEDO_CLASSES

    def inventory(self, root: Path) -> Inventory:
        inv = class_inventory(root, 0, ACEVEDO_CLASSES, ACEVEDO_CLASSES, "that are not images by name")
        if self.fine_labels:
            samples = inv.samples
            names = samples["path"].str.rsplit("/", n=1).str[-1]
            labels = [fine_label(folder, name) for folder, name in zip(samples["label"], names)]
            keep = pd.Series([label is not None for label in labels])
            dropped = samples[~keep.to_numpy()]
            if len(dropped):
                prefixes = dropped["path"].str.rsplit("/", n=1).str[-1].str.split("_", n=1).str[0].str.upper()
                counts = (dropped["label"] + "/" + prefixes + "_*").value_counts().sort_index()
                detail = ", ".join(f"{n} {pattern}" for pattern, n in counts.items())
                inv.notes.append(
                    f"{self.name} leaves out {len(dropped)} image(s) whose file-name prefix names no "
                    f"{len(ACEVEDO_11_CLASSES)}-class label (unspecified stage/subtype): {detail}"
                )
                inv.left_out = dropped["path"].tolist()
                inv.reasons.update({path: f"its file-name prefix names no {self.name} class (unspecified stage)"
                                    for path in inv.left_out})
            inv.samples = samples[keep.to_numpy()].assign(label=[x for x in labels if x is not None])
            inv.samples = inv.samples.reset_index(drop=True)
        return inv

    def settings(self) -> dict:
        return {**super().settings(), **self.size_settings(),
                "labels": "file-name prefix (11 classes)" if self.fine_labels else "class folder (8 classes)"}


# The canonical splits, written by `bench data split` on the complete public copy (17,092 images, its hidden
# non-image file and 17 byte-identical pairs included) and shipped in tasks/data (docs/tasks.md, "Acevedo").
ACEVEDO_SPLIT = "5e4087821c0c6fad63351e85cd5cfac4f678c71f3e6aa6190d64fd25d28ffc60"
ACEVEDO_11_SPLIT = "a3ee25b262b452482d75fc375ed6da12f6bdd77aa961407b40ab9a5e78534db6"
ACEVEDO = AcevedoTask(data_dir=DATA_DIR, obtain=OBTAIN, canonical_split_sha256=ACEVEDO_SPLIT,
                      canonical_split_file="acevedo.split.csv.gz")
ACEVEDO_11 = AcevedoTask(data_dir=DATA_DIR, obtain=OBTAIN, fine_labels=True,
                         canonical_split_sha256=ACEVEDO_11_SPLIT, canonical_split_file="acevedo-11.split.csv.gz")
