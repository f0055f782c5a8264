"""The run planner: one (extractor, task) pair in four steps, each a function with a typed result.

1. **plan** (:func:`plan_pair`): resolve every name once (extractor, task with its variants, protocols:
   :mod:`tasks.names`), check that the protocols fit the task's kind, and decide under the overwrite policy which
   protocols to run;
2. **load features** (:func:`build_extractor`, :func:`task_features`): find the weights and build the model
   once, load the data set (each member's, for a multi-domain task), get its features from the cache
   (extracting what is missing);
3. **evaluate** (:func:`evaluation_inputs`, then ``protocol.evaluate``): the data set makes the design of its
   kind (cells, bags, or several domains: :mod:`tasks.domains`) and the protocol evaluates it;
4. **record** (:func:`record_result`): one typed :class:`~bench.core.record.ResultRecord` per protocol,
   written with its predictions (or per-cell scores, for a protocol that predicts no label).

:func:`run_pair` chains them. A failing pair is reported and the others still run; the caller turns failures
into the exit code.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import settings
from bench.core.errors import HemabenchError, NotFoundError, ResultsError, ResultsExistError, UsageError
from bench.core.files import digest, sha256_file
from bench.core.record import (
    ExtractorInfo,
    ProtocolInfo,
    ResultRecord,
    Scores,
    TaskInfo,
    attention_path,
    cells_path,
    environment,
    now_utc,
    predictions_path,
    result_paths,
    write_table,
)

OVERWRITE_POLICIES = ("never", "always", "only-missing")


@dataclass
class RunOptions:
    results_dir: Path = field(default_factory=settings.results_dir)  # $BENCH_RESULTS, else ./results
    data_root: Path | None = None
    split_file: Path | None = None  # a fixed train/test split (CSV path,split) instead of the task's k-fold CV
    weights: Path | None = None
    offline: bool = False  # never download weights (also: HF_HUB_OFFLINE=1 or BENCH_OFFLINE=1)
    overwrite: str = "only-missing"
    device: str = "auto"
    precision: str = "auto"  # bench.precision: auto | fp32 | tf32 | bf16 | fp16
    decode: str = "cpu"  # bench.decode: cpu | gpu | auto
    batch_size: int | None = None  # None: bench.extract.default_batch_size
    num_workers: int | None = None  # None: bench.extract.auto_workers
    skip_bad_images: bool = False
    progress: bool = True
    shard_size: int = 1024
    cache_root: Path | None = None  # default: $BENCH_HOME/cache
    data_home: Path | None = None  # default: $BENCH_HOME/data

    def __post_init__(self) -> None:
        from bench.precision import PRECISION_CHOICES

        if self.overwrite not in OVERWRITE_POLICIES:
            raise UsageError(f"--overwrite must be one of {', '.join(OVERWRITE_POLICIES)}, got {self.overwrite!r}")
        if self.precision not in PRECISION_CHOICES:
            raise UsageError(f"--precision must be one of {', '.join(PRECISION_CHOICES)}, got {self.precision!r}")

    def extraction(self):
        from bench.extract import ExtractionSettings

        return ExtractionSettings(
            cache_root=self.cache_root or settings.cache_dir(), batch_size=self.batch_size,
            num_workers=self.num_workers, device=self.device, shard_size=self.shard_size,
            skip_bad=self.skip_bad_images, progress=self.progress, decode=self.decode,
        )


@dataclass
class PairOutcome:
    extractor: str
    task: str
    status: str  # ok | skipped | failed
    error: str | None = None
    records: list[ResultRecord] = field(default_factory=list)
    skipped_protocols: list[str] = field(default_factory=list)
    traceback: str | None = None
    bug: bool = False  # the failure is not a HemabenchError: a defect to report, traceback included
    failed_protocols: list["ProtocolFailure"] = field(default_factory=list)  # the pair ran, these protocols failed
    recomputed: dict[str, str] = field(default_factory=dict)  # protocol -> why its existing result was not kept
    kept: list[ResultRecord] = field(default_factory=list)  # existing results kept (--overwrite only-missing)


@dataclass
class ProtocolFailure:
    """One protocol that failed on a pair whose other protocols still ran."""

    protocol: str
    error: str
    bug: bool
    traceback: str


# -- 1. plan ------------------------------------------------------------------------------------------------
@dataclass
class PairPlan:
    entry: Any  # extractors.base.ExtractorEntry
    task: Any  # tasks.base.Task (a multi-domain task: tasks.domains)
    label: str  # the result's task name: TASK, TASK@split=..., TASK@folds=..., TRAIN=>TEST, A+B (tasks.names)
    todo: list  # protocols to run
    kept: list[str]  # protocols whose results exist and are kept (--overwrite only-missing), once checked
    existing: dict = field(default_factory=dict)  # protocol name -> (protocol, its existing ResultRecord)
    reasons: dict = field(default_factory=dict)  # protocol name -> why its existing result is recomputed


def resolve_entry(extractor_name: str):
    from extractors import get_extractor

    return get_extractor(extractor_name)


def split_label(split_file: str | Path) -> str:
    """What names a fixed-split result (``acevedo@split=<file stem>-<sha256[:8] of its content>``), so it never
    replaces the task's k-fold result and results on different splits are never ranked together."""
    path = Path(split_file)
    if not path.is_file():
        raise NotFoundError(f"--split-file {path}: no such file")
    return f"{path.stem}-{sha256_file(path)[:8]}"


