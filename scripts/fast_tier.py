"""The fast test tier: `pytest -m "not slow"`, timed, and a check that its tests call into every module.

    python scripts/fast_tier.py            # the tier under coverage: its time and every module none of it calls into
    python scripts/fast_tier.py --time     # the tier alone, timed as a developer runs it before a commit

A module counts as called when a line inside one of its functions ran in the pytest process (code that only
subprocesses run does not count; importing a module runs no function body). Exits 1 when a test fails or a module
is not called, and names the modules.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "lightning_adapt", *sorted(p.parent for p in (ROOT / "plugins").glob("*/*/__init__.py"))]
FAST = ["-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider"]


def function_lines(path: Path) -> set[int]:
    """The lines of every function body in `path` (nested functions included)."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for statement in node.body:
                lines.update(range(statement.lineno, (statement.end_lineno or statement.lineno) + 1))
    return lines


def uncalled_modules(data_file: Path) -> list[str]:
    """The modules with functions none of whose lines ran, by `data_file`'s coverage data."""
    import coverage

    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    executed = {Path(name).resolve(): set(data.lines(name) or ()) for name in data.measured_files()}
    uncalled = []
    for source in SOURCES:
        for path in sorted(source.rglob("*.py")):
            body = function_lines(path)
            if body and not body & executed.get(path.resolve(), set()):
                uncalled.append(str(path.relative_to(ROOT)))
    return uncalled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", action="store_true", help="only run and time the tier (no coverage)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data_file = Path(folder) / ".coverage"
        prefix = [] if args.time else ["-m", "coverage", "run", f"--data-file={data_file}",
                                       f"--source={','.join(map(str, SOURCES))}"]
        start = time.perf_counter()
        tests = subprocess.run([sys.executable, *prefix, *FAST], cwd=ROOT)
        seconds = time.perf_counter() - start
        print(f"fast tier ({'timed' if args.time else 'under coverage'}): {seconds:.0f} s, pytest exit {tests.returncode}")
        if args.time:
            return tests.returncode
        uncalled = uncalled_modules(data_file)
    print("modules the fast tier never calls into:", ", ".join(uncalled) if uncalled else "none")
    return 1 if tests.returncode or uncalled else 0


if __name__ == "__main__":
    sys.exit(main())
