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

DOORS = {"imagefolder": "any <root>/<class>/<image> folder, 5-fold portable stratified CV: imagefolder:PATH"}


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
    return TASKS.get(name)
