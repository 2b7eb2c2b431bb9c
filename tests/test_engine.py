"""The request path: atomicity, located errors, reply rewrites, computed undo, seams, touched ids."""

from __future__ import annotations

import pytest

from oplog.errors import BlockNotFound, InvalidTransaction
from oplog.tree import check_invariants, snapshot
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import request_from_json
from tests.engine_helpers import (
    BOX,
    DOC,
    STAMP0,
    bid,
    children,
    events_of,
    md,
    new_engine,
    replay,
    request,
    undo_request,
    with_doc,
)

P1, P2, P3, H1 = bid(1), bid(2), bid(3), bid(11)
BODY = f'one\n{{: id="{P1}"}}\n\n## Head\n{{: id="{H1}"}}\n\ntwo\n{{: id="{P2}"}}\n\n- item\n{{: id="{P3}"}}'


@pytest.fixture
def engine_body() -> str:
    """The document conftest's ``engine`` fixture starts with."""
    return BODY


def test_bad_last_operation_leaves_state_untouched(engine) -> None:  # type: ignore[no-untyped-def]
    before = snapshot(engine.ws)
    body = {
        "reqId": 5,
        "transactions": [
            {"doOperations": [md("insertBlock", "a", previousID=P1), {"action": "deleteBlock", "id": P2}]},
            {
                "doOperations": [
                    {"action": "setAttrs", "id": P1, "data": {"custom-x": "1"}},
                    {"action": "foldBlock", "id": H1},
                    {"action": "moveBlock", "id": P1, "previousID": bid(999)},
                ]
            },
        ],
    }
    with pytest.raises(BlockNotFound) as info:
        engine.apply_request(request_from_json(body))
    assert info.value.location == "transactions[1].doOperations[2]"
    assert str(info.value).startswith("transactions[1].doOperations[2]: ")
    assert snapshot(engine.ws) == before
    check_invariants(engine.ws)


def test_rollback_undoes_an_accepted_request(engine) -> None:  # type: ignore[no-untyped-def]
    before = snapshot(engine.ws)
    applied = engine.apply_request(
        request(
            md("insertBlock", "a\n\n> b", previousID=P1),
            {"action": "removeDoc", "id": DOC},
            {"action": "createDoc", "id": DOC, "data": {"box": BOX, "markdown": "fresh"}},
        )
    )
    assert snapshot(engine.ws) != before
    applied.rollback()
    assert snapshot(engine.ws) == before


def test_time_and_ids_come_from_the_seams() -> None:
    e1, e2 = new_engine(seed=3), new_engine(seed=3)
    for e in (e1, e2):
        with_doc(e, "x")
        e.apply_request(request(md("appendBlock", "a\n\nb", parentID=DOC)))
    assert snapshot(e1.ws) == snapshot(e2.ws)
    assert e1.ws.docs[DOC].attrs["updated"] == STAMP0


def test_resolved_ops_carry_what_replay_needs(engine) -> None:  # type: ignore[no-untyped-def]
    applied = engine.apply_request(
        request(
            md("appendBlock", "new", parentID=DOC),
            {"action": "setAttrs", "id": P1, "data": '{"custom-a":"b"}'},
            {"action": "createDoc", "data": {"box": BOX, "title": "T", "markdown": "m"}},
        )
    )
    ops = applied.transactions[0].do_operations
    assert all(op.resolved and op.updated == ops[0].updated for op in ops)
    assert ops[0].blocks[0].markdown == "new" and ops[0].blocks[0].id
    assert [(a.name, a.value) for a in ops[1].attrs] == [("custom-a", "b")]
    assert ops[2].box == BOX and ops[2].text == "T" and ops[2].id and ops[2].blocks[0].markdown == "m"
    # Replay reads only resolved fields: blank out `data` and it still rebuilds the same state.
    events = []
    for ev in events_of(applied):
        for op in ev.transaction.do_operations:
            op.ClearField("data")
        events.append(ev)
    live = new_engine()
    with_doc(live, BODY)
    base_events = events_of(with_doc(new_engine(), BODY))
    assert snapshot(replay(base_events + events)) == snapshot(engine.ws)


def test_client_undo_is_kept_verbatim(engine) -> None:  # type: ignore[no-untyped-def]
    undo = [{"action": "delete", "id": bid(50)}]
    applied = engine.apply_request(request(md("insert", "x", previousID=P1, id=bid(50)), undo=undo))
    assert [(o.action, o.id) for o in applied.transactions[0].undo_operations] == [("delete", bid(50))]


