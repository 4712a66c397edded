"""Import circles in a source tree: every `import` counted, inside functions too, by reading the files (nothing is imported).

    python scripts/import_cycles.py src            # each circle, with the packages it spans; exit 1 if one spans packages

A circle inside one package (a registry that its built-ins import back) is allowed; one that spans packages means
a package cannot be understood, tested or imported without the other, and fails the check.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under `root` (a package's name is its __init__.py)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of the tree it imports (the longest known prefix of each imported name)."""

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                target = known(name)
                if target and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]], nodes: list[str]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def package_of(module: str, modules: dict[str, Path]) -> str:
    """`rlvr.rollout.engine` -> `rlvr.rollout`; a top-level module (`rlvr.cli`) is its own package."""
    parts = module.split(".")
    if len(parts) <= 2 and modules[module].name != "__init__.py":
        return module
    return ".".join(parts[:2])


def cross_package_cycles(root: Path) -> list[tuple[list[str], set[str]]]:
    modules = module_files(root)
    graph = import_graph(modules)
    result = []
    for component in cycles(graph, list(modules)):
        result.append((component, {package_of(m, modules) for m in component}))
    return result


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "src")
    failed = False
    found = cross_package_cycles(root)
    for component, packages in found:
        failed |= len(packages) > 1
        print(
            f"circle of {len(component)} modules in {len(packages)} package(s) {sorted(packages)}: {component}"
        )
    print("no circle spans packages" if not failed else "FAILED: a circle spans packages")
    return int(failed)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
