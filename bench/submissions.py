"""``bench submit`` and ``bench verify``: results packaged for a pull request, and checked before they reach a board.

A submission is one folder per (extractor, task, protocol) under the submissions folder, and the features once per
(extractor, task)::

    <extractor>/<task>/features.npz                   every sample's feature (float16 around the float32 mean
                                                      feature), with its path, label and image sha256
                                                      (bench.verification)
    <extractor>/<task>/<protocol>/record.json         the result record, as written by `bench run`
    <extractor>/<task>/<protocol>/predictions.csv.gz  its per-sample predicted labels (no probabilities: BMC's
                                                      34k rows stay ~0.2 MB), compressed
    <extractor>/<task>/<protocol>/submission.json     the extractor's card, the data's identity, digests, who/when

A few-shot result (``fewshot-*``) has no per-cell predictions (its episodes are its evidence: the record holds
every episode's metrics at every shot count): its folder holds record.json and submission.json only, and ``verify``
checks the record against its episodes (``bench.core.curves.curve_problems``) and runs the seeded episodes again
on the submitted features. A robustness result's evidence is its per-cell table (``cells.csv.gz`` in place of the
predictions: every test cell's cosine to its clean feature and its clean and perturbed predictions), re-scored by
``bench.core.rescore.rescore_robustness``, and its features are those of every version of the images
(``features.npz`` clean, ``features.<perturbation>.npz``): ``verify`` runs the protocol again on them and extracts
a sample of every version again.

``verify`` refuses a submission when (each failure one line naming the submission, the field and what was
expected):

- a file is a symbolic link, or the predictions or labels differ from the digests written at submission;
- the record does not agree with its predictions (``bench.core.rescore``: every fold's label metrics, n_test, the
  means and stds), or a few-shot record with its episodes (each episode's metric the mean of its shot counts', the
  means, stds and curve those of the episodes);
- a k-fold result's predictions (every sample once: path, label, fold) do not give the record's ``split_sha256``;
- the protocol's settings differ from the registered protocol of that name (k, C rule, iterations, ...), or the
  task's split settings from the registered task's (folds, seeds), where the name is registered;
- a built-in extractor name is used without that model's published weights (sha256, where known);
- the (extractor, task, protocol) is submitted twice;
- what CI derives again itself disagrees (``bench.verification``): a label against the task's canonical split, a
  fold against the task's split rule, the record's metrics (and a few-shot record's curve, shot count by shot
  count) against the protocol run again on the submitted features, the submitted features against a random sample
  of images extracted again.

An accepted submission is shown with CI's own numbers (the protocol run again), badged "verified" only where all
four were derived again, else "self-reported" with what was taken on trust. A result on another split than the
task's pinned canonical one, or on a subset, is not refused: its record says so, and the board keeps it apart from
canonical full-set rows (``leaderboard.tables.subset_mark``).
"""

from __future__ import annotations

import getpass
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.core.errors import HemabenchError, ResultsError
from bench.core.files import atomic_write_bytes, digest, sha256_file
from bench.core.metrics import INTEGRATION, METRICS, PERTURBED_F1, ROBUSTNESS_INDEX
from bench.core.record import ResultRecord, cells_path, now_utc
from bench.core.registry import safe_name
from bench.core.rescore import read_predictions, rescore
from bench.verification import FEATURES_FILE, SAMPLE, Checks, Derived, derive, features_entry, read_features

SUBMISSION_FORMAT = "hemabench-submission/2"
READABLE_FORMATS = ("hemabench-submission/1", SUBMISSION_FORMAT)  # 1: without features (self-reported)
VERIFY_VERSION = 2  # bump when what verify derives changes: cached verdicts are then derived again
CELLS = "cells.csv.gz"  # a robustness result's evidence, in place of the predictions
_FILES = ("submission.json", "record.json", "predictions.csv.gz", CELLS)
# results with no evidence file that a submission could carry and CI re-score (they score several data sets'
# features together): their sections of the board are made from runs only
_NOT_PACKAGED = {ROBUSTNESS_INDEX: "a robustness-index result is not packaged: it scores several data sets' features "
                                   "together, and a submission carries one task's",
                 INTEGRATION: "a batch-effect result is not packaged: it scores two data sets' features together, and "
                              "a submission carries one task's"}


