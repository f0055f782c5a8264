"""The run planner: extractor x task pairs -> cached features -> protocols -> result records.

A failing pair is reported and the others still run; the caller turns failures into the exit code.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bench import settings
from bench.results import (
    OVERWRITE_POLICIES,
    SCHEMA_VERSION,
    environment,
    now_utc,
    result_paths,
    write_result,
    write_table,
)


@dataclass
class RunOptions:
    results_dir: Path = Path("results")
    data_root: Path | None = None
    split_file: Path | None = None  # a fixed train/test split (CSV path,split) instead of the task's k-fold CV
    weights: Path | None = None
    offline: bool = False  # never download weights (also: HF_HUB_OFFLINE=1 or BENCH_OFFLINE=1)
    pooling: str | None = None  # override the entry's token pooling (cls, mean, cls+mean)
    overwrite: str = "only-missing"
    device: str = "auto"
    batch_size: int = 32
    num_workers: int | None = None  # None: bench.extract.auto_workers
    skip_bad_images: bool = False
    progress: bool = True
    shard_size: int = 1024
    cache_root: Path | None = None  # default: $BENCH_HOME/cache
    data_home: Path | None = None  # default: $BENCH_HOME/data

    def __post_init__(self) -> None:
        if self.overwrite not in OVERWRITE_POLICIES:
            raise ValueError(f"--overwrite must be one of {', '.join(OVERWRITE_POLICIES)}, got {self.overwrite!r}")


@dataclass
class PairOutcome:
    extractor: str
    task: str
    status: str  # ok | skipped | failed
    error: str | None = None
    records: list[dict] = field(default_factory=list)
    skipped_protocols: list[str] = field(default_factory=list)
    traceback: str | None = None


class ResultsExistError(RuntimeError):
    pass


def resolve_protocols(names: list[str] | None, default: tuple[str, ...]):
    from bench.protocols import PROTOCOLS

    return [PROTOCOLS.get(name) for name in (names or default)]


def resolve_entry(extractor_name: str, pooling: str | None):
    from extractors import get_extractor

    entry = get_extractor(extractor_name)
    return entry.with_pooling(pooling) if pooling else entry


def build_model(entry, options: RunOptions, log):
    """Find the entry's weights (explicit, weights folder, caches, download) and build the model."""
    from extractors.sources import resolve

    resolved = resolve(entry, explicit=options.weights, weights_home=settings.weights_dir(), offline=options.offline, log=log)
    model = entry.build(resolved.path)
    fingerprint = entry.fingerprint(model, resolved.path)
    fingerprint["weights"]["origin"] = resolved.origin
    fingerprint["n_parameters"] = sum(p.numel() for p in model.parameters())
    return model, fingerprint


def load_pair(extractor_name: str, task_name: str, options: RunOptions, log, built: tuple | None = None):
    """Resolve both names, load the data set, build the model and get its features (cached).

    ``built``: (entry, model, fingerprint) of an earlier call for the same extractor, reused as it is (a
    domain-shift run extracts two tasks with one model: no second build and state hash)."""
    from bench.extract import cached_features
    from tasks import get_task

    task = get_task(task_name)
    data_home = options.data_home or settings.data_dir()
    dataset = task.load(options.data_root, data_home=data_home, split_file=options.split_file)
    if built is None:
        entry = resolve_entry(extractor_name, options.pooling)
        model, fingerprint = build_model(entry, options, log)
    else:
        entry, model, fingerprint = built
    cached, stats = cached_features(
        entry,
        model,
        fingerprint,
        dataset.absolute_paths(),
        dataset.content_fingerprint(),
        cache_root=options.cache_root or settings.cache_dir(),
        batch_size=options.batch_size,
        num_workers=options.num_workers,
        device=options.device,
        shard_size=options.shard_size,
        skip_bad=options.skip_bad_images,
        progress=options.progress,
        on_wait=lambda path: log(f"waiting for another process extracting the same features (lock {path})"),
    )
    return entry, task, dataset, fingerprint, cached, stats, model


