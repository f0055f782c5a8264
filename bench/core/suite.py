"""The hematology suite (``bench suite run``): which tasks and protocols it holds, as names only (the harness plans and
runs it, :mod:`bench.suite`; the board shows it, :mod:`leaderboard.suite`).

- **Cell tasks**: every public single-cell data set with a built-in task, each with the kNN and linear probes and
  the few-shot curves (:data:`CELL_PROTOCOLS`).
- **White-cell sets** (:data:`WHITE_CELL_TASKS`): additionally, trained on each and tested on every other one over
  their harmonised classes (``A=>B@classes=harmonised``, the generalisation matrix); each one's images under the
  perturbations of :mod:`tasks.transforms` (``A@perturbation=all``, robustness); and all of them side by side
  (``A+B+...``: the batch effect and PathoROB's robustness index over sites).
- **Patients**: the AML subtyping task with attention MIL.

A task whose data are absent is skipped and named, with how to get it.
"""

from __future__ import annotations

CELL_PROTOCOLS = ("knn-20", "linear", "fewshot-simpleshot", "fewshot-linear")
SHIFT_PROTOCOLS = ("knn-20", "linear")
POOL_PROTOCOLS = ("batch-effect", "robustness-index")
ROBUSTNESS_PROTOCOLS = ("robustness",)
BAG_PROTOCOLS = ("abmil-paper",)
HEADLINE_PROTOCOL = "linear"  # the suite view's table: the paper's probe, per task

WHITE_CELL_TASKS = ("acevedo", "bccd-wbc", "sslseg-1", "sslseg-2", "raabin-wbc", "lisc", "matek-19", "mll23")
OTHER_CELL_TASKS = ("raabin-wbc-testb", "bmc", "chula-rbc-12")
BAG_TASKS = ("aml-hehr",)
CELL_TASKS = WHITE_CELL_TASKS + OTHER_CELL_TASKS
TASKS = CELL_TASKS + BAG_TASKS


def shift_name(train: str, test: str) -> str:
    return f"{train}=>{test}@classes=harmonised"


def pool_name(members) -> str:
    return "+".join(sorted(members))


def robustness_name(task: str) -> str:
    return f"{task}@perturbation=all"