def _evidence(record: ResultRecord) -> str:
    """What a record's numbers are checked against, by its registered protocol (never by what the record says of
    itself): its episodes (a few-shot protocol), its per-cell perturbation table (robustness) or its per-sample
    predictions (every other protocol, and any protocol that is not registered)."""
    from protocols import PROTOCOLS, get_protocol
    from protocols.fewshot import FewShot

    if record.protocol.name not in PROTOCOLS.names():
        return "predictions"
    protocol = get_protocol(record.protocol.name)
    if isinstance(protocol, FewShot):
        return "episodes"
    return "cells" if protocol.main_metric == PERTURBED_F1 else "predictions"


def _claims(record: ResultRecord, evidence: str) -> list[str]:
    """A record's own claims that must match its protocol: a curve only from a few-shot protocol, and the main
    metric the protocol scores (a robustness one, or a label metric)."""
    out = []
    if (record.curve is not None) != (evidence == "episodes"):
        out.append(f"record.json curve: {'present' if record.curve is not None else 'missing'}, but "
                   f"{record.protocol.name} {'is' if evidence == 'episodes' else 'is not'} a few-shot protocol")
    main = record.metrics.main
    if (main == PERTURBED_F1) != (evidence == "cells") or main in _NOT_PACKAGED or \
            (evidence != "cells" and main not in METRICS):
        out.append(f"record.json metrics.main: {main!r} is not what {record.protocol.name} scores")
    return out


def _info_problems(info) -> list[str]:
    """submission.json's shape: an object naming the extractor, with a features entry that is an object or null."""
    if not isinstance(info, dict):
        return [f"submission.json: a JSON {type(info).__name__}, expected the object `bench submit` writes; submit "
                "it again"]
    out = []
    if not isinstance(info.get("extractor"), dict) or not isinstance(info["extractor"].get("name"), str):
        out.append("submission.json extractor.name: missing; `bench submit` writes the extractor's card there")
    if info.get("features") is not None and not isinstance(info.get("features"), dict):
        out.append(f"submission.json features: {info.get('features')!r}, expected the entry `bench submit` writes "
                   "(an object) or null")
    return out


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def labels_digest(predictions: pd.DataFrame) -> str:
    """The identity of the test samples and their labels: sha256 of the sorted (sample, fold, label) rows."""
    key = "path" if "path" in predictions else "bag"
    rows = sorted(f"{s}\t{f}\t{label}" for s, f, label in zip(predictions[key], predictions["fold"].astype(str),
                                                             predictions["label"].astype(str)))
    return _sha256("\n".join(rows).encode())


def submit(results_dir: Path, out: Path, extractors: list[str] | None = None, tasks: list[str] | None = None,
           log=print, data_root: Path | None = None) -> list[Path]:
    """Package every result record under ``results_dir`` (those of ``extractors`` / ``tasks`` when given) that
    has its predictions, or is a few-shot result (its episodes are in the record), with the features of each
    (extractor, task) from the feature cache; returns the submission folders written. ``data_root``: where the
    task's images are now, if not where the record says."""
    from leaderboard.tables import read_results

    written, problems, features = [], [], {}
    rows = read_results(results_dir, problems)  # the records a board would show (unreadable files are skipped)
    for line in problems:
        log(f"skipped: {line}")
    for _, row in rows.iterrows():
        if (extractors and row["extractor"] not in extractors) or (tasks and row["task"] not in tasks):
            continue
        path, table = Path(row["record"]), Path(row["predictions"])
        if row["main_metric"] in _NOT_PACKAGED:
            log(f"skipped {path}: {_NOT_PACKAGED[row['main_metric']]}")
            continue
        record = ResultRecord.read(path)
        evidence = _evidence(record)
        table = cells_path(path) if evidence == "cells" else table
        if evidence != "episodes" and not table.is_file():
            log(f"skipped {path}: no {'per-cell table' if evidence == 'cells' else 'predictions'} beside it "
                f"({table.name}); run it again with --overwrite always")
            continue
        raw = None
        if evidence == "predictions":
            predictions = read_predictions(table)
            predictions = predictions[[c for c in predictions.columns if not c.startswith("proba_")]]
            raw = predictions.to_csv(index=False, lineterminator="\n").encode()
        elif evidence == "cells":
            raw = table.read_bytes()
        pair = Path(out) / safe_name(record.extractor.name) / safe_name(record.task.name)
        folder = pair / safe_name(record.protocol.name)
        if pair not in features:
            features[pair] = _package_features(record, pair / FEATURES_FILE, data_root, log)
        extractor = record.extractor
        card = {"name": extractor.name, "summary": extractor.summary, "dim": extractor.dim,
                "n_parameters": extractor.n_parameters, "precision": extractor.precision,
                "weights_sha256": extractor.weights_sha256, "family": extractor.fingerprint.get("family"),
                "transform": extractor.fingerprint.get("transform"), "metadata": extractor.metadata}
        digests: dict = {"predictions_sha256": None, "labels_sha256": None, "n_predictions": 0}
        if raw is not None and evidence == "predictions":
            digests = {"predictions_sha256": _sha256(raw), "labels_sha256": labels_digest(predictions),
                       "n_predictions": len(predictions)}
        elif raw is not None:
            digests["cells_sha256"] = _sha256(raw)
        info = {"format": SUBMISSION_FORMAT, "extractor": card, "task": record.task.name,
                "protocol": record.protocol.name, "inputs": record.inputs, "features": features[pair],
                "evidence": evidence, **digests, "environment": record.environment,
                "submitted_by": getpass.getuser(), "submitted": now_utc()}
        atomic_write_bytes(folder / "record.json", path.read_bytes())
        if raw is not None:
            atomic_write_bytes(folder / (CELLS if evidence == "cells" else "predictions.csv.gz"),
                               gzip.compress(raw, mtime=0))
        atomic_write_bytes(folder / "submission.json", (json.dumps(info, indent=2, sort_keys=True, default=str)
                                                        + "\n").encode())
        written.append(folder)
    return written


