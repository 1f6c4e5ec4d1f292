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
        ("report.py", ("lightning_adapt.accounting", "lightning_adapt.icl.callback")),
        ("report_plots.py", ("lightning_adapt.accounting", "lightning_adapt.icl.callback")),
        ("accounting.py", ("lightning_adapt.icl",)),
        ("flops.py", ("lightning", "lightning_adapt.icl", "lightning_adapt.runs")),
    ],
)
def test_module_does_not_import(module, forbidden):
    found = sorted(m for m in imported_modules(PACKAGE / module) if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert not found, f"{module} imports {found}"
