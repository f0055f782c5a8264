"""Task registry. Built-in tasks are lazy ``module:attr`` targets; ``imagefolder:<path>`` is a door for any
``<root>/<class>/<image>`` folder; third-party tasks come through the entry-point group ``hemabench.tasks``."""

from __future__ import annotations

from pathlib import Path

from bench.registry import Registry

TASKS: Registry = Registry("task", entry_point_group="hemabench.tasks")
register_task = TASKS.register

TASKS.add_lazy(
    "synthetic-wbc",
    "tasks.synthetic:SYNTHETIC_WBC",
    summary="embedded synthetic white-cell images, 6 classes x 50, 5-fold CV (generated on first use)",
)
TASKS.add_lazy(
    "synthetic-wbc-shifted",
    "tasks.synthetic:SYNTHETIC_WBC_SHIFTED",
    summary="the same synthetic cells under another stain/scanner (domain shift), 5-fold CV",
)

TASKS.add_lazy(
    "acevedo",
    "tasks.acevedo:ACEVEDO",
    summary="Acevedo peripheral blood cells (17,092 images), 8 classes, 5-fold portable CV, duplicates in one fold",
)
TASKS.add_lazy(
    "acevedo-11",
    "tasks.acevedo:ACEVEDO_11",
    summary="Acevedo, 11 classes from the file-name prefix (unspecified IG_*/NEUTROPHIL_* left out), 5-fold CV",
)
TASKS.add_lazy(
    "bmc",
    "tasks.bmc:BMC",
    summary="Bone Marrow Cytomorphology (Matek et al. 2021), 21 classes, fixed per-class 80/20 split",
)
TASKS.add_lazy(
    "synthetic-bags",
    "tasks.synthetic:SYNTHETIC_BAGS",
    summary="embedded synthetic patients (4 diagnoses x 10, 24 cells each) for multiple-instance learning",
)
TASKS.add_lazy(
    "aml-hehr",
    "tasks.aml:AML_HEHR",
    summary="AML Hehr: 5 genetic AML subtypes/control per patient from all its cells (ABMIL, patient-level CV)",
)

DOORS = {  # door -> (what follows the colon, summary)
    "imagefolder": ("PATH", "any <root>/<class>/<image> folder, 5-fold portable stratified CV"),
    "csv": ("PATH", "a CSV path,label[,patient] (paths relative to the CSV or absolute), 5-fold CV grouped by patient"),
    "bags": ("TASK", "SIMULATED patients from a labelled cell task (class-mix diagnoses), for MIL"),
}


def get_task(name: str):
    """The task spec for a registered name or ``imagefolder:<path>``."""
    door, sep, rest = name.partition(":")
    if sep and door == "imagefolder":
        from tasks.base import CellTask

        root = Path(rest).expanduser().resolve()
        return CellTask(
            name=name,
            summary=f"image folder {root}",
            data_dir="",
            obtain="Check the path after 'imagefolder:'.",
            fixed_root=root,
        )
    if sep and door == "csv":
        from tasks.csvfile import entry_for as csv_task

        return csv_task(rest)
    if sep and door == "bags":
        from tasks.simulated_bags import entry_for

        return entry_for(rest)
    return TASKS.get(name)