def _versions(record: ResultRecord) -> list[str]:
    """The versions of the images a record's features come from: one (the task's) for a cell task; the clean images
    and each perturbation, in the task's member order, for a robustness record (``TASK@perturbation=all``)."""
    from tasks import get_task
    from tasks.transforms import CLEAN

    if _evidence(record) != "cells":
        return [CLEAN]
    return [CLEAN, *getattr(get_task(record.task.name), "perturbations", ())]


def _package_features(record: ResultRecord, path: Path, data_root: Path | None, log) -> dict | None:
    """Write the features of a record's (extractor, task) from the feature cache, in the data set's row order
    (bad images left out), and return their submission.json entry; None, said in ``log``, where it cannot be
    done (the submission is then shown as self-reported). A robustness record's are those of every version of the
    images (``features.npz`` the clean ones, ``features.<perturbation>.npz`` the others, under ``versions``)."""
    from bench.cache import FeatureStore
    from bench.core import settings
    from tasks import get_task

    task_info, inputs = record.task.model_extra or {}, record.inputs or {}
    sources = inputs.get("features") or []
    why = None
    try:
        versions = _versions(record)
        if "=>" in record.task.name or len(sources) != len(versions) or \
                task_info.get("split_kind") not in ("kfold", "fixed"):
            raise ResultsError("CI runs single-task cell results and robustness again only (not domain shifts or "
                               "patient bags)")
        task = get_task(record.task.name.split("@", 1)[0])
        dataset = task.load(data_root or sources[0].get("root"), data_home=settings.data_dir())
        if dataset.content_fingerprint() != sources[0].get("content_sha256"):
            raise ResultsError(f"the images at {dataset.root} are not the ones the result was computed on (content "
                               "sha256 differs); pass --data-root with that copy")
        stored = [FeatureStore(settings.cache_dir(), source["key"]).load() for source in sources]
        keep = np.ones(len(dataset), dtype=bool)
        for cached in stored:  # an image any version could not read is left out of all
            keep[cached.bad_rows] = False
        table = dataset.samples[keep].reset_index(drop=True)
        entries = [features_entry(path if i == 0 else path.with_name(f"features.{version}.npz"), table,
                                  np.asarray(cached.features)[keep])
                   for i, (version, cached) in enumerate(zip(versions, stored))]
        entry = entries[0] if len(entries) == 1 else {**entries[0], "versions": dict(zip(versions[1:], entries[1:]))}
        size = sum(path.with_name(Path(e["file"]).name).stat().st_size for e in entries)
        log(f"{record.extractor.name} / {record.task.name}: {int(keep.sum())} x {entry['dim']} features "
            + (f"in {len(entries)} versions " if len(entries) > 1 else "") + f"packaged ({size / 1e6:.2f} MB)")
        return entry
    except HemabenchError as exc:
        why = f"{exc}"
    log(f"{record.extractor.name} / {record.task.name}: no features packaged ({why}); its submissions can only be "
        "shown as self-reported")
    return None


