"""``bench submit`` and ``bench verify``: results packaged for a pull request, and checked before they reach a board.

A submission is one folder per (extractor, task, protocol) under the submissions folder::

    <extractor>/<task>/<protocol>/record.json         the result record, as written by `bench run`
    <extractor>/<task>/<protocol>/predictions.csv.gz  its per-sample predicted labels (no probabilities: BMC's
                                                      34k rows stay ~0.2 MB), compressed
    <extractor>/<task>/<protocol>/submission.json     the extractor's card, the data's identity, digests, who/when

``verify`` refuses a submission when (each failure one line naming the submission, the field and what was
expected):

- a label metric of a fold, re-scored from the stored predictions, differs from the record's, or the record's
  means differ from its folds;
- the predictions or the labels differ from the digests written at submission, or a fold has fewer predictions
  than its ``n_test``;
- a k-fold result's predictions (every sample once: path, label, fold) do not give the record's ``split_sha256``;
- the protocol's settings differ from the registered protocol of that name (k, C rule, iterations, ...), or the
  task's split settings from the registered task's (folds, seeds), where the name is registered;
- a built-in extractor name is used without that model's published weights (sha256, where known);
- the (extractor, task, protocol) is submitted twice.

A result on another split than the task's pinned canonical one, or on a subset, is not refused: its record says
so, and the board keeps it apart from canonical full-set rows (``leaderboard.tables.subset_mark``).
"""

from __future__ import annotations

import getpass
import gzip
import hashlib
import io
import json
from pathlib import Path

import pandas as pd

from bench.core.errors import ResultsError
from bench.core.files import atomic_write_bytes
from bench.core.metrics import LABEL_METRICS, metric_value
from bench.core.record import ResultRecord, now_utc
from bench.core.registry import safe_name

SUBMISSION_FORMAT = "hemabench-submission/1"
TOLERANCE = 1e-9  # re-scored metrics must equal the record's (both are computed by the same scikit-learn calls)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def labels_digest(predictions: pd.DataFrame) -> str:
    """The identity of the test samples and their labels: sha256 of the sorted (sample, fold, label) rows."""
    key = "path" if "path" in predictions else "bag"
    rows = sorted(f"{s}\t{f}\t{label}" for s, f, label in zip(predictions[key], predictions["fold"].astype(str),
                                                             predictions["label"].astype(str)))
    return _sha256("\n".join(rows).encode())


def submit(results_dir: Path, out: Path, extractors: list[str] | None = None, tasks: list[str] | None = None,
           log=print) -> list[Path]:
    """Package every result record under ``results_dir`` (those of ``extractors`` / ``tasks`` when given) that
    has its predictions; returns the submission folders written."""
    from leaderboard.tables import read_results

    written, problems = [], []
    rows = read_results(results_dir, problems)  # the records a board would show (unreadable files are skipped)
    for line in problems:
        log(f"skipped: {line}")
    for _, row in rows.iterrows():
        if (extractors and row["extractor"] not in extractors) or (tasks and row["task"] not in tasks):
            continue
        path, table = Path(row["record"]), Path(row["predictions"])
        if not table.is_file():
            log(f"skipped {path}: no predictions beside it ({table.name}); run it again with --overwrite always")
            continue
        record = ResultRecord.read(path)
        predictions = pd.read_csv(table, dtype=str, keep_default_na=False)  # every value as written
        predictions = predictions[[c for c in predictions.columns if not c.startswith("proba_")]]
        raw = predictions.to_csv(index=False, lineterminator="\n").encode()
        folder = Path(out) / safe_name(record.extractor.name) / safe_name(record.task.name) / safe_name(
            record.protocol.name)
        extractor = record.extractor
        card = {"name": extractor.name, "summary": extractor.summary, "dim": extractor.dim,
                "n_parameters": extractor.n_parameters, "precision": extractor.precision,
                "weights_sha256": extractor.weights_sha256, "family": extractor.fingerprint.get("family"),
                "transform": extractor.fingerprint.get("transform"), "metadata": extractor.metadata}
        info = {"format": SUBMISSION_FORMAT, "extractor": card, "task": record.task.name,
                "protocol": record.protocol.name, "inputs": record.inputs,
                "predictions_sha256": _sha256(raw), "labels_sha256": labels_digest(predictions),
                "n_predictions": len(predictions), "environment": record.environment,
                "submitted_by": getpass.getuser(), "submitted": now_utc()}
        atomic_write_bytes(folder / "record.json", path.read_bytes())
        atomic_write_bytes(folder / "predictions.csv.gz", gzip.compress(raw, mtime=0))
        atomic_write_bytes(folder / "submission.json", (json.dumps(info, indent=2, sort_keys=True, default=str)
                                                        + "\n").encode())
        written.append(folder)
    return written


