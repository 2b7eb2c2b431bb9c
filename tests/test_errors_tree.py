"""The error tree is true: the drawing in ``oplog.errors``, its ``__all__``, the classes and the status table agree.

Every exception class any module defines (``oplog``, ``oplog.server``,
``oplog.tools``) must be an ``OplogError`` defined in ``oplog.errors`` and drawn
in its docstring, under the parent it really has, with the gRPC status
``oplog.server.status`` really gives it. And ``tree.check_invariants`` raises
(not asserts), so ``oplog verify`` under ``python -O`` still finds a damaged tree.
"""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import grpc
import pytest

from oplog import errors
from oplog.checkpoint import CheckpointStore, capture
from oplog.clock import FakeClock, RandomIds
from oplog.errors import InconsistentTree, OplogError
from oplog.server.status import STATUS_TABLE, status_for
from oplog.statehash import StateHash
from oplog.store import Store
from oplog.tree import check_invariants
from oplog.wire import request_from_json
from tests.module_map import REPO, source_modules

T0 = 1_721_527_400_000
BOX = "20240101000000-notebk1"
DOC = "20240101000000-docaaaa"
MISSING = "20240101000000-gonegon"
_CREATE = {"action": "createDoc", "id": DOC, "data": {"box": BOX, "title": "Alpha"}}

#: A line of the drawing: its tree prefix, the class name, then an optional ``-> STATUS``.
_LINE = re.compile(
    r"^    (?P<prefix>(?:[│ ]   )*(?:[├└]── )?)(?P<name>[A-Z]\w+)\b.*?(?:->\s*(?P<code>[A-Z_]+))?\s*$"
)


def drawn_tree() -> dict[str, tuple[str | None, str | None]]:
    """The docstring's drawing: class name → (drawn parent, drawn status or None)."""
    doc = errors.__doc__ or ""
    drawing = doc.split("\n\n")[1]
    tree: dict[str, tuple[str | None, str | None]] = {}
    parents: list[str] = []
    for line in drawing.splitlines():
        match = _LINE.match(line)
        assert match, f"not a line of the drawing: {line!r}"
        depth = len(match["prefix"]) // 4
        del parents[depth:]
        tree[match["name"]] = (parents[-1] if parents else None, match["code"])
        parents.append(match["name"])
    return tree


def _import_everything() -> None:
    for module in source_modules():
        importlib.import_module(module)


def _all_subclasses(cls: type[OplogError]) -> set[type[OplogError]]:
    found: set[type[OplogError]] = set()
    subclasses: list[type[OplogError]] = cls.__subclasses__()
    for sub in subclasses:
        found |= {sub, *_all_subclasses(sub)}
    return found


def _project_error_classes() -> set[type[OplogError]]:
    _import_everything()
    return {c for c in _all_subclasses(OplogError) if c.__module__.split(".")[0] == "oplog"}


def test_the_drawing_is_the_class_tree() -> None:
    tree = drawn_tree()
    assert next(iter(tree)) == "OplogError" and tree["OplogError"] == (None, None)
    for name, (parent, _) in tree.items():
        cls = getattr(errors, name, None)
        assert inspect.isclass(cls) and issubclass(cls, OplogError), f"{name} is drawn but not defined"
        if parent is not None:
            assert cls.__bases__ == (getattr(errors, parent),), f"{name} is drawn under {parent}"
    defined = {c.__name__ for c in _project_error_classes()} | {"OplogError"}
    assert defined == set(tree), (
        f"drawn, not defined: {set(tree) - defined}; defined, not drawn: {defined - set(tree)}"
    )


def test_all_names_every_class_and_only_them() -> None:
    assert sorted(errors.__all__) == sorted(drawn_tree())
    assert len(errors.__all__) == len(set(errors.__all__))


def test_every_error_class_lives_in_the_errors_module() -> None:
    elsewhere = sorted(
        f"{c.__module__}.{c.__qualname__}" for c in _project_error_classes() if c.__module__ != "oplog.errors"
    )
    assert not elsewhere, f"define these in oplog/errors.py (and draw them): {elsewhere}"


def test_no_module_defines_an_exception_outside_the_tree() -> None:
    """An ``Exception`` subclass of its own is what let ``DamagedCheckpoint`` and ``SyncAbandoned`` escape the tree."""
    _import_everything()
    outside = []
    for name in source_modules():
        module = sys.modules[name]
        for attr, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not issubclass(value, OplogError)
            ):
                outside.append(f"{name}.{attr}")
    assert not outside, f"exceptions outside the OplogError tree: {outside}"