def named_task(task_name: str, split_file: Path | None = None):
    """(the task a name says, the result's task name) (:mod:`tasks.names`)."""
    from tasks import get_task
    from tasks.names import label, parse

    task = get_task(task_name)
    if split_file is not None:
        if task.kind == "domains":
            raise UsageError(f"a split file does not apply to {task.name!r}: a domain shift trains on all of one "
                             "task and tests on all of the other; data sets side by side are used whole")
        if getattr(task, "fold_scheme", "portable") != "portable":
            raise UsageError("@folds= and --split-file exclude each other: a split file replaces the folds")
    default = task if task.kind == "domains" else get_task(parse(task_name).members[0])
    return task, label(default, task, None if split_file is None else split_label(split_file))


def plan_pair(extractor_name: str, task_name: str, protocol_names: list | None, options: RunOptions) -> PairPlan:
    """``protocol_names``: names, or protocols themselves (a protocol with other settings than its registered
    ones, e.g. `bench batch-effect --k 30`); None: the task's."""
    from protocols import get_protocol

    task, label = named_task(task_name, options.split_file)
    protocols = [get_protocol(p) if isinstance(p, str) else p for p in (protocol_names or task.protocols)]
    kinds = getattr(task, "protocol_kinds", (task.kind,))
    wrong = [p.name for p in protocols if p.kind not in kinds]
    if wrong:
        raise UsageError(f"protocol(s) {wrong} do not evaluate {task.name!r}, a {task.kind} task (they evaluate "
                         f"{', '.join(sorted({p.kind for p in protocols if p.name in wrong}))}); its protocols: "
                         f"{', '.join(task.protocols)}")
    entry = resolve_entry(extractor_name)
    plan = PairPlan(entry, task, label, [], [])
    for protocol in protocols:
        json_path, _ = result_paths(options.results_dir, entry.name, label, protocol.name)
        if not json_path.exists() or options.overwrite == "always":
            plan.todo.append(protocol)
        elif options.overwrite == "never":
            raise ResultsExistError(
                f"result {json_path} exists and --overwrite is 'never'; use --overwrite always to replace it "
                "or --overwrite only-missing to keep it"
            )
        else:  # only-missing: kept if it reads and was computed from what this run would compute it from
            try:
                plan.existing[protocol.name] = (protocol, ResultRecord.read(json_path))
            except (ResultsError, OSError) as exc:
                plan.reasons[protocol.name] = f"the existing result cannot be read ({exc})"
                plan.todo.append(protocol)
    return plan


