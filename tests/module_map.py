"""The project's modules and their imports, read from the source with ``ast`` (no import, no dependency).

Shared by the import tests (``test_packaging``: every module imports on its
own), the layering test (``test_layering``: no cycles, layers respected) and the
error-tree test. The source folders map to packages as ``pyproject.toml``
installs them: ``oplog/`` → ``oplog``, ``server/`` → ``oplog.server``,
``tools/`` → ``oplog.tools``.

An import is one of three kinds, by where it sits:

- ``module``: runs when the module is imported (top level, or inside a
  top-level ``if``/``try``/``with``/class body);
- ``function``: inside a function, so it runs on the first call;
- ``typing``: under ``if TYPE_CHECKING:``, never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Source folder → the package it installs as.
PACKAGES = (("oplog", "oplog"), ("server", "oplog.server"), ("tools", "oplog.tools"))


@dataclass(frozen=True)
class Import:
    """One import statement's edge: ``source`` imports ``target`` (both project modules)."""

    source: str
    target: str
    kind: str  # "module", "function" or "typing"
    line: int


@cache
def source_modules() -> dict[str, Path]:
    """Every project module's dotted name → its file (packages as ``pkg``, from ``pkg/__init__.py``)."""
    names: dict[str, Path] = {}
    for folder, package in PACKAGES:
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            names[".".join([package, *parts])] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(body: Iterable[ast.AST], kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Each import statement under ``body`` with its kind (see the module docstring)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, kind
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _statements(node.body, "function" if kind == "module" else kind)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(node.body, "typing")
            yield from _statements(node.orelse, kind)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    # Compound statements, except handlers and match cases all keep their statements in lists.
                    yield from _statements((n for n in inner if isinstance(n, ast.AST)), kind)


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module ``name`` starts with (``a.b.c`` → ``a.b`` when ``c`` is not a module)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


@cache
def imports_of(module: str) -> tuple[Import, ...]:
    """Every edge from ``module`` to another project module, in source order."""
    known = source_modules()
    path = known[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    edges: list[Import] = []
    for node, kind in _statements(tree.body, "module"):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(module, path).split(".")
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            # ``from pkg import name``: the submodule when ``name`` is one, else ``pkg`` itself.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        for target in targets:
            resolved = _resolve(target, known)
            if resolved is not None and resolved != module:
                edges.append(Import(module, resolved, kind, node.lineno))
    return tuple(edges)


def import_graph(kinds: Iterable[str]) -> dict[str, set[str]]:
    """module → the project modules it imports with an import of one of ``kinds``."""
    wanted = set(kinds)
    return {m: {e.target for e in imports_of(m) if e.kind in wanted} for m in source_modules()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (each one an import cycle), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        # Iterative Tarjan: the graph is small, but recursion depth should not depend on it.
        nonlocal counter
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete loop through ``component`` (``a → b → … → a``), for a readable failure message."""
    members = set(component)
    start = component[0]
    path = [start]
    seen = {start}
    node = start
    while True:
        nexts = sorted(graph[node] & members)
        if start in nexts and len(path) > 1:
            return [*path, start]
        step = next((n for n in nexts if n not in seen), None)
        if step is None:  # every way on leads back into the path: close the loop there
            back = nexts[0]
            return [*path[path.index(back) :], back]
        path.append(step)
        seen.add(step)
        node = step
