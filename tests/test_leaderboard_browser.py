"""The generated page in headless Chromium (Debian's, installed by .ci/run): rows, sorting, escaping."""

import shutil

import pytest

from leaderboard.tables import read_results, render
from tests.test_leaderboard import _record, _write

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def page_file(tmp_path):
    for name, score in (('<img src=x onerror="window.pwned=1">', 0.4), ("zeta", 0.9), ("alpha", 0.6)):
        _write(tmp_path / "r", _record(name, "t1", "knn-20", score))
    html = tmp_path / "board.html"
    html.write_text(render(read_results(tmp_path / "r"), "html", n_boot=0))
    return html


def test_page_in_headless_chromium(page_file):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed here (.ci/run installs Debian's chromium where apt can)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) is not installed")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
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
        browser.close()