def result_inputs(features: list[TaskFeaturesKey], task_settings: dict, protocol) -> dict:
    """What a result is computed from, with its digest: the feature cache key and the identity of the data
    (content, labels and folds) of each task involved, the task's split settings, the protocol and its
    settings, and the evaluation code version. A kept result must match it (``--overwrite only-missing``)."""
    from protocols.base import EVALUATION_CODE_VERSION

    parts = {
        "features": [f.as_dict() for f in features],
        "task_settings": task_settings,
        "protocol": {"name": protocol.name, "settings": protocol.settings(), **protocol.code_identity()},
        "evaluation_code_version": EVALUATION_CODE_VERSION,
    }
    identity = {**parts, "features": [{k: v for k, v in f.items() if k != "root"} for f in parts["features"]]}
    return {"digest": digest(identity), **parts}  # the data's place is recorded, its content is what counts


def why_not_current(stored: dict | None, current: dict) -> str | None:
    """None when a stored result's inputs equal the current ones, else the first difference, in words."""
    if not stored:
        return "it was written before results recorded what they were computed from"
    if stored.get("digest") == current["digest"]:
        return None
    old, new = stored.get("features") or [], current["features"]
    for before, now in zip(old, new):
        if (before.get("content_sha256"), before.get("split_sha256")) != (now["content_sha256"], now["split_sha256"]):
            what = "images" if before.get("content_sha256") != now["content_sha256"] else "labels or folds"
            return (f"the data set's {what} differ from the ones it was computed on ({before.get('n_samples')} "
                    f"samples at {before.get('root')}; now {now['n_samples']} at {now['root']})")
    if len(old) != len(new) or any(b.get("key") != n["key"] for b, n in zip(old, new)):
        return "the extractor's features differ (weights, code, settings or library versions)"
    if stored.get("task_settings") != current["task_settings"]:
        return "the task's split settings differ"
    before, now = stored.get("protocol") or {}, current["protocol"]
    if before.get("settings") != now.get("settings") or before.get("name") != now.get("name"):
        return "the protocol's settings differ"
    if before.get("code_sha256") != now.get("code_sha256"):
        return (f"the protocol's source file {now.get('code_file') or before.get('code_file')} changed since it was "
                f"computed (sha256 {str(before.get('code_sha256'))[:12]}... -> {str(now.get('code_sha256'))[:12]}...)")
    if before.get("version", 1) != now.get("version", 1):
        return (f"the protocol's code changed (its version {before.get('version', 1)} -> {now.get('version', 1)})")
    if before != now:
        return "the protocol differs"
    if stored.get("evaluation_code_version") != current["evaluation_code_version"]:
        return (f"the evaluation code changed (version {stored.get('evaluation_code_version')} -> "
                f"{current['evaluation_code_version']})")
    return "what it was computed from differs"


def damage(record: ResultRecord, json_path: Path) -> str | None:
    """None when a stored result re-scores from its predictions file to its own numbers
    (:func:`bench.core.rescore.rescore_file`), or a few-shot result's episodes give its curve and means
    (:func:`bench.core.curves.curve_problems`), else why not, in words."""
    from bench.core.curves import curve_problems
    from bench.core.metrics import LABEL_METRICS, PERTURBED_F1
    from bench.core.rescore import rescore_file, rescore_robustness

    evidence = "predictions"
    if record.curve is not None:  # few-shot: its episodes are its evidence, no per-cell predictions
        problems, evidence = curve_problems(record), "episodes"
    elif record.metrics.main == PERTURBED_F1:  # robustness: its per-cell table
        problems, evidence = rescore_robustness(record, cells_path(json_path)), "per-cell table"
    elif record.n_predictions is None and record.metrics.main not in LABEL_METRICS:
        return None  # a score of the embedding (batch effect): no label predictions to score again
    else:
        problems = rescore_file(record, predictions_path(json_path)).problems
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"it does not agree with its {evidence}: {problems[0]}{more}"


@dataclass(frozen=True)
class TaskFeaturesKey:
    """The feature cache key of one (extractor, data set), and the data set's identity."""

    key: str
    root: str
    content_sha256: str
    split_sha256: str
    n_samples: int

    @classmethod
    def of(cls, built: "BuiltExtractor", dataset) -> "TaskFeaturesKey":
        from bench.cache import feature_key

        content = dataset.content_fingerprint()
        return cls(feature_key(built.fingerprint, content)[0], str(dataset.root), content,
                   dataset.split_fingerprint(), len(dataset))

    def as_dict(self) -> dict:
        return {"key": self.key, "root": self.root, "content_sha256": self.content_sha256,
                "split_sha256": self.split_sha256, "n_samples": self.n_samples}


