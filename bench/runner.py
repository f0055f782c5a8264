"""The run planner: extractor x task pairs -> cached features -> protocols -> result records.

A failing pair is reported and the others still run; the caller turns failures into the exit code.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import settings
from bench.results import OVERWRITE_POLICIES, SCHEMA_VERSION, environment, now_utc, result_paths, write_result


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
    return model, fingerprint


def load_pair(extractor_name: str, task_name: str, options: RunOptions, log):
    """Resolve both names, load the data set, build the model and get its features (cached)."""
    from bench.extract import cached_features
    from tasks import get_task

    entry = resolve_entry(extractor_name, options.pooling)
    task = get_task(task_name)
    data_home = options.data_home or settings.data_dir()
    dataset = task.load(options.data_root, data_home=data_home, split_file=options.split_file)
    model, fingerprint = build_model(entry, options, log)
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
    return entry, task, dataset, fingerprint, cached, stats


def run_pair(extractor_name: str, task_name: str, protocol_names: list[str] | None, options: RunOptions, log) -> PairOutcome:
    from bench.evaluate import evaluate
    from bench.extract import pick_device
    from tasks import get_task

    outcome = PairOutcome(extractor_name, task_name, "ok")
    try:
        protocols = resolve_protocols(protocol_names, get_task(task_name).protocols)
        result_name = resolve_entry(extractor_name, options.pooling).name
        todo = []
        for protocol in protocols:
            json_path, _ = result_paths(options.results_dir, result_name, task_name, protocol.name)
            if json_path.exists() and options.overwrite == "never":
                raise ResultsExistError(
                    f"result {json_path} exists and --overwrite is 'never'; use --overwrite always to replace it "
                    "or --overwrite only-missing to keep it"
                )
            if json_path.exists() and options.overwrite == "only-missing":
                outcome.skipped_protocols.append(protocol.name)
            else:
                todo.append(protocol)
        if not todo:
            outcome.status = "skipped"
            return outcome
        entry, task, dataset, fingerprint, cached, stats = load_pair(extractor_name, task_name, options, log)
        bad = set(cached.bad_rows)
        keep = np.array([i not in bad for i in range(len(dataset))])
        splits = [(name, train[keep[train]], test[keep[test]]) for name, train, test in dataset.splits()]
        features = np.asarray(cached.features, dtype=np.float32)
        labels = dataset.label_indices()
        classes = dataset.classes
        env = environment(str(pick_device(options.device)))
        skipped_images = [dataset.samples["path"].iloc[i] for i in sorted(bad)]
        for protocol in todo:
            evaluation = evaluate(protocol, features, labels, splits, classes)
            record = {
                "schema_version": SCHEMA_VERSION,
                "created": now_utc(),
                "extractor": {"name": entry.name, "summary": entry.summary, "fingerprint": fingerprint,
                              "feature_key": cached.manifest["key"]},
                "task": {**dataset.describe(), **task.settings(),
                         "split_file": None if options.split_file is None else str(options.split_file)},
                "protocol": {"name": protocol.name, "summary": protocol.summary, "settings": protocol.settings()},
                "metrics": {"per_fold": evaluation.per_fold, "mean": evaluation.mean, "std": evaluation.std,
                            "std_ddof": 0, "main": task.main_metric},
                "warnings": evaluation.warnings,
                "skipped_images": skipped_images,
                "timings": {**stats.as_dict(), "evaluation_seconds": round(evaluation.seconds, 3)},
                "environment": env,
            }
            predictions = evaluation.predictions
            predictions.insert(0, "path", dataset.samples["path"].to_numpy()[predictions["row"]])
            predictions["label"] = [classes[i] for i in predictions["label"]]
            predictions["prediction"] = [classes[i] for i in predictions["prediction"]]
            predictions = predictions.drop(columns="row")
            json_path, csv_path = result_paths(options.results_dir, entry.name, task.name, protocol.name)
            write_result(json_path, record, predictions, csv_path)
            outcome.records.append(record)
            if evaluation.warnings:
                more = len(evaluation.warnings) - 1
                log(f"warning: {entry.name} / {task.name} / {protocol.name}: {evaluation.warnings[0]}"
                    + (f" (and {more} more in {json_path})" if more else ""))
    except Exception as exc:  # a failing pair is reported; the others still run
        outcome.status = "failed"
        outcome.error = f"{type(exc).__name__}: {exc}"
        outcome.traceback = traceback.format_exc()
    return outcome
