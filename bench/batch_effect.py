"""``bench batch-effect``: one extractor's batch-effect scores over several tasks (data sets), written as a result
record that the leaderboard ranks like any other (task ``A+B``, protocol ``batch-effect``, main metric
``integration_score``), with the per-cell scores beside it (``batch-effect.cells.csv``).

The features come from the cache (a cached pair needs no forward pass); the scores are
:mod:`protocols.batch_effect`. Each result is recomputed when asked for: it takes seconds, not a forward pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from bench.core.errors import UsageError
from bench.core.files import digest
from bench.core.metrics import INTEGRATION
from bench.core.record import (
    ExtractorInfo,
    ProtocolInfo,
    ResultRecord,
    Scores,
    TaskInfo,
    cells_path,
    environment,
    now_utc,
    result_paths,
    write_table,
)
from bench.runner import RunOptions, TaskFeaturesKey, build_extractor, resolve_entry, task_features


def domains_label(tasks: list[str]) -> str:
    """The task name of a batch-effect result: the tasks' names sorted, joined by ``+`` (order does not matter)."""
    return "+".join(sorted(tasks))


def batch_effect(extractor: str, tasks: list[str], options: RunOptions, scorer, *,
                 log: Callable[[str], None] = print, on_repeat=None) -> tuple[ResultRecord, Path]:
    """Score ``extractor``'s embeddings of ``tasks`` (each a domain) with ``scorer``
    (:class:`protocols.batch_effect.BatchEffect`) and write the record under ``options.results_dir``.
    ``on_repeat(done, total)``: progress of the scoring's random draws."""
    from bench.extract import pick_device
    from tasks import get_task

    if len(tasks) < 2 or len(set(tasks)) < len(tasks):
        raise UsageError(f"--tasks: name at least two different tasks (data sets) to compare, got {tasks}")
    built = build_extractor(resolve_entry(extractor, options.pooling), options, log)
    parts = [task_features(built, get_task(task), options, log) for task in tasks]
    if any(p.dataset.design(p.keep, p.dataset.classes).kind != "cells" for p in parts):
        raise UsageError("bench batch-effect compares cell tasks; for patient bags, name the cells' task "
                         "(e.g. an imagefolder: of the cells)")
    rows = [np.flatnonzero(p.keep) for p in parts]
    features = np.concatenate([p.features[r] for p, r in zip(parts, rows)])
    domains = np.concatenate([[p.task.name] * len(r) for p, r in zip(parts, rows)])
    labels = np.concatenate([p.dataset.samples["label"].astype(str).to_numpy()[r] for p, r in zip(parts, rows)])
    paths = np.concatenate([p.paths[r] for p, r in zip(parts, rows)])
    log(f"{built.entry.name}: batch effect over {', '.join(tasks)} ({len(features)} cells)")
    scores = scorer.score(features, domains, labels, on_repeat)
    keys = [TaskFeaturesKey.of(p.extractor, p.dataset).as_dict() for p in parts]  # (each with its task's preprocessing)
    identity = {"features": [{k: v for k, v in key.items() if k != "root"} for key in keys],
                "protocol": {"name": scorer.name, "settings": scorer.settings()},
                "batch_effect_code_version": _code_version()}
    shared = sorted(scores.per_repeat[0]["domain_asw_per_class"])
    only_some = sorted(set(labels) - set(shared))
    warnings = list(scores.notes)
    if only_some:
        warnings.append(f"classes not held by every task, left out of the scores: {only_some}")
    label = domains_label(tasks)
    record = ResultRecord(
        created=now_utc(),
        extractor=ExtractorInfo(name=built.entry.name, summary=built.entry.summary, fingerprint=built.fingerprint,
                                feature_key=parts[0].cached.manifest["key"], metadata=built.entry.metadata),
        task=TaskInfo(**{"task": label, "main_metric": INTEGRATION,  # with keys beyond its fields (extra="allow")
                         "domains": {p.task.name: p.task_info() for p in parts}, "shared_classes": shared}),
        protocol=ProtocolInfo(name=scorer.name, summary=scorer.summary, settings=scorer.settings()),
        metrics=Scores(per_fold=scores.per_repeat, mean=scores.mean, std=scores.std, main=INTEGRATION),
        warnings=warnings,
        skipped_images=[f"{p.task.name}:{path}" for p in parts for path in p.skipped_images],
        timings={"tasks": {p.task.name: p.stats.as_dict() for p in parts},
                 "evaluation_seconds": round(scores.seconds, 3)},
        environment=environment(str(pick_device(options.device))),
        inputs={"digest": digest(identity), **identity, "features": keys},
    )
    json_path, _ = result_paths(options.results_dir, built.entry.name, label, scorer.name)
    cells = scores.cells.assign(path=paths[scores.cells["row"]]).drop(columns="row")
    write_table(cells_path(json_path), cells[["repeat", "path", *[c for c in cells if c not in ("repeat", "path")]]])
    record.write(json_path)
    return record, json_path


def _code_version() -> int:
    from protocols.batch_effect import BATCH_EFFECT_CODE_VERSION

    return BATCH_EFFECT_CODE_VERSION
