"""`bench suite list` / `bench suite run`: the suite planned on the data present (generated copies of three public
white-cell sets), run end to end with the colour histogram, summarised per extractor, and the board's suite view
in headless Chromium at 1,400 px."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.core import suite as definition
from bench.suite import plan_suite
from tests.test_leaderboard_browser import LAYOUT_CHECK, browser  # noqa: F401  (a fixture)
from tests.test_public_wbc import _bccd_clone, _segmentation_clone


def _data_home(root: Path) -> Path:
    """bccd-wbc and sslseg-1/2 where the suite looks for them by default (their data_dir), small generated copies."""
    _bccd_clone(root / "bccd", {"Basophil": 2, "Eosinophil": 6, "Lymphocyte": 6, "Monocyte": 5, "Neutrophil": 8})
    (root / "BCCD_cropped").symlink_to(root / "bccd" / "BCCD_cropped")
    clone = root / "segmentation_WBC"
    _segmentation_clone(clone, 1, [1, 2, 3, 4] * 6 + [5, 5])  # 26 cells: 20+ in every training fold (kNN-20)
    _segmentation_clone(clone, 2, [2, 1, 3, 4] * 6 + [5, 5])
    return root


def test_the_plan_on_the_data_present(tmp_path):
    plan = plan_suite(_data_home(tmp_path / "data"))
    assert plan.present == ["bccd-wbc", "sslseg-1", "sslseg-2"]
    assert {m.task for m in plan.missing} == set(definition.TASKS) - set(plan.present)
    assert all(m.obtain for m in plan.missing)  # each absent task says how to get it
    names = [name for name, _ in plan.items]
    assert names[:3] == plan.present and "bccd-wbc@perturbation=all" in names
    assert "sslseg-2=>bccd-wbc@classes=harmonised" in names and "bccd-wbc+sslseg-1+sslseg-2" in names
    assert len([n for n in names if "=>" in n]) == 6  # every ordered pair
    only = plan_suite(tmp_path / "data", ["sslseg-1", "sslseg-2"])
    assert [n for n, _ in only.items] == ["sslseg-1", "sslseg-2", "sslseg-1@perturbation=all",
                                          "sslseg-2@perturbation=all", "sslseg-1=>sslseg-2@classes=harmonised",
                                          "sslseg-2=>sslseg-1@classes=harmonised", "sslseg-1+sslseg-2"]


def test_list_says_what_is_here_and_how_to_get_the_rest(tmp_path):
    done = CliRunner().invoke(app, ["suite", "list", "--data-home", str(_data_home(tmp_path / "data"))])
    assert done.exit_code == 0, done.output
    assert f"3 of {len(definition.TASKS)} tasks have their data" in done.output
    assert "absent: acevedo: Download" in done.output
    wrong = CliRunner().invoke(app, ["suite", "run", "-e", "color-histogram", "-t", "nope", "--data-home",
                                     str(tmp_path / "data")])
    assert wrong.exit_code == 2 and "not a task of the suite" in wrong.output


def test_run_summaries_and_the_suite_view_at_1400_px(tmp_path, browser):  # noqa: F811
    home, results = _data_home(tmp_path / "data"), tmp_path / "results"
    done = CliRunner().invoke(app, ["suite", "run", "-e", "color-histogram", "-t", "bccd-wbc", "-t", "sslseg-2",
                                    "--data-home", str(home), "--results", str(results), "--no-progress"])
    assert done.exit_code == 0, done.output
    assert "suite [7/7" in done.output and "absent, skipped: acevedo" not in done.output
    summary = json.loads((results / "color-histogram" / "suite.summary.json").read_text())
    # (generated copies are subsets of the published sets: their columns say so, as on the board)
    assert summary["ranks"] == {"bccd-wbc (subset: 27 of 351 images)": 1, "sslseg-2 (subset: 26 of 100 images)": 1}
    assert summary["mean_rank"] == 1.0
    assert set(summary["results"]["bccd-wbc"]) == set(definition.CELL_PROTOCOLS)
    assert summary["results"]["bccd-wbc@perturbation=all"]["robustness"]["metric"] == "perturbed_f1"
    assert set(summary["results"]["bccd-wbc+sslseg-2"]) == set(definition.POOL_PROTOCOLS)
    assert summary["results"]["bccd-wbc+sslseg-2"]["robustness-index"]["metric"] == "robustness_index"
    assert "sslseg-2=>bccd-wbc@classes=harmonised" in summary["results"]
    record = json.loads((results / "color-histogram" / "bccd-wbc" / "linear.json").read_text())
    assert summary["results"]["bccd-wbc"]["linear"]["mean"] == record["metrics"]["mean"]["weighted_f1"]
    board = results / "leaderboard.html"
    html = board.read_text()
    for anchor in ('id="suite"', 'id="few-shot"', 'id="generalisation"', 'id="robustness"'):
        assert anchor in html
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(board.as_uri())
    rows = page.locator("#suite + p + p + div table tbody tr")
    assert rows.count() == 1 and "color-histogram" in rows.first.inner_text()
    found = page.evaluate(LAYOUT_CHECK)
    assert found == {"overflow": [], "overlaps": []}, found  # no table cut, no chart label on another
    suite_box = page.locator("#suite ~ div.scroll").first
    assert suite_box.evaluate("b => b.scrollWidth <= b.clientWidth + 1")
    # a second run keeps every current result
    again = CliRunner().invoke(app, ["suite", "run", "-e", "color-histogram", "-t", "bccd-wbc", "-t", "sslseg-2",
                                     "--data-home", str(home), "--results", str(results), "--no-progress"])
    assert again.exit_code == 0 and "recomputing" not in again.output, again.output


@pytest.mark.skipif(not os.environ.get("HEMABENCH_SUITE_DATA"),
                    reason="set HEMABENCH_SUITE_DATA to a data home holding real copies (e.g. BCCD_cropped, "
                           "segmentation_WBC) to plan the suite on them")
def test_the_plan_on_real_copies():
    plan = plan_suite(Path(os.environ["HEMABENCH_SUITE_DATA"]))
    assert plan.present and all(name in definition.TASKS for name in plan.present)


def test_docs_list_every_task_with_its_source_and_licence():
    from bench.suite import cards_markdown

    doc = (Path(__file__).resolve().parents[1] / "docs" / "suite.md").read_text()
    assert cards_markdown() in doc, "docs/suite.md: paste bench.suite.cards_markdown() into 'The tasks'"
    assert all(f"| `{name}` |" in doc for name in definition.TASKS)
