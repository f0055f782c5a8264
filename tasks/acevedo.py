"""Acevedo peripheral-blood cells (the DinoBloom paper's "Acevedo" benchmark): ``acevedo`` and ``acevedo-11``.

Data: A. Acevedo, A. Merino, S. Alférez, Á. Molina, L. Boldú, J. Rodellar, "A dataset of microscopic peripheral
blood cell images for development of automatic recognition systems", Data in Brief 30 (2020); Mendeley Data,
doi 10.17632/snkd93bnjr.1, CC BY 4.0. 17,092 JPEG images in ``PBC_dataset_normal_DIB/<class>/<PREFIX>_<id>.jpg``,
8 class folders: basophil, eosinophil, erythroblast, ig, lymphocyte, monocyte, neutrophil, platelet.

Tasks
* ``acevedo``: the 8 folder classes.
* ``acevedo-11``: the finer labels that the file-name prefix carries inside two folders: ``ig`` -> MMY
  metamyelocyte, MY myelocyte, PMY promyelocyte; ``neutrophil`` -> BNE band_neutrophil, SNE
  segmented_neutrophil; the 6 other folders keep their name (label names as in the shared subset's
  manifest ``label_fine``). 6 + 3 + 2 = 11 classes.

  Decision on the unspecified prefixes: files named plain ``IG_*`` (an immature granulocyte whose stage was
  not given) and ``NEUTROPHIL_*`` (a neutrophil not classed as band or segmented) fit none of the 11 classes:
  guessing a stage would invent labels, and keeping them as classes "ig"/"neutrophil" would overlap the
  finer ones (13 classes, not 11). ``acevedo-11`` therefore LEAVES THEM OUT; the loader lists them in
  ``ignored_files`` and says how many in ``notes``. In the shared 4,000-image subset that is 31 images
  (22 IG_* of 500 in ig, 9 NEUTROPHIL_* of 500 in neutrophil), so acevedo-11 has 3,969 images there; on the
  full set the count is whatever the loader's note reports (the same proportions, about 4 % of ig and 2 %
  of neutrophil, would give roughly 130 and 60). Any other unknown prefix inside ig/neutrophil is left out
  and reported the same way.

Evaluation: 5-fold stratified CV, portable (a function of relative paths, labels and seed 0, see
:func:`tasks.splits.stratified_group_folds`), the mean over folds reported. Byte-identical files (the public
copy has 17 pairs, one across classes) are grouped by the sha256 the loader computes: each set lands in one
fold, every copy keeps its own label, and cross-class sets are reported in ``notes``. Files named like images
that are not images (the public copy has one) are left out and reported. ``--data-root`` may point at
``PBC_dataset_normal_DIB`` or at the folder above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.base import CellDataset, CellTask
from tasks.checks import Inventory, checked_inventory, class_inventory, finish_dataset, resolve_data_root
from tasks.splits import read_fixed_split, stratified_group_folds

ACEVEDO_CLASSES = ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet")
# Finer labels from the file-name prefix (the part before the first "_"), in the folders that have them.
FINE_PREFIXES = {
    "ig": {"MMY": "metamyelocyte", "MY": "myelocyte", "PMY": "promyelocyte"},
    "neutrophil": {"BNE": "band_neutrophil", "SNE": "segmented_neutrophil"},
}
UNSPECIFIED_PREFIXES = {"ig": "IG", "neutrophil": "NEUTROPHIL"}  # left out of acevedo-11 (module docstring)
ACEVEDO_11_CLASSES = tuple(sorted(
    [c for c in ACEVEDO_CLASSES if c not in FINE_PREFIXES] + [f for m in FINE_PREFIXES.values() for f in m.values()]
))

DATA_DIR = "PBC_dataset_normal_DIB"
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
    licence: str = LICENCE
    citation: str = CITATION
    layout: str = f"{DATA_DIR}/<class>/<PREFIX>_<id>.jpg, class in {{{', '.join(ACEVEDO_CLASSES)}}}"

    @property
    def expected_classes(self) -> tuple[str, ...]:
        return ACEVEDO_11_CLASSES if self.fine_labels else ACEVEDO_CLASSES

    @property
    def evaluation(self) -> str:
        return (f"portable stratified {self.n_folds}-fold CV (seed {self.split_seed}), byte-identical files grouped "
                "into one fold; mean over folds")

    def resolve_root(self, data_root, data_home: Path) -> Path:
        if self.fixed_root is not None:
            return self.fixed_root
        return resolve_data_root(data_root, data_home, self.data_dir, ACEVEDO_CLASSES)

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
            inv.samples = samples[keep.to_numpy()].assign(label=[x for x in labels if x is not None])
            inv.samples = inv.samples.reset_index(drop=True)
        return inv

    def load(self, data_root=None, *, data_home: Path, split_file=None) -> CellDataset:
        root = self.existing_root(data_root, data_home)
        inv = checked_inventory(self, root, f"Acevedo classes ({', '.join(ACEVEDO_CLASSES)})", DATA_DIR)

        def assign(samples: pd.DataFrame):
            if split_file is not None:
                return read_fixed_split(split_file, samples["path"]).to_numpy(), "fixed"
            folds = stratified_group_folds(samples["path"], samples["label"], samples["sha256"],
                                           self.n_folds, self.split_seed)
            return folds, "kfold"

        return finish_dataset(self.name, inv, assign)

    def settings(self) -> dict:
        return {**super().settings(), "groups": "sha256 (byte-identical files share a fold)",
                "labels": "file-name prefix (11 classes)" if self.fine_labels else "class folder (8 classes)"}


ACEVEDO = AcevedoTask(
    name="acevedo",
    summary="Acevedo peripheral blood cells (17,092 images), 8 classes, 5-fold portable stratified CV",
    data_dir=DATA_DIR,
    obtain=OBTAIN,
)
ACEVEDO_11 = AcevedoTask(
    name="acevedo-11",
    summary="Acevedo peripheral blood cells, 11 classes from the file-name prefix (ig and neutrophil split; "
            "unspecified IG_*/NEUTROPHIL_* left out), 5-fold portable stratified CV",
    data_dir=DATA_DIR,
    obtain=OBTAIN,
    fine_labels=True,
)
