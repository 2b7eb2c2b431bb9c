"""The block tree: primitives and their undo, invariants, sections, canonical order."""

from __future__ import annotations

import pytest

from oplog.errors import InconsistentTree
from oplog.tree import (
    Node,
    UndoJournal,
    Workspace,
    add_document,
    attach,
    check_invariants,
    child_docs,
    child_index,
    descendant_docs,
    detach,
    heading_section,
    hidden_section,
    in_folded_section,
    insert_child,
    iter_blocks,
    iter_documents,
    move,
    next_sibling,
    previous_sibling,
    relocate_document,
    remove_child,
    render_subtree,
    section_parent,
    set_attrs,
    set_content,
    snapshot,
)
from tests.engine_helpers import BOX, bid


def _doc(ws: Workspace, doc_id: str, journal: UndoJournal, path: str = "") -> Node:
    doc = Node(doc_id, "d", attrs={"title": "t"})
    add_document(ws, doc, BOX, path or f"/{doc_id}.sy", journal)
    return doc


def _para(n: int, text: str = "") -> Node:
    return Node(bid(n), "p", markdown=text or f"p{n}")


def _heading(n: int, level: int, **attrs: str) -> Node:
    return Node(bid(n), "h", f"h{level}", "#" * level + f" h{n}", dict(attrs))


@pytest.fixture
def ws() -> Workspace:
    return Workspace()


def test_primitives_and_exact_undo(ws: Workspace) -> None:
    setup = UndoJournal()
    doc = _doc(ws, bid(100), setup)
    for i in range(1, 5):
        attach(ws, _para(i), doc, i - 1, setup)
    quote = Node(bid(10), "b", children=[])
    attach(ws, quote, doc, 4, setup)
    check_invariants(ws)
    before = snapshot(ws)

    j = UndoJournal()
    detach(ws, ws.blocks[bid(2)], j)
    move(ws, ws.blocks[bid(1)], quote, None, j)
    set_content(ws.blocks[bid(3)], "h", "h2", "## x", j)
    set_attrs(ws.blocks[bid(4)], {"custom-a": "b"}, j)
    attach(ws, _para(20), quote, 0, j)
    other = _doc(ws, bid(101), j)
    move(ws, quote, other, None, j)
    relocate_document(other, BOX, f"/{bid(100)}/{bid(101)}.sy", j)
    check_invariants(ws)
    assert ws.blocks[bid(1)].root is other
    assert bid(2) in j.removed and {bid(1), bid(3), bid(4), bid(20)} <= j.touched
    j.rollback()
    check_invariants(ws)
    assert snapshot(ws) == before


def test_detach_touches_next_sibling(ws: Workspace) -> None:
    setup = UndoJournal()
    doc = _doc(ws, bid(100), setup)
    for i in range(1, 4):
        attach(ws, _para(i), doc, i - 1, setup)
    j = UndoJournal(record=False)
    detach(ws, ws.blocks[bid(2)], j)
    assert j.touched == {bid(2), bid(3)} and j.undo == []


def test_invariants_catch_damage(ws: Workspace) -> None:
    doc = _doc(ws, bid(100), UndoJournal())
    attach(ws, _para(1), doc, 0, UndoJournal())
    ws.blocks[bid(1)].parent = None
    with pytest.raises(InconsistentTree):
        check_invariants(ws)
    ws.blocks[bid(1)].parent = doc
    ws.blocks[bid(99)] = _para(99)
    with pytest.raises(InconsistentTree, match="unreachable"):
        check_invariants(ws)
    del ws.blocks[bid(99)]
    doc.children.append(ws.blocks[bid(1)])
    with pytest.raises(InconsistentTree, match="twice"):
        check_invariants(ws)
    doc.children.pop()
    item = Node(bid(5), "i", "u", "-")
    attach(ws, item, doc, 1, UndoJournal())
    with pytest.raises(InconsistentTree, match="list item"):
        check_invariants(ws)


