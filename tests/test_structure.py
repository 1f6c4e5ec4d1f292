"""The import graph the design asks for: no import cycle, our own modules imported at the top only, every import
going down the layer order below (or within a package); the report reads run records without importing callbacks,
and the accounting callback knows nothing of ICL. The graph is read by scripts/architecture.py."""

import ast
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "lightning_adapt"


def load_architecture():
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "scripts" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


architecture = load_architecture()

LAYERS = [
    ["core"],  # atomic writes and output folders, checks of a setting's choices, plugins found by entry point
    ["techniques"],  # adaptation techniques (LoRA, Adapter V2): what each adds to a LitGPT model and trains
    ["model"],  # a LitGPT checkpoint folder loaded (config, tokenizer, weights), quantization, training checkpoints read
    ["distributed"],  # the sharding strategies (FSDP2, FSDP1, DeepSpeed ZeRO), which a run may use, gathering shards
    ["data"],  # data modules: instructions, text corpora, packing, resumable loading, the built-in data
    ["configs"],  # the shipped YAML configs, named `builtin:COMMAND/NAME.yaml` from any folder
    ["record"],  # the run record: its metric keys and files, accounting, FLOPs, predictions
    ["formats"],  # export formats (LitGPT, Hugging Face, PEFT, plugins') and what a run exports when fit ends
    ["methods"],  # the training modules (fine-tuning, CPT), their optimization, checkpoints and export
    ["icl"],  # in-context learning: task specs, prompts, tokenizing, scoring, the ICLEvaluation callback
    ["verdict"],  # the comparison report: runs read back, intervals, summaries, plots, the recommendation
    ["estimate"],  # a run's memory, FLOPs and time predicted before it starts
    ["compare"],  # the compare command: plans and runs ICL, fine-tuning and CPT, then reports
    ["cli", "testing", "__init__", "__main__"],  # entry points: the command line, test helpers, the public API
]
"""The layers of lightning_adapt, lowest first: a module imports from its own package or an earlier layer only."""


def package_graph(root: Path) -> tuple[dict, dict[str, set[str]]]:
    modules = architecture.read_package(root)
    return modules, architecture.import_graph(modules)


def test_no_import_cycles():
    _, graph = package_graph(PACKAGE)
    assert not architecture.cycles(graph), f"import cycles: {architecture.cycles(graph)}"


def test_our_own_modules_are_imported_at_the_top_only():
    modules, _ = package_graph(PACKAGE)
    found = [f"{name}:{line} imports {target}" for name, line, target in architecture.own_local_imports(modules)]
    assert not found, "imports of our own modules inside functions (only optional dependencies belong there):\n" + \
        "\n".join(found)


def test_every_import_goes_to_its_own_package_or_a_lower_layer():
    modules, graph = package_graph(PACKAGE)
    assert not architecture.unplaced(modules, LAYERS), "packages missing from LAYERS"
    upward = [f"{name} -> {target}" for name, target in architecture.layer_violations(graph, LAYERS)]
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_the_checks_see_a_cycle_through_type_checking_a_local_import_and_an_upward_import(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "",
        "low/__init__.py": "",
        "low/a.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg.low.b import B\n",
        "low/b.py": "from pkg.low import a\n\n\ndef f():\n    from pkg.high import c\n    import json\n",
        "high/__init__.py": "",
        "high/c.py": "VALUE = 1\n",
    })
    modules, graph = package_graph(package)
    assert architecture.cycles(graph) == [["pkg.low.a", "pkg.low.b"]]
    assert architecture.own_local_imports(modules) == [("pkg.low.b", 5, "pkg.high.c")]  # json is not ours
    assert architecture.layer_violations(graph, [["low"], ["high"]]) == [("pkg.low.b", "pkg.high.c")]
    assert architecture.layer_violations(graph, [["high", "low"]]) == []  # one layer: no import goes up
    assert architecture.unplaced(modules, [["low"]]) == ["__init__", "high"]


def test_a_module_importing_its_own_packages_init_back_is_a_cycle(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "",
        "part/__init__.py": "from pkg.part.module import VALUE\n",
        "part/module.py": "from pkg.part import OTHER\n",
    })
    _, graph = package_graph(package)
    assert architecture.cycles(graph) == [["pkg.part", "pkg.part.module"]]


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


def test_the_architecture_command_prints_the_measurements():
    """docs/development.md "Architecture": `python scripts/architecture.py`, run as written from outside the checkout."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "architecture.py")], capture_output=True, text=True,
                            cwd=Path(tempfile.gettempdir()), check=True)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("modules: ") and "import cycles: 0" in lines
    assert any(line.startswith("imports inside functions: ") and line.endswith("(0 of the package's own modules)")
               for line in lines)
    assert lines[lines.index("largest functions (lines):") + 1].strip().split()[0].isdigit()