def test_insert_under_a_leaf_parent_replays_the_same(engine) -> None:  # type: ignore[no-untyped-def]
    base = events_of(with_doc(new_engine(), BODY))
    applied = engine.apply_request(request(md("insertBlock", "after one", parentID=P1, id=bid(50))))
    op = applied.transactions[0].do_operations[0]
    assert children(engine)[:2] == [P1, bid(50)]
    assert (op.parent_id, op.previous_id) == (DOC, P1)
    assert snapshot(replay(base + events_of(applied))) == snapshot(engine.ws)


def test_touched_includes_next_siblings_and_section_followers(engine) -> None:  # type: ignore[no-untyped-def]
    applied = engine.apply_request(request(md("insertBlock", "x", previousID=P1, id=bid(50))))
    assert {bid(50), H1} <= applied.touched
    applied = engine.apply_request(request({"action": "deleteBlock", "id": H1}))
    assert {H1, P2} <= applied.touched and applied.removed == {H1}
    assert P3 in applied.touched  # the list's SQL parent was the heading


def test_computed_undo_for_every_action_restores_exactly(engine) -> None:  # type: ignore[no-untyped-def]
    other = bid(70)
    with_doc(engine, f'- first\n{{: id="{bid(71)}"}}\n\n# Top\n{{: id="{bid(72)}"}}\n\nunder', doc=other)
    engine.apply_request(request({"action": "setAttrs", "id": P2, "data": {"custom-k": "v", "fold": "1"}}))
    item = engine.ws.blocks[P3].children[0].id  # the only item of list P3
    other_item = engine.ws.blocks[bid(71)].children[0].id
    cases = [
        md("insertBlock", "a\n\nb", previousID=P1),
        md("appendBlock", "- z", parentID=DOC),
        md("prependBlock", "z", parentID=DOC),
        md("updateBlock", "## changed", id=P2),
        md("updateBlock", "> now\n>\n> quote", id=P1),
        md("updateBlock", "whole\n\nnew body", id=DOC),
        {"action": "deleteBlock", "id": H1},
        {"action": "deleteBlock", "id": item},
        {"action": "moveBlock", "id": P1, "previousID": P2},
        {"action": "moveBlock", "id": P2, "parentID": other},
        {"action": "moveBlock", "id": item, "previousID": other_item},
        {"action": "moveBlock", "id": other_item, "nextID": item},
        {"action": "append", "id": P1, "parentID": other},
        {"action": "setBlockAttrs", "id": P1, "data": {"custom-a": "1", "name": "x"}},
        {"action": "setBlockAttrs", "id": P2, "data": {"custom-k": ""}},
        {"action": "setBlockReminder", "id": P1, "data": {"timed": "20250101000000"}},
        {"action": "doUpdateUpdated", "id": P1, "data": "20200101000000"},
        {"action": "foldBlock", "id": H1},
        {"action": "unfoldBlock", "id": P2},
        {"action": "createDoc", "data": {"box": BOX, "title": "n", "markdown": "body", "parentDoc": DOC}},
        {"action": "removeDoc", "id": other},
        {"action": "doc2Heading", "id": other, "previousID": H1},
        {"action": "heading2Doc", "id": H1},
        {"action": "li2Doc", "id": item},
        {"action": "moveOutlineHeading", "id": bid(72)},
    ]
    for number, op in enumerate(cases):
        before = snapshot(engine.ws)
        applied = engine.apply_request(request(op, req_id=100 + number))
        assert snapshot(engine.ws) != before or op["action"] == "unfoldBlock", op
        engine.apply_request(undo_request(applied, req_id=200 + number))
        check_invariants(engine.ws)
        assert snapshot(engine.ws) == before, op


def test_computed_undo_of_fold_after_setattrs_fold(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply_request(request({"action": "setAttrs", "id": P2, "data": {"fold": "1"}}))
    before = snapshot(engine.ws)
    applied = engine.apply_request(request({"action": "foldHeading", "id": H1}))
    assert applied.transactions[0].undo_operations[0].action == "setBlockAttrs"
    engine.apply_request(undo_request(applied))
    assert snapshot(engine.ws) == before


def test_empty_request_and_empty_transaction() -> None:
    e = new_engine()
    applied = e.apply_request(pb.ApplyRequest(req_id=3))
    assert applied.transactions == []
    applied = e.apply_request(request_from_json({"reqId": 4, "transactions": [{"doOperations": []}]}))
    assert len(applied.transactions) == 1 and applied.transactions[0].timestamp == 4


def test_errors_name_the_operation() -> None:
    e = new_engine()
    with pytest.raises(InvalidTransaction) as info:
        e.apply_request(request({"action": "createDoc", "data": {"title": "x"}}))
    assert info.value.location == "transactions[0].doOperations[0]"
    assert not e.ws.blocks