def test_sections_and_fold_helpers(ws: Workspace) -> None:
    j = UndoJournal()
    doc = _doc(ws, bid(100), j)
    blocks = [
        _heading(1, 1),
        _para(2),
        _heading(3, 2, fold="1"),
        Node(bid(4), "p", markdown="x", attrs={"fold": "1", "heading-fold": "1"}),
        _heading(5, 3, fold="1", **{"heading-fold": "1"}),
        _heading(6, 2),
        _para(7),
    ]
    for i, b in enumerate(blocks):
        attach(ws, b, doc, i, j)
    assert [n.id for n in heading_section(ws.blocks[bid(1)])] == [bid(i) for i in range(2, 8)]
    assert [n.id for n in heading_section(ws.blocks[bid(3)])] == [bid(4), bid(5)]
    assert [n.id for n in hidden_section(ws.blocks[bid(3)])] == [bid(4), bid(5)]
    assert hidden_section(ws.blocks[bid(1)]) == []
    assert section_parent(ws.blocks[bid(4)]) is ws.blocks[bid(3)]
    assert section_parent(ws.blocks[bid(6)]) is ws.blocks[bid(1)]
    assert section_parent(ws.blocks[bid(1)]) is doc
    assert in_folded_section(doc, 4, "p", "")  # between 4 and 5
    assert in_folded_section(doc, 5, "p", "")  # after the hidden h3
    assert not in_folded_section(doc, 5, "h", "h2")  # an h2 closes the folded h2's section
    assert not in_folded_section(doc, 2, "p", "")
    assert previous_sibling(ws.blocks[bid(2)]) is ws.blocks[bid(1)]
    assert next_sibling(ws.blocks[bid(7)]) is None


def test_documents_order_and_paths(ws: Workspace) -> None:
    j = UndoJournal()
    top = _doc(ws, bid(200), j)
    _doc(ws, bid(100), j)
    kid = _doc(ws, bid(202), j, f"/{bid(200)}/{bid(202)}.sy")
    grandkid = _doc(ws, bid(201), j, f"/{bid(200)}/{bid(202)}/{bid(201)}.sy")
    assert [d.id for d in iter_documents(ws)] == [bid(100), bid(200), bid(201), bid(202)]
    assert child_docs(ws, top) == [kid]
    assert descendant_docs(ws, top) == [kid, grandkid]
    assert ws.boxes() == [BOX]
    check_invariants(ws)


def test_iteration_is_tree_order_and_render(ws: Workspace) -> None:
    j = UndoJournal()
    doc = _doc(ws, bid(100), j)
    quote = Node(bid(1), "b")
    attach(ws, quote, doc, 0, j)
    attach(ws, _para(2, "inner"), quote, 0, j)
    attach(ws, _para(3, "after"), doc, 1, j)
    assert [n.id for n in iter_blocks(doc)] == [bid(100), bid(1), bid(2), bid(3)]
    text = render_subtree([quote, ws.blocks[bid(3)]])
    assert "> inner" in text and bid(2) in text and "after" in text


def _unlabelled(count: int) -> Node:
    parent = Node("p", "d")
    for i in range(count):
        child = Node(f"c{i}", "p")
        child.parent = parent
        parent.children.append(child)  # unlabelled, as a checkpoint load or a parsed subtree builds it
    return parent


def test_child_index_matches_list_index_through_random_edits() -> None:
    import random

    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    parent = _unlabelled(50)
    siblings = parent.children
    serial = 50
    for _ in range(3000):
        roll = rng.random()
        if roll < 0.45 or len(siblings) < 3:
            # Inserts bunched at a few spots exhaust the label gaps and force relabels.
            index = rng.choice([0, 1, len(siblings) // 2, len(siblings), rng.randrange(len(siblings) + 1)])
            child = Node(f"c{serial}", "p")
            serial += 1
            child.parent = parent
            insert_child(parent, index, child)
        elif roll < 0.75:
            remove_child(parent, child_index(rng.choice(siblings)))
        else:
            node = rng.choice(siblings)
            remove_child(parent, child_index(node))
            insert_child(parent, rng.randrange(len(siblings) + 1), node)
        for node in rng.sample(siblings, min(5, len(siblings))):
            assert child_index(node) == siblings.index(node)
        assert parent.orders is None or list(parent.orders) == sorted(set(parent.orders))
    assert [child_index(n) for n in siblings] == list(range(len(siblings)))


def test_child_index_heals_edits_made_behind_its_back() -> None:
    parent = _unlabelled(10)
    siblings = parent.children
    assert [child_index(n) for n in siblings] == list(range(10))
    siblings.append(siblings.pop(3))  # moved without remove_child/insert_child: labels out of order
    assert [child_index(n) for n in siblings] == list(range(10))
    extra = Node("x", "p")
    extra.parent = parent
    siblings.insert(0, extra)  # one more child than labels
    assert child_index(extra) == 0 and child_index(siblings[1]) == 1
    del siblings[5]  # one fewer
    assert [child_index(n) for n in siblings] == list(range(10))
    stray = Node("stray", "p")
    stray.parent = parent  # claims a parent that does not hold it
    with pytest.raises(ValueError, match="not among its parent's children"):
        child_index(stray)
