"""Task registry. Built-in tasks are lazy ``module:attr`` targets (listing them imports no data code); schemes
build a task from a path or another task (``imagefolder:``, ``csv:``, ``bags:``); your own come as
``--task path/to/file.py:TASK`` or through the entry-point group ``hemabench.tasks`` (docs/tasks.md: a new task
in one file). A name may add variants and join tasks (:mod:`tasks.names`: ``acevedo@folds=authors``,
``acevedo=>bmc``, ``a+b``). The summary registered here is the one ``bench list`` shows and the result files record.
"""

from __future__ import annotations

from bench.core.registry import Registry

TASKS: Registry = Registry("task", base="tasks.base:Task", entry_point_group="hemabench.tasks", allow_files=True)
register_task = TASKS.register

for _name, _target, _summary in [
    ("synthetic-wbc", "tasks.synthetic:SYNTHETIC_WBC",
     "embedded synthetic white-cell images, 6 classes x 50, 5-fold CV (generated on first use)"),
    ("synthetic-wbc-shifted", "tasks.synthetic:SYNTHETIC_WBC_SHIFTED",
     "the same synthetic cells under another stain/scanner (domain shift), 5-fold CV"),
    ("synthetic-bags", "tasks.synthetic:SYNTHETIC_BAGS",
     "embedded synthetic patients (4 diagnoses x 10, 24 cells each) for multiple-instance learning"),
    ("acevedo", "tasks.acevedo:ACEVEDO",
     "Acevedo peripheral blood cells (17,092 images), 8 classes, 5-fold portable CV, duplicates in one fold"),
    ("acevedo-11", "tasks.acevedo:ACEVEDO_11",
     "Acevedo, 11 classes from the file-name prefix (unspecified IG_*/NEUTROPHIL_* left out), 5-fold CV"),
    ("bmc", "tasks.bmc:BMC",
     "Bone Marrow Cytomorphology (Matek et al. 2021, 171,374 images), 21 classes, fixed per-class 80/20 split"),
    ("bccd-wbc", "tasks.bccd:BCCD_WBC",
     "BCCD white-cell crops (apple2373/BCCD, 351 images), 5 classes, 5-fold portable CV"),
    ("sslseg-1", "tasks.segmentation_wbc:SSLSEG_1",
     "segmentation_WBC Dataset 1 (Jiangxi Tecom, 300 images of 120 px), 5 classes, labels not all expert-checked, "
     "5-fold CV"),
    ("sslseg-2", "tasks.segmentation_wbc:SSLSEG_2",
     "segmentation_WBC Dataset 2 (CellaVision blog, 100 images of 300 px), 5 classes, labels not all "
     "expert-checked, 5-fold CV"),
    ("raabin-wbc", "tasks.raabin:RAABIN_WBC",
     "Raabin-WBC double-labelled crops (Kouzehkanan et al. 2022, 575 px), 5 classes, the published split: "
     "trained on Train, tested on TestA"),
    ("raabin-wbc-testb", "tasks.raabin:RAABIN_WBC_TESTB",
     "Raabin-WBC, trained on Train, tested on TestB (other microscopes and cameras: a shifted test set)"),
    ("lisc", "tasks.lisc:LISC",
     "LISC (Rezatofighi & Soltanian-Zadeh 2011, 242 fields of 720 x 576 px), 5 classes, mixed fields left out, "
     "5-fold CV"),
    ("matek-19", "tasks.matek19:MATEK_19",
     "AML-Cytomorphology_LMU (Matek et al. 2019, 18,365 peripheral-blood cells), 15 classes by abbreviation, "
     "5-fold portable CV"),
    ("mll23", "tasks.mll23:MLL23",
     "MLL23 (Munich Leukemia Laboratory, 41,621 peripheral-blood cells), 18 classes, 5-fold portable CV"),
    ("chula-rbc-12", "tasks.chula:CHULA_RBC_12",
     "Chula RBC-12 red-cell shapes (22,106 labelled points on 621 smears), 13 classes, 80-px crops around each "
     "point, 5-fold CV grouped by smear"),
    ("aml-hehr", "tasks.aml:AML_HEHR",
     "AML Hehr: 4 genetic AML subtypes and control per patient from all its cells (ABMIL, patient-level CV)"),
]:
    TASKS.add_lazy(_name, _target, summary=_summary)

for _scheme, _factory, _argument, _summary in [
    ("imagefolder", "tasks.imagefolder:task_for", "PATH", "any <root>/<class>/<image> folder, 5-fold portable stratified CV"),
    ("csv", "tasks.csvfile:task_for", "PATH",
     "a CSV path,label[,patient] (paths relative to the CSV or absolute), 5-fold CV grouped by patient"),
    ("bags", "tasks.simulated_bags:task_for", "TASK",
     "SIMULATED patients from a labelled cell task (class-mix diagnoses), for MIL"),
]:
    TASKS.add_scheme(_scheme, _factory, argument=_argument, summary=_summary, path_argument=_argument == "PATH")


def get_task(name: str):
    """The task a name says (:mod:`tasks.names`): a registered name, a scheme (``imagefolder:``, ``csv:``,
    ``bags:``), an entry point or ``path/to/file.py:TASK``, with its variants (``acevedo@folds=authors``), or
    several joined (``acevedo=>bmc``, ``a+b``)."""
    from tasks.names import build

    return build(name, TASKS.get)


def check_task(name: str) -> None:
    """Refuse a task name that cannot resolve, importing no task (the CLI calls it before any model code)."""
    from tasks.names import check

    check(name, TASKS.check)
