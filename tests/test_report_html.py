"""report.html opened in a real headless browser (Debian's chromium): self-contained (no request leaves the file), its
title, the verdict and the timeline rendered, the tables sortable."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from lightning_adapt.verdict.report import write_report
from lightning_adapt.verdict.text import verdict
from tests.report_fixture import hand_built, with_sweep

WIDTH, HEIGHT = 1280, 1600


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless chromium on `page` (a file URL), with a profile of its own and every network request refused."""
    found = shutil.which("chromium")
    assert found, "chromium is missing: apt-get install -y chromium (.ci/run installs it)"
    command = [found, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
               "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[dict, Path]:
    report = with_sweep(hand_built())
    return report, write_report(report, tmp_path_factory.mktemp("out") / "report", [], False, "")


def test_report_html_needs_nothing_outside_itself(written):
    report, out = written
    text = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", text)  # every picture is a data URI
    assert "<link" not in text and "@import" not in text and "url(" not in text
    pictures = re.findall(r'<img src="data:image/png;base64,', text)
    assert len(pictures) == 4  # timeline, cost, data, forgetting: each drawn plot embedded


def test_chromium_renders_the_title_the_verdict_and_the_timeline(written, tmp_path):
    report, out = written
    page = tmp_path / "moved.html"  # away from the pictures written beside it
    page.write_text((out / "report.html").read_text())
    dom = chromium(page, tmp_path / "profile", "--dump-dom").stdout
    assert "<title>Adaptation report: tiny</title>" in dom and "<h1>Adaptation report: tiny</h1>" in dom
    for name, task in report["tasks"].items():
        assert f"<strong>{verdict(name, task)}</strong>" in dom
    timeline = re.search(r'<img src="data:image/png;base64,[^"]+" alt="Timeline: [^"]*">', dom)
    assert timeline, "the timeline is not in the rendered page"
    assert '<table class="sortable">' in dom  # the data tables: click a header to sort
    shot = tmp_path / "shot.png"
    chromium(page, tmp_path / "profile", f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}",
             "--hide-scrollbars")
    image = (imread(shot)[..., :3] * 255).round().astype(np.uint8)  # height × width × RGB
    assert image.shape == (HEIGHT, WIDTH, 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 500  # text, plots and their colours: not a blank page
    plot_part = image[HEIGHT // 3:]  # below the verdict: the timeline's coloured lines
    r, g, b = plot_part[..., 0].astype(int), plot_part[..., 1].astype(int), plot_part[..., 2].astype(int)
    assert ((r > 200) & (g < 150) & (b < 80)).any(), "no orange arm line rendered"


def test_a_click_on_a_column_header_sorts_the_table(written, tmp_path):
    _, out = written
    clicks = ('<script>var th = Array.from(document.querySelectorAll("table.sortable")).pop().tHead.rows[0].cells[4];'
              "th.click(); th.click();</script>")  # the runs table's wall time, twice: longest first
    page = tmp_path / "clicked.html"
    page.write_text((out / "report.html").read_text().replace("</body>", clicks + "</body>"))
    dom = chromium(page, tmp_path / "profile", "--dump-dom").stdout
    runs = dom[dom.index("<h2>Runs</h2>"):]
    assert runs.index("<code>/runs/cpt/logs</code>") < runs.index("<code>/runs/icl/logs</code>")  # 112.0 s, 20.0 s
    page.write_text((out / "report.html").read_text())
    runs = chromium(page, tmp_path / "profile", "--dump-dom").stdout
    runs = runs[runs.index("<h2>Runs</h2>"):]
    assert runs.index("<code>/runs/icl/logs</code>") < runs.index("<code>/runs/cpt/logs</code>")  # as written
