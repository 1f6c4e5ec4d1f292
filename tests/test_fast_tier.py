"""scripts/fast_tier.py: a module counts as called only when a line inside one of its functions ran."""

import importlib.util
import sys
from pathlib import Path

import coverage
import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "fast_tier.py"


def load_script():
    spec = importlib.util.spec_from_file_location("fast_tier", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_module_only_imported_is_not_called(tmp_path, monkeypatch):
    if coverage.Coverage.current() is not None:
        pytest.skip("runs under scripts/fast_tier.py's own coverage, which a second measurement would interrupt")
    fast_tier = load_script()
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "called.py").write_text("def f():\n    return 1\n")
    (package / "imported.py").write_text("def g():\n    return 2\n")
    (package / "empty.py").write_text("X = 1\n")  # no function: nothing to call
    assert fast_tier.function_lines(package / "called.py") == {2}
    data_file = tmp_path / ".coverage"
    measured = coverage.Coverage(data_file=str(data_file), source=[str(package)])
    monkeypatch.syspath_prepend(str(tmp_path))
    measured.start()
    try:
        import pkg.called
        import pkg.imported  # noqa: F401

        pkg.called.f()
    finally:
        measured.stop()
        measured.save()
        for name in ("pkg", "pkg.called", "pkg.imported"):
            sys.modules.pop(name, None)
    monkeypatch.setattr(fast_tier, "ROOT", tmp_path)
    monkeypatch.setattr(fast_tier, "SOURCES", [package])
    assert fast_tier.uncalled_modules(data_file) == ["pkg/imported.py"]
