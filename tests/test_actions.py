"""Each action: success paths, documented errors, aliases, reply rewrites, replay tolerance."""

from __future__ import annotations

import json

import pytest

from oplog.actions import apply_op
from oplog.engine import apply_event
from oplog.errors import BlockNotFound, InvalidTransaction, StructureError, UnsupportedAction
from oplog.tree import UndoJournal, check_invariants, snapshot
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import from_value
from tests.engine_helpers import BOX, DOC, bid, children, events_of, md, new_engine, request, with_doc

P1, P2, P3, H1, H2 = bid(1), bid(2), bid(3), bid(11), bid(12)


def _body() -> str:
    return "\n\n".join(
        [
            f'one\n{{: id="{P1}"}}',
            f'## Head\n{{: id="{H1}"}}',
            f'two\n{{: id="{P2}"}}',
            f'three\n{{: id="{P3}"}}',
        ]
    )


@pytest.fixture
def engine_body() -> str:
    """The document conftest's ``engine`` fixture starts with."""
    return _body()


def _ret(applied, tx: int = 0, op: int = 0):  # type: ignore[no-untyped-def]
    return from_value(applied.transactions[tx].do_operations[op].ret_data)


def _op(applied, tx: int = 0, op: int = 0) -> pb.Operation:  # type: ignore[no-untyped-def]
    return applied.transactions[tx].do_operations[op]


# ---------------------------------------------------------------- insert family


def test_insert_after_previous(engine) -> None:  # type: ignore[no-untyped-def]
    applied = engine.apply_request(request(md("insertBlock", "new", previousID=P1, id=bid(50))))
    assert children(engine) == [P1, bid(50), H1, P2, P3]
    assert _ret(applied) == [bid(50)]
    op = _op(applied)
    assert op.id == bid(50) and op.parent_id == DOC and op.resolved
    assert op.blocks[0].id == bid(50) and op.updated == engine.ws.blocks[bid(50)].attrs["updated"]
    check_invariants(engine.ws)


