import io
import json
import re

import pandas as pd
import pytest

from leaderboard.tables import ResultsError, main_table, read_results, render
from tests.conftest import scored_by


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
    problems = []
    results = read_results(tmp_path, problems)
    assert len(results) == 3
    # a JSON file that is no record is never silently passed over (issue 26): one line naming it
    assert len(problems) == 1 and "notes.json is JSON but not a result record" in problems[0]
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
        labels = [i % 2 for i in range(20)]
        preds = [1 - y if i < wrong else y for i, y in enumerate(labels)]
        table = pd.DataFrame({"path": [f"{i}.png" for i in range(20)], "fold": 0, "label": labels, "prediction": preds})
        _write(tmp_path, scored_by(_record(name, "t1", "knn-20", 1 - wrong / 20), table))
        table.to_csv(tmp_path / name / "t1" / "knn-20.predictions.csv", index=False)
    text = render(read_results(tmp_path), "md", n_boot=200)
    section = text.split("### knn-20")[1]
    assert section.index("| good") < section.index("| bad")  # ranked, best first
    assert "90.0 [" in section and "70.0 [" in section
    csv = render(read_results(tmp_path), "csv", n_boot=50)
    assert "ci_low" in csv.splitlines()[0]


def test_reported_rows_are_shown_apart_and_check_detects_drift(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app
    from leaderboard.paper import LABEL_SET_NOTE, PAPER_CSV, paper_rows

    rows = paper_rows()
    assert rows.loc[(rows.extractor == "dinobloom-g") & (rows.task == "acevedo-11") & (rows.protocol == "knn-20"),
                    "weighted_f1_mean"].item() == pytest.approx(0.914)
    # the paper's Acevedo is the 11-class task (docs/tasks.md): no paper row under the 8 folders
    assert "acevedo" not in set(rows["task"]) and (pd.read_csv(PAPER_CSV)["task"] == "acevedo").sum() == 72
    assert len(rows[rows.task == "acevedo-11"]) == 36
    _write(tmp_path / "r", _record("mine", "acevedo", "knn-20", 0.5))
    board = tmp_path / "board.md"
    runner = CliRunner()
    args = ["leaderboard", "--results", str(tmp_path / "r"), "--out", str(board), "--bootstrap", "0"]
    assert runner.invoke(app, args).exit_code == 0
    text = board.read_text()
    measured, reported = text.split("## Reported in the paper")
    assert "dinobloom-g" not in measured and "| dinobloom-g" in reported and "91.4" in reported
    assert LABEL_SET_NOTE.split(":")[0] in reported and "acevedo-11" in reported.split("### knn-20")[1]
    ok = runner.invoke(app, args + ["--check"])
    assert ok.exit_code == 0, ok.output
    _write(tmp_path / "r", _record("other", "acevedo", "knn-20", 0.6))
    stale = runner.invoke(app, args + ["--check"])
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
    assert "bootstrap p < 1/150 (90 units, 300 resamples)" in done.output  # never "p = 0.0000"
    same = CliRunner().invoke(app, ["compare", "a", "a", "-t", "t1", "-p", "knn-20", "--results", str(tmp_path),
                                    "--bootstrap", "300"])
    assert same.exit_code == 0 and "bootstrap p = 1.0000" in same.output
    missing = CliRunner().invoke(app, ["compare", "a", "zz", "-t", "t1", "-p", "knn-20", "--results", str(tmp_path)])
    assert missing.exit_code == 1 and "no predictions for zz" in missing.output
    (tmp_path / "b" / "t1" / "knn-20.predictions.csv").write_text("garbage\n")
    broken = CliRunner().invoke(app, ["compare", "a", "b", "-t", "t1", "-p", "knn-20", "--results", str(tmp_path)])
    assert broken.exit_code == 1 and "lacks column(s) ['label', 'prediction']" in broken.output
    assert "Traceback" not in broken.output


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


# -- issue 11: nothing silently wrong ----------------------------------------------------------------------
def _section(text, protocol):
    return text.split(f"### {protocol}: ranked")[1].split("\n### ")[0].split("\n## ")[0]


def _rows(section):
    """The data rows of the first Markdown table in ``section``, as lists of cells."""
    lines = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def test_borda_ranks_only_extractors_that_share_every_task(tmp_path):
    # "only-synthetic" ran one easy task and is best there: it must not rank above the best acevedo model
    for name, acevedo, synthetic in (("best-acevedo", 0.9, 0.5), ("second", 0.8, 0.55), ("only-synthetic", None, 0.99)):
        if acevedo is not None:
            _write(tmp_path, _record(name, "acevedo", "knn-20", acevedo))
        _write(tmp_path, _record(name, "synthetic-wbc", "knn-20", synthetic))
    rows = _rows(_section(render(read_results(tmp_path), "md", n_boot=0), "knn-20"))
    assert [r[0] for r in rows] == ["best-acevedo", "second", "only-synthetic"]
    borda = {r[0]: r[-1] for r in rows}
    assert borda == {"best-acevedo": "1", "second": "1", "only-synthetic": "—"}
    only = rows[-1]
    assert "99.0 (#1)" in only and only[-2] == "—"  # its per-task rank is shown, no mean, no Borda


def _sized(record, **task):
    record["task"].update(task)
    return record


def test_a_subset_result_is_marked_and_never_ranked_with_full_set_results(tmp_path):
    import pandas as pd

    _write(tmp_path / "a", _sized(_record("on-subset", "acevedo", "knn-20", 0.95), n_samples=4000,
                                  full_set_images=17092))
    _write(tmp_path / "b", _sized(_record("on-full", "acevedo", "knn-20", 0.90), n_samples=17092,
                                  full_set_images=17092))
    # acevedo-11 keeps fewer samples than the folders hold: the images found decide, not the samples kept
    _write(tmp_path / "c", _sized(_record("on-full", "acevedo-11", "knn-20", 0.8), n_samples=16900,
                                  n_images_found=17092, full_set_images=17092))
    _write(tmp_path / "d", _sized(_record("on-subset", "acevedo-11", "knn-20", 0.8), n_samples=3969,
                                  n_images_found=4000, full_set_images=17092))
    results = read_results(tmp_path)
    mark = "subset: 4,000 of 17,092 images"
    assert dict(zip(results["extractor"] + "/" + results["task"], results["subset"])) == {
        "on-full/acevedo": "", "on-subset/acevedo": mark, "on-full/acevedo-11": "", "on-subset/acevedo-11": mark}
    text = render(results, "md", n_boot=0)
    table = main_table(results)
    assert table.loc["on-subset", f"acevedo ({mark}) / knn-20"] == "95.0 ± 1.0"
    assert table.loc["on-subset", "acevedo / knn-20"] == "—" and table.loc["on-full", "acevedo / knn-20"] == "90.0 ± 1.0"
    # in the ranked table the subset is its own task: neither extractor has every task, so neither gets Borda
    rows = _rows(_section(text, "knn-20"))
    assert {r[0]: r[-1] for r in rows} == {"on-full": "—", "on-subset": "—"}
    assert f"acevedo ({mark})" in _section(text, "knn-20").splitlines()[2]
    csv = pd.read_csv(io.StringIO(render(results, "csv", n_boot=0)))
    assert csv.set_index(["extractor", "task"])["subset"].fillna("").to_dict()[("on-subset", "acevedo")] == mark
    page = render(results, "html", n_boot=0)
    assert f'<th colspan="2" class="group">acevedo ({mark})</th>' in page  # its own column group in the grid
    assert f"acevedo ({mark}) / knn-20" in page


def test_a_result_on_another_split_than_the_pinned_one_is_kept_apart(tmp_path):
    pinned = "a" * 64
    _write(tmp_path / "a", _sized(_record("canonical", "synthetic-wbc", "knn-20", 0.7), split_sha256=pinned,
                                  canonical_split_sha256=pinned))
    _write(tmp_path / "b", _sized(_record("other-folds", "synthetic-wbc", "knn-20", 0.9), split_sha256="b" * 64,
                                  canonical_split_sha256=pinned))
    _write(tmp_path / "c", _sized(_record("unpinned", "acevedo", "knn-20", 0.9), split_sha256="c" * 64))
    results = read_results(tmp_path)
    assert dict(zip(results["extractor"], results["subset"])) == {
        "canonical": "", "other-folds": "not the canonical split", "unpinned": ""}
    table = main_table(results)
    assert table.loc["other-folds", "synthetic-wbc (not the canonical split) / knn-20"] == "90.0 ± 1.0"
    assert table.loc["other-folds", "synthetic-wbc / knn-20"] == "—"


def test_a_bmc_result_on_the_generated_rule_is_not_the_canonical_split(tmp_path):
    """BMC's canonical split is a rule (the authors' test list where the copy holds it): a full-set result whose
    copy followed the generated rule is kept apart; one on the authors' list, or on a subset, is marked as usual."""
    from tasks.bmc import AUTHORS_RULE, GENERATED_RULE

    common = {"full_set_images": 171_374, "canonical_split_rule": AUTHORS_RULE}
    _write(tmp_path / "a", _sized(_record("authors", "bmc", "knn-20", 0.7), n_images_found=171_374,
                                  split_rule=AUTHORS_RULE, **common))
    _write(tmp_path / "b", _sized(_record("generated", "bmc", "knn-20", 0.8), n_images_found=171_374,
                                  split_rule=GENERATED_RULE, **common))
    _write(tmp_path / "c", _sized(_record("part", "bmc", "knn-20", 0.9), n_images_found=1_000,
                                  split_rule=GENERATED_RULE, **common))
    results = read_results(tmp_path)
    assert dict(zip(results["extractor"], results["subset"])) == {
        "authors": "", "generated": "not the canonical split", "part": "subset: 1,000 of 171,374 images"}


def test_the_fold_spread_is_stated_beside_the_papers_rows(tmp_path):
    from leaderboard.tables import fold_spread

    _write(tmp_path / "a", _record("vit", "acevedo", "knn-20", 0.652))
    _write(tmp_path / "b", _record("vit", "acevedo@folds=authors", "knn-20", 0.685))
    _write(tmp_path / "c", _record("vit", "bmc", "knn-20", 0.7))
    results = read_results(tmp_path)
    spread = fold_spread(results)
    assert len(spread) == 1 and spread.iloc[0]["spread"] == pytest.approx(3.3)
    assert spread.iloc[0]["schemes"] == {"portable": 0.652, "authors": 0.685}
    sentence = "the fold scheme alone moves a result by up to 3.3 points (vit / acevedo / knn-20: authors 68.5, " \
               "portable 65.2"
    assert sentence in render(results, "md", n_boot=0).replace("\\", "")
    assert sentence in render(results, "html", n_boot=0)


def test_tasks_with_a_published_size_record_it():
    from tasks import get_task

    for name, size in (("acevedo", 17092), ("acevedo-11", 17092), ("bmc", 171374)):
        task = get_task(name)
        assert task.card.full_set_images == size and task.settings()["full_set_images"] == size
    assert "full_set_images" not in get_task("synthetic-wbc").settings()


def test_markdown_escapes_hostile_names(tmp_path):
    names = ("imagefolder:/data/a|b", "x<script>alert(1)</script>", "two\nlines", "[link](javascript:alert(1))")
    for i, name in enumerate(names):
        _write(tmp_path, _record(name, "imagefolder:/d|x<b>", "knn|20", 0.5 + i / 10))
    text = render(read_results(tmp_path), "md", n_boot=0)
    assert "<script>" not in text and "<b>" not in text and "&lt;script&gt;" in text
    assert not re.search(r"(?<!\\)\]\(javascript", text) and "\\[link\\](javascript" in text  # no link
    for block in text.split("\n\n"):
        table = [line for line in block.splitlines() if line.startswith("|")]
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in table}
        assert len(widths) <= 1, block  # every row of every table has as many cells as its header
    rows = _rows(_section(text, "knn\\|20"))
    assert sorted(r[0] for r in rows) == sorted(["imagefolder:/data/a\\|b", "x&lt;script&gt;alert(1)&lt;/script&gt;",
                                                 "two lines", "\\[link\\](javascript:alert(1))"])


