"""What a task name may say beyond a registered name: the variants the result is named by, so that what is typed
is what the board shows (``bench run -t acevedo@folds=authors`` writes and ranks ``acevedo@folds=authors``).

    NAME       := MEMBERS ( "@" KEY "=" VALUE )*
    MEMBERS    := TASK | TASK "=>" TASK | TASK "+" TASK ( "+" TASK )*

- ``TASK``: a registered name, a scheme (``imagefolder:<path>``), an entry point or ``path/to/file.py:TASK``;
- ``A=>B``: a domain shift (train on A, test on B); ``A+B+C``: the data sets side by side (batch effect), in
  sorted order (the order typed does not matter); :mod:`tasks.domains`;
- ``@folds=portable|authors`` and ``@preprocessing=direct|authors-cv``: the (training) task's fold scheme and
  preprocessing (:data:`TASK_VARIANTS`); ``@perturbation=stain|blur|jpeg|rescale``: its images perturbed
  (:mod:`tasks.transforms`), ``@perturbation=all``: clean and every perturbation side by side, for robustness
  (:mod:`tasks.perturbations`); ``@training=all|folds`` and ``@classes=all|shared|harmonised``: a domain
  shift's (:data:`tasks.domains.SHIFT_TRAINING`, :data:`tasks.domains.SHIFT_CLASSES`; harmonised classes:
  :mod:`tasks.harmonised`).

A variant equal to the task's own default is dropped from the name, and the variants are written in one order
(:data:`ORDER`), so every spelling of one evaluation has one name. ``+`` and ``=>`` always join tasks: a path
holding them cannot be a task name (copy or link the folder).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Callable

from bench.core.errors import UsageError
from tasks.transforms import CLEAN, PERTURBATIONS, PREPROCESSING

ALL_PERTURBATIONS = "all"  # TASK@perturbation=all: the clean images and every perturbation (PerturbationTask)
# key -> (the Task field it sets, its choices)
TASK_VARIANTS = {"folds": ("fold_scheme", ("portable", "authors")),
                 "preprocessing": ("preprocessing", tuple(PREPROCESSING)),
                 "perturbation": ("perturbation", (CLEAN, *PERTURBATIONS, ALL_PERTURBATIONS))}
SHIFT_VARIANTS = {"training": ("training", ("all", "folds")),
                  "classes": ("classes", ("all", "shared", "harmonised"))}
ORDER = ("folds", "preprocessing", "perturbation", "training", "classes")
SHIFT, POOL = "=>", "+"
_VARIANT = re.compile(r"^(?P<rest>.+)@(?P<key>%s)=(?P<value>[^@=+>]*)$" % "|".join(ORDER))
_INNER = re.compile(r"@(%s)=" % "|".join(ORDER))


@dataclass(frozen=True)
class TaskName:
    """A task name taken apart: its member task names, how they are joined, and its variants."""

    members: tuple[str, ...]
    joint: str | None  # None (one task), SHIFT or POOL
    variants: tuple[tuple[str, str], ...]  # (key, value) in ORDER

    def get(self, key: str, default: str | None = None) -> str | None:
        return dict(self.variants).get(key, default)


def parse(name: str) -> TaskName:
    """``name`` taken apart, each variant checked against its choices (no task is imported)."""
    variants: dict[str, str] = {}
    rest = name
    while (match := _VARIANT.match(rest)) is not None:
        key, value = match["key"], match["value"]
        if key in variants:
            raise UsageError(f"task {name!r}: @{key}= is given twice")
        choices = {**TASK_VARIANTS, **SHIFT_VARIANTS}[key][1]
        if value not in choices:
            raise UsageError(f"task {name!r}: @{key}= must be one of {', '.join(choices)}, got {value!r}")
        variants[key] = value
        rest = match["rest"]
    if SHIFT in rest:
        members, joint = tuple(rest.split(SHIFT)), SHIFT
        if len(members) != 2:
            raise UsageError(f"task {name!r}: a domain shift joins two tasks, TRAIN=>TEST")
    elif POOL in rest:
        members, joint = tuple(sorted(rest.split(POOL))), POOL
        if len(set(members)) < len(members):
            raise UsageError(f"task {name!r}: name each data set once (A+B+C)")
    else:
        members, joint = (rest,), None
    if any(not m for m in members):
        raise UsageError(f"task {name!r}: a task name is missing around {joint!r}")
    inner = [m for m in members if _INNER.search(m)]
    if joint is not None and inner:
        moved = [_INNER.split(m, 1)[0] for m in members]
        where = "the training task" if joint == SHIFT else "no data set side by side"
        raise UsageError(f"task {name!r}: variants go at the end of the name, after every task (they apply to "
                         f"{where}): {joint.join(moved)}@{inner[0].split('@', 1)[1]}")
    shift_keys = sorted(k for k in variants if k in SHIFT_VARIANTS)
    if shift_keys and joint != SHIFT:
        raise UsageError(f"task {name!r}: @{shift_keys[0]}= applies to a domain shift, named TRAIN=>TEST "
                         f"(e.g. {rest}=>OTHER@{shift_keys[0]}={variants[shift_keys[0]]})")
    if joint == POOL and variants:
        raise UsageError(f"task {name!r}: data sets side by side take no variant; give each its default, or "
                         "compare them with a variant of one task at a time")
    return TaskName(members, joint, tuple((k, variants[k]) for k in ORDER if k in variants))


def check(name: str, check_member: Callable[[str], Any]) -> None:
    """Refuse a task name that cannot resolve, without importing any task (``check_member``: the registry's)."""
    for member in parse(name).members:
        check_member(member)


def configured(task, parsed: TaskName):
    """``task`` with the name's task variants (a frozen dataclass: ``replace`` makes the variant)."""
    changes = {}
    for key, (attribute, _) in TASK_VARIANTS.items():
        value = parsed.get(key)
        if value is None or value == getattr(task, attribute, None) or value == ALL_PERTURBATIONS:
            continue  # (@perturbation=all makes a task of several versions: build)
        if task.kind != "cells" or (key == "folds" and not getattr(task, "k_fold", False)):
            what = "cell tasks with k-fold cross-validation" if key == "folds" else "cell tasks"
            raise UsageError(f"@{key}= applies to {what}; {task.name!r} is not one")
        changes[attribute] = value
    return replace(task, **changes) if changes else task


def variant_suffix(default, task) -> str:
    """``@folds=...@preprocessing=...`` where ``task`` differs from ``default`` (the task as registered)."""
    return "".join(f"@{key}={getattr(task, attribute)}" for key, (attribute, _) in TASK_VARIANTS.items()
                   if getattr(task, attribute, None) != getattr(default, attribute, None))


def build(name: str, get_member: Callable[[str], Any]) -> Any:
    """The task a name says: a registered task with its variants, or a multi-domain task (:mod:`tasks.domains`)
    named by its canonical name (:func:`label`)."""
    parsed = parse(name)
    if parsed.get("perturbation") == ALL_PERTURBATIONS:
        if parsed.joint is not None:
            raise UsageError(f"task {name!r}: @perturbation=all evaluates one task's images clean and perturbed; "
                             f"name one task (e.g. {parsed.members[0]}@perturbation=all)")
        return perturbation_task(get_member(parsed.members[0]), parsed)
    if parsed.joint is None:
        return configured(get_member(parsed.members[0]), parsed)
    from tasks.domains import DomainPoolTask, DomainShiftTask

    if parsed.joint == POOL:
        members = tuple(get_member(m) for m in parsed.members)
        return DomainPoolTask(name=POOL.join(m.name for m in members), members=members,
                              summary=f"{len(members)} data sets side by side")
    default = get_member(parsed.members[0])
    train, test = configured(default, parsed), get_member(parsed.members[1])
    if train.kind != "cells":
        raise UsageError(f"task {name!r}: a domain shift trains a cell protocol; {train.name!r} is a {train.kind} task")
    training, classes = parsed.get("training") or "all", parsed.get("classes") or "all"
    shift_suffix = "".join(f"@{k}={v}" for k, v in (("training", training), ("classes", classes)) if v != "all")
    return DomainShiftTask(name=f"{train.name}{SHIFT}{test.name}{variant_suffix(default, train)}{shift_suffix}",
                           members=(train, test), training=training, classes=classes, main_metric=train.main_metric,
                           protocols=tuple(train.protocols), summary=f"trained on {train.name}, tested on {test.name}")


def perturbation_task(default, parsed: TaskName):
    """``TASK@perturbation=all``: the task (with its other variants) clean, then under each perturbation."""
    from tasks.perturbations import PerturbationTask

    clean = configured(default, parsed)
    if clean.kind != "cells":
        raise UsageError(f"@perturbation= applies to cell tasks; {default.name!r} is a {default.kind} task")
    named = default.name + variant_suffix(default, clean)
    members = (replace(clean, name=named),
               *(replace(clean, name=f"{named}@perturbation={p}", perturbation=p) for p in PERTURBATIONS))
    return PerturbationTask(name=f"{named}@perturbation={ALL_PERTURBATIONS}", members=members,
                            summary=f"{named}: clean and under {', '.join(PERTURBATIONS)}")


def label(default, task, split: str | None = None) -> str:
    """The result's task name: the task's (a multi-domain task is named canonically when built), else its
    registered name, ``@split=<file>`` for a fixed split file, then its variants."""
    if task.kind == "domains":
        return task.name
    return task.name + (f"@split={split}" if split else "") + variant_suffix(default, task)