def verify(submissions: Path, data_roots: dict[str, Path] | None = None, sample: int = SAMPLE,
           seed: int | None = None, log=lambda line: None) -> tuple[int, list[str], dict[Path, Derived]]:
    """(submissions found, one line per failure, each submission's outcome). Always derived anew (the board reuses
    what this wrote to the cache)."""
    outcome = verify_each(submissions, data_roots, sample, seed, log, reuse=False)
    where = {folder: folder.relative_to(submissions).as_posix() for folder in outcome}
    lines = [f"{where[folder]}: {line}" for folder, derived in outcome.items() for line in derived.failures]
    return len(outcome), lines, outcome


def verify_each(submissions: Path, data_roots: dict[str, Path] | None = None, sample: int = SAMPLE,
                seed: int | None = None, log=lambda line: None, reuse: bool = True) -> dict[Path, Derived]:
    """Every submission folder under ``submissions`` -> its outcome (no failures: accepted), in path order.
    ``reuse``: take the outcome of an identical submission verified before on this machine from the cache
    (``$BENCH_HOME/cache/verifications``; never from the submissions folder)."""
    from leaderboard.tables import files_inside, link_problem

    submissions = Path(submissions)
    if not submissions.is_dir():
        raise ResultsError(f"submissions folder {submissions} does not exist; pass the folder `bench submit --out` "
                           "wrote")
    links: list[Path] = []
    # memo: each features file read once (by path) and extracted again once (bench.verification.derive's keys),
    # however many protocols of its (extractor, task) are submitted
    outcome, seen, memo = {}, {}, {}
    for info_path in files_inside(submissions, "submission.json", links):
        folder = info_path.parent
        linked = [name for name in _FILES if (folder / name).is_symlink()]
        if linked:
            outcome[folder] = Derived([f"{', '.join(linked)} is a symbolic link; a submission is read only from plain "
                                       "files inside the submissions folder"])
            continue
        try:
            info = json.loads(info_path.read_text())
            shape = _info_problems(info)
            if shape:
                outcome[folder] = Derived(shape)
                continue
            record = ResultRecord.read(folder / "record.json")
            evidence = _evidence(record)  # a few-shot record's episodes are in it: no file
            raw = None if evidence == "episodes" else gzip.decompress(
                (folder / (CELLS if evidence == "cells" else "predictions.csv.gz")).read_bytes())
            table = read_predictions(raw) if evidence == "predictions" and raw is not None else None
        except (OSError, ValueError, UnicodeDecodeError, ResultsError) as exc:
            outcome[folder] = Derived([f"cannot be read ({type(exc).__name__}: {exc})"])
            continue
        key = (record.extractor.name, record.task.name, record.protocol.name)
        if key in seen:
            outcome[folder] = Derived([f"duplicate of {seen[key]} ({' / '.join(key)} is submitted twice); keep one"])
            continue
        seen[key] = folder.relative_to(submissions).as_posix()
        failures = _check(info, record, raw, table, evidence)
        if failures:
            outcome[folder] = Derived(failures)
            continue
        root = (data_roots or {}).get(record.task.name.split("@", 1)[0])
        outcome[folder] = _derived(folder, submissions, info, record, table, root, sample, seed, log, reuse, memo)
    for path in links:
        outcome[path] = Derived([link_problem(path)])
    return outcome


def _derived(folder: Path, top: Path, info: dict, record: ResultRecord, table: pd.DataFrame | None, root: Path | None,
             sample: int, seed: int | None, log, reuse: bool, memo: dict) -> Derived:
    """``bench.verification.derive`` for one submission whose files agree, through the verification cache."""
    from bench.core import settings

    files: dict[str, str | None] = {name: sha256_file(folder / name) for name in _FILES if (folder / name).is_file()}
    features = info.get("features")
    versions = features.get("versions") if isinstance(features, dict) else None
    if features:
        files[FEATURES_FILE] = features.get("sha256")
    if isinstance(versions, dict):  # a robustness submission's perturbed versions
        files.update({f"features.{name}": e.get("sha256") if isinstance(e, dict) else None
                      for name, e in versions.items()})
    # the last outcome on this machine, whatever data root it found the images at: `bench verify` derives it anew
    key = digest({"files": files, "version": VERIFY_VERSION, "sample": sample})
    cache = settings.cache_dir() / "verifications" / key
    if reuse and seed is None:
        kept = _read_cached(cache)
        if kept is not None:
            return kept
    loaded, failures = None, []
    if features:
        where = ("features", str((folder / str(features.get("file"))).resolve()), features.get("sha256"))
        if where not in memo:
            memo[where] = read_features(folder, top, features, record.extractor.dim)
        loaded, failures = memo[where]
    perturbed = {}
    if versions is not None and not isinstance(versions, dict):
        failures = failures + [f"submission.json features.versions: {versions!r}, expected an object naming each "
                               "perturbation's features file"]
    for name, entry in (versions if isinstance(versions, dict) else {}).items():
        version, problems = read_features(folder, top, entry, record.extractor.dim)
        failures = failures + [f"features.versions.{name}: {line}" for line in problems]
        if version is not None:
            perturbed[name] = version
    if failures:
        return Derived(failures)
    derived = derive(record, table, loaded, root, sample, seed, log, memo, versions=perturbed)
    if not derived.failures:
        _write_cached(cache, derived)
    return derived


