"""The import graph the design asks for: the report reads run records without importing callbacks, and the
accounting callback knows nothing of ICL."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "lightning_adapt"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


@pytest.mark.parametrize(
    "module, forbidden",
    [
        ("verdict/report.py", ("lightning_adapt.record.accounting", "lightning_adapt.icl.callback")),
        ("verdict/plots.py", ("lightning_adapt.record.accounting", "lightning_adapt.icl.callback")),
        ("record/accounting.py", ("lightning_adapt.icl",)),
        ("record/flops.py", ("lightning", "lightning_adapt.icl", "lightning_adapt.record.runs")),
    ],
)
def test_module_does_not_import(module, forbidden):
    found = sorted(m for m in imported_modules(PACKAGE / module) if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert not found, f"{module} imports {found}"


def loads_modules_by_name(path: Path) -> list[str]:
    """Calls in a file that import a module named by a string: importlib.import_module and __import__."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr == "import_module":
            found.append(f"line {node.lineno}: .import_module")
        elif isinstance(node, ast.Name) and node.id in ("import_module", "__import__"):
            found.append(f"line {node.lineno}: {node.id}")
        elif isinstance(node, ast.ImportFrom) and node.module == "importlib":
            found += [f"line {node.lineno}: from importlib import {a.name}" for a in node.names if a.name == "import_module"]
    return found


def test_only_plugin_entry_points_load_modules_by_name():
    found = {
        str(path.relative_to(PACKAGE)): hits
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).as_posix() != "core/plugins.py" and (hits := loads_modules_by_name(path))
    }
    assert not found, f"modules loaded by a string outside core/plugins.py: {found}"


def test_the_check_sees_a_string_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import importlib\n\ndef f(name):\n    return importlib.import_module(name)\n")
    assert loads_modules_by_name(sample) == ["line 4: .import_module"]
