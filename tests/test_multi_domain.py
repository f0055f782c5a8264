"""Domain shift (``A=>B``) and batch effect (``A+B``) as multi-domain tasks: one design (``DomainDesign``), evaluated
by ``protocol.evaluate`` and recorded by the one ``record_result``, give the numbers the code before them gave
(tests/data/multi_domain_reference.json, written at commit ca5d3f9 by the old paths: ``run_pair(..., test_task=B)``
with ``--shift-training`` / ``--shift-classes``, and ``bench.batch_effect.batch_effect``), on generated and on real
cells; and the names parse as typed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.core.errors import UsageError
from bench.core.record import ResultRecord, cells_path
from bench.runner import RunOptions, run_pair
from tests.conftest import PBC, REPO, real_data_absent

REFERENCE = json.loads((REPO / "tests" / "data" / "multi_domain_reference.json").read_text())
VARIANTS = {"all": "", "folds": "@training=folds", "shared": "@classes=shared"}


def _same(record: ResultRecord, expected: dict) -> None:
    """Every metric of every fold (or draw), and the means, equal to the reference's (same code: same floats)."""
    assert len(record.metrics.per_fold) == len(expected["per_fold"])
    for got, want in zip(record.metrics.per_fold, expected["per_fold"]):
        assert set(want) <= set(got)  # (metrics added since, e.g. ECE, are not in the reference)
        for key, value in want.items():
            if isinstance(value, dict):
                assert got[key] == pytest.approx(value, abs=1e-12), key
            else:
                assert got[key] == pytest.approx(value, abs=1e-12) if isinstance(value, float) else got[key] == value
    assert {k: record.metrics.mean[k] for k in expected["mean"]} == pytest.approx(expected["mean"], abs=1e-12)


def _run(task: str, protocols, results: Path) -> dict:
    outcome = run_pair("color-histogram", task, protocols, RunOptions(results_dir=results, progress=False),
                       log=lambda message: None)
    assert outcome.status == "ok", (outcome.error, outcome.traceback)
    return {record.protocol.name: record for record in outcome.records}


def _check_cases(prefix: str, train: str, test: str, protocols: list[str], batch_protocol, tmp_path: Path,
                 tmp_text: str = "") -> None:
    for key, suffix in VARIANTS.items():
        records = _run(f"{train}=>{test}{suffix}", protocols, tmp_path / "r")
        for protocol in protocols:
            expected = REFERENCE[f"{prefix}-shift-{key}/{protocol}"]
            assert records[protocol].task.name.replace(tmp_text or "\0", "<tmp>") == expected["task"]
            _same(records[protocol], expected)
    (record,) = _run(f"{test}+{train}", [batch_protocol], tmp_path / "r").values()  # order typed: no matter
    expected = REFERENCE[f"{prefix}-batch/batch-effect"]
    assert record.task.name.replace(tmp_text or "\0", "<tmp>") == expected["task"]
    _same(record, expected)
    json_path = next((tmp_path / "r").rglob("batch-effect.json"))
    cells = __import__("pandas").read_csv(cells_path(json_path))
    assert list(cells.columns[:2]) == ["repeat", "path"] and len(cells) == sum(r["n_cells"] for r in
                                                                             expected["per_fold"])


def test_synthetic_shift_and_batch_effect_equal_the_previous_paths(tmp_path):
    from protocols import get_protocol

    _check_cases("synthetic", "synthetic-wbc", "synthetic-wbc-shifted", ["knn-1", "knn-20", "linear"],
                 get_protocol("batch-effect"), tmp_path)
    again = run_pair("color-histogram", "synthetic-wbc+synthetic-wbc-shifted", None,
                     RunOptions(results_dir=tmp_path / "r", progress=False), log=lambda message: None)
    assert again.status == "skipped" and [r.protocol.name for r in again.kept] == ["batch-effect"]  # current: kept


def test_real_shift_and_batch_effect_equal_the_previous_paths(tmp_path):
    """Two disjoint sets of real Acevedo cells with three classes in common (15 and 12 per class)."""
    from dataclasses import replace

    from protocols import get_protocol

    labeled = PBC / "labeled"
    if not labeled.is_dir():
        pytest.skip(real_data_absent(labeled))
    roots = []
    for name, classes, lo, hi in (("realA", ["basophil", "eosinophil", "lymphocyte", "monocyte"], 0, 15),
                                  ("realB", ["eosinophil", "lymphocyte", "monocyte", "neutrophil"], 15, 27)):
        for c in classes:
            (tmp_path / name / c).mkdir(parents=True)
            for file in sorted((labeled / c).glob("*.jpg"))[lo:hi]:
                shutil.copy(file, tmp_path / name / c / file.name)
        roots.append(f"imagefolder:{tmp_path / name}")
    _check_cases("real", *roots, ["knn-20", "linear"], replace(get_protocol("batch-effect"), max_per_class=8,
                                                                 repeats=3), tmp_path, tmp_text=str(tmp_path))