def _instance(cls: type[OplogError]) -> OplogError:
    # Subclasses take different arguments (path=, offset=, resume_from=...); status_for reads only the class.
    error = cls.__new__(cls)
    OplogError.__init__(error, "x")
    return error


def test_every_class_has_the_status_the_drawing_gives_it() -> None:
    tree = drawn_tree()

    def drawn_status(name: str) -> str | None:
        parent, code = tree[name]
        return code if code or parent is None else drawn_status(parent)

    for name in tree:
        if name == "OplogError":
            continue
        code = drawn_status(name)
        assert code is not None, f"{name} has no status in the drawing (nor has any parent)"
        actual, _ = status_for(_instance(getattr(errors, name)))
        assert actual == getattr(grpc.StatusCode, code), (
            f"{name}: drawn {code}, status.py gives {actual.name}"
        )
        assert actual != grpc.StatusCode.INTERNAL, f"{name} falls through to INTERNAL: add it to STATUS_TABLE"
    # The table maps only classes of the tree (no stale names).
    assert all(cls.__module__ == "oplog.errors" and cls.__name__ in tree for cls, _ in STATUS_TABLE)


def test_a_status_with_no_class_of_its_own_comes_back_as_remote_call_error(tmp_path: Path) -> None:
    """A write to a real read-only server: PERMISSION_DENIED has more than one cause, so it keeps its code."""
    from oplog.server.app import start_server
    from oplog.server.client import Client
    from oplog.server.status import error_from_rpc

    store = Store.open(tmp_path / "data", clock=FakeClock(T0, step_ms=7), ids=RandomIds(2))
    running = start_server(store, listen="127.0.0.1:0", readonly=True)
    try:
        body = {"reqId": 1, "app": "t", "session": "s", "transactions": [{"doOperations": [_CREATE]}]}
        with Client(running.address) as client, pytest.raises(grpc.RpcError) as failed:
            client.stub.Apply(request_from_json(body), timeout=30)
    finally:
        running.stop(grace=1)
        store.close()
    error = error_from_rpc(failed.value, server=running.address)
    assert type(error) is errors.RemoteCallError and isinstance(error, OplogError)
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert str(error).startswith(f"server {running.address}: PERMISSION_DENIED: ")


# ---------------------------------------------------------------- check_invariants under python -O


def _apply(store: Store, *ops: Mapping[str, object]) -> None:
    body = {"reqId": 1, "app": "t", "session": "s", "transactions": [{"doOperations": list(ops)}]}
    store.apply(request_from_json(body))


def _data_dir_with_an_orphan_document(data: Path) -> str:
    """A data directory whose newest checkpoint holds a document under a parent document that is not there.

    Everything else about the checkpoint is sound — its bytes, digests, state
    hash, block count and heads — so only the tree's invariants can tell.
    """
    store = Store.open(data, clock=FakeClock(T0, step_ms=7), ids=RandomIds(1))
    try:
        _apply(store, _CREATE)
        for n in range(3):
            para = {
                "action": "appendBlock",
                "parentID": DOC,
                "dataType": "markdown",
                "data": f"paragraph {n}",
            }
            _apply(store, para)
        store.checkpoint()
    finally:
        store.close()
    with CheckpointStore(data / "checkpoints.db") as checkpoints:
        info = checkpoints.list()[0]
        sound = checkpoints.load(info)
        ws = sound.ws
        ws.docs[DOC].path = f"/{MISSING}/{DOC}.sy"
        with pytest.raises(InconsistentTree, match="sits under missing document"):
            check_invariants(ws)
        snapshot = capture(
            ws,
            StateHash.of(ws),
            position=info.position,
            heads=info.heads,
            head_hlcs=info.head_hlcs,
            last_key=info.last_key,
            conflicts=sound.conflicts,
        )
        return f"checkpoint {checkpoints.save(snapshot)} "


@pytest.mark.parametrize("flags", [["-O"], []], ids=["python -O", "python"])
def test_verify_finds_an_orphan_document_in_a_checkpoint_even_under_python_O(
    tmp_path: Path, flags: list[str]
) -> None:
    data = tmp_path / "data"
    which = _data_dir_with_an_orphan_document(data)
    done = subprocess.run(
        [sys.executable, *flags, "-m", "oplog.tools.cli", "verify", "--data", str(data)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    damage = [line for line in done.stdout.splitlines() if line.startswith("damage:")]
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(damage) == 1 and which in damage[0], damage
    assert (
        "its block tree is inconsistent" in damage[0]
        and f"sits under missing document {MISSING}" in damage[0]
    )
