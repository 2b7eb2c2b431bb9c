"""The module graph has layers and no cycles: an AST scan of every import, checked against the README's map.

The README's Layout section ("Modules by layer") is the map: each ``####``
heading names a layer, lowest first, and each table row under it one module
(a folder row, ``oplog/v1/``, covers every module in it). The rules:

- no import cycles, counting function-local imports (deferring an import may
  save start-up time; it must not hide a cycle — the actions cycle hid exactly
  so) and ``if TYPE_CHECKING:`` ones (they never run, but naming another
  module's types is depending on it: ``oplog.syncsnap`` once named
  ``SyncSession`` that way, and now takes a Protocol);
- a module imports only from its own layer and the layers before it (every
  import kind, ``TYPE_CHECKING`` ones included: a type is a dependency too);
- the foundation and the log layer import nothing but each other: a module
  not in the map is outside them;
- nothing under ``oplog/`` imports ``oplog.server`` or ``oplog.tools``; the
  server never imports the tools.

Modules under ``server/`` and ``tools/`` are in their layer by folder. A core
module missing from the map is reported with a warning, not failed, so a new
module does not break the suite by existing; it is held to the rules that need
no place (cycles, the edges, the closed lower layers) all the same.
"""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import pytest

from tests.module_map import REPO, Import, cycle_path, cycles, import_graph, imports_of, source_modules

#: Layers whose imports are closed: they may import only modules placed in them (or below).
CLOSED = ("foundation", "log")
#: Packages in their layer by folder, whatever the map lists.
BY_FOLDER = {"oplog.server": "server", "oplog.tools": "tools"}


def _module_of(path: str) -> str:
    """``oplog/errors.py`` → ``oplog.errors``; ``server/app.py`` → ``oplog.server.app``; folders keep a dot."""
    folder, _, rest = path.partition("/")
    package = {"oplog": "oplog", "server": "oplog.server", "tools": "oplog.tools"}[folder]
    if not rest or rest == "__init__.py":
        return package
    if rest.endswith("/"):
        return f"{package}.{rest.rstrip('/').replace('/', '.')}."
    return f"{package}.{rest.removesuffix('.py').removesuffix('/__init__').replace('/', '.')}"


def read_layer_map(readme: Path = REPO / "README.md") -> list[tuple[str, list[str]]]:
    """The README's layers, lowest first: ``(layer, [module or "folder." prefix, ...])``."""
    text = readme.read_text(encoding="utf-8")
    section = text.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    layers: list[tuple[str, list[str]]] = []
    for line in section.splitlines():
        heading = re.match(r"#### (\w+)", line)
        if heading:
            layers.append((heading.group(1), []))
            continue
        row = re.match(r"\| `((?:oplog|server|tools)/[^`]*)` \|", line)
        if row and layers:
            layers[-1][1].append(_module_of(row.group(1)))
    return layers


def _placement() -> tuple[dict[str, int], list[str]]:
    """module → its layer's index, and the layer names in order."""
    layers = read_layer_map()
    names = [name for name, _ in layers]
    place: dict[str, int] = {}
    for module in source_modules():
        for prefix, layer in BY_FOLDER.items():
            if module == prefix or module.startswith(prefix + "."):
                place[module] = names.index(layer)
        for index, (_, entries) in enumerate(layers):
            for entry in entries:
                if module == entry or (entry.endswith(".") and (module + ".").startswith(entry)):
                    place[module] = index
    return place, names


def _where(edge: Import) -> str:
    path = source_modules()[edge.source].relative_to(REPO)
    return f"{path}:{edge.line} imports {edge.target} ({edge.kind})"


def _edges() -> list[Import]:
    return [edge for module in sorted(source_modules()) for edge in imports_of(module)]


def test_the_map_names_real_modules_once_and_every_layer() -> None:
    layers = read_layer_map()
    names = [name for name, _ in layers]
    assert names[:2] == list(CLOSED) and names[-2:] == ["server", "tools"], names
    listed = [entry for _, entries in layers for entry in entries]
    assert len(listed) == len(set(listed)), "a module is in the map twice"
    known = source_modules()
    stale = [
        e for e in listed if not (e in known or (e.endswith(".") and any(m.startswith(e) for m in known)))
    ]
    assert not stale, f"the README's module map names modules that do not exist: {stale}"
    place, _ = _placement()
    unplaced = sorted(m for m in known if m not in place)
    if unplaced:
        warnings.warn(f"modules not in the README's module map yet: {unplaced}", stacklevel=1)


def test_no_import_cycles() -> None:
    graph = import_graph(("module", "function", "typing"))
    found = [" → ".join(cycle_path(graph, component)) for component in cycles(graph)]
    assert not found, "import cycles (move what both sides need down a layer):\n" + "\n".join(found)


def test_every_module_imports_only_its_own_layer_and_below() -> None:
    place, names = _placement()
    wrong = [
        f"{_where(e)}: {names[place[e.source]]} may not import {names[place[e.target]]}"
        for e in _edges()
        if e.source in place and e.target in place and place[e.target] > place[e.source]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_foundation_and_the_log_import_nothing_above_them() -> None:
    place, names = _placement()
    closed = {names.index(layer) for layer in CLOSED}
    wrong = [
        f"{_where(e)}: the {names[place[e.source]]} layer imports only the foundation and the log"
        for e in _edges()
        if place.get(e.source) in closed and place.get(e.target) not in closed
    ]
    assert not wrong, "\n".join(wrong)


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_core_never_imports_the_edges() -> None:
    edges = ("oplog.server", "oplog.tools")
    wrong = [
        _where(e)
        for e in _edges()
        if not any(_under(e.source, p) for p in edges) and any(_under(e.target, p) for p in edges)
    ]
    wrong += [
        _where(e) for e in _edges() if _under(e.source, "oplog.server") and _under(e.target, "oplog.tools")
    ]
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------- the scanner itself


def test_the_cycle_finder_names_a_loop() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    (component,) = cycles(graph)
    assert component == ["a", "b", "c"]
    assert cycle_path(graph, component) == ["a", "b", "c", "a"]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("import x\n", "module"),
        ("try:\n    import x\nexcept ImportError:\n    pass\n", "module"),
        ("def f():\n    import x\n", "function"),
        ("class C:\n    def m(self):\n        from x import y\n", "function"),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\n", "typing"),
    ],
)
def test_imports_are_classified_by_where_they_sit(source: str, kind: str) -> None:
    from tests.module_map import _statements

    kinds = [k for node, k in _statements(ast.parse(source).body, "module") if "x" in ast.unparse(node)]
    assert kinds == [kind]