def _plan(protocols, options: RunOptions, result_name: str, task_label: str, outcome: PairOutcome) -> list:
    """The protocols to run under the overwrite policy (existing results: refuse, keep or redo)."""
    todo = []
    for protocol in protocols:
        json_path, _ = result_paths(options.results_dir, result_name, task_label, protocol.name)
        if json_path.exists() and options.overwrite == "never":
            raise ResultsExistError(
                f"result {json_path} exists and --overwrite is 'never'; use --overwrite always to replace it "
                "or --overwrite only-missing to keep it"
            )
        if json_path.exists() and options.overwrite == "only-missing":
            outcome.skipped_protocols.append(protocol.name)
        else:
            todo.append(protocol)
    return todo


def split_label(task_name: str, split_file: str | Path) -> str:
    """The task name of a fixed-split result: ``acevedo@split=<file stem>-<sha256[:8] of its content>``, so it
    never replaces the task's k-fold result and results on different splits are never ranked together."""
    from tasks.base import sha256_of

    path = Path(split_file)
    if not path.is_file():
        raise FileNotFoundError(f"--split-file {path}: no such file")
    return f"{task_name}@split={path.stem}-{sha256_of(path)[:8]}"


def shift_label(train_task: str, test_task: str) -> str:
    """The task name of a domain-shift result: trained on one task, tested on another."""
    return f"{train_task}=>{test_task}"


def _check_kinds(protocols, task) -> None:
    wrong = [p.name for p in protocols if getattr(p, "kind", "cells") != task.kind]
    if wrong:
        raise ValueError(
            f"protocol(s) {wrong} work on {'bags' if task.kind == 'cells' else 'single cells'}, but task "
            f"{task.name!r} is a {task.kind} task; its protocols: {', '.join(task.protocols)}"
        )


@dataclass
class _Inputs:
    """What the protocols of one pair evaluate: features and labels of every row, and how rows split."""

    features: np.ndarray
    paths: np.ndarray
    label_names: np.ndarray
    keep: np.ndarray  # rows whose image could be read
    task_info: dict
    skipped_images: list
    timings: dict
    warnings: list = field(default_factory=list)
    splits: list | None = None  # None: the dataset's own splits


def _inputs(dataset, task, cached, stats, options: RunOptions) -> _Inputs:
    keep = np.ones(len(dataset), dtype=bool)
    keep[cached.bad_rows] = False
    paths = dataset.samples["path"].to_numpy()
    task_info = {**dataset.describe(), **task.settings(), "notes": list(getattr(dataset, "notes", []))}
    task_info["split_file"] = None if options.split_file is None else str(options.split_file)
    return _Inputs(
        np.asarray(cached.features, dtype=np.float32), paths, dataset.samples["label"].to_numpy(), keep, task_info,
        [paths[i] for i in cached.bad_rows], stats.as_dict(),
    )


def _add_test_task(inputs: _Inputs, dataset, task, extractor_name, test_task, label, options, log, built) -> None:
    """Domain shift: stack the test task's rows after the training task's; one split, train rows vs test rows."""
    _, other, test_ds, _, test_cached, test_stats, _ = load_pair(
        extractor_name, test_task, replace(options, data_root=None, split_file=None), log, built
    )
    test = _inputs(test_ds, other, test_cached, test_stats, replace(options, split_file=None))
    n_train = len(inputs.features)
    inputs.splits = [("test", np.flatnonzero(inputs.keep), n_train + np.flatnonzero(test.keep))]
    inputs.features = np.concatenate([inputs.features, test.features])
    inputs.paths = np.concatenate([inputs.paths, test.paths])
    inputs.label_names = np.concatenate([inputs.label_names, test.label_names])
    inputs.keep = np.concatenate([inputs.keep, test.keep])
    only_train = sorted(set(dataset.classes) - set(test_ds.classes))
    only_test = sorted(set(test_ds.classes) - set(dataset.classes))
    if only_train:
        inputs.warnings.append(f"classes only in the training task {task.name!r}: {only_train}")
    if only_test:
        inputs.warnings.append(
            f"classes only in the test task {other.name!r}: {only_test} (never predicted: no training data)"
        )
    inputs.task_info = {"task": label, "train": inputs.task_info, "test": test.task_info, "main_metric": task.main_metric}
    inputs.skipped_images += [f"{other.name}:{path}" for path in test.skipped_images]
    inputs.timings = {"train_task": inputs.timings, "test_task": test.timings}