def _write_cached(cache: Path, derived: Derived) -> None:
    assert derived.record is not None and derived.checks is not None  # accepted
    try:
        atomic_write_bytes(cache / "record.json", derived.record.to_json().encode())
        if derived.predictions is not None:  # (a few-shot record has none: its episodes are in it)
            atomic_write_bytes(cache / "predictions.csv", derived.predictions.to_csv(index=False).encode())
        atomic_write_bytes(cache / "checks.json", json.dumps(derived.checks.as_dict(), indent=2).encode())
    except OSError:
        pass  # a read-only cache: the next board verifies again


def _read_cached(cache: Path) -> Derived | None:
    try:
        checks = Checks(**json.loads((cache / "checks.json").read_text()))
        ours = ResultRecord.read(cache / "record.json")
        if _evidence(ours) != "predictions":  # (its episodes or cells: no predictions to show)
            return Derived([], checks, ours, None)
        return Derived([], checks, ours, read_predictions(cache / "predictions.csv"))
    except (OSError, ValueError, TypeError, ResultsError):
        return None


def _check(info: dict, record: ResultRecord, raw: bytes | None, predictions: pd.DataFrame | None,
           evidence: str = "predictions") -> list[str]:
    """The files of one submission agree with each other and with the registered names (``predictions``: ``raw``
    read; both None for a few-shot record, checked against its own episodes instead; ``raw`` a robustness record's
    per-cell table, ``evidence`` "cells")."""
    out = []
    if info.get("format") not in READABLE_FORMATS:
        return [f"format: {info.get('format')!r}, expected {SUBMISSION_FORMAT!r}"]
    claims = _claims(record, evidence)
    if claims:
        return claims
    if evidence == "cells" and raw is not None and _sha256(raw) != info.get("cells_sha256"):
        out.append(f"{CELLS}: its content differs from the cells_sha256 written at submission")
    if raw is not None and predictions is not None:
        if _sha256(raw) != info.get("predictions_sha256"):
            out.append("predictions.csv.gz: its content differs from the predictions_sha256 written at submission")
        if labels_digest(predictions) != info.get("labels_sha256"):
            out.append("predictions.csv.gz label: the samples or labels differ from the labels_sha256 written at "
                       "submission")
    for field, value in (("extractor", record.extractor.name), ("task", record.task.name),
                         ("protocol", record.protocol.name)):
        expected = info["extractor"]["name"] if field == "extractor" else info.get(field)
        if value != expected:
            out.append(f"record.json {field}: {value!r}, submission.json says {expected!r}")
    out.extend(_check_weights(record))
    out.extend(_check_settings(record))
    if evidence == "cells" and raw is not None:
        from bench.core.rescore import rescore_robustness

        return out + [f"record.json {line} (a robustness record must agree with its per-cell table)"
                      for line in rescore_robustness(record, raw, CELLS)]
    if raw is None or predictions is None:
        from bench.core.curves import curve_problems

        return out + [f"record.json {line} (a few-shot record must agree with its episodes)"
                      for line in curve_problems(record)]
    out.extend(_check_split(record, predictions))
    # the package's predictions keep labels only (another file than the run's): its digest is checked above
    out.extend(f"record.json {line}" for line in rescore(record.model_copy(update={"predictions_sha256": None,
                                                                                   "n_predictions": None}),
                                                         predictions).problems)
    return out


