"""The state hash: incremental equals full, independent of dict order and PYTHONHASHSEED, sensitive to order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from oplog.engine import apply_event
from oplog.merge import merge_events
from oplog.statehash import EMPTY_HEXDIGEST, StateHash
from oplog.tree import Node, UndoJournal, Workspace, add_document, attach, move
from tests.workload import simulate

REPO = Path(__file__).resolve().parents[1]


def _small_ws() -> Workspace:
    ws = Workspace()
    journal = UndoJournal(record=False)
    doc = Node("20240101000000-doc0001", "d", attrs={"title": "T"})
    add_document(ws, doc, "20240101000000-box0001", "/20240101000000-doc0001.sy", journal)
    for i in range(4):
        attach(
            ws,
            Node(f"20240101000000-p00000{i}", "p", markdown=f"para {i}", attrs={"b": "2", "a": "1"}),
            doc,
            i,
            journal,
        )
    return ws


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_incremental_equals_full_after_every_event(seed: int) -> None:
    print(f"seed={seed}")
    streams = simulate(seed, devices=3, rounds=5, per_round=12)
    ws = Workspace()
    live = StateHash.of(ws)
    for event in merge_events(streams.values()):
        result = apply_event(ws, event)
        live.update(ws, result.touched, result.removed)
        assert live == StateHash.of(ws), f"seed {seed}: diverged at {event.device_id}#{event.device_seq}"
    assert live.block_count == len(ws.blocks)


def test_empty_state_and_repr() -> None:
    assert StateHash.of(Workspace()).hexdigest() == EMPTY_HEXDIGEST
    assert "blocks=5" in repr(StateHash.of(_small_ws()))


def test_attribute_order_does_not_matter() -> None:
    a = _small_ws()
    b = _small_ws()
    for node in b.blocks.values():
        node.attrs = dict(reversed(list(node.attrs.items())))
    assert StateHash.of(a) == StateHash.of(b)


def test_child_order_and_content_matter() -> None:
    ws = _small_ws()
    before = StateHash.of(ws)
    doc = ws.docs["20240101000000-doc0001"]
    journal = UndoJournal(record=False)
    move(ws, doc.children[3], doc, doc.children[0], journal)
    live = before.copy()
    live.update(ws, journal.touched, journal.removed)
    assert live != before
    assert live == StateHash.of(ws)
    ws.blocks["20240101000000-p000001"].markdown = "changed"
    live.update(ws, ["20240101000000-p000001"])
    assert live == StateHash.of(ws)


def test_attribute_views_are_covered() -> None:
    ws = _small_ws()
    before = StateHash.of(ws)
    ws.avs["20240101000000-av00001"] = "Table"
    after = before.copy()
    after.update(ws, [])
    assert after != before and after == StateHash.of(ws)


_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from oplog.replay import replay
from tests.workload import simulate
print(replay(list(simulate(21, devices=3, rounds=4, per_round=10).values())).state_hash.hexdigest())
"""


def test_same_hash_across_hash_seeds() -> None:
    from oplog.replay import replay

    expected = replay(list(simulate(21, devices=3, rounds=4, per_round=10).values())).state_hash.hexdigest()
    for hash_seed in ("0", "12345", "random"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", _SCRIPT.format(repo=str(REPO))],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == expected, f"PYTHONHASHSEED={hash_seed}"