# -- 2. load features ---------------------------------------------------------------------------------------
@dataclass
class BuiltExtractor:
    entry: Any  # extractors.base.ExtractorEntry
    model: Any  # extractors.base.FeatureModel
    fingerprint: dict


@dataclass
class TaskFeatures:
    """One task's data set and its features from one extractor, in the data set's row order."""

    extractor: BuiltExtractor
    task: Any
    dataset: Any  # tasks.base.CellDataset or BagDataset
    cached: Any  # bench.cache.CachedFeatures
    stats: Any  # bench.extract.ExtractionStats

    @property
    def keep(self) -> np.ndarray:
        """Rows whose image could be read."""
        keep = np.ones(len(self.dataset), dtype=bool)
        keep[self.cached.bad_rows] = False
        return keep

    @property
    def features(self) -> np.ndarray:
        return np.asarray(self.cached.features, dtype=np.float32)

    @property
    def paths(self) -> np.ndarray:
        return self.dataset.samples["path"].to_numpy()

    @property
    def skipped_images(self) -> list[str]:
        return [str(self.paths[i]) for i in self.cached.bad_rows]

    @property
    def feature_key(self) -> str:
        return self.cached.manifest["key"]

    def keys(self) -> list[TaskFeaturesKey]:
        """The cache key and data identity the result is computed from (:func:`result_inputs`)."""
        return [TaskFeaturesKey.of(self.extractor, self.dataset)]

    def timings(self) -> dict:
        return self.stats.as_dict()

    def task_info(self, label: str, split_file: Path | None = None) -> dict:
        info = {**self.dataset.describe(), **self.task.settings(), "notes": list(self.dataset.notes)}
        info["split_file"] = None if split_file is None else str(split_file)
        info["task"] = label  # TASK, or TASK@split=..., TASK@folds=authors, ...
        return info


@dataclass
class DomainFeatures:
    """A multi-domain task's data sets (:class:`tasks.domains.DomainsDataset`) and the features of each member
    (each with its own preprocessing and cache), as one: rows are the members' one after the other."""

    extractor: BuiltExtractor
    task: Any  # tasks.domains.MultiDomainTask
    dataset: Any  # tasks.domains.DomainsDataset
    parts: list[Any]  # TaskFeatures, one per member

    @property
    def keep(self) -> np.ndarray:
        return np.concatenate([part.keep for part in self.parts])

    @property
    def features(self) -> np.ndarray:
        return np.concatenate([part.features for part in self.parts])

    @property
    def paths(self) -> np.ndarray:
        return np.concatenate([part.paths for part in self.parts])

    @property
    def skipped_images(self) -> list[str]:
        return [f"{part.task.name}:{path}" for part in self.parts for path in part.skipped_images]

    @property
    def feature_key(self) -> str:
        return self.parts[0].feature_key

    def keys(self) -> list[TaskFeaturesKey]:
        return [key for part in self.parts for key in part.keys()]

    def timings(self) -> dict:
        return {"tasks": {part.task.name: part.timings() for part in self.parts}}

    def task_info(self, label: str, split_file: Path | None = None) -> dict:
        return self.dataset.describe(label)


