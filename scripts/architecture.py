"""Measure the package's shape from its source: modules and packages, import levels, import cycles, imports made
inside functions, and the largest functions. `python scripts/architecture.py [PACKAGE_DIR]` prints them;
tests/test_structure.py uses `read_package`, `import_graph`, `cycles`, `own_local_imports` and `layer_violations`
(with the layer order it writes down) to keep the layout honest.

An import counts wherever it is written: at the top, under `if TYPE_CHECKING:`, or inside a function."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "lightning_adapt"


@dataclass
class Module:
    name: str
    path: Path
    imports: set[str] = field(default_factory=set)
    local_imports: list[tuple[int, str]] = field(default_factory=list)


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The absolute module a relative `from . import` names."""
    if not node.level:
        return node.module or ""
    base = name.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported(node: ast.AST, name: str, is_package: bool, known: set[str]) -> list[str]:
    """The modules of the package an import statement loads (a `from package import module` counts as the module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        target = _resolve(node, name, is_package)
        found = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known]
        return found if len(found) == len(node.names) else [target, *found]
    return []


def read_package(root: Path = PACKAGE) -> dict[str, Module]:
    paths = sorted(root.rglob("*.py"))
    known = {module_name(path, root) for path in paths}
    modules = {}
    for path in paths:
        name = module_name(path, root)
        module = Module(name, path)
        tree = ast.parse(path.read_text())
        functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        inside = {id(inner) for function in functions for inner in ast.walk(function) if inner is not function}
        for node in ast.walk(tree):
            targets = [t for t in _imported(node, name, path.name == "__init__.py", known) if t.split(".")[0] == root.name]
            if id(node) in inside:
                module.local_imports += [(node.lineno, target) for target in _imported(node, name, path.name == "__init__.py", known)]
            module.imports.update(t for t in targets if t != name)
        modules[name] = module
    return modules


def import_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (an import of a package counts as its `__init__`)."""
    return {name: {t for t in module.imports if t in modules} for name, module in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan). A package's `__init__` importing its own
    modules is an edge like any other: a module importing its package's `__init__` back closes a cycle."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def own_local_imports(modules: dict[str, Module]) -> list[tuple[str, int, str]]:
    """(module, line, imported module) of every import of the package's own modules made inside a function (an
    optional dependency may be imported there; our own modules never)."""
    return [(name, line, target) for name, module in sorted(modules.items()) for line, target in module.local_imports
            if target.split(".")[0] == name.split(".")[0]]


def package_of(name: str) -> str:
    """The part of the package a module belongs to in the layer order: the first name below the root
    (`lightning_adapt.data.corpus`: `data`; a top-level module is its own, `lightning_adapt.cli`: `cli`), and
    `__init__` for the root itself."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def unplaced(modules: dict[str, Module], layers: list[list[str]]) -> list[str]:
    """The packages (`package_of`) of `modules` that no layer of `layers` lists."""
    placed = {package for layer in layers for package in layer}
    return sorted({package_of(name) for name in modules} - placed)


def layer_violations(graph: dict[str, set[str]], layers: list[list[str]]) -> list[tuple[str, str]]:
    """(importer, imported) of every import that goes up: to a package of a later layer in `layers` (lowest first;
    a module may import its own package and the packages of earlier layers)."""
    level = {package: index for index, layer in enumerate(layers) for package in layer}
    return [(name, target) for name, targets in sorted(graph.items()) for target in sorted(targets)
            if level[package_of(target)] > level[package_of(name)]]


def levels(graph: dict[str, set[str]]) -> int:
    """The longest chain of imports (in modules), cycles collapsed."""
    component_of = {name: name for name in graph}
    for component in cycles(graph):
        for member in component:
            component_of[member] = component[0]
    dag = {}
    for name, targets in graph.items():
        dag.setdefault(component_of[name], set()).update(component_of[t] for t in targets if component_of[t] != component_of[name])
    depth: dict[str, int] = {}

    def measure(node: str) -> int:
        if node not in depth:
            depth[node] = 1 + max((measure(t) for t in dag.get(node, ())), default=0)
        return depth[node]

    return max((measure(node) for node in dag), default=0)


def largest_functions(root: Path = PACKAGE, count: int = 10) -> list[tuple[int, str]]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(root.parent)}:{node.name}"))
    return sorted(found, reverse=True)[:count]


def main(root: Path = PACKAGE) -> None:
    modules = read_package(root)
    graph = import_graph(modules)
    packages = sorted({name for name, module in modules.items() if module.path.name == "__init__.py"})
    local = sum(len(module.local_imports) for module in modules.values())
    own_local = own_local_imports(modules)
    print(f"modules: {len(modules) - len(packages)} in {len(packages)} packages ({', '.join(packages)})")
    print(f"top-level modules: {sum(1 for n in modules if n.count('.') == 1 and n not in packages)}")
    print(f"import levels: {levels(graph)}")
    found = cycles(graph)
    print(f"import cycles: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))
    print(f"imports inside functions: {local} ({len(own_local)} of the package's own modules)")
    for name, line, target in own_local:
        print(f"  {name}:{line} imports {target}")
    print("largest functions (lines):")
    for lines, name in largest_functions(root):
        print(f"  {lines:4d}  {name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE)
