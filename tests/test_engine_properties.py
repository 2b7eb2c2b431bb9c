"""Random operation sequences: invariants hold, computed undo is exact, replay is deterministic."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oplog.engine import Engine
from oplog.errors import OplogError
from oplog.tree import check_invariants, snapshot
from oplog.v1 import oplog_pb2 as pb
from tests.engine_helpers import BOX, DOC, events_of, md, new_engine, replay, request, undo_request, with_doc

SNIPPETS = [
    "plain text",
    "**bold** words",
    "# one",
    "## two",
    "### three",
    "> quoted",
    "- item a\n- item b",
    "1. first",
    "```\ncode\n```",
    "a\n\nb",
]
ACTIONS = [
    "insertBlock", "insert", "appendBlock", "prependBlock", "updateBlock", "update", "deleteBlock", "moveBlock",
    "setBlockAttrs", "setAttrs", "foldBlock", "unfoldBlock", "createDoc", "removeDoc", "doUpdateUpdated",
    "setBlockReminder", "heading2Doc", "li2Doc", "doc2Heading", "moveOutlineHeading", "append",
]  # fmt: skip


def _pick(choose: Any, engine: Engine, *, docs: bool = False) -> str:
    pool = sorted(engine.ws.docs if docs else engine.ws.blocks)
    return pool[choose(len(pool))] if pool else DOC


def _random_op(choose: Any, engine: Engine) -> dict[str, Any]:
    action = ACTIONS[choose(len(ACTIONS))]
    if action == "removeDoc" and choose(3):
        action = "createDoc"  # keep documents around long enough for the other actions
    target = _pick(choose, engine)
    text = SNIPPETS[choose(len(SNIPPETS))]
    anchor = ("previousID", "nextID", "parentID")[choose(3)]
    if action in ("insertBlock", "insert"):
        return md(action, text, **{anchor: target})
    if action in ("appendBlock", "prependBlock"):
        return md(action, text, parentID=target)
    if action in ("updateBlock", "update"):
        return md(action, text, id=target)
    if action in ("moveBlock", "doc2Heading"):
        source = _pick(choose, engine, docs=action == "doc2Heading")
        return {"action": action, "id": source, anchor: target}
    if action in ("setBlockAttrs", "setAttrs"):
        value = ("", "v1", "v2")[choose(3)]
        return {"action": action, "id": target, "data": {"custom-k": value, "memo": "m" if choose(2) else ""}}
    if action == "createDoc":
        parent = _pick(choose, engine, docs=True) if choose(2) and engine.ws.docs else ""
        data = {"box": BOX, "title": "new", "markdown": text}
        if parent:
            data["parentDoc"] = parent
        return {"action": action, "data": data}
    if action == "removeDoc":
        return {"action": action, "id": _pick(choose, engine, docs=True)}
    if action == "doUpdateUpdated":
        return {"action": action, "id": target, "data": "20200101000000"}
    if action == "setBlockReminder":
        return {"action": action, "id": target, "data": {"timed": "20250101000000" if choose(2) else ""}}
    if action == "append":
        return {"action": action, "id": target, "parentID": _pick(choose, engine, docs=True)}
    if action == "moveOutlineHeading":
        return (
            {"action": action, "id": target, anchor: _pick(choose, engine)}
            if choose(2)
            else {"action": action, "id": target}
        )
    return {"action": action, "id": target}


def _fresh() -> Engine:
    engine = new_engine(seed=11)
    with_doc(engine, "# Title\n\nintro\n\n## Part\n\n- x\n- y\n\n> q\n\nend")
    return engine


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_sequences_keep_invariants_undo_and_replay(data: st.DataObject) -> None:
    engine = _fresh()
    events: list[pb.Event] = list(
        events_of(with_doc(new_engine(seed=11), "# Title\n\nintro\n\n## Part\n\n- x\n- y\n\n> q\n\nend"))
    )
    assert snapshot(replay(events)) == snapshot(engine.ws)

    def choose(n: int) -> int:
        return data.draw(st.integers(0, n - 1)) if n > 1 else 0

    for step in range(data.draw(st.integers(1, 14))):
        op = _random_op(choose, engine)
        before = snapshot(engine.ws)
        try:
            applied = engine.apply_request(request(op, req_id=1000 + step))
        except OplogError:
            assert snapshot(engine.ws) == before, op  # rejected: nothing changed
            continue
        check_invariants(engine.ws)
        after = snapshot(engine.ws)
        undo = engine.apply_request(undo_request(applied, req_id=5000 + step))
        check_invariants(engine.ws)
        assert snapshot(engine.ws) == before, (
            op,
            [o.action for o in applied.transactions[0].undo_operations],
        )
        undo.rollback()
        assert snapshot(engine.ws) == after
        events.extend(events_of(applied))
    rebuilt = replay(events)
    check_invariants(rebuilt)
    assert snapshot(rebuilt) == snapshot(engine.ws)


def _fixed_events(count: int = 120) -> list[pb.Event]:
    rng = random.Random(20240721)
    engine = _fresh()
    events = list(
        events_of(with_doc(new_engine(seed=11), "# Title\n\nintro\n\n## Part\n\n- x\n- y\n\n> q\n\nend"))
    )
    for step in range(count):
        try:
            applied = engine.apply_request(request(_random_op(rng.randrange, engine), req_id=step))
        except OplogError:
            continue
        events.extend(events_of(applied))
    return events


_REPLAY_SCRIPT = """
import hashlib, sys
from oplog.v1 import oplog_pb2 as pb
from oplog.engine import apply_event
from oplog.tree import Workspace, snapshot
ws = Workspace()
log = pb.Transaction()
data = open(sys.argv[1], "rb").read()
pos = 0
while pos < len(data):
    size = int.from_bytes(data[pos:pos + 4], "big"); pos += 4
    event = pb.Event.FromString(data[pos:pos + size]); pos += size
    apply_event(ws, event)
print(hashlib.sha256(repr(snapshot(ws)).encode()).hexdigest())
"""


def test_replay_is_identical_under_other_hash_seeds(tmp_path: Path) -> None:
    events = _fixed_events()
    blob = b"".join(len(raw).to_bytes(4, "big") + raw for raw in (e.SerializeToString() for e in events))
    path = tmp_path / "events.bin"
    path.write_bytes(blob)
    local = hashlib.sha256(repr(snapshot(replay(events))).encode()).hexdigest()
    repo = Path(__file__).resolve().parents[1]
    digests = []
    for seed in ("0", "4242", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(repo)}
        out = subprocess.run(
            [sys.executable, "-c", _REPLAY_SCRIPT, str(path)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.append(out.stdout.strip())
    assert digests == [local, local, local]
