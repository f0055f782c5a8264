"""The result record: one typed, self-describing JSON per (extractor, task, protocol), predictions beside it.

The runner builds a :class:`ResultRecord`; the leaderboard, ``bench compare`` and the CLI read it through
:meth:`ResultRecord.read` and its attributes (in the spirit of mteb's ``TaskResult``: pydantic validates what
is read, and an error names the file and the key). On disk (``results/<extractor>/<task>/``)::

    <protocol>.json              the record (schema below)
    <protocol>.predictions.csv   path (or bag), fold, label, prediction, proba_<class>...
    <protocol>.attention.csv     bag protocols: the attention weight of every cell

Names that are not safe as folder names (``imagefolder:/data/x``, ``plugin.py:Class``) become a readable slug
plus a short hash of the full name. Schema version 1 is the layout written since the first release; files
without ``schema_version`` are read as version 1, newer versions are refused with the version named.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bench.core.errors import ResultsError
from bench.core.files import atomic_write_bytes
from bench.core.metrics import MAIN_METRIC, SCORES
from bench.core.registry import safe_name

SCHEMA_VERSION = 1
READABLE_VERSIONS = (1,)
_PACKAGES = ("hemabench", "torch", "torchvision", "timm", "numpy", "scikit-learn", "pandas", "pillow")


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)  # sections carry more than the typed keys


class ExtractorInfo(_Section):
    name: str
    summary: str = ""
    fingerprint: dict[str, Any] = Field(default_factory=dict)  # everything the features depend on
    feature_key: Optional[str] = None  # the feature cache entry
    metadata: dict[str, Any] = Field(default_factory=dict)  # e.g. {"training": {...}} for trainer exports

    @property
    def dim(self) -> Optional[int]:
        return self.fingerprint.get("dim")

    @property
    def n_parameters(self) -> Optional[int]:
        return self.fingerprint.get("n_parameters")

    @property
    def precision(self) -> Optional[str]:
        """The forward precision the features were computed in (fp32 for results older than --precision)."""
        return self.fingerprint.get("precision")

    @property
    def weights_sha256(self) -> Optional[str]:
        """The weight file's sha256, else the built model's state hash."""
        return (self.fingerprint.get("weights") or {}).get("sha256") or self.fingerprint.get("state_sha256")

    @property
    def training(self) -> dict[str, Any]:
        """The trainer's information for an export (preset, iteration, run, warnings); {} otherwise."""
        return self.metadata.get("training") or {}


class TaskInfo(_Section):
    """The task as evaluated; ``name`` is stored as ``task``. Cell tasks add root, counts, classes, content and
    split hashes and their settings; a domain-shift result nests ``train`` and ``test``."""

    name: str = Field(alias="task")
    main_metric: Optional[str] = None


class ProtocolInfo(_Section):
    name: str
    summary: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)


class Scores(_Section):
    """Per fold (or per seed and fold), and the mean and population std (``std_ddof``) over them."""

    per_fold: list[dict[str, Any]]
    mean: dict[str, Optional[float]]
    std: dict[str, Optional[float]]
    std_ddof: int = 0
    main: str = MAIN_METRIC

    @field_validator("mean", "std")
    @classmethod
    def _known_metrics(cls, values: dict) -> dict:
        unknown = sorted(set(values) - set(SCORES))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(SCORES)}")
        return values

    @field_validator("main")
    @classmethod
    def _known_main(cls, value: str) -> str:
        if value not in SCORES:
            raise ValueError(f"main metric {value!r} is not one of {', '.join(SCORES)}")
        return value

    @property
    def main_mean(self) -> Optional[float]:
        return self.mean.get(self.main)


