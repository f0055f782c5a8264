"""The typed result record: what the runner writes reads back equal, old files load, bad ones fail naming the key."""

import json

import pytest

from bench.core.errors import ResultsError
from bench.core.metrics import METRICS
from bench.core.record import SCHEMA_VERSION, ResultRecord
from leaderboard.tables import read_results
from tests.conftest import TINY

V1_RECORD = {  # the layout written since the first release (schema version 1), trimmed to what a reader needs
    "schema_version": 1,
    "created": "2026-11-26T21:18:00+00:00",
    "extractor": {"name": "dinobloom-s", "summary": "DinoBloom-S", "feature_key": "ab" * 32,
                  "fingerprint": {"dim": 384, "n_parameters": 22_000_000, "weights": {"sha256": "cd" * 32}},
                  "metadata": {"training": {"iteration": 4000, "run": "/runs/a", "warnings": ["collapse"]}}},
    "task": {"task": "acevedo", "n_samples": 17092, "classes": ["basophil"], "main_metric": "weighted_f1"},
    "protocol": {"name": "knn-20", "summary": "20-NN", "settings": {"k": 20}},
    "metrics": {"per_fold": [{"fold": "0", "weighted_f1": 0.9}], "mean": {m: 0.9 for m in METRICS},
                "std": {m: 0.0 for m in METRICS}, "std_ddof": 0, "main": "weighted_f1"},
    "warnings": [], "skipped_images": [], "timings": {"cached": True}, "environment": {"device": "cpu"},
}


def test_version_1_file_reads_into_typed_attributes_and_back_unchanged(tmp_path):
    path = tmp_path / "knn-20.json"
    path.write_text(json.dumps(V1_RECORD))
    record = ResultRecord.read(path)
    assert record.extractor.name == "dinobloom-s" and record.extractor.dim == 384
    assert record.extractor.weights_sha256 == "cd" * 32 and record.extractor.training["iteration"] == 4000
    assert record.task.name == "acevedo" and record.task.model_extra["n_samples"] == 17092
    assert record.metrics.main_mean == 0.9 and record.protocol.settings == {"k": 20}
    assert json.loads(record.to_json()) == V1_RECORD  # nothing lost, nothing renamed
    assert ResultRecord.from_json(record.to_json()) == record


def test_a_record_without_schema_version_is_read_as_version_1():
    old = {k: v for k, v in V1_RECORD.items() if k not in ("schema_version", "created", "environment")}
    assert ResultRecord.from_dict(old).schema_version == 1 == SCHEMA_VERSION


def test_a_newer_schema_version_is_refused_with_the_version_named(tmp_path):
    path = tmp_path / "future.json"
    path.write_text(json.dumps({**V1_RECORD, "schema_version": 7}))
    with pytest.raises(ResultsError, match=r"future\.json has schema version 7.*reads version\(s\) 1"):
        ResultRecord.read(path)
    with pytest.raises(ResultsError, match="schema version 7"):
        read_results(tmp_path)


@pytest.mark.parametrize(
    "damage, key",
    [
        (lambda r: r["metrics"]["mean"].update(f1=0.5), "metrics.mean"),
        (lambda r: r["extractor"].pop("name"), "extractor.name"),
        (lambda r: r["metrics"].update(main="auc"), "metrics.main"),
        (lambda r: r["metrics"].update(per_fold="all"), "metrics.per_fold"),
    ],
)
def test_an_invalid_record_names_the_file_and_the_key(tmp_path, damage, key):
    record = json.loads(json.dumps(V1_RECORD))
    damage(record)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ResultsError, match=rf"bad\.json is not a valid result record \({key}") as info:
        ResultRecord.read(path)
    assert "run `bench run` again" in str(info.value)


def test_the_runner_writes_records_that_read_back(image_folder, tmp_path):
    from bench.runner import RunOptions, run_pair
    from extractors import EXTRACTORS
    from protocols import PROTOCOLS

    options = RunOptions(results_dir=tmp_path / "r", progress=False, batch_size=8)
    outcome = run_pair(TINY, f"imagefolder:{image_folder}", ["knn-1"], options, log=print)
    assert outcome.status == "ok", outcome.error
    path = next((tmp_path / "r").rglob("knn-1.json"))
    assert ResultRecord.read(path) == outcome.records[0]
    outcome = run_pair("color-histogram", f"imagefolder:{image_folder}", ["knn-20"], options, log=print)
    record = outcome.records[0]
    # the summaries of `bench list` and of the result files are one and the same
    assert record.extractor.summary == EXTRACTORS.summaries()["color-histogram"]
    assert record.protocol.summary == PROTOCOLS.summaries()["knn-20"]
    board = read_results(tmp_path / "r")
    assert board.set_index("protocol")["dim"].to_dict() == {"knn-1": 32, "knn-20": 96}
