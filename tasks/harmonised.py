"""The harmonised white-cell classes: which class of each white-cell task is which common class, with the source
of each correspondence. A domain shift scored over them, ``'matek-19=>acevedo@classes=harmonised'``
(:mod:`tasks.domains`), trains and tests on the common classes instead of the tasks' own label names.

The common classes are the MLL23 authors' harmonised labels (marrlab/MLL23 ``labels_harmonised.csv``: MLL23,
Matek19 and Acevedo20), ``smudge_cell`` (MLL23 and Matek19 on one row of their ``labels_unharmonised.csv``), and
two coarse classes for data sets that do not tell the stages apart, :data:`COARSE`: ``neutrophil`` (band and
segmented) and ``immature_granulocyte`` (promyelocyte, myelocyte, metamyelocyte). When either task of a pair has a
coarse class, both tasks' finer classes are merged into it for that pair (:func:`pair_maps`): Matek's NGB and NGS
are ``neutrophil`` against Acevedo's 8 folders, ``neutrophil_band`` and ``neutrophil_segmented`` against
``acevedo-11``. A class with no counterpart in any other set maps to None: it keeps its own label, is trained on
and is never scored. The map is data (:data:`HARMONISED`) and docs/tasks.md shows it as a table.
"""

from __future__ import annotations

from typing import Iterable

from bench.core.errors import UsageError

# Where each correspondence comes from
SOURCES = {
    "mll23": "marrlab/MLL23 labels_harmonised.csv (commit 1d6ca3e): the MLL23 authors' harmonisation of MLL23, "
             "Matek19 and Acevedo20",
    "mll23-unharmonised": "marrlab/MLL23 labels_unharmonised.csv (commit 1d6ca3e): the classes left out of that "
                          "harmonisation, one row per class and the data sets that hold it",
    "acevedo": "Acevedo et al. 2020 (Data in Brief 30): the 'ig' folder holds promyelocytes, myelocytes and "
               "metamyelocytes (file-name prefixes PMY, MY, MMY), the 'neutrophil' folder band and segmented "
               "neutrophils (BNE, SNE)",
    "name": "the data set's own class name; its neutrophils are not told apart as band or segmented",
}
COARSE = {"neutrophil": ("neutrophil_band", "neutrophil_segmented"),
          "immature_granulocyte": ("metamyelocyte", "myelocyte", "promyelocyte")}
FINE = ("basophil", "eosinophil", "erythroblast", "lymphocyte", "metamyelocyte", "monocyte", "myeloblast",
        "myelocyte", "neutrophil_band", "neutrophil_segmented", "promyelocyte")  # labels_harmonised.csv
COMMON_CLASSES = tuple(sorted({*FINE, "smudge_cell", *COARSE}))

Entry = tuple[str | None, str]  # (the common class or None, the key of its source in SOURCES)

_FIVE_CLASSES: dict[str, Entry] = {"basophil": ("basophil", "name"), "eosinophil": ("eosinophil", "name"),
                                   "lymphocyte": ("lymphocyte", "name"), "monocyte": ("monocyte", "name"),
                                   "neutrophil": ("neutrophil", "name")}
_ACEVEDO_SHARED: dict[str, Entry] = {c: (c, "mll23") for c in ("basophil", "eosinophil", "erythroblast",
                                                                "lymphocyte", "monocyte")}
# task -> its label -> (common class or None, source)
HARMONISED: dict[str, dict[str, Entry]] = {
    "acevedo": {**_ACEVEDO_SHARED, "ig": ("immature_granulocyte", "acevedo"), "neutrophil": ("neutrophil", "acevedo"),
                "platelet": (None, "mll23-unharmonised")},
    "acevedo-11": {**_ACEVEDO_SHARED, "metamyelocyte": ("metamyelocyte", "mll23"), "myelocyte": ("myelocyte", "mll23"),
                   "promyelocyte": ("promyelocyte", "mll23"), "band_neutrophil": ("neutrophil_band", "mll23"),
                   "segmented_neutrophil": ("neutrophil_segmented", "mll23"),
                   "platelet": (None, "mll23-unharmonised")},
    "matek-19": {"BAS": ("basophil", "mll23"), "EBO": ("erythroblast", "mll23"), "EOS": ("eosinophil", "mll23"),
                 "KSC": ("smudge_cell", "mll23-unharmonised"), "LYA": (None, "mll23-unharmonised"),
                 "LYT": ("lymphocyte", "mll23"), "MMZ": ("metamyelocyte", "mll23"), "MOB": (None, "mll23-unharmonised"),
                 "MON": ("monocyte", "mll23"), "MYB": ("myelocyte", "mll23"), "MYO": ("myeloblast", "mll23"),
                 "NGB": ("neutrophil_band", "mll23"), "NGS": ("neutrophil_segmented", "mll23"),
                 "PMB": (None, "mll23-unharmonised"), "PMO": ("promyelocyte", "mll23")},
    "mll23": {**{c: (c, "mll23") for c in FINE if c != "erythroblast"}, "normoblast": ("erythroblast", "mll23"),
              "smudge_cell": ("smudge_cell", "mll23-unharmonised"),
              **{c: (None, "mll23-unharmonised") for c in ("hairy_cell", "lymphocyte_large_granular",
                                                          "lymphocyte_neoplastic", "lymphocyte_reactive",
                                                          "plasma_cell", "promyelocyte_atypical")}},
    # the public 5-class sets: their own names (raabin-wbc and lisc as their tasks name them)
    **{task: dict(_FIVE_CLASSES) for task in ("bccd-wbc", "sslseg-1", "sslseg-2", "raabin-wbc", "lisc")},
}


def task_map(task: str) -> dict[str, Entry]:
    """The harmonised map of one task (by its registered name), or a usage error naming the tasks that have one."""
    if task not in HARMONISED:
        raise UsageError(f"@classes=harmonised: task {task!r} has no harmonised class map (tasks/harmonised.py); "
                         f"the tasks with one: {', '.join(sorted(HARMONISED))}. Use @classes=shared to share classes "
                         "by identical names")
    return HARMONISED[task]


def pair_maps(train: str, test: str) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """Each task's label -> common class for the pair ``train=>test``: a coarse class either task has (only
    ``neutrophil`` on one side) takes the finer classes of both."""
    maps = [{label: common for label, (common, _) in task_map(task).items()} for task in (train, test)]
    held = {common for mapping in maps for common in mapping.values()}
    merge = {fine: coarse for coarse, finer in COARSE.items() if coarse in held for fine in finer}
    train_map, test_map = ({label: merge.get(common, common) if common else None for label, common in m.items()}
                           for m in maps)
    return train_map, test_map


def relabel(labels: Iterable[str], mapping: dict[str, str | None]) -> list[str]:
    """Each label as its common class; a label without one (None, or not in the map) stays as it is."""
    return [mapping.get(label) or label for label in labels]


def describe_map(task: str) -> str | None:
    """One line for ``bench data info``: the task's classes as common classes; None for a task without a map."""
    if task not in HARMONISED:
        return None
    entries = HARMONISED[task]
    mapped = ", ".join(f"{label} -> {common}" for label, (common, _) in entries.items() if common)
    alone = [label for label, (common, _) in entries.items() if not common]
    return (f"harmonised classes (A=>B@classes=harmonised, tasks/harmonised.py): {mapped}"
            + (f"; no counterpart (trained on, never scored): {', '.join(alone)}" if alone else ""))
