"""Inverse operations, in seed form, for requests that came without ``undoOperations``.

Computed from the state *before* an operation applies; where the inverse needs
what the operation produced (the ids an insert made), a function of the
operation's ``retData`` is returned instead. Applied as a new request, the
inverses walk the state back exactly, ``updated`` stamps included: whatever a
forward operation restamps, its inverse sets back with an explicit ``updated``
(which the engine keeps, as for any client-supplied stamp). Content comes back
as Markdown with IAL lines (ids and attributes) rendered by ``oplog.kramdown``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from oplog.actions import group_top, move_group, removal_top
from oplog.boxconf import typed
from oplog.model import CONTAINER_TYPES
from oplog.resolve import seed_action
from oplog.tree import (
    Node,
    Workspace,
    box_docs,
    child_index,
    descendant_docs,
    heading_section,
    in_folded_section,
    parent_doc_id,
    render_subtree,
)
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import fill_value

__all__ = ["inverse_of", "Inverse"]

Inverse = list[pb.Operation] | Callable[[Any], list[pb.Operation]]


def _op(
    action: str,
    block_id: str = "",
    *,
    data: Any = None,
    markdown: bool = False,
    where: dict[str, Any] | None = None,
) -> pb.Operation:
    op = pb.Operation(action=action, id=block_id, data_type="markdown" if markdown else "", **(where or {}))
    if data is not None:
        fill_value(op.data, data)
    return op


def _restore_attrs(node: Node, names: Iterable[str]) -> pb.Operation:
    # Always names `updated`, so applying it does not restamp the block.
    wanted = {*names, "updated"}
    return _op("setBlockAttrs", node.id, data={name: node.attrs.get(name, "") for name in sorted(wanted)})


def _place_of(first: Node, last: Node) -> dict[str, str]:
    """Position fields that put blocks back where ``first``…``last`` stand now."""
    parent = first.parent
    assert parent is not None
    siblings = parent.children
    end = child_index(last) + 1
    if end < len(siblings):
        return {"next_id": siblings[end].id}
    start = child_index(first)
    if start:
        return {"previous_id": siblings[start - 1].id}
    return {"parent_id": parent.id}


def _reinsert(nodes: list[Node]) -> list[pb.Operation]:
    ops = [
        _op("insertBlock", data=render_subtree(nodes), markdown=True, where=_place_of(nodes[0], nodes[-1]))
    ]
    # Blocks inserted into a folded heading's section get folded like their neighbours; where
    # these blocks were not, put their own fold attributes back.
    parent = nodes[0].parent
    assert parent is not None
    if any(in_folded_section(parent, child_index(n), n.type, n.subtype) for n in nodes):
        for n in nodes:
            if n.attrs.get("fold") != "1" or n.attrs.get("heading-fold") != "1":
                ops.append(_restore_attrs(n, ("fold", "heading-fold")))
    return ops


def _deletes(ids: Iterable[str]) -> list[pb.Operation]:
    return [_op("deleteBlock", block_id) for block_id in ids]


def _inverse_insert(ws: Workspace, op: pb.Operation) -> Inverse:
    return lambda ret: _deletes(reversed(list(ret or [])))


def _inverse_update(ws: Workspace, op: pb.Operation) -> Inverse:
    node = ws.blocks.get(op.id)
    if node is None:
        return []
    if node.type == "d":
        return [
            _op("updateBlock", node.id, data=render_subtree(node.children), markdown=True),
            _restore_attrs(node, ()),
        ]
    extras = [spec.id for spec in op.blocks[1:]]
    return [
        *_deletes(reversed(extras)),
        _op("updateBlock", node.id, data=render_subtree([node]), markdown=True),
    ]


def _inverse_delete(ws: Workspace, op: pb.Operation) -> Inverse:
    node = ws.blocks.get(op.id)
    if node is None or node.parent is None:
        return []
    top = removal_top(node)
    return _reinsert([top])


def _inverse_move(ws: Workspace, op: pb.Operation) -> Inverse:
    node = ws.blocks.get(op.id)
    if node is None or node.parent is None or op.previous_id == op.id or op.next_id == op.id:
        return []
    group = move_group(node)
    old = group_top(group)
    parent = ws.blocks.get(op.parent_id) if not (op.next_id or op.previous_id) else None
    relisted = (
        node.type == "i" and parent is not None and parent.type == "l" and parent.subtype != node.subtype
    )
    if old == [node] and not relisted:
        back = _place_of(node, node)
        return [_op("moveBlock", node.id, where=back), _restore_attrs(node, ())]
    # A folded heading with its section, a move that empties a list, or an item changing list
    # kind: delete and re-create from the old Markdown.
    return [*_deletes(m.id for m in group), *_reinsert(old)]


def _inverse_attrs(ws: Workspace, op: pb.Operation) -> Inverse:
    node = ws.blocks.get(op.id)
    if node is None:
        return []
    return [_restore_attrs(node, (attr.name for attr in op.attrs))]


def _inverse_update_updated(ws: Workspace, op: pb.Operation) -> Inverse:
    node = ws.blocks.get(op.id)
    return [] if node is None else [_restore_attrs(node, ())]


def _inverse_fold(ws: Workspace, op: pb.Operation) -> Inverse:
    node = ws.blocks.get(op.id)
    if node is None:
        return []
    section = heading_section(node) if node.type == "h" else []
    clean = "fold" not in node.attrs and not any(
        "fold" in b.attrs or "heading-fold" in b.attrs for b in section
    )
    if clean:
        return [_op("unfoldBlock", node.id)]
    return [_restore_attrs(b, ("fold", "heading-fold")) for b in [node, *section]]


def _inverse_unfold(ws: Workspace, op: pb.Operation) -> Inverse:
    node = ws.blocks.get(op.id)
    if node is None:
        return []
    section = heading_section(node) if node.type == "h" else []
    foldable = node.type == "h" or (node.type in CONTAINER_TYPES and node.type != "d")
    canonical = (
        foldable
        and node.attrs.get("fold") == "1"
        and all(b.attrs.get("fold") == "1" and b.attrs.get("heading-fold") == "1" for b in section)
    )
    if canonical:
        return [_op("foldBlock", node.id)]
    return [_restore_attrs(b, ("fold", "heading-fold")) for b in [node, *section]]


def _inverse_av_name(ws: Workspace, op: pb.Operation) -> Inverse:
    if op.id not in ws.avs:
        return []
    return [_op("setAttrViewName", op.id, data=ws.avs[op.id])]


def _inverse_create_doc(ws: Workspace, op: pb.Operation) -> Inverse:
    return lambda ret: [_op("removeDoc", ret)] if ret else []


def _recreate_doc(doc: Node) -> list[pb.Operation]:
    data = {"box": doc.box, "title": doc.attrs.get("title", ""), "markdown": render_subtree(doc.children)}
    parent = parent_doc_id(doc)
    if parent:
        data["parentDoc"] = parent
    return [_op("createDoc", doc.id, data=data), _restore_attrs(doc, doc.attrs)]


def _inverse_remove_doc(ws: Workspace, op: pb.Operation) -> Inverse:
    doc = ws.docs.get(op.id)
    if doc is None:
        return []
    out: list[pb.Operation] = []
    for victim in [doc, *descendant_docs(ws, doc)]:
        out.extend(_recreate_doc(victim))
    return out


def _inverse_doc2heading(ws: Workspace, op: pb.Operation) -> Inverse:
    doc = ws.docs.get(op.id)
    if doc is None:
        return []
    body_ids = [child.id for child in doc.children]
    return [*_deletes([doc.id, *body_ids]), *_recreate_doc(doc)]


def _inverse_to_doc(ws: Workspace, op: pb.Operation) -> Inverse:
    node = ws.blocks.get(op.id)
    if node is None or node.parent is None:
        return []
    old = [removal_top(node)] if node.type == "i" else group_top([node, *heading_section(node)])
    return [_op("removeDoc", node.id), *_reinsert(old)]


def _inverse_outline(ws: Workspace, op: pb.Operation) -> Inverse:
    node = ws.blocks.get(op.id)
    if node is None or node.parent is None or op.id in (op.parent_id, op.previous_id):
        return []
    group = [node, *heading_section(node)]
    return [*_deletes(m.id for m in group), *_reinsert(group)]


def _recreate_box(ws: Workspace, box: str) -> list[pb.Operation]:
    out: list[pb.Operation] = []
    for doc in box_docs(ws, box):
        out.extend(_recreate_doc(doc))
    return out


def _inverse_create_notebook(ws: Workspace, op: pb.Operation) -> Inverse:
    return [_op("removeNotebook", op.id)]


def _inverse_notebook_conf(ws: Workspace, op: pb.Operation) -> Inverse:
    conf = ws.notebooks.get(op.id)
    if conf is not None:
        return [_op("setNotebookConf", op.id, data=typed(conf))]
    if not ws.has_notebook(op.id):
        return []
    # A box that only held documents (an older log's) gets a conf from this op. No action drops a
    # conf alone, so undo removes the box and re-creates its documents exactly: no conf again.
    return [_op("removeNotebook", op.id), *_recreate_box(ws, op.id)]


def _inverse_remove_notebook(ws: Workspace, op: pb.Operation) -> Inverse:
    conf = ws.notebooks.get(op.id)
    if conf is None:
        return _recreate_box(ws, op.id)  # a box without a conf comes back as one
    closed = conf.get("closed") == "true"
    # Documents cannot be created in a closed notebook: it comes back open for them, then closes.
    out = [_op("createNotebook", op.id, data={**typed(conf), "closed": False}), *_recreate_box(ws, op.id)]
    if closed:
        out.append(_op("closeNotebook", op.id))
    return out


def _inverse_move_doc(ws: Workspace, op: pb.Operation) -> Inverse:
    doc = ws.docs.get(op.id)
    if doc is None:
        return []
    subtree = [doc, *descendant_docs(ws, doc)]
    if doc.box not in ws.notebooks and len(box_docs(ws, doc.box)) == len(subtree):
        # The box only held these documents and no conf: it is gone after the move, and moveDoc
        # needs an existing notebook. Re-creating the documents brings the box back exactly.
        return [_op("removeDoc", doc.id), *(step for d in subtree for step in _recreate_doc(d))]
    back: dict[str, str] = {"box": doc.box}
    parent = parent_doc_id(doc)
    if parent:
        back["parentDoc"] = parent
    return [_op("moveDoc", doc.id, data=back)]


_INVERSES: dict[str, Callable[[Workspace, pb.Operation], Inverse]] = {
    "insertBlock": _inverse_insert,
    "appendBlock": _inverse_insert,
    "prependBlock": _inverse_insert,
    "updateBlock": _inverse_update,
    "deleteBlock": _inverse_delete,
    "moveBlock": _inverse_move,
    "append": _inverse_move,
    "setBlockAttrs": _inverse_attrs,
    "setBlockReminder": _inverse_attrs,
    "doUpdateUpdated": _inverse_update_updated,
    "foldBlock": _inverse_fold,
    "unfoldBlock": _inverse_unfold,
    "setAttrViewName": _inverse_av_name,
    "createDoc": _inverse_create_doc,
    "removeDoc": _inverse_remove_doc,
    "doc2Heading": _inverse_doc2heading,
    "heading2Doc": _inverse_to_doc,
    "li2Doc": _inverse_to_doc,
    "moveOutlineHeading": _inverse_outline,
    "createNotebook": _inverse_create_notebook,
    "renameNotebook": _inverse_notebook_conf,
    "openNotebook": _inverse_notebook_conf,
    "closeNotebook": _inverse_notebook_conf,
    "setNotebookConf": _inverse_notebook_conf,
    "removeNotebook": _inverse_remove_notebook,
    "moveDoc": _inverse_move_doc,
}


def inverse_of(ws: Workspace, op: pb.Operation) -> Inverse:
    """The inverse of resolved ``op`` in the current (pre-apply) state: operations, or a function of its retData."""
    maker = _INVERSES.get(seed_action(op.action))
    return maker(ws, op) if maker is not None else []
