"""The generated page in headless Chromium (Debian's, installed by .ci/run): rows, sorting, escaping."""

import shutil

import numpy as np
import pytest

from leaderboard.tables import read_results, render
from tests.conftest import scored_by
from tests.test_leaderboard import _record, _write

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser():
    """Headless Chromium through Playwright; skipped with the reason where either is missing."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed here (.ci/run installs Debian's chromium where apt can)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) is not installed")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield launched
        launched.close()


@pytest.fixture
def page_file(tmp_path):
    for name, score in (('<img src=x onerror="window.pwned=1">', 0.4), ("zeta", 0.9), ("alpha", 0.6)):
        _write(tmp_path / "r", _record(name, "t1", "knn-20", score))
    html = tmp_path / "board.html"
    html.write_text(render(read_results(tmp_path / "r"), "html", n_boot=0))
    return html


def test_page_in_headless_chromium(page_file, browser):
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(page_file.as_uri())
    rows = page.locator("#results tbody tr")
    assert rows.count() == 3
    names = lambda: [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())]  # noqa: E731
    page.locator("#results th", has_text="mean").first.click()
    ascending = names()
    page.locator("#results th", has_text="mean").first.click()
    descending = names()
    assert descending[0] == "zeta" and ascending == descending[::-1]
    assert '<img src=x onerror="window.pwned=1">' in ascending  # shown as text
    assert page.evaluate("window.pwned === undefined") and not dialogs


LAYOUT_CHECK = """() => {
  const overflow = [];
  if (document.documentElement.scrollWidth > window.innerWidth) overflow.push('page');
  document.querySelectorAll('.scroll').forEach((box, i) => {
    if (box.scrollWidth > box.clientWidth + 1) overflow.push('table ' + i + ': ' + box.querySelector('table').id);
  });
  const overlaps = [];
  const boxes = (svg, sel) => Array.from(svg.querySelectorAll(sel)).map(e => [e, e.getBoundingClientRect()]);
  const hit = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  document.querySelectorAll('svg.chart').forEach(svg => {
    const texts = boxes(svg, 'text'), lines = boxes(svg, 'line');
    texts.forEach(([a, ra], i) => texts.slice(i + 1).forEach(([b, rb]) => {
      if (hit(ra, rb)) overlaps.push(a.textContent + ' / ' + b.textContent);
    }));
    texts.forEach(([a, ra]) => lines.forEach(([b, rb]) => { if (hit(ra, rb)) overlaps.push(a.textContent + ' / whisker'); }));
    const frame = svg.getBoundingClientRect();
    texts.forEach(([a, ra]) => { if (ra.right > frame.right + 0.5) overlaps.push(a.textContent + ' / cut at the edge'); });
  });
  return {overflow, overlaps};
}"""


@pytest.fixture
def full_board(tmp_path):
    """Results as a user has them after a day: plugin and trainer-export names, two tasks, three protocols with
    predictions (so intervals and whiskers), a subset, a training curve and a one-point one."""
    import pandas as pd

    root = tmp_path / "r"
    rng = np.random.default_rng(0)
    names = ["dinobloom-s", "resnet50", "my_extractor.py:SmallViT", "tiny@400", "a-very-long-extractor-name-from-a-plugin"]
    for e, name in enumerate(names):
        for task in ("acevedo", "bmc"):
            for protocol in ("knn-1", "knn-20", "linear"):
                score = 0.55 + 0.08 * e + 0.01 * len(protocol)
                record = _record(name, task, protocol, min(score, 0.99))
                if task == "bmc":
                    record["task"].update({"n_samples": 4000, "full_set_images": 171373})
                if name.startswith("tiny@"):
                    record["extractor"]["metadata"] = {"training": {"iteration": 400, "run": "runs/tiny"}}
                labels = rng.integers(0, 4, 200)
                preds = np.where(rng.random(200) < score, labels, (labels + 1) % 4)
                table = pd.DataFrame({"path": [f"{i}.png" for i in range(200)], "fold": np.arange(200) % 5,
                                      "label": labels, "prediction": preds})
                _write(root, scored_by(record, table))
                table.to_csv(root / name / task / f"{protocol}.predictions.csv", index=False)
    for iteration, score in ((1000, 0.6), (2000, 0.7), (3000, 0.72)):
        record = _record(f"run-b@{iteration}", "acevedo", "knn-20", score)
        record["extractor"]["metadata"] = {"training": {"iteration": iteration, "run": "runs/b"}}
        _write(root, record)
    html = tmp_path / "board.html"
    html.write_text(render(read_results(root), "html", n_boot=100))
    return html


def test_board_reads_like_table_2_and_fits_at_1400_and_800_px(full_board, tmp_path, browser):
    """The Table 2 view (extractors x task x protocol x metric, best per column marked, the paper's rows beneath
    in the same columns), no table hidden behind a scrollbar at 1,400 px, no page overflow at 800 px, no chart
    label over another or over a whisker; screenshots of both widths are taken and are not blank."""
    from PIL import Image

    for width in (1400, 800):
        page = browser.new_page(viewport={"width": width, "height": 1000})
        page.goto(full_board.as_uri())
        grid = page.locator("#grid")
        headers = grid.locator("thead th").all_inner_texts()
        assert "acevedo" in headers and any(h.startswith("bmc (subset: 4,000 of 171,373") for h in headers)
        assert headers.count("weighted F1") == headers.count("balanced acc.") == 6
        measured = grid.locator("tbody").first.locator("tr")
        assert measured.count() == 8  # 5 extractors + 3 trainer exports
        best = grid.locator("td.best")
        assert best.count() >= 12 and "a-very-long" in best.first.locator("xpath=..").inner_text()
        assert grid.locator("tbody.reported tr").count() > 5  # the paper's rows, same columns
        found = page.evaluate(LAYOUT_CHECK)
        if width == 1400:
            assert found["overflow"] == [], found
        else:
            assert "page" not in found["overflow"], found
        assert found["overlaps"] == [], found
        shot = tmp_path / f"board-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        with Image.open(shot) as image:
            assert image.size[0] == width and np.asarray(image.convert("L")).std() > 10
        page.close()