def run_pair(
    extractor_name: str,
    task_name: str,
    protocol_names: list[str] | None,
    options: RunOptions,
    log,
    test_task: str | None = None,
) -> PairOutcome:
    """Evaluate one extractor on one task (or, with ``test_task``, train on ``task_name`` and test on it)."""
    from bench.evaluate import evaluate, evaluate_bags
    from bench.extract import pick_device
    from tasks import get_task

    outcome = PairOutcome(extractor_name, task_name, "ok")
    try:
        if test_task is not None and options.split_file is not None:
            raise ValueError("a split file and a test task exclude each other: a domain-shift run trains on all "
                             "of the task and tests on all of the test task")
        if options.split_file is not None:
            outcome.task = split_label(task_name, options.split_file)
        if test_task is not None:
            outcome.task = shift_label(task_name, test_task)
        task = get_task(task_name)
        protocols = resolve_protocols(protocol_names, task.protocols)
        _check_kinds(protocols, task)
        if test_task is not None and task.kind != "cells":
            raise ValueError("--test-task applies to cell-classification tasks")
        todo = _plan(protocols, options, resolve_entry(extractor_name, options.pooling).name, outcome.task, outcome)
        if not todo:
            outcome.status = "skipped"
            return outcome
        entry, task, dataset, fingerprint, cached, stats, model = load_pair(extractor_name, task_name, options, log)
        inputs = _inputs(dataset, task, cached, stats, options)
        if options.split_file is not None:
            inputs.task_info["task"] = outcome.task
        for note in inputs.task_info["notes"]:
            log(f"note ({task.name}): {note}")
        if test_task is not None:
            _add_test_task(inputs, dataset, task, extractor_name, test_task, outcome.task, options, log,
                           (entry, model, fingerprint))
        classes = sorted(set(inputs.label_names))  # the label map: the union over everything evaluated
        labels = np.searchsorted(classes, inputs.label_names)
        keep, features, paths = inputs.keep, inputs.features, inputs.paths
        env = environment(str(pick_device(options.device)))
        for protocol in todo:
            if task.kind == "bags":
                patients, bag_labels, bag_rows = dataset.bags()
                bag_rows = [rows[keep[rows]] for rows in bag_rows]
                evaluation = evaluate_bags(protocol, features, bag_rows, bag_labels, patients, classes,
                                           n_folds=task.n_folds, seeds=task.seeds)
            else:
                splits_here = inputs.splits or [
                    (name, train[keep[train]], test[keep[test]]) for name, train, test in dataset.splits()
                ]
                evaluation = evaluate(protocol, features, labels, splits_here, classes)
            record = {
                "schema_version": SCHEMA_VERSION,
                "created": now_utc(),
                "extractor": {"name": entry.name, "summary": entry.summary, "fingerprint": fingerprint,
                              "feature_key": cached.manifest["key"], "metadata": entry.metadata},
                "task": inputs.task_info,
                "protocol": {"name": protocol.name, "summary": protocol.summary, "settings": protocol.settings()},
                "metrics": {"per_fold": evaluation.per_fold, "mean": evaluation.mean, "std": evaluation.std,
                            "std_ddof": 0, "main": task.main_metric},
                "warnings": inputs.warnings + evaluation.warnings,
                "skipped_images": inputs.skipped_images,
                "timings": {**inputs.timings, "evaluation_seconds": round(evaluation.seconds, 3)},
                "environment": env,
            }
            predictions = evaluation.predictions
            if "row" in predictions:
                predictions.insert(0, "path", paths[predictions["row"]])
                predictions = predictions.drop(columns="row")
            predictions["label"] = [classes[i] for i in predictions["label"]]
            predictions["prediction"] = [classes[i] for i in predictions["prediction"]]
            json_path, csv_path = result_paths(options.results_dir, entry.name, outcome.task, protocol.name)
            write_result(json_path, record, predictions, csv_path)
            if evaluation.attention is not None:
                attention = evaluation.attention
                attention.insert(0, "path", paths[attention["row"]])
                write_table(json_path.with_name(f"{json_path.stem}.attention.csv"), attention.drop(columns="row"))
            outcome.records.append(record)
            warnings = record["warnings"]
            if warnings:
                more = len(warnings) - 1
                log(f"warning: {entry.name} / {outcome.task} / {protocol.name}: {warnings[0]}"
                    + (f" (and {more} more in {json_path})" if more else ""))
    except Exception as exc:  # a failing pair is reported; the others still run
        outcome.status = "failed"
        outcome.error = f"{type(exc).__name__}: {exc}"
        outcome.traceback = traceback.format_exc()
    return outcome
