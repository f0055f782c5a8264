"""``bench suite run`` / ``bench suite list``: the hematology suite (:mod:`bench.core.suite`) planned on the data
present, run pair by pair through the same :func:`bench.runner.run_pair` as ``bench run`` (cached features reused
across protocols and tasks, result inputs, kept results), and summarised per extractor.

The summary (``<results>/<extractor>/suite.summary.json``, beside the extractor's results; the board skips it)
holds each suite result's main score and, as the board ranks, the extractor's rank on every task it shares with
the other extractors of the results folder and the mean of those ranks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bench.core import suite as definition
from bench.core.files import atomic_write_bytes
from bench.core.registry import safe_name

SUMMARY = "suite.summary.json"


@dataclass(frozen=True)
class Presence:
    """Where a task's data are: ``root`` (None for an embedded task, generated on first use), ``present``, how to
    get them."""

    task: str
    kind: str
    present: bool
    where: str
    root: Path | None = None
    obtain: str = ""
    full_set_images: int | None = None
    licence: str = ""


def presence(name: str, data_home: Path) -> Presence:
    """Whether a built-in task's data are in its default folder under ``data_home`` (nothing is read or hashed):
    what `bench suite list` and `bench list tasks --details` show."""
    from tasks import get_task

    task = get_task(name)
    if task.prepare is not None:
        return Presence(name, task.kind, True, "embedded (generated on first use)", licence=task.licence)
    root = task.resolve_root(None, data_home)
    return Presence(name, task.kind, root.exists(), str(root), root, task.obtain, task.full_set_images, task.licence)


@dataclass
class SuitePlan:
    """The suite on the data present: (task name, protocols) in the order run, and the absent tasks."""

    items: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    missing: list[Presence] = field(default_factory=list)
    present: list[str] = field(default_factory=list)


def plan_suite(data_home: Path, only: list[str] | None = None) -> SuitePlan:
    """The suite's runs for the tasks whose data are in ``data_home`` (``only``: those tasks of the suite)."""
    from bench.core.errors import UsageError

    chosen = list(only) if only else list(definition.TASKS)
    unknown = [t for t in chosen if t not in definition.TASKS]
    if unknown:
        raise UsageError(f"--task {unknown[0]!r} is not a task of the suite; its tasks: {', '.join(definition.TASKS)}")
    plan = SuitePlan()
    for name in chosen:
        found = presence(name, data_home)
        (plan.present.append(name) if found.present else plan.missing.append(found))
    for name in plan.present:
        if name in definition.BAG_TASKS:
            plan.items.append((name, definition.BAG_PROTOCOLS))
        else:
            plan.items.append((name, definition.CELL_PROTOCOLS))
    white = [t for t in definition.WHITE_CELL_TASKS if t in plan.present]
    for name in white:
        plan.items.append((definition.robustness_name(name), definition.ROBUSTNESS_PROTOCOLS))
    for train in white:
        for test in white:
            if train != test:
                plan.items.append((definition.shift_name(train, test), definition.SHIFT_PROTOCOLS))
    if len(white) >= 2:
        plan.items.append((definition.pool_name(white), definition.POOL_PROTOCOLS))
    return plan


def write_summaries(results_dir: Path, extractors: list[str], evaluations: list[str]) -> dict[str, Path]:
    """One summary per extractor: the main score of each of its results on ``evaluations`` (the plan's task names:
    cell tasks, robustness, shifts, side by side), and its ranks over the suite's tasks as the board ranks them
    (:func:`leaderboard.suite.suite_ranks`)."""
    from bench.core.record import now_utc
    from leaderboard.suite import suite_ranks
    from leaderboard.tables import read_results

    problems: list[str] = []
    everything = read_results(results_dir, problems)
    ranks = suite_ranks(everything)
    results = everything[everything["task"].isin(evaluations)]
    written = {}
    for extractor in extractors:
        mine = results[results["extractor"] == extractor]
        scores: dict[str, dict] = {}
        for _, row in mine.iterrows():
            metric = row["main_metric"]
            scores.setdefault(str(row["task"]), {})[str(row["protocol"])] = {
                "metric": metric, "mean": row.get(f"{metric}_mean"), "std": row.get(f"{metric}_std")}
        rank = ranks.get(extractor, {})
        payload = {"extractor": extractor, "created": now_utc(), "headline_protocol": definition.HEADLINE_PROTOCOL,
                   "shared_tasks": rank.get("shared_tasks", []), "ranks": rank.get("ranks", {}),
                   "mean_rank": rank.get("mean_rank"), "of": rank.get("of"), "results": scores,
                   "problems": problems}
        path = Path(results_dir) / safe_name(extractor) / SUMMARY
        atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())
        written[extractor] = path
    return written


def cards_markdown() -> str:
    """The suite's tasks as a Markdown table from their cards (docs/suite.md holds it; a test keeps it equal)."""
    from tasks import get_task

    lines = ["| task | kind | images | classes | licence | source |", "|---|---|---|---|---|---|"]
    for name in definition.TASKS:
        task = get_task(name)
        size = "—" if task.full_set_images is None else f"{task.full_set_images:,}"
        classes = str(len(task.expected_classes)) if task.expected_classes else "—"
        cells = [f"`{name}`", task.kind, size, classes, task.licence or "—", task.citation or "—"]
        lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)
