"""shared/examples 00…05: the states the README lists, replay, and walking back with each file's undo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oplog.clock import FakeClock, RandomIds
from oplog.engine import Engine
from oplog.tree import Workspace, check_invariants, snapshot
from oplog.wire import request_from_json
from tests.conftest import shared_dir
from tests.engine_helpers import EXAMPLE_IDS, EXAMPLE_ROOT, events_of, replay, strip_updated, undo_request

ROOT = EXAMPLE_ROOT
A, H, M, Q, L = EXAMPLE_IDS


def _examples() -> Path:
    path = shared_dir() / "examples"
    if not path.is_dir():
        pytest.skip(f"shared examples not found at {path}")
    return path


def _files() -> list[Path]:
    return sorted(_examples().glob("0*.json"))


def _engine() -> Engine:
    return Engine(Workspace(), FakeClock(), RandomIds(1))


def _apply(engine: Engine, path: Path):  # type: ignore[no-untyped-def]
    req = request_from_json(json.loads(path.read_text()))
    engine.clock.ms = req.req_id  # type: ignore[attr-defined]
    return engine.apply_request(req)


def _order(engine: Engine) -> list[str]:
    return [c.id for c in engine.ws.docs[ROOT].children]


def test_states_after_each_example() -> None:
    engine = _engine()
    ws = engine.ws
    files = _files()
    assert [f.name[:2] for f in files] == ["00", "01", "02", "03", "04", "05"]

    _apply(engine, files[0])
    assert _order(engine) == [A, H, M, L]
    assert ws.blocks[A].markdown == "Hello worl"
    assert (ws.blocks[H].type, ws.blocks[H].subtype, ws.blocks[H].markdown) == ("h", "h2", "## Section")
    assert ws.blocks[M].markdown == "Under the section"
    quote = ws.blocks[L]
    assert quote.type == "b" and [(c.type, c.markdown) for c in quote.children] == [("p", "a quote")]
    assert ws.docs[ROOT].attrs["title"] == "Example"
    assert ws.docs[ROOT].box == "20240720085959-notebk1" and ws.docs[ROOT].path == f"/{ROOT}.sy"

    _apply(engine, files[1])
    assert ws.blocks[A].markdown == "Hello world"
    assert ws.blocks[A].attrs["updated"] == "20240721100501"

    _apply(engine, files[2])
    assert _order(engine) == [A, Q, H, M, L]
    assert (ws.blocks[Q].type, ws.blocks[Q].markdown) == ("p", "")

    _apply(engine, files[3])
    assert _order(engine) == [A, H, M, Q, L]

    applied = _apply(engine, files[4])
    assert ws.blocks[L].attrs["fold"] == "1"
    assert ws.blocks[H].attrs["fold"] == "1" and "heading-fold" not in ws.blocks[H].attrs
    for block_id in (M, Q, L):
        assert ws.blocks[block_id].attrs["fold"] == "1"
        assert ws.blocks[block_id].attrs["heading-fold"] == "1"
    fold_op = applied.transactions[1].do_operations[0]
    assert [v.string_value for v in fold_op.ret_data.list_value.values] == [M, Q, L]

    _apply(engine, files[5])
    assert Q not in ws.blocks
    assert _order(engine) == [A, H, M, L]
    check_invariants(ws)


def test_replay_gives_the_live_state() -> None:
    engine = _engine()
    events = []
    for path in _files():
        events.extend(events_of(_apply(engine, path)))
    rebuilt = replay(events)
    check_invariants(rebuilt)
    assert snapshot(rebuilt) == snapshot(engine.ws)


def test_transaction_timestamp_is_the_req_id() -> None:
    engine = _engine()
    for path in _files():
        applied = _apply(engine, path)
        req_id = json.loads(path.read_text())["reqId"]
        assert all(tx.timestamp == req_id for tx in applied.transactions)


def test_undo_walks_each_example_back() -> None:
    # The editor's undo for 01 carries `updated="20240721100430"` and 03's move and 05's re-insert
    # cannot restore the stamps the server wrote, so states are compared without `updated`; 00 has
    # no client undo, so the server computed it, and that one must restore everything exactly.
    engine = _engine()
    for number, path in enumerate(_files()):
        before = snapshot(engine.ws)
        applied = _apply(engine, path)
        undo = engine.apply_request(undo_request(applied, req_id=10_000 + number))
        check_invariants(engine.ws)
        if number == 0:
            assert snapshot(engine.ws) == before
        else:
            assert strip_updated(snapshot(engine.ws)) == strip_updated(before), path.name
        undo.rollback()  # back to the state after the file, to go on with the next one
        assert snapshot(engine.ws) != before


def test_example_05_reinsert_inside_folded_section_gets_fold_attrs() -> None:
    engine = _engine()
    files = _files()
    for path in files:
        _apply(engine, path)
    applied = _apply(engine, files[5])  # deleting again changes nothing (clients retry)
    assert (
        applied.transactions[0].do_operations[0].ret_data.struct_value.fields["deleteCount"].number_value == 0
    )
    engine.apply_request(undo_request(applied))
    q = engine.ws.blocks[Q]
    assert q.attrs["fold"] == "1" and q.attrs["heading-fold"] == "1"
    assert _order(engine) == [A, H, M, Q, L]