def test_names_parse_canonically_and_refuse_what_cannot_be():
    from tasks.names import parse

    assert parse("b+a").members == ("a", "b")
    assert parse("a=>b@classes=shared@training=folds").variants == (("training", "folds"), ("classes", "shared"))
    assert parse("acevedo@preprocessing=direct@folds=authors").variants == (("folds", "authors"),
                                                                           ("preprocessing", "direct"))
    for bad, words in (("acevedo@training=folds", "applies to a domain shift"), ("a=>b=>c", "joins two tasks"),
                       ("a+a", "each data set once"), ("a+b@folds=authors", "take no variant"),
                       ("acevedo@folds=mine", "must be one of portable, authors"), ("=>b", "missing")):
        with pytest.raises(UsageError, match=words):
            parse(bad)


def test_a_variant_equal_to_the_default_is_dropped_and_names_match_results(tmp_path):
    from bench.runner import named_task

    assert named_task("acevedo@preprocessing=authors-cv")[1] == "acevedo"  # Acevedo's own preprocessing
    assert named_task("acevedo@preprocessing=direct@folds=authors")[1] == "acevedo@folds=authors@preprocessing=direct"
    task, label = named_task("acevedo=>bmc@classes=shared@folds=authors")
    assert label == "acevedo=>bmc@folds=authors@classes=shared" and task.members[0].fold_scheme == "authors"
    with pytest.raises(UsageError, match="at the end of the name.*acevedo=>bmc@folds=authors"):
        named_task("acevedo@folds=authors=>bmc")
    with pytest.raises(UsageError, match="k-fold"):
        named_task("bmc@folds=authors")
    with pytest.raises(UsageError, match="no training and test roles|do not evaluate"):
        run_pair_plan = __import__("bench.runner", fromlist=["plan_pair"]).plan_pair
        run_pair_plan("color-histogram", "synthetic-wbc+synthetic-wbc-shifted", ["knn-20"],
                      RunOptions(results_dir=tmp_path, progress=False))


def test_a_pooling_is_part_of_the_extractor_name():
    from extractors import get_extractor, split_pooling

    assert split_pooling("dinobloom-s+cls+mean") == ("dinobloom-s", "cls+mean")
    entry = get_extractor("vit-s14-random+mean")
    assert (entry.name, entry.pooling, entry.dim) == ("vit-s14-random+mean", "mean", 384)
    assert get_extractor("vit-s14-random+cls").name == "vit-s14-random"  # its own pooling: its own name
    assert get_extractor("vit-s14-random+cls+mean").dim == 768
    with pytest.raises(UsageError, match="fixed output"):
        get_extractor("color-histogram+mean")


def test_the_domain_design_joins_rows_in_member_order():
    """A hand-made case: the design's rows, domains and shift splits."""
    import pandas as pd

    from tasks.base import CellDataset
    from tasks.domains import DomainShiftTask
    from tasks.imagefolder import CellTask

    def data(name, labels, folds):
        samples = pd.DataFrame({"path": [f"{name}{i}.png" for i in range(len(labels))], "label": labels,
                                "fold": folds, "sha256": [f"{name}{i}" for i in range(len(labels))]})
        return CellDataset(name, Path("/x"), samples, "kfold")

    a, b = CellTask(name="a"), CellTask(name="b")
    task = DomainShiftTask(name="a=>b@classes=shared", members=(a, b), classes="shared")
    joined = task.assemble([data("a", ["x", "y", "x", "y"], ["0", "0", "1", "1"]), data("b", ["y", "z", "x"],
                                                                                      ["0", "0", "0"])])
    keep = np.array([True, True, True, False, True, True, True])
    design = joined.design(keep, joined.classes)
    assert design.domains == ["a", "b"] and design.domain_of.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert design.classes == ["x", "y", "z"] and design.labels.tolist() == [0, 1, 0, 1, 1, 2, 0]
    ((name, train, test),) = design.splits
    assert name == "test" and train.tolist() == [0, 1, 2] and test.tolist() == [4, 6]  # z is not scored
    assert design.predictable == [0, 1]
    assert any("classes only in the test task 'b': ['z']" in w for w in joined.warnings)