def build_extractor(entry, options: RunOptions, log) -> BuiltExtractor:
    """Find the entry's weights (explicit, weights folder, caches, download) and build the model. The entry's
    precision is resolved for the run's device first: it is part of the fingerprint."""
    from bench.decode import resolve_decode
    from bench.extract import pick_device
    from bench.precision import resolve_precision
    from extractors.sources import resolve

    device = pick_device(options.device)
    entry = entry.replace(precision=resolve_precision(options.precision, device, entry.precision))
    decode = resolve_decode(options.decode, device, entry.interpolation)
    resolved = resolve(entry, explicit=options.weights, weights_home=settings.weights_dir(), offline=options.offline, log=log)
    model = entry.build(resolved.path)
    fingerprint = entry.fingerprint(model, resolved.path)
    if entry.precision != "fp32" or device.type == "cuda":
        from bench.precision import PRECISION_RULE

        fingerprint["precision_rule"] = PRECISION_RULE  # what the precision means changed (bench.precision)
    if decode == "gpu":  # other pixels than PIL's (within a few levels): other features; PIL's keys stay as they were
        fingerprint["transform"]["decode"] = "gpu (torchvision nvJPEG, resize on the device)"
    fingerprint["weights"]["origin"] = resolved.origin
    fingerprint["n_parameters"] = sum(p.numel() for p in model.parameters())
    return BuiltExtractor(entry, model, fingerprint)


def member_options(task, options: RunOptions) -> list[RunOptions]:
    """The options each member of a multi-domain task is loaded with: its own data folder (--data-root is the
    training task's), never a split file."""
    return [replace(options, data_root=root, split_file=None) for root in task.member_roots(options.data_root)]


def load_dataset(task, options: RunOptions, loaded: dict | None = None):
    """The task's validated data set (every image hashed: its identity is part of the features' key); a
    multi-domain task's members each loaded so. ``loaded``: data sets loaded earlier in the same command, by task
    and folder (each hashed once per command, not once per extractor)."""
    if task.kind == "domains":
        return task.assemble([load_dataset(member, member_opts, loaded)
                              for member, member_opts in zip(task.members, member_options(task, options))])
    home = options.data_home or settings.data_dir()
    memo = (task.name, getattr(task, "fold_scheme", None), str(options.data_root), str(options.split_file), str(home))
    if loaded is not None and memo in loaded:
        return loaded[memo]
    dataset = task.load(options.data_root, data_home=home, split_file=options.split_file)
    if loaded is not None:
        loaded[memo] = dataset
    return dataset


def members(task, dataset, options: RunOptions) -> list[tuple[Any, Any, RunOptions]]:
    """(task, data set, options) of each data set a task reads: itself, or a multi-domain task's members."""
    if task.kind != "domains":
        return [(task, dataset, options)]
    return list(zip(task.members, dataset.parts, member_options(task, options)))


def task_features(built: BuiltExtractor, task, options: RunOptions, log, dataset=None, world=None):
    """The task's data set (``dataset``, or loaded now) and its features (cached; under torchrun, extracted by
    every rank of ``world`` that helps, see :func:`extract_share`): :class:`TaskFeatures`, or for a multi-domain
    task :class:`DomainFeatures` over its members'."""
    from bench.extract import cached_features

    dataset = load_dataset(task, options) if dataset is None else dataset
    if task.kind == "domains":
        return DomainFeatures(built, task, dataset, [task_features(built, m, o, log, d, world)
                                                     for m, d, o in members(task, dataset, options)])
    built = preprocessed(built, task)
    cached, stats = cached_features(built.entry, built.model, built.fingerprint, dataset.absolute_paths(),
                                    dataset.content_fingerprint(), options.extraction(), log=log, world=world)
    return TaskFeatures(built, task, dataset, cached, stats)


def preprocessed(built: BuiltExtractor, task) -> BuiltExtractor:
    """The extractor with the task's preprocessing (``Task.prepared_transform``: a perturbation, then
    ``Task.image_transform``, :mod:`tasks.transforms`): the same model, the task's transform composed before its
    own, and its identity in the transform's spec, so in the fingerprint (the features' cache key)."""
    transform = task.prepared_transform() if hasattr(task, "prepared_transform") else None
    if transform == built.entry.task_transform:
        return built
    entry = built.entry.replace(task_transform=transform)
    spec = {**entry.transform_spec(), **{k: v for k, v in built.fingerprint["transform"].items() if k == "decode"}}
    return BuiltExtractor(entry, built.model, {**built.fingerprint, "transform": spec})