def test_out_is_replaced_atomically(tmp_path, monkeypatch):
    import errno
    import os

    from typer.testing import CliRunner

    from bench.cli import app

    _write(tmp_path / "r", _record("mine", "t1", "knn-20", 0.5))
    board = tmp_path / "board.md"
    board.write_text("the previous board\n")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)  # the disk fills while the board is written
    args = ["leaderboard", "--results", str(tmp_path / "r"), "--out", str(board), "--bootstrap", "0"]
    failed = CliRunner().invoke(app, args)
    assert failed.exit_code == 1 and "no space left" in failed.output and "Traceback" not in failed.output
    assert board.read_text() == "the previous board\n"
    assert not list(tmp_path.glob(".board.md*"))  # no half-written temporary left behind
    monkeypatch.undo()
    # a name UTF-8 cannot encode (a lone surrogate from a JSON escape) is written escaped, not half a board
    (tmp_path / "r" / "odd.json").write_text(json.dumps(_record("bad\udc80name", "t1", "knn-20", 0.4)))
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "bad\\udc80name" in board.read_text() and "| mine" in board.read_text()


def test_unreadable_files_are_reported_and_the_board_still_builds(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    results = tmp_path / "r"
    for name, score in (("no-csv", 0.7), ("bad-csv", 0.6)):
        _write(results, _record(name, "t1", "knn-20", score))
    good = pd.DataFrame({"path": [f"{i}.png" for i in range(10)], "fold": 0, "label": [0, 1] * 5,
                         "prediction": [0, 1] * 4 + [1, 0]})  # 80 % right
    _write(results, scored_by(_record("good", "t1", "knn-20", 0.8), good))
    good.to_csv(results / "good" / "t1" / "knn-20.predictions.csv", index=False)
    (results / "bad-csv" / "t1" / "knn-20.predictions.csv").write_bytes(b"\xff\xfe\x00garbage")
    (results / "broken" / "t1").mkdir(parents=True)
    (results / "broken" / "t1" / "knn-20.json").write_text("{")
    future = _record("future", "t1", "knn-20", 0.9) | {"schema_version": 7}
    _write(results, future)
    board = tmp_path / "board.md"
    args = ["leaderboard", "--results", str(results), "--out", str(board), "--bootstrap", "20"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0 and "Traceback" not in done.output, done.output
    warnings = [line for line in done.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 4, done.output
    for culprit in ("broken/t1/knn-20.json", "future/t1/knn-20.json", "no-csv/t1/knn-20.predictions.csv",
                    "bad-csv/t1/knn-20.predictions.csv"):
        assert sum(culprit in line for line in warnings) == 1, culprit
    text = board.read_text()
    rows = {r[0]: r for r in _rows(_section(text, "knn-20"))}
    # missing predictions: the score is shown, without an interval; unreadable ones: the record cannot be re-scored
    # from them, so it is not shown (issue 26)
    assert set(rows) == {"good", "no-csv"}
    assert rows["no-csv"][1] == "70.0 (#2)"
    assert "bad-csv/t1/knn-20.json is not shown" in text
    assert rows["good"][1].startswith("80.0 [")
    assert "## Problems with the results folder (4)" in text and "broken/t1/knn-20.json" in text
    checked = CliRunner().invoke(app, args + ["--check"])
    assert checked.exit_code == 1 and "has 4 problem(s)" in checked.output


def test_the_same_result_in_two_folders_is_one_row_and_reported(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    old, new = _record("x", "t1", "knn-20", 0.5), _record("x", "t1", "knn-20", 0.7)
    old["created"], new["created"] = "2024-01-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00"
    _write(tmp_path / "r", old)
    _write(tmp_path / "r" / "backup", new)
    problems = []
    results = read_results(tmp_path / "r", problems)
    assert len(results) == 1 and results.loc[0, "weighted_f1_mean"] == 0.7
    assert len(problems) == 1 and "backup/x/t1/knn-20.json" in problems[0] and "r/x/t1/knn-20.json" in problems[0]
    with pytest.raises(ResultsError, match="duplicate"):
        read_results(tmp_path / "r")
    done = CliRunner().invoke(app, ["leaderboard", "--results", str(tmp_path / "r"), "--bootstrap", "0"])
    assert done.exit_code == 0 and "Traceback" not in done.output, done.output
    assert sum(line.startswith("warning: duplicate") for line in done.output.splitlines()) == 1
    assert "70.0 ± 1.0" in done.output and "50.0" not in done.output.split("## Reported")[0]


def test_domain_shift_results_form_a_matrix_with_the_in_domain_result_on_its_diagonal():
    from leaderboard.generalisation import matrices_md, shift_matrices
    from leaderboard.tables import md_text

    rows = [("a", 0.9), ("b", 0.8), ("a=>b", 0.4), ("b=>a", 0.3), ("a=>c", 0.2), ("a=>b@classes=shared", 0.6)]
    results = pd.DataFrame({"extractor": "x", "task": [t for t, _ in rows], "protocol": "knn-20",
                            "main_metric": "weighted_f1", "weighted_f1_mean": [v for _, v in rows]})
    matrices = shift_matrices(results)
    assert sorted(matrices) == [("knn-20", "", "x"), ("knn-20", "@classes=shared", "x")]
    plain = matrices[("knn-20", "", "x")]
    assert list(plain.index) == ["a", "b", "c"] and list(plain.columns) == ["a", "b", "c"]
    assert (plain.loc["a", "a"], plain.loc["a", "b"], plain.loc["b", "a"], plain.loc["a", "c"]) == (0.9, 0.4, 0.3, 0.2)
    assert plain.loc["b", "b"] == 0.8 and pd.isna(plain.loc["c", "c"]) and pd.isna(plain.loc["c", "a"])
    assert matrices[("knn-20", "@classes=shared", "x")].loc["a", "b"] == 0.6
    text = "\n".join(matrices_md(results, md_text))
    assert "## Cross-data-set generalisation" in text
    first = [line for line in text.splitlines() if line.startswith("| a ")][0]
    assert [cell.strip() for cell in first.strip("|").split("|")] == ["a", "90.0", "40.0", "20.0"]
    assert shift_matrices(results[~results["task"].str.contains("=>")]) == {}
    from leaderboard.generalisation import matrices_html

    page = matrices_html(results)
    assert 'id="generalisation"' in page and '<td class="num diag" data-value="0.9">90.0</td>' in page
    assert "x / knn-20 / @classes=shared" in page and matrices_html(results.iloc[:2]) == ""



def test_calibration_stands_beside_accuracy_for_results_that_hold_it():
    from leaderboard.calibration import calibration_html, calibration_md, calibration_tables
    from leaderboard.tables import md_text

    results = pd.DataFrame({"extractor": ["x", "x", "y"], "task": ["a", "b", "a"], "protocol": "linear",
                            "ece_mean": [0.05, None, 0.125], "accuracy_mean": [0.9, 0.8, 0.75]})
    (table,) = calibration_tables(results).values()
    assert table.loc["x", "a"] == "5.0 (90.0)" and table.loc["y", "a"] == "12.5 (75.0)" and list(table.columns) == ["a"]
    assert "## Calibration" in "\n".join(calibration_md(results, md_text)) and 'id="calibration"' in calibration_html(results)
    assert calibration_tables(results.drop(columns="ece_mean")) == {}
