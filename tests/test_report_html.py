"""reports/index.html in headless Chromium: it renders (not blank), with the summary, every table,
its cells' validation curves and every figure.

Needs Debian's `chromium`. Skipped with a reason where it is absent, failed where CI is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import pytest
from report_fixtures import table1_rows, write_artifacts, write_results

from bench import curves, tables
from bench.report import write_report

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("CI must have headless Chromium (Debian package `chromium`)")
    pytest.skip("chromium not installed (apt-get install chromium)")


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.headings: list[str] = []
        self.images: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag in ("h1", "h2", "h3"):
            self._in = tag
            self.headings.append("")
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in:
            self.headings[-1] += data


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("html")
    rows = table1_rows([339.0, 340.0, 342.0], diverged_seeds=(3,))
    results = write_results(root / "results", rows)
    write_artifacts(results, rows, n=300, validation=lambda seed: {
        "validation_parzen_ll": [300.0 + seed, 310.0 + seed, 311.0 + seed]})
    write_report(results, root / "reports")
    return root / "reports" / "index.html"


def test_index_has_every_table_and_figure(index):
    page = _Page()
    page.feed(index.read_text())
    for spec in tables.TABLES.values():
        assert spec.title in page.headings
    assert "Figures" in page.headings and "Not run yet" in page.headings
    assert "Caveats in the code" in page.headings and "Summary: every cell" in page.headings
    assert page.headings.index("Summary: every cell") < page.headings.index(
        tables.TABLES["table1"].title)
    assert sorted(page.images) == ["figures/curve_table1_mnist_10k.png",
                                   "figures/table1_curves.png", "figures/table1_latents.png"]
    for src in page.images:
        assert (index.parent / src).is_file()


def _run(chromium: str, args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def test_screenshot_is_not_blank(index, tmp_path):
    chromium = _chromium()
    shot = tmp_path / "shot.png"
    done = _run(chromium, [f"--screenshot={shot}", "--window-size=1200,2000",
                           index.as_uri()], tmp_path / "profile")
    assert shot.exists(), done.stderr[-2000:]
    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels.var() > 1e-3
    assert (pixels.min(axis=-1) < 0.5).mean() > 0.005  # dark text on the page


def test_dom_as_rendered(index, tmp_path):
    chromium = _chromium()
    done = _run(chromium, ["--dump-dom", index.as_uri()], tmp_path / "profile")
    dom = done.stdout
    assert "Table 1: Parzen-window log-likelihood" in dom, done.stderr[-2000:]
    assert dom.count('class="paper-table"') == len(tables.TABLES)
    assert 'src="figures/table1_latents.png"' in dom
    assert 'src="figures/curve_table1_mnist_10k.png"' in dom
    assert "AAE (ours)" in dom and "not run" in dom
    summary = dom[dom.index('data-table="summary"'):dom.index("</table>", dom.index('data-table="summary"'))]
    assert summary.count("<tr") == 1 + sum(len(s.columns) for s in tables.TABLES.values())
    assert "340.3 ± 0.9 (s.e., n=3)" in summary and "cpu x3" in summary
    assert curves.FLAT in summary  # +1 nat at the end is within the s.e. over test points