def extract_share(built: BuiltExtractor, task, dataset, options: RunOptions, log, world) -> None:
    """A rank that does not own the pair extracts the shards of its features that nobody holds, and returns
    without waiting: the owner finalises them (:func:`bench.extract.extract_to_store`)."""
    from bench.extract import cached_features

    for member, data, member_opts in members(task, dataset, options):
        member_built = preprocessed(built, member)
        cached_features(member_built.entry, member_built.model, member_built.fingerprint, data.absolute_paths(),
                        data.content_fingerprint(), member_opts.extraction(), log=log, world=world, finalise=False)


def load_pair(extractor_name: str, task_name: str, options: RunOptions, log,
              world=None) -> TaskFeatures | DomainFeatures | None:
    """Resolve both names, build the model and get the task's features (``bench extract``). Under torchrun rank
    0 finalises and gets the features; the other ranks extract their share and get None."""
    task, _ = named_task(task_name, options.split_file)
    if task.kind == "domains":
        raise UsageError(f"bench extract exports one data set; export each of {task.name!r} on its own")
    built = build_extractor(resolve_entry(extractor_name), options, log)
    if world is not None and world.rank != 0:
        extract_share(built, task, load_dataset(task, options), options, log, world)
        return None
    return task_features(built, task, options, log, world=world)


# -- 3. evaluate --------------------------------------------------------------------------------------------
@dataclass
class EvaluationInputs:
    """What the protocols of one pair evaluate, and what the records say about it."""

    features: np.ndarray
    paths: np.ndarray  # per feature row
    design: Any  # bench.core.design.CellDesign, BagDesign or DomainDesign
    task_info: dict
    skipped_images: list[str]
    timings: dict
    warnings: list[str] = field(default_factory=list)


def evaluation_inputs(plan: PairPlan, primary: TaskFeatures | DomainFeatures, options: RunOptions,
                      log) -> EvaluationInputs:
    """The design the task's data set makes (cells, bags, or several domains) over its readable rows."""
    dataset = primary.dataset
    design = dataset.design(primary.keep, dataset.classes)  # the label map: the union over all rows
    info = primary.task_info(plan.label, options.split_file)
    for note in dataset.notes:
        log(f"note ({plan.task.name}): {note}")
    for warning in dataset.warnings:
        log(f"warning ({plan.task.name}): {warning}")
    return EvaluationInputs(primary.features, primary.paths, design, info, primary.skipped_images,
                            primary.timings(), list(dataset.warnings))


# -- 4. record ----------------------------------------------------------------------------------------------
def record_result(plan: PairPlan, primary: TaskFeatures | DomainFeatures, inputs: EvaluationInputs, protocol, evaluation,
                  env: dict, results_dir: Path, result_inputs: dict | None = None) -> tuple[ResultRecord, Path]:
    """The record of one protocol, written with its predictions (and attention, for bag protocols)."""
    built = primary.extractor
    record = ResultRecord(
        created=now_utc(),
        extractor=ExtractorInfo(name=built.entry.name, summary=built.entry.summary, fingerprint=built.fingerprint,
                                feature_key=primary.feature_key, metadata=built.entry.metadata),
        task=TaskInfo(**inputs.task_info),
        protocol=ProtocolInfo(name=protocol.name, summary=protocol.summary, settings=protocol.settings()),
        metrics=Scores(per_fold=evaluation.per_fold, mean=evaluation.mean, std=evaluation.std,
                       main=protocol.main_metric or plan.task.main_metric),
        warnings=inputs.warnings + evaluation.warnings,
        skipped_images=inputs.skipped_images,
        timings={**inputs.timings, "evaluation_seconds": round(evaluation.seconds, 3)},
        environment=env,
        inputs=result_inputs,
        curve=evaluation.curve,
    )
    classes = inputs.design.classes
    predictions = evaluation.predictions
    if predictions is not None:
        if "row" in predictions:
            predictions.insert(0, "path", inputs.paths[predictions["row"]])
            predictions = predictions.drop(columns="row")
        predictions["label"] = [classes[i] for i in predictions["label"]]
        predictions["prediction"] = [classes[i] for i in predictions["prediction"]]
    json_path, _ = result_paths(results_dir, built.entry.name, plan.label, protocol.name)
    if evaluation.cells is not None:  # per-cell scores (batch effect) beside the record, written first
        cells = evaluation.cells.assign(path=inputs.paths[evaluation.cells["row"]]).drop(columns="row")
        first = [c for c in ("repeat", "path") if c in cells]
        write_table(cells_path(json_path), cells[[*first, *[c for c in cells if c not in first]]])
    record.write(json_path, predictions)
    if evaluation.attention is not None:
        attention = evaluation.attention
        attention.insert(0, "path", inputs.paths[attention["row"]])
        write_table(attention_path(json_path), attention.drop(columns="row"))
    return record, json_path


