import json

import pytest

from leaderboard.tables import ResultsError, main_table, read_results, render


def _record(extractor, task, protocol, f1, std=0.01):
    metrics = {m: f1 for m in ("weighted_f1", "accuracy", "balanced_accuracy")} | {"macro_auroc": None}
    return {
        "extractor": {"name": extractor},
        "task": {"task": task},
        "protocol": {"name": protocol},
        "metrics": {"per_fold": [{}, {}], "mean": metrics, "std": {k: std for k in metrics}, "main": "weighted_f1"},
        "warnings": [],
    }


def _write(root, record):
    path = root / record["extractor"]["name"] / record["task"]["task"] / f"{record['protocol']['name']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_table_from_hand_made_results(tmp_path):
    _write(tmp_path, _record("b-model", "t1", "knn-20", 0.5))
    _write(tmp_path, _record("a-model", "t1", "knn-20", 0.8123))
    _write(tmp_path, _record("a-model", "t2", "linear", 0.7))
    (tmp_path / "notes.json").write_text('{"not": "a result"}')
    results = read_results(tmp_path)
    assert len(results) == 3
    table = main_table(results)
    assert table.loc["a-model", "t1 / knn-20"] == "81.2 ± 1.0"
    assert table.loc["b-model", "t2 / linear"] == "—"  # missing stays missing
    assert "| a-model" in render(results, "md")
    assert render(results, "csv").splitlines()[0].startswith("extractor,task,protocol")


def test_bad_results_folder_errors(tmp_path):
    with pytest.raises(ResultsError, match="does not exist"):
        read_results(tmp_path / "absent")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ResultsError, match="broken.json"):
        read_results(tmp_path)


def test_markdown_board_has_ranks_and_intervals_from_predictions(tmp_path):
    import pandas as pd

    for name, wrong in (("good", 2), ("bad", 6)):
        record = _record(name, "t1", "knn-20", 1 - wrong / 20)
        _write(tmp_path, record)
        labels = [i % 2 for i in range(20)]
        preds = [1 - y if i < wrong else y for i, y in enumerate(labels)]
        pd.DataFrame({"path": [f"{i}.png" for i in range(20)], "fold": 0, "label": labels, "prediction": preds}).to_csv(
            tmp_path / name / "t1" / "knn-20.predictions.csv", index=False)
    text = render(read_results(tmp_path), "md", n_boot=200)
    section = text.split("### knn-20")[1]
    assert section.index("| good") < section.index("| bad")  # ranked, best first
    assert "90.0 [" in section and "70.0 [" in section
    csv = render(read_results(tmp_path), "csv", n_boot=50)
    assert "ci_low" in csv.splitlines()[0]


def test_reported_rows_are_shown_apart_and_check_detects_drift(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app
    from leaderboard.paper import paper_rows

    rows = paper_rows()
    assert rows.loc[(rows.extractor == "dinobloom-g") & (rows.task == "acevedo") & (rows.protocol == "knn-20"),
                    "weighted_f1_mean"].item() == pytest.approx(0.914)
    _write(tmp_path / "r", _record("mine", "acevedo", "knn-20", 0.5))
    board = tmp_path / "board.md"
    runner = CliRunner()
    assert runner.invoke(app, ["leaderboard", "--results", str(tmp_path / "r"), "--out", str(board)]).exit_code == 0
    text = board.read_text()
    measured, reported = text.split("## Reported in the paper")
    assert "dinobloom-g" not in measured and "| dinobloom-g" in reported and "91.4" in reported
    ok = runner.invoke(app, ["leaderboard", "--results", str(tmp_path / "r"), "--out", str(board), "--check"])
    assert ok.exit_code == 0, ok.output
    _write(tmp_path / "r", _record("other", "acevedo", "knn-20", 0.6))
    stale = runner.invoke(app, ["leaderboard", "--results", str(tmp_path / "r"), "--out", str(board), "--check"])
    assert stale.exit_code == 1 and "differs" in stale.output


def test_html_page_is_self_contained_escaped_and_complete(tmp_path):
    import re

    hostile = '<img src=x onerror="alert(1)">'
    for name, score in ((hostile, 0.4), ("plain", 0.7)):
        _write(tmp_path, _record(name, "t1", "knn-20", score))
    # a trainer export's results carry the iteration: the page draws the curve
    for iteration, score in ((0, 0.5), (100, 0.6)):
        record = _record(f"trained-{iteration}", "t1", "knn-20", score)
        record["extractor"]["metadata"] = {"training": {"iteration": iteration, "run": "runs/tiny"}}
        _write(tmp_path, record)
    page = render(read_results(tmp_path), "html", n_boot=0)
    assert hostile not in page and escape_text(hostile) in page
    assert page.count('<tr class="result">') == 4
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)  # nothing fetched from the network
    assert "Training curves" in page and "runs/tiny" in page
    assert "Reported in the paper" in page and "91.4" in page


def escape_text(text):
    from html import escape

    return escape(text)


def test_compare_command(tmp_path):
    import pandas as pd
    from typer.testing import CliRunner

    from bench.cli import app

    labels = [i % 3 for i in range(90)]
    for name, wrong in (("a", 5), ("b", 30)):
        _write(tmp_path, _record(name, "t1", "knn-20", 0.5))
        preds = [(y + 1) % 3 if i < wrong else y for i, y in enumerate(labels)]
        pd.DataFrame({"path": [f"{i}.png" for i in range(90)], "fold": 0, "label": labels, "prediction": preds}).to_csv(
            tmp_path / name / "t1" / "knn-20.predictions.csv", index=False)
    done = CliRunner().invoke(app, ["compare", "a", "b", "-t", "t1", "-p", "knn-20", "--results", str(tmp_path),
                                    "--metric", "accuracy", "--bootstrap", "300"])
    assert done.exit_code == 0, done.output
    assert "a - b = +27.78 points" in done.output
    missing = CliRunner().invoke(app, ["compare", "a", "zz", "-t", "t1", "-p", "knn-20", "--results", str(tmp_path)])
    assert missing.exit_code == 1 and "no predictions for zz" in missing.output


def test_training_warnings_count_in_the_warnings_column(tmp_path):
    collapsed = _record("trained:run/exports/teacher_0001000.pth", "t1", "knn-20", 0.4)
    collapsed["warnings"] = ["fold 1: something"]
    collapsed["extractor"]["metadata"] = {"training": {"iteration": 1000, "run": "run",
                                                       "warnings": ["the DINO head's outputs have been uniform"]}}
    _write(tmp_path, collapsed)
    _write(tmp_path, _record("plain", "t1", "knn-20", 0.5))
    results = read_results(tmp_path).set_index("extractor")
    assert results.loc["trained:run/exports/teacher_0001000.pth", "warnings"] == 2
    assert results.loc["plain", "warnings"] == 0
