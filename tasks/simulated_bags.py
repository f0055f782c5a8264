"""``bags:<cell task>``: simulated patients built from a labelled single-cell data set (SIMULATED, not clinical).

Real patient-level data (AML Hehr) is not available everywhere; this scheme lets multiple-instance protocols run
on real cell embeddings offline. Diagnoses are class-mix profiles over the cell classes: ``control`` draws every
class equally often; ``<class>-excess`` draws ``EXCESS`` of its cells from that class and the rest equally from
all classes. Patients are filled round-robin over the diagnoses, each with ``CELLS_PER_PATIENT`` cells drawn
without replacement from what is left, so no cell belongs to two patients; filling stops when a profile can no
longer be met. Everything is a deterministic function of the cell data set (sorted paths) and ``SEED``.
A bag's label is thus carried by a shift in its class mix, like the marker-cell signal of genetic AML subtypes,
but with none of their morphology: numbers on these bags say whether MIL works on an embedding, not how it
would do on patients.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.core.errors import DataError
from tasks.base import BagDataset, Inventory
from tasks.patients import BagTask

CELLS_PER_PATIENT = 24
MAX_PATIENTS_PER_LABEL = 25
EXCESS = 0.5
SEED = 0


def simulate_patients(samples: pd.DataFrame, *, cells_per_patient: int = CELLS_PER_PATIENT,
                      max_patients: int = MAX_PATIENTS_PER_LABEL, excess: float = EXCESS, seed: int = SEED) -> pd.DataFrame:
    """Cell samples (path, label) -> bag samples (path, label = diagnosis, patient, cell_class)."""
    rng = np.random.default_rng(seed)
    classes = sorted(samples["label"].unique())
    pools = {c: list(rng.permutation(samples.loc[samples["label"] == c, "path"].sort_values().to_numpy())) for c in classes}
    uniform = np.full(len(classes), 1.0 / len(classes))
    profiles = {"control": uniform}
    for j, c in enumerate(classes):
        profile = uniform * (1 - excess)
        profile[j] += excess
        profiles[f"{c}-excess"] = profile
    rows, counts = [], {d: 0 for d in profiles}
    while True:
        progressed = False
        for diagnosis, profile in profiles.items():
            if counts[diagnosis] >= max_patients:
                continue
            draw = rng.multinomial(cells_per_patient, profile)
            if any(len(pools[c]) < n for c, n in zip(classes, draw)):
                continue
            patient = f"{diagnosis}-P{counts[diagnosis] + 1:03d}"
            for c, n in zip(classes, draw):
                rows.extend((pools[c].pop(), diagnosis, patient, c) for _ in range(n))
            counts[diagnosis] += 1
            progressed = True
        if not progressed:
            break
    return pd.DataFrame(rows, columns=["path", "label", "patient", "cell_class"])


@dataclass(frozen=True)
class SimulatedBagTask(BagTask):
    cell_task: str = ""

    def resolve_root(self, data_root, data_home: Path) -> Path:
        from tasks import get_task

        return get_task(self.cell_task).resolve_root(data_root, data_home)

    def inventory(self, root: Path) -> Inventory:
        """The cell task's inventory: the cells are what can be checked."""
        from tasks import get_task

        return get_task(self.cell_task).inventory(root)

    def load(self, data_root=None, *, data_home: Path, split_file=None) -> BagDataset:
        from tasks import get_task

        if split_file is not None:
            raise DataError(f"task {self.name!r} draws patient-level folds itself; --split-file does not apply")
        cell_task = get_task(self.cell_task)
        if cell_task.kind != "cells":
            raise DataError(f"bags:{self.cell_task}: {self.cell_task!r} is not a cell-classification task")
        cells = cell_task.load(data_root, data_home=data_home)
        bags = simulate_patients(cells.samples[["path", "label"]])
        per_label = bags.groupby("label")["patient"].nunique()
        if len(per_label) < 2 or per_label.min() < self.n_folds:
            raise DataError(
                f"bags:{self.cell_task}: {len(cells)} cells give {per_label.to_dict()} simulated patients per "
                f"diagnosis; {self.n_folds}-fold CV needs at least {self.n_folds} per diagnosis. Use a larger cell set"
            )
        sha = dict(zip(cells.samples["path"], cells.samples["sha256"]))
        bags["sha256"] = bags["path"].map(sha)
        bags["fold"] = ""
        bags = bags.sort_values("path", ignore_index=True)
        notes = [f"SIMULATED patients from {self.cell_task!r}: {len(bags)} of {len(cells)} cells in "
                 f"{bags['patient'].nunique()} bags of {CELLS_PER_PATIENT}"]
        return BagDataset(self.name, cells.root, bags, "patients", {}, notes + cells.notes, n_folds=self.n_folds,
                          seeds=tuple(self.seeds))


def task_for(cell_task: str) -> SimulatedBagTask:
    return SimulatedBagTask(
        name=f"bags:{cell_task}",
        summary=f"SIMULATED patients from the cells of {cell_task} (class-mix diagnoses)",
        data_dir="",
        obtain=f"It is built from the task {cell_task!r}; see that task's data.",
        cell_task=cell_task,
    )