class SplitProgress:
    """What an evaluation is doing while it runs: a progress bar over its splits (``fold 2/5``, with the elapsed
    time; one line when bars are off), and each split's warnings (e.g. a probe that did not converge) as soon as
    that split is done, not only in the result file once all are."""

    def __init__(self, what: str, bar: bool, log):
        self.what, self.enabled, self.log, self.bar, self.task = what, bar, log, None, None

    def __call__(self, done: int, total: int, split: str, notes: list[str]) -> None:
        if done == 0:
            if self.enabled:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

                self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)
                self.bar.start()
                self.task = self.bar.add_task(f"{self.what}: evaluating", total=total)
            else:
                self.log(f"{self.what}: evaluating {total} split(s)")
            return
        for note in notes:
            self.log(f"warning: {self.what}: {note}")
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=done, description=f"{self.what}: {split} done")

    def __enter__(self) -> "SplitProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def set_aside(json_path: Path) -> Path:
    """Move a result that is not current (and its predictions and attention) to ``*.stale`` beside it: out of
    the leaderboard, even if its recomputation fails, but not deleted. Returns the record's new path."""
    for path in (json_path, predictions_path(json_path), attention_path(json_path), cells_path(json_path)):
        if path.exists():
            path.replace(path.with_name(path.name + ".stale"))
    return json_path.with_name(json_path.name + ".stale")


@dataclass
class PreparedPair:
    """A planned pair with its model built, its data sets loaded, and which protocols it must compute."""

    plan: PairPlan
    built: BuiltExtractor
    dataset: Any
    current: dict  # protocol name -> the inputs its result is computed from (result_inputs)


def prepare_pair(extractor_name: str, task_name: str, protocol_names: list | None, options: RunOptions, log,
                 loaded: dict | None = None) -> PreparedPair:
    """Plan the pair, build the model, load the data sets and decide which existing results are kept: nothing
    is written, so a rank that only helps with the features decides as the owner does."""
    plan = plan_pair(extractor_name, task_name, protocol_names, options)
    built = build_extractor(plan.entry, options, log)
    dataset = load_dataset(plan.task, options, loaded)
    keys = [TaskFeaturesKey.of(preprocessed(built, t), d) for t, d, _ in members(plan.task, dataset, options)]
    current = {p.name: result_inputs(keys, plan.task.settings(), p)
               for p in plan.todo + [p for p, _ in plan.existing.values()]}
    for name, (protocol, record) in plan.existing.items():
        why = why_not_current(record.inputs, current[name])
        before, now = record.extractor.fingerprint.get("precision"), built.fingerprint["precision"]
        if why is not None and before not in (None, now):
            why = (f"it was computed in {before} and this run computes in {now} (--precision; to keep results "
                   "of both, give each its own --results folder)")
        if why is None:  # current inputs; kept only if its numbers are those of the predictions beside it
            why = damage(record, result_paths(options.results_dir, plan.entry.name, plan.label, name)[0])
        if why is None:
            plan.kept.append(name)
        else:
            plan.reasons[name] = why
            plan.todo.append(protocol)
    return PreparedPair(plan, built, dataset, current)


