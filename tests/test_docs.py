"""The user guide (docs/, mkdocs.yml) builds with warnings as errors, so a broken link, a page left out of the
navigation or a docstring of the public API that griffe cannot read fails the tests."""

import re
import subprocess
import sys
from pathlib import Path

import lightning_adapt

ROOT = Path(__file__).resolve().parents[1]


def test_the_guide_builds_strictly(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    api = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert 'id="lightning_adapt.FineTuning"' in api  # the reference was generated, not left as `:::` lines
    assert (site / "getting-started" / "index.html").is_file()


def test_the_api_reference_lists_every_public_name():
    documented = set(re.findall(r"^::: lightning_adapt\.(\w+)$", (ROOT / "docs/reference/api.md").read_text(), re.M))
    assert documented == set(lightning_adapt.__all__)
