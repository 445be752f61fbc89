"""The import graph: no circles between modules, one-way package dependencies, no private imports.

Every ``import`` statement counts, also those inside functions (an import deferred into a function
still ties the two modules together).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("llc", "priors", "theory")
# package -> packages it may import (theory is the ground truth and never imports the estimator)
ALLOWED = {"llc": {"theory"}, "priors": set(), "theory": set()}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))
    }


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(modules: dict[str, Path]) -> dict[str, set[tuple[str, str]]]:
    """module -> {(imported module, imported name or '')} for project modules."""
    out: dict[str, set[tuple[str, str]]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        found: set[tuple[str, str]] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update((a.name, "") for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, path.name == "__init__.py", node)
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    found.add((sub, "") if sub in modules else (target, a.name))
        out[name] = found
    return out


def _edges(modules):
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for m, imps in _imports(modules).items():
        for target, _ in imps:
            if target in modules and target != m:
                graph[m].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return comps


def _is_package_init(module: str, target: str) -> bool:
    # a package's __init__ imports its submodules, which import siblings through the package:
    # edges into the package's own __init__ are not circles of logic
    return target == module.rsplit(".", 1)[0] or module == target.rsplit(".", 1)[0]


def test_no_import_circles():
    modules = _modules()
    graph = _edges(modules)
    graph = {m: {t for t in ts if not _is_package_init(m, t)} for m, ts in graph.items()}
    assert _cycles(graph) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_depend_one_way(package):
    modules = _modules()
    bad = sorted(
        (m, t)
        for m, imps in _imports(modules).items()
        if m.split(".")[0] == package
        for t, _ in imps
        if t.split(".")[0] in PACKAGES
        and t.split(".")[0] != package
        and t.split(".")[0] not in ALLOWED[package]
    )
    assert bad == []


def test_no_private_names_of_other_packages():
    """No module imports a private module or name of another top-level package."""
    modules = _modules()
    bad = []
    for m, imps in _imports(modules).items():
        top = m.split(".")[0]
        for target, name in imps:
            if target.split(".")[0] in (top, "__future__"):
                continue
            private = any(p.startswith("_") for p in target.split(".")) or (
                name.startswith("_") and name != "__version__"
            )
            if private:
                bad.append((m, target, name))
    assert sorted(bad) == []