def _check_weights(record: ResultRecord) -> list[str]:
    """A result under a built-in name must come from that extractor's published weights, where their sha256 is
    known (a full digest, or torchvision's prefix in the file name)."""
    from extractors import EXTRACTORS, get_extractor

    name = record.extractor.name
    if name not in EXTRACTORS.names():
        return []
    published = [s.sha256.lower() for s in get_extractor(name).weights if s.sha256]
    actual = ((record.extractor.fingerprint.get("weights") or {}).get("sha256") or "").lower()
    if published and not any(actual.startswith(p) for p in published):
        return [f"record.json extractor.fingerprint.weights.sha256: {actual or 'none'}, the published {name} "
                f"weights have {' or '.join(published)}; a result under a built-in name must use its published "
                "weights (submit your own file under another name, e.g. a plugin or trained: export)"]
    return []


def _check_settings(record: ResultRecord) -> list[str]:
    """The protocol's settings must be those of the registered protocol of that name, and the task's split
    settings those of the registered task (a result computed with other settings under a canonical name is not
    that protocol's or task's result)."""
    from protocols import PROTOCOLS, get_protocol
    from tasks import TASKS, get_task

    out = []
    name = record.protocol.name
    if name in PROTOCOLS.names():
        canonical = json.loads(json.dumps(get_protocol(name).settings()))  # tuples as lists, as in the record
        for key in sorted(set(canonical) | set(record.protocol.settings)):
            if record.protocol.settings.get(key) != canonical.get(key):
                out.append(f"record.json protocol.settings.{key}: {record.protocol.settings.get(key)!r}, the "
                           f"registered {name} has {canonical.get(key)!r}")
    task = record.task.model_extra or {}
    if record.task.name in TASKS.names() and "train" not in task:
        canonical = json.loads(json.dumps(get_task(record.task.name).settings()))
        for key in sorted(canonical):
            if key in task and task[key] != canonical[key]:
                out.append(f"record.json task.{key}: {task[key]!r}, the registered {record.task.name} has "
                           f"{canonical[key]!r}")
    return out


def _check_split(record: ResultRecord, predictions: pd.DataFrame) -> list[str]:
    """A k-fold result predicts every sample once: its (path, label, fold) rows must give the record's split digest
    (the formula of ``tasks.base.CellDataset.split_fingerprint``), so the samples, labels and folds it claims are
    the ones it was scored on."""
    task = record.task.model_extra or {}
    if task.get("split_kind") != "kfold" or "path" not in predictions or "seed" in predictions:
        return []
    if len(predictions) != task.get("n_samples"):
        return []  # skipped images: not the full set, and the record says so
    from bench.core.files import split_digest

    digest = split_digest(predictions["path"], predictions["label"], predictions["fold"])
    if digest != task.get("split_sha256"):
        return [f"record.json task.split_sha256: {task.get('split_sha256')}, the predictions' samples, labels and "
                f"folds give {digest}"]
    return []


def board_rows(runs: pd.DataFrame, submissions: Path, problems: list[str],
               data_roots: dict[str, Path] | None = None) -> pd.DataFrame:
    """The board's rows: ``runs`` (``leaderboard.tables.read_results``) and every submission under
    ``submissions`` that ``verify`` accepts, with CI's own numbers and what was derived again; each refused one is
    listed in ``problems`` (never shown)."""
    from leaderboard.tables import submission_row, with_submissions

    accepted = []
    for folder, derived in verify_each(submissions, data_roots).items():
        where = folder.relative_to(submissions).as_posix() if folder.is_relative_to(submissions) else str(folder)
        if derived.failures:
            problems.extend(f"submission not shown: {where}: {line}" for line in derived.failures)
            continue
        assert derived.record is not None and derived.checks is not None  # accepted: no failures
        if derived.predictions is None:  # few-shot or robustness: CI's episodes or scores are in its record
            accepted.append(submission_row(derived.record, folder / "record.json", None, 0, derived.checks.summary(),
                                           derived.checks.verified))
            continue
        predictions = _shown_predictions(derived)
        collapsed = rescore(derived.record, read_predictions(predictions)).collapsed
        accepted.append(submission_row(derived.record, folder / "record.json", predictions, len(collapsed),
                                       derived.checks.summary(), derived.checks.verified))
    return with_submissions(runs, accepted)


def _shown_predictions(derived: Derived) -> Path:
    """CI's predictions as a file the board's intervals read (in the cache, named by content)."""
    from bench.core import settings

    assert derived.predictions is not None  # an accepted submission's
    data = derived.predictions.to_csv(index=False).encode()
    path = settings.cache_dir() / "verifications" / "predictions" / f"{_sha256(data)}.csv"
    if not path.is_file():
        atomic_write_bytes(path, data)
    return path