def test_insert_next_wins_over_previous_and_parent(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply_request(request(md("insert", "x", nextID=P3, previousID=P1, parentID=DOC, id=bid(50))))
    assert children(engine) == [P1, H1, P2, bid(50), P3]


def test_insert_with_parent_only_becomes_first_child(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply_request(request(md("insertBlock", "x", parentID=DOC, id=bid(50))))
    assert children(engine)[0] == bid(50)


def test_insert_several_blocks_and_fresh_ids(engine) -> None:  # type: ignore[no-untyped-def]
    applied = engine.apply_request(request(md("insertBlock", "a\n\nb\n\n- c", previousID=P3)))
    ids = _ret(applied)
    assert len(ids) == 3 and children(engine)[-3:] == ids
    assert engine.ws.blocks[ids[2]].type == "l"
    assert all(i[:14] == _op(applied).updated for i in ids)


def test_insert_taken_client_id_is_replaced(engine) -> None:  # type: ignore[no-untyped-def]
    applied = engine.apply_request(request(md("insertBlock", "dup", previousID=P1, id=P2)))
    new = _ret(applied)[0]
    assert new != P2 and engine.ws.blocks[P2].markdown == "two"


def test_insert_after_folded_heading_goes_after_its_section(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply_request(request(md("appendBlock", f'## Next\n{{: id="{H2}"}}', parentID=DOC)))
    engine.apply_request(request({"action": "foldBlock", "id": H1}))
    engine.apply_request(request(md("insertBlock", "# after", previousID=H1, id=bid(50))))
    assert children(engine) == [P1, H1, P2, P3, bid(50), H2]
    # An h1 ends the h2's section, so it stays visible; a paragraph there would join the hidden section.
    assert "heading-fold" not in engine.ws.blocks[bid(50)].attrs
    engine.apply_request(request(md("insertBlock", "para", previousID=H1, id=bid(51))))
    assert children(engine) == [P1, H1, P2, P3, bid(51), bid(50), H2]
    assert engine.ws.blocks[bid(51)].attrs["heading-fold"] == "1"


def test_insert_inside_folded_section_is_hidden_too(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply_request(request({"action": "foldHeading", "id": H1}))
    engine.apply_request(request(md("insertBlock", "inside", previousID=P2, id=bid(50))))
    attrs = engine.ws.blocks[bid(50)].attrs
    assert attrs["fold"] == "1" and attrs["heading-fold"] == "1"


def test_insert_missing_anchor_is_not_found(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BlockNotFound) as info:
        engine.apply_request(request(md("insertBlock", "x", previousID=bid(999))))
    assert info.value.location == "transactions[0].doOperations[0]"
    with pytest.raises(BlockNotFound):
        engine.apply_request(request(md("insertBlock", "x", previousID=P1, parentID=bid(999))))


def test_insert_bad_data(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidTransaction):
        engine.apply_request(
            request({"action": "insertBlock", "data": {"x": 1}, "dataType": "markdown", "previousID": P1})
        )
    with pytest.raises(InvalidTransaction):
        engine.apply_request(request(md("insertBlock", "", previousID=P1)))
    with pytest.raises(InvalidTransaction):
        engine.apply_request(
            request({"action": "insertBlock", "data": "x", "dataType": "rtf", "previousID": P1})
        )
    with pytest.raises(InvalidTransaction):
        engine.apply_request(request(md("insertBlock", "x")))  # no position at all


def test_list_items_only_in_lists(engine) -> None:  # type: ignore[no-untyped-def]
    applied = engine.apply_request(request(md("appendBlock", "- a\n- b", parentID=DOC)))
    lst = engine.ws.blocks[_ret(applied)[0]]
    first_item = lst.children[0].id
    # A list dropped next to an item contributes its items.
    engine.apply_request(request(md("insertBlock", "- c", previousID=first_item)))
    assert [c.type for c in lst.children] == ["i", "i", "i"]
    with pytest.raises(StructureError):
        engine.apply_request(request(md("insertBlock", "para", previousID=first_item)))


def test_append_and_prepend(engine) -> None:  # type: ignore[no-untyped-def]
    applied = engine.apply_request(request(md("appendBlock", "last", parentID=DOC, id=bid(50))))
    assert children(engine)[-1] == bid(50)
    op = _op(applied)
    assert (op.id, op.parent_id, op.previous_id) == (bid(50), DOC, P3)
    applied = engine.apply_request(request(md("prependInsert", "first", parentID=DOC, id=bid(51))))
    assert children(engine)[0] == bid(51)
    op = _op(applied)
    assert (op.id, op.parent_id, op.previous_id) == (bid(51), DOC, "")
    engine.apply_request(request(md("appendInsert", "very last", parentID=DOC, id=bid(52))))
    assert children(engine)[-1] == bid(52)
    with pytest.raises(BlockNotFound):
        engine.apply_request(request(md("appendBlock", "x", parentID=bid(999))))


def test_append_into_heading_goes_to_end_of_its_section(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply_request(request(md("appendBlock", "## Other", parentID=DOC, id=H2)))
    engine.apply_request(request(md("appendBlock", "in section", parentID=H1, id=bid(50))))
    assert children(engine) == [P1, H1, P2, P3, bid(50), H2]


def test_alias_equivalence_insert() -> None:
    results = []
    for action in ("insertBlock", "insert"):
        e = new_engine()
        with_doc(e, _body())
        e.apply_request(request(md(action, "x", previousID=P2, id=bid(50))))
        results.append(snapshot(e.ws))
    assert results[0] == results[1]


# ---------------------------------------------------------------- update


def test_update_text_and_type(engine) -> None:  # type: ignore[no-untyped-def]
    applied = engine.apply_request(request(md("updateBlock", "## now a heading", id=P2)))
    node = engine.ws.blocks[P2]
    assert (node.type, node.subtype, node.markdown) == ("h", "h2", "## now a heading")
    assert _ret(applied) == {"updateCount": 1}


def test_update_keeps_client_updated_and_sets_attrs(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply_request(request(md("update", 'x\n{: updated="20200101000000" custom-a="b"}', id=P1)))
    assert engine.ws.blocks[P1].attrs == {"updated": "20200101000000", "custom-a": "b"}


def test_update_container_replaces_children(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply_request(request(md("updateBlock", "> quoted\n>\n> twice", id=P3)))
    node = engine.ws.blocks[P3]
    assert node.type == "b" and [c.markdown for c in node.children] == ["quoted", "twice"]
    engine.apply_request(request(md("updateBlock", "flat", id=P3)))
    assert node.type == "p" and node.children == []
    check_invariants(engine.ws)


def test_update_document_replaces_body(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply_request(request(md("updateBlock", "only\n\nthis", id=DOC)))
    assert [engine.ws.blocks[i].markdown for i in children(engine)] == ["only", "this"]
    assert P1 not in engine.ws.blocks
    check_invariants(engine.ws)


def test_update_missing_block_is_not_found(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BlockNotFound):
        engine.apply_request(request(md("updateBlock", "x", id=bid(999))))
    with pytest.raises(InvalidTransaction):
        engine.apply_request(request(md("updateBlock", "x")))


def test_update_dom_strips_caret(engine) -> None:  # type: ignore[no-untyped-def]
    dom = (
        f'<div data-node-id="{P1}" data-type="NodeParagraph" class="p" updated="20240101010101">'
        '<div contenteditable="true">hi<wbr> there</div><div class="protyle-attr"></div></div>'
    )
    engine.apply_request(request({"action": "update", "id": P1, "data": dom}))
    assert engine.ws.blocks[P1].markdown == "hi there"
    assert engine.ws.blocks[P1].attrs["updated"] == "20240101010101"


# ---------------------------------------------------------------- delete


def test_delete_and_retry(engine) -> None:  # type: ignore[no-untyped-def]
    applied = engine.apply_request(request({"action": "deleteBlock", "id": P2}))
    assert _ret(applied) == {"deleteCount": 1} and P2 not in engine.ws.blocks
    applied = engine.apply_request(request({"action": "delete", "id": P2}))
    assert _ret(applied) == {"deleteCount": 0}


def test_delete_last_item_removes_empty_list(engine) -> None:  # type: ignore[no-untyped-def]
    applied = engine.apply_request(request(md("appendBlock", "- only", parentID=DOC)))
    lst = engine.ws.blocks[_ret(applied)[0]]
    item = lst.children[0]
    para = item.children[0]
    applied = engine.apply_request(request({"action": "deleteBlock", "id": para.id}))
    assert _ret(applied) == {"deleteCount": 3}
    assert lst.id not in engine.ws.blocks and item.id not in engine.ws.blocks
    check_invariants(engine.ws)


def test_delete_document_is_refused(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StructureError):
        engine.apply_request(request({"action": "deleteBlock", "id": DOC}))


# ---------------------------------------------------------------- move


def test_move_after_previous(engine) -> None:  # type: ignore[no-untyped-def]
    applied = engine.apply_request(request({"action": "moveBlock", "id": P1, "previousID": P3}))
    assert children(engine) == [H1, P2, P3, P1]
    assert _ret(applied) == {"moveCount": 1}
    assert engine.ws.blocks[P1].attrs["updated"] == _op(applied).updated


def test_move_onto_itself_changes_nothing(engine) -> None:  # type: ignore[no-untyped-def]
    before = snapshot(engine.ws)
    applied = engine.apply_request(request({"action": "move", "id": P1, "previousID": P1}))
    assert _ret(applied) == {"moveCount": 0} and snapshot(engine.ws) == before


def test_move_into_own_subtree_is_refused(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply_request(request(md("appendBlock", "> inner", parentID=DOC, id=bid(60))))
    inner = engine.ws.blocks[bid(60)].children[0].id
    with pytest.raises(StructureError):
        engine.apply_request(request({"action": "moveBlock", "id": bid(60), "previousID": inner}))
    with pytest.raises(StructureError):
        engine.apply_request(request({"action": "moveBlock", "id": bid(60), "parentID": bid(60)}))


def test_move_folded_heading_takes_its_section(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply_request(request({"action": "foldBlock", "id": H1}))
    applied = engine.apply_request(request({"action": "moveBlock", "id": H1, "parentID": DOC}))
    assert children(engine) == [H1, P2, P3, P1]
    assert _ret(applied) == {"moveCount": 3}


def test_move_across_documents_and_empty_list_goes(engine) -> None:  # type: ignore[no-untyped-def]
    other = bid(70)
    with_doc(engine, "- solo", doc=other)
    lst = engine.ws.docs[other].children[0]
    item = lst.children[0]
    engine.apply_request(request(md("appendBlock", "- a", parentID=DOC, id=bid(80))))
    target_item = engine.ws.blocks[bid(80)].children[0].id
    engine.apply_request(request({"action": "moveBlock", "id": item.id, "previousID": target_item}))
    assert lst.id not in engine.ws.blocks and item.root is engine.ws.docs[DOC]
    check_invariants(engine.ws)


def test_move_missing(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BlockNotFound):
        engine.apply_request(request({"action": "moveBlock", "id": bid(999), "previousID": P1}))
    with pytest.raises(BlockNotFound):
        engine.apply_request(request({"action": "moveBlock", "id": P1, "previousID": bid(999)}))


def test_kernel_append_moves_to_end_of_document(engine) -> None:  # type: ignore[no-untyped-def]
    other = bid(70)
    with_doc(engine, "x", doc=other)
    engine.apply_request(request({"action": "append", "id": P1, "parentID": other}))
    assert children(engine, other)[-1] == P1
    with pytest.raises(BlockNotFound):
        engine.apply_request(request({"action": "append", "id": P2, "parentID": bid(999)}))


def test_move_outline_heading(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply_request(request(md("appendBlock", f'# Top\n{{: id="{H2}"}}\n\nunder top', parentID=DOC)))
    applied = engine.apply_request(request({"action": "moveOutlineHeading", "id": H2}))
    assert children(engine)[0] == H2 and _ret(applied) == DOC
    # Now make H1 a child of H2 in the outline.
    engine.apply_request(request({"action": "moveOutlineHeading", "id": H1, "parentID": H2}))
    assert engine.ws.blocks[H1].subtype == "h2"
    check_invariants(engine.ws)


# ---------------------------------------------------------------- attributes


def test_set_attrs_object_and_json_string(engine) -> None:  # type: ignore[no-untyped-def]
    applied = engine.apply_request(
        request({"action": "setBlockAttrs", "id": P1, "data": {"custom-a": "1", "name": "n"}})
    )
    ret = _ret(applied)
    assert ret["custom-a"] == "1" and ret["name"] == "n" and ret["id"] == P1
    engine.apply_request(request({"action": "setAttrs", "id": P1, "data": json.dumps({"custom-a": ""})}))
    assert "custom-a" not in engine.ws.blocks[P1].attrs and engine.ws.blocks[P1].attrs["name"] == "n"


@pytest.mark.parametrize(
    "data",
    [{"Bad": "x"}, {"1x": "y"}, {"custom_a": "x"}, {"id": bid(5)}, "{not json", ["a"], {"a": 1}],
)
def test_set_attrs_bad_data(engine, data) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidTransaction):
        engine.apply_request(request({"action": "setBlockAttrs", "id": P1, "data": data}))


def test_set_attrs_missing_block(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BlockNotFound):
        engine.apply_request(request({"action": "setBlockAttrs", "id": bid(999), "data": {"a": "b"}}))


def test_set_reminder(engine) -> None:  # type: ignore[no-untyped-def]
    applied = engine.apply_request(
        request({"action": "setBlockReminder", "id": P1, "data": {"timed": "20250101090000"}})
    )
    assert _ret(applied) == "20250101090000"
    assert engine.ws.blocks[P1].attrs["custom-reminder-wechat"] == "20250101090000"
    engine.apply_request(request({"action": "setBlockReminder", "id": P1, "data": ""}))
    assert "custom-reminder-wechat" not in engine.ws.blocks[P1].attrs
    with pytest.raises(InvalidTransaction):
        engine.apply_request(request({"action": "setBlockReminder", "id": P1, "data": {"timed": "tomorrow"}}))


def test_do_update_updated(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply_request(request({"action": "doUpdateUpdated", "id": P1, "data": "20200101000000"}))
    assert engine.ws.blocks[P1].attrs["updated"] == "20200101000000"
    with pytest.raises(InvalidTransaction):
        engine.apply_request(request({"action": "doUpdateUpdated", "id": P1, "data": "soon"}))


# ---------------------------------------------------------------- fold


def test_fold_and_unfold_heading(engine) -> None:  # type: ignore[no-untyped-def]
    before = snapshot(engine.ws)
    applied = engine.apply_request(request({"action": "foldBlock", "id": H1}))
    assert _ret(applied) == [P2, P3]
    assert engine.ws.blocks[P2].attrs["heading-fold"] == "1"
    assert engine.ws.blocks[H1].attrs["updated"] == engine.ws.blocks[P1].attrs["updated"]  # not restamped
    applied = engine.apply_request(request({"action": "unfoldHeading", "id": H1}))
    assert _ret(applied) == [P2, P3]
    assert snapshot(engine.ws) == before


def test_fold_container_and_refusals(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply_request(request(md("appendBlock", "> q", parentID=DOC, id=bid(60))))
    engine.apply_request(request({"action": "foldBlock", "id": bid(60)}))
    assert engine.ws.blocks[bid(60)].attrs["fold"] == "1"
    with pytest.raises(StructureError):
        engine.apply_request(request({"action": "foldBlock", "id": DOC}))
    with pytest.raises(StructureError):
        engine.apply_request(request({"action": "foldBlock", "id": P1}))
    with pytest.raises(BlockNotFound):
        engine.apply_request(request({"action": "foldBlock", "id": bid(999)}))


# ---------------------------------------------------------------- documents


def test_create_doc_nested_and_remove(engine) -> None:  # type: ignore[no-untyped-def]
    child = bid(90)
    applied = engine.apply_request(
        request(
            {
                "action": "createDoc",
                "id": child,
                "data": {"title": "Kid", "parentDoc": DOC, "markdown": "hello"},
            }
        )
    )
    assert _ret(applied) == child
    doc = engine.ws.docs[child]
    assert doc.path == f"/{DOC}/{child}.sy" and doc.box == BOX and doc.attrs["title"] == "Kid"
    applied = engine.apply_request(request({"action": "removeDoc", "id": DOC}))
    assert _ret(applied) == [DOC, child] and not engine.ws.docs and not engine.ws.blocks


def test_create_doc_errors(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidTransaction):
        engine.apply_request(request({"action": "createDoc", "data": {"title": "no box"}}))
    with pytest.raises(InvalidTransaction):
        engine.apply_request(request({"action": "createDoc", "data": {"box": "not a box"}}))
    with pytest.raises(BlockNotFound):
        engine.apply_request(request({"action": "createDoc", "data": {"box": BOX, "parentDoc": bid(999)}}))
    with pytest.raises(BlockNotFound):
        engine.apply_request(request({"action": "removeDoc", "id": bid(999)}))


def test_create_doc_then_append_in_same_request() -> None:
    e = new_engine()
    applied = e.apply_request(
        request(
            {"action": "createDoc", "id": DOC, "data": {"box": BOX, "title": "T"}},
            md("appendBlock", "inside", parentID=DOC),
        )
    )
    assert len(children(e)) == 1 and _op(applied, 0, 1).parent_id == DOC


def test_doc2heading(engine) -> None:  # type: ignore[no-untyped-def]
    src = bid(90)
    with_doc(engine, f'# Top\n{{: id="{bid(91)}"}}\n\nbody', doc=src)
    applied = engine.apply_request(request({"action": "doc2Heading", "id": src, "previousID": H1}))
    assert _ret(applied) == src and src not in engine.ws.docs
    heading = engine.ws.blocks[src]
    assert heading.type == "h" and heading.subtype == "h2" and heading.markdown == "## Doc"
    assert children(engine) == [P1, H1, P2, P3, src, bid(91), children(engine)[-1]]
    assert engine.ws.blocks[bid(91)].subtype == "h3"
    check_invariants(engine.ws)


def test_doc2heading_with_child_docs_is_refused(engine) -> None:  # type: ignore[no-untyped-def]
    src = bid(90)
    with_doc(engine, "x", doc=src)
    engine.apply_request(request({"action": "createDoc", "id": bid(92), "data": {"parentDoc": src}}))
    with pytest.raises(StructureError):
        engine.apply_request(request({"action": "doc2Heading", "id": src, "previousID": P1}))
    with pytest.raises(BlockNotFound):
        engine.apply_request(request({"action": "doc2Heading", "id": bid(92), "previousID": bid(999)}))
    with pytest.raises(StructureError):
        engine.apply_request(request({"action": "doc2Heading", "id": bid(92), "previousID": bid(92)}))


def test_heading2doc(engine) -> None:  # type: ignore[no-untyped-def]
    applied = engine.apply_request(request({"action": "heading2Doc", "id": H1, "data": {"parentDoc": DOC}}))
    assert _ret(applied) == H1
    doc = engine.ws.docs[H1]
    assert doc.attrs["title"] == "Head" and doc.path == f"/{DOC}/{H1}.sy"
    assert [c.id for c in doc.children] == [P2, P3] and children(engine) == [P1]
    check_invariants(engine.ws)
    with pytest.raises(StructureError):
        engine.apply_request(request({"action": "heading2Doc", "id": P1}))


def test_li2doc(engine) -> None:  # type: ignore[no-untyped-def]
    applied = engine.apply_request(request(md("appendBlock", "- title\n\n  body", parentID=DOC)))
    lst = engine.ws.blocks[_ret(applied)[0]]
    item = lst.children[0]
    applied = engine.apply_request(request({"action": "li2Doc", "id": item.id}))
    doc = engine.ws.docs[item.id]
    assert doc.attrs["title"] == "title" and [c.markdown for c in doc.children] == ["body"]
    assert lst.id not in engine.ws.blocks
    check_invariants(engine.ws)


def test_set_attr_view_name(engine) -> None:  # type: ignore[no-untyped-def]
    av = "20240101000000-avavava"
    engine.apply_request(
        request(
            md(
                "appendBlock",
                f'<div data-type="NodeAttributeView" data-av-id="{av}" data-av-type="table"></div>',
                parentID=DOC,
            )
        )
    )
    assert av in engine.ws.avs
    applied = engine.apply_request(request({"action": "setAttrViewName", "id": av, "data": "Tasks"}))
    assert engine.ws.avs[av] == "Tasks" and _ret(applied) == "Tasks"
    with pytest.raises(BlockNotFound):
        engine.apply_request(request({"action": "setAttrViewName", "id": bid(999), "data": "x"}))


@pytest.mark.parametrize("action", ["addAttrViewCol", "updateAttrViewCell", "sortAttrViewRow"])
def test_attribute_view_actions_are_unsupported(engine, action) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnsupportedAction, match="unsupported action"):
        engine.apply_request(request({"action": action, "id": P1}))


def test_unknown_action_is_refused(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnsupportedAction, match="unknown action"):
        engine.apply_request(request({"action": "frobnicate", "id": P1}))


# ---------------------------------------------------------------- replay tolerance


def _replay_op(engine, op: pb.Operation):  # type: ignore[no-untyped-def]
    journal = UndoJournal(record=False)
    ret = apply_op(engine.ws, op, strict=False, journal=journal)
    check_invariants(engine.ws)
    return ret, journal.conflicts


def _resolved(engine, *ops):  # type: ignore[no-untyped-def]
    """Resolve and apply on a scratch copy, returning the recorded events (the state stays as it was)."""
    from tests.engine_helpers import replay

    applied = engine.apply_request(request(*ops))
    events = events_of(applied)
    applied.rollback()
    assert replay  # imported for symmetry
    return events


def test_replay_update_of_deleted_block_is_skipped(engine) -> None:  # type: ignore[no-untyped-def]
    events = _resolved(engine, md("updateBlock", "changed", id=P2))
    engine.apply_request(request({"action": "deleteBlock", "id": P2}))
    result = apply_event(engine.ws, events[0])
    assert [c.reason for c in result.conflicts] == [f"block {P2} not found"]
    assert P2 not in engine.ws.blocks


def test_replay_insert_after_vanished_anchor_falls_back_to_parent_end(engine) -> None:  # type: ignore[no-untyped-def]
    events = _resolved(engine, md("insertBlock", "new", previousID=P2, id=bid(50)))
    engine.apply_request(request({"action": "deleteBlock", "id": P2}))
    result = apply_event(engine.ws, events[0])
    assert children(engine)[-1] == bid(50) and result.conflicts == []
    check_invariants(engine.ws)


def test_replay_insert_with_everything_gone_is_skipped(engine) -> None:  # type: ignore[no-untyped-def]
    op = pb.Operation(action="insertBlock", previous_id=bid(998), parent_id=bid(999), resolved=True)
    op.blocks.add(id=bid(50), type="p", markdown="x")
    ret, conflicts = _replay_op(engine, op)
    assert ret == [] and conflicts[0].reason == "anchor gone" and bid(50) not in engine.ws.blocks


def test_replay_insert_of_existing_id_is_skipped(engine) -> None:  # type: ignore[no-untyped-def]
    op = pb.Operation(action="insertBlock", previous_id=P1, resolved=True)
    op.blocks.add(id=P2, type="p", markdown="dup")
    _, conflicts = _replay_op(engine, op)
    assert "already exists" in conflicts[0].reason and engine.ws.blocks[P2].markdown == "two"


def test_replay_move_of_deleted_block_and_into_own_subtree(engine) -> None:  # type: ignore[no-untyped-def]
    _, conflicts = _replay_op(engine, pb.Operation(action="moveBlock", id=bid(999), previous_id=P1))
    assert conflicts and conflicts[0].block_id == bid(999)
    engine.apply_request(request(md("appendBlock", "> q", parentID=DOC, id=bid(60))))
    inner = engine.ws.blocks[bid(60)].children[0].id
    _, conflicts = _replay_op(engine, pb.Operation(action="move", id=bid(60), previous_id=inner))
    assert "own subtree" in conflicts[0].reason


def test_replay_move_with_gone_anchor_goes_to_parent_end(engine) -> None:  # type: ignore[no-untyped-def]
    _, conflicts = _replay_op(
        engine, pb.Operation(action="moveBlock", id=P1, previous_id=bid(999), parent_id=DOC)
    )
    assert children(engine)[-1] == P1 and conflicts == []


def test_replay_set_attrs_fold_setreminder_on_deleted_block(engine) -> None:  # type: ignore[no-untyped-def]
    for action in (
        "setBlockAttrs",
        "setAttrs",
        "foldBlock",
        "unfoldBlock",
        "setBlockReminder",
        "doUpdateUpdated",
    ):
        op = pb.Operation(action=action, id=bid(999))
        op.attrs.add(name="custom-a", value="1")
        _, conflicts = _replay_op(engine, op)
        assert conflicts[0].action == action


def test_replay_delete_of_gone_block_is_silent(engine) -> None:  # type: ignore[no-untyped-def]
    ret, conflicts = _replay_op(engine, pb.Operation(action="deleteBlock", id=bid(999)))
    assert ret == {"deleteCount": 0} and conflicts == []


def test_replay_doc_actions_with_gone_targets(engine) -> None:  # type: ignore[no-untyped-def]
    for action in ("doc2Heading", "heading2Doc", "li2Doc", "moveOutlineHeading"):
        _, conflicts = _replay_op(engine, pb.Operation(action=action, id=bid(999), previous_id=P1))
        assert conflicts and conflicts[0].action == action
    ret, conflicts = _replay_op(engine, pb.Operation(action="removeDoc", id=bid(999)))
    assert ret == [] and conflicts == []
    op = pb.Operation(action="createDoc", id=bid(95), parent_doc=bid(999), box=BOX, text="t")
    _, conflicts = _replay_op(engine, op)
    assert engine.ws.docs[bid(95)].path == f"/{bid(95)}.sy" and conflicts


def test_replay_unknown_action_is_a_conflict_not_a_crash(engine) -> None:  # type: ignore[no-untyped-def]
    _, conflicts = _replay_op(engine, pb.Operation(action="fromTheFuture", id=P1))
    assert "unknown action" in conflicts[0].reason