def verify(submissions: Path) -> tuple[int, list[str]]:
    """(submissions found, one line per failure)."""
    outcome = verify_each(submissions)
    return len(outcome), [line for lines in outcome.values() for line in lines]


def verify_each(submissions: Path) -> dict[Path, list[str]]:
    """Every submission folder under ``submissions`` -> its failures (empty: verified), in path order."""
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise ResultsError(f"submissions folder {submissions} does not exist; pass the folder `bench submit --out` "
                           "wrote")
    outcome, seen = {}, {}
    for info_path in sorted(submissions.rglob("submission.json")):
        folder = info_path.parent
        where = folder.relative_to(submissions).as_posix()
        try:
            info = json.loads(info_path.read_text())
            record = ResultRecord.read(folder / "record.json")
            raw = gzip.decompress((folder / "predictions.csv.gz").read_bytes())
        except (OSError, ValueError, ResultsError) as exc:
            outcome[folder] = [f"{where}: cannot be read ({type(exc).__name__}: {exc})"]
            continue
        key = (record.extractor.name, record.task.name, record.protocol.name)
        if key in seen:
            outcome[folder] = [f"{where}: duplicate of {seen[key]} ({' / '.join(key)} is submitted twice); keep one"]
            continue
        seen[key] = where
        outcome[folder] = [f"{where}: {line}" for line in _check(info, record, raw)]
    return outcome


def _check(info: dict, record: ResultRecord, raw: bytes) -> list[str]:
    out = []
    if info.get("format") != SUBMISSION_FORMAT:
        return [f"format: {info.get('format')!r}, expected {SUBMISSION_FORMAT!r}"]
    if _sha256(raw) != info.get("predictions_sha256"):
        out.append("predictions.csv.gz: its content differs from the predictions_sha256 written at submission")
    predictions = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
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
    out.extend(_check_split(record, predictions))
    by_fold = predictions.groupby(["seed", "fold"] if "seed" in predictions else ["fold"], sort=False)
    groups = {tuple(str(k) for k in (key if isinstance(key, tuple) else (key,))): rows for key, rows in by_fold}
    for number, fold in enumerate(record.metrics.per_fold):
        name = tuple(str(fold[k]) for k in (("seed", "fold") if "seed" in predictions else ("fold",)) if k in fold)
        rows = groups.get(name)
        label = " ".join(name) or str(number)
        if rows is None:
            out.append(f"predictions fold {label}: no predictions for this fold of the record")
            continue
        if "n_test" in fold and len(rows) != fold["n_test"]:
            out.append(f"predictions fold {label}: {len(rows)} prediction(s), the record's fold has "
                       f"n_test = {fold['n_test']}")
        for metric in LABEL_METRICS:
            if fold.get(metric) is None:
                continue
            again = metric_value(rows["label"].astype(str), rows["prediction"].astype(str), metric)
            if abs(again - fold[metric]) > TOLERANCE:
                out.append(f"record.json metrics.per_fold[{number}].{metric}: {fold[metric]!r}, the predictions "
                           f"give {again!r}")
    for metric in LABEL_METRICS:
        values = [fold.get(metric) for fold in record.metrics.per_fold]
        mean = record.metrics.mean.get(metric)
        if mean is not None and None not in values and abs(sum(values) / len(values) - mean) > TOLERANCE:
            out.append(f"record.json metrics.mean.{metric}: {mean!r}, the folds give {sum(values) / len(values)!r}")
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


def board_rows(runs: pd.DataFrame, submissions: Path, problems: list[str]) -> pd.DataFrame:
    """The board's rows: ``runs`` (``leaderboard.tables.read_results``) and every submission under
    ``submissions`` that ``verify`` accepts; each refused one is listed in ``problems`` (never shown)."""
    from leaderboard.tables import submission_row, with_submissions

    accepted = []
    for folder, failures in verify_each(submissions).items():
        if failures:
            problems.extend(f"submission not shown: {line}" for line in failures)
            continue
        accepted.append(submission_row(folder / "record.json", folder / "predictions.csv.gz"))
    return with_submissions(runs, accepted)