class ResultRecord(_Section):
    schema_version: int = SCHEMA_VERSION
    created: Optional[str] = None
    extractor: ExtractorInfo
    task: TaskInfo
    protocol: ProtocolInfo
    metrics: Scores
    warnings: list[str] = Field(default_factory=list)
    skipped_images: list[str] = Field(default_factory=list)
    timings: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)
    # What the result was computed from (feature keys, data identity, task and protocol settings, evaluation
    # code version) and its digest; ``--overwrite only-missing`` keeps a result only when these still match.
    inputs: Optional[dict[str, Any]] = None
    # The predictions file written with the record (``<protocol>.predictions.csv``): its sha256 and row count, so
    # that a kept result, the board and a submission are re-scored from exactly those predictions
    # (bench.core.rescore); absent in records written before issue 26.
    predictions_sha256: Optional[str] = None
    n_predictions: Optional[int] = None
    # A few-shot result's label-efficiency curve, derived from its per-episode metrics (bench.core.curves): such a
    # record has no predictions file; its episodes are its evidence (``curve_problems`` checks them again).
    curve: Optional[dict[str, Any]] = None

    # -- JSON ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        payload = self.model_dump(by_alias=True)
        for key in ("inputs", "predictions_sha256", "n_predictions", "curve"):
            if payload.get(key) is None:  # records written before they existed read and write back unchanged
                payload.pop(key, None)
        return payload

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n"

    @classmethod
    def from_dict(cls, payload: Any, source: str | Path = "<record>") -> "ResultRecord":
        version = payload.get("schema_version", 1) if isinstance(payload, dict) else None
        if version not in READABLE_VERSIONS:
            raise ResultsError(
                f"result file {source} has schema version {version!r}; this hemabench reads version(s) "
                f"{', '.join(map(str, READABLE_VERSIONS))}. Upgrade hemabench, or re-run `bench run` to rewrite it"
            )
        try:
            return cls.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            raise ResultsError(f"result file {source} is not a valid result record ({problems}); delete it and "
                               "run `bench run` again") from None

    @classmethod
    def from_json(cls, text: str, source: str | Path = "<record>") -> "ResultRecord":
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ResultsError(f"result file {source} is not valid JSON ({exc}); delete it and run again") from exc
        return cls.from_dict(payload, source)

    @classmethod
    def read(cls, path: Path) -> "ResultRecord":
        return cls.from_json(Path(path).read_text(), path)

    def write(self, json_path: Path, predictions=None) -> None:
        """The predictions (a DataFrame) first, then the record with their sha256 and row count, each
        atomically: a record never points at missing predictions."""
        if predictions is not None:
            data = predictions.to_csv(index=False).encode()
            atomic_write_bytes(predictions_path(json_path), data)
            self.predictions_sha256, self.n_predictions = hashlib.sha256(data).hexdigest(), len(predictions)
        atomic_write_bytes(json_path, self.to_json().encode())


def looks_like_record(payload: Any) -> bool:
    """A JSON object with the sections every record has (other JSON files beside the results are skipped)."""
    return isinstance(payload, dict) and "metrics" in payload and "protocol" in payload


# -- where results live -------------------------------------------------------------------------------------
def result_paths(results_dir: Path, extractor: str, task: str, protocol: str) -> tuple[Path, Path]:
    """(record, predictions) of one (extractor, task, protocol) under ``results_dir``."""
    json_path = Path(results_dir) / safe_name(extractor) / safe_name(task) / f"{safe_name(protocol)}.json"
    return json_path, predictions_path(json_path)


def predictions_path(json_path: Path) -> Path:
    return Path(json_path).with_name(f"{Path(json_path).stem}.predictions.csv")


def attention_path(json_path: Path) -> Path:
    return Path(json_path).with_name(f"{Path(json_path).stem}.attention.csv")


def cells_path(json_path: Path) -> Path:
    """Per-cell scores beside a batch-effect record (``bench batch-effect``)."""
    return Path(json_path).with_name(f"{Path(json_path).stem}.cells.csv")


def write_table(path: Path, table) -> None:
    atomic_write_bytes(path, table.to_csv(index=False).encode())


# -- what produced a result ---------------------------------------------------------------------------------
def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, Optional[str]]:
    versions: dict[str, Optional[str]] = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> Optional[dict]:
    """The commit of the hemabench checkout that produced a result (None when not run from a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def environment(device: str) -> dict:
    return {"packages": package_versions(), "git": git_commit(), "platform": platform.platform(), "device": device}