def help_pair(extractor_name: str, task_name: str, protocol_names: list | None, options: RunOptions, log,
              world, owner: int, loaded: dict | None = None) -> None:
    """Under torchrun, a rank that does not own a pair extracts its share of the pair's features, if the pair
    needs any. Whatever fails here fails the same way for the owner, which reports it: it is only logged."""
    try:
        prepared = prepare_pair(extractor_name, task_name, protocol_names, options, log, loaded)
        if prepared.plan.todo:
            extract_share(prepared.built, prepared.plan.task, prepared.dataset, options, log, world)
    except Exception as exc:  # reported by the pair's owner
        log(f"{extractor_name} / {task_name}: not helping with its features ({type(exc).__name__}: {exc}); "
            f"rank {owner} owns the pair and reports what fails")


def run_pair(
    extractor_name: str,
    task_name: str,
    protocol_names: list | None,
    options: RunOptions,
    log,
    world=None,
    loaded: dict | None = None,
) -> PairOutcome:
    """Evaluate one extractor on one task (a multi-domain task included: ``acevedo=>bmc``, ``a+b``).
    ``world``: under torchrun, this rank owns the pair; the other ranks help extract its features
    (:func:`help_pair`) and this one waits for them, finalises, evaluates and records."""
    from bench.extract import pick_device

    outcome = PairOutcome(extractor_name, task_name, "ok")
    try:
        prepared = prepare_pair(extractor_name, task_name, protocol_names, options, log, loaded)
        plan = prepared.plan
        outcome.task = plan.label
        for name, why in plan.reasons.items():
            stale = set_aside(result_paths(options.results_dir, plan.entry.name, plan.label, name)[0])
            log(f"recomputing {plan.entry.name} / {plan.label} / {name}: {why} (the old result is moved to {stale}, "
                "out of the leaderboard)")
        outcome.skipped_protocols, outcome.recomputed = plan.kept, dict(plan.reasons)
        outcome.kept = [plan.existing[name][1] for name in plan.kept if name in plan.existing]
        if not plan.todo:
            outcome.status = "skipped"
            return outcome
        primary = task_features(prepared.built, plan.task, options, log, dataset=prepared.dataset, world=world)
        inputs = evaluation_inputs(plan, primary, options, log)
        if inputs.skipped_images:
            shown = ", ".join(map(str, inputs.skipped_images[:5])) + (" ..." if len(inputs.skipped_images) > 5 else "")
            log(f"skipped {len(inputs.skipped_images)} unreadable image(s) (--skip-bad-images; every one is listed in "
                f"the result): {shown}")
        env = environment(str(pick_device(options.device)))
        if world is not None and world.distributed:
            env["world_size"] = world.size  # recorded; the features and results do not depend on it
    except Exception as exc:  # a failing pair is reported; the others still run
        outcome.status = "failed"
        outcome.error = f"{type(exc).__name__}: {exc}"
        outcome.traceback = traceback.format_exc()
        outcome.bug = not isinstance(exc, HemabenchError)
        return outcome
    current = prepared.current
    from protocols.base import evaluation_device, evaluation_progress

    for protocol in plan.todo:  # each protocol succeeds or fails on its own
        try:
            reporter = SplitProgress(f"{plan.entry.name} / {plan.label} / {protocol.name}", options.progress, log)
            with evaluation_device(env["device"]), evaluation_progress(reporter), reporter:
                evaluation = protocol.evaluate(inputs.features, inputs.design)
            record, json_path = record_result(plan, primary, inputs, protocol, evaluation, env, options.results_dir,
                                              current[protocol.name])
        except Exception as exc:
            outcome.failed_protocols.append(ProtocolFailure(protocol.name, f"{type(exc).__name__}: {exc}",
                                                            not isinstance(exc, HemabenchError), traceback.format_exc()))
            continue
        outcome.records.append(record)
        if record.warnings:
            more = len(record.warnings) - 1
            log(f"warning: {record.extractor.name} / {plan.label} / {protocol.name}: {record.warnings[0]}"
                + (f" (and {more} more in {json_path})" if more else ""))
    if outcome.failed_protocols:
        outcome.status = "failed"
        outcome.error = "; ".join(f"{f.protocol}: {f.error}" for f in outcome.failed_protocols)
        outcome.bug = any(f.bug for f in outcome.failed_protocols)
        outcome.traceback = "\n".join(f.traceback for f in outcome.failed_protocols)
    return outcome
