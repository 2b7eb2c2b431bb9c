"""Apply one *resolved* operation to the block tree.

The same code serves live requests (``strict=True``: a missing block or anchor
raises ``BlockNotFound``, an impossible structure ``StructureError``) and
replay (``strict=False``: nothing raises; when a concurrent edit removed the
target or an anchor, a documented deterministic rule applies and a
``Conflict`` is recorded). Handlers read only the resolved fields and the
position fields of the operation — never ``data`` — and take the ``updated``
stamp they write from the operation's own resolved ``updated``, so replay is a
pure function of (state, event).

Tolerance rules (replay) — see docs/actions.md:

- target block gone: the operation is skipped (``delete`` of a gone block is
  a silent no-op, as for live requests);
- placing anchors: ``nextID`` → ``previousID`` → ``parentID``; when the
  anchors the client named are gone but ``parentID`` survives, the blocks go
  to the end of that parent; when nothing survives the operation is skipped;
- an id the operation would create already exists, a move into the moved
  block's own subtree, a block that no longer fits its new parent: skipped.

This module holds the block placement handlers and ``HANDLERS``, the dispatch
table over every family: attribute and view-state actions live in
``actions_attrs``, document actions in ``actions_doc``, notebook actions in
``actions_notebook``, and what all of them
share (the handler signature, the refuse-or-record rule, spec → node) in
``actions_base`` below them, so the families never import this module.
"""

from __future__ import annotations

from typing import Any

from oplog import actions_attrs, actions_doc, actions_notebook
from oplog.actions_base import Handler, node_from_spec, refuse, spec_attrs, target
from oplog.errors import BlockNotFound, InvalidTransaction, StructureError, UnsupportedAction
from oplog.model import CONTAINER_TYPES
from oplog.tree import (
    Node,
    UndoJournal,
    Workspace,
    attach,
    child_index,
    detach,
    heading_section,
    hidden_section,
    in_folded_section,
    iter_blocks,
    move,
    set_attrs,
    set_content,
    subtree_size,
)
from oplog.v1 import oplog_pb2 as pb

__all__ = [
    "apply_op",
    "node_from_spec",
    "HANDLERS",
    "ALIASES",
    "is_attribute_view_action",
    "fits",
    "item_marker",
    "removal_top",
    "group_top",
    "move_group",
    "Handler",
]

#: kernel name -> seed name, for the actions both families send.
ALIASES = {
    "insert": "insertBlock",
    "update": "updateBlock",
    "prependInsert": "prependBlock",
    "appendInsert": "appendBlock",
    "delete": "deleteBlock",
    "move": "moveBlock",
    "setAttrs": "setBlockAttrs",
    "foldHeading": "foldBlock",
    "unfoldHeading": "unfoldBlock",
}


def is_attribute_view_action(action: str) -> bool:
    """SiYuan's database actions (all but ``setAttrViewName``), refused until they are built."""
    return "AttrView" in action and action != "setAttrViewName"


def fits(parent: Node, child_type: str) -> str:
    """Why a block of ``child_type`` cannot sit directly under ``parent`` (empty: it can)."""
    if parent.type not in CONTAINER_TYPES:
        return f"a {parent.type} block holds no child blocks"
    if child_type == "d":
        return "a document cannot sit inside a block"
    if parent.type == "l":
        return "" if child_type == "i" else "a list holds only list items"
    if child_type == "i":
        return "a list item belongs in a list"
    return ""


def item_marker(list_subtype: str, marker: str) -> str:
    """The marker a list item takes in a list of ``list_subtype`` (lists do not mix kinds)."""
    if list_subtype == "o":
        return marker if marker[:1].isdigit() else "1."
    if list_subtype == "t":
        return marker if marker.endswith("]") else "- [ ]"
    return "-"


def _adopt_spec(spec: pb.BlockSpec, parent: Node) -> pb.BlockSpec:
    # An item joining a list of another kind takes that kind, so the list renders and re-parses as it is.
    if parent.type != "l" or spec.type != "i" or spec.subtype == parent.subtype:
        return spec
    # Built through the spec's own type: a protobuf BlockSpec, or the replay reader's ReaderSpec.
    return type(spec)(
        id=spec.id,
        type=spec.type,
        subtype=parent.subtype,
        markdown=item_marker(parent.subtype, spec.markdown),
        attrs=spec.attrs,
        children=spec.children,
    )


def _adopt_node(node: Node, parent: Node, journal: UndoJournal) -> None:
    if parent.type == "l" and node.type == "i" and node.subtype != parent.subtype:
        set_content(node, "i", parent.subtype, item_marker(parent.subtype, node.markdown), journal)


def group_top(group: list[Node]) -> list[Node]:
    """What really leaves when the sibling run ``group`` does: the run, or the list (item) it empties."""
    parent = group[0].parent
    if parent is not None and parent.type in ("i", "l") and len(parent.children) == len(group):
        return [removal_top(parent)]
    return group


def removal_top(node: Node) -> Node:
    """The block that really leaves when ``node`` does: list items and lists left empty go too."""
    top = node
    parent = top.parent
    while parent is not None and parent.type in ("i", "l") and len(parent.children) == 1:
        top = parent
        parent = top.parent
    return top


def move_group(node: Node) -> list[Node]:
    """What moving ``node`` carries: itself, plus its hidden section when it is a folded heading."""
    if node.type == "h" and node.attrs.get("fold") == "1":
        return [node, *hidden_section(node)]
    return [node]


def _stamp(attrs: dict[str, str], stamp: str) -> dict[str, str]:
    new = dict(attrs)
    if stamp:
        new["updated"] = stamp
    return new


def _ids_free(ws: Workspace, specs: Any, own: set[str] | frozenset[str] = frozenset()) -> str:
    # `own`: ids of the subtree the operation replaces, free for reuse.
    blocks = ws.blocks
    stack = list(specs)
    seen: set[str] = set()
    while stack:
        spec = stack.pop()
        if not spec.id or spec.id in seen or (spec.id in blocks and spec.id not in own):
            return spec.id or "(empty)"
        seen.add(spec.id)
        stack.extend(spec.children)
    return ""


# ---------------------------------------------------------------- positions


def _after(anchor: Node) -> tuple[Node, int]:
    # "After" a folded heading means after the section folding hid.
    parent = anchor.parent
    assert parent is not None
    end = anchor
    if anchor.type == "h" and anchor.attrs.get("fold") == "1":
        hidden = hidden_section(anchor)
        if hidden:
            end = hidden[-1]
    return parent, child_index(end) + 1


def _inside(parent: Node, *, first: bool) -> tuple[Node, int]:
    if parent.type in CONTAINER_TYPES:
        return parent, 0 if first else len(parent.children)
    if parent.parent is None:  # pragma: no cover - documents are containers
        return parent, 0
    # A leaf named as parent: SiYuan places the blocks right after it.
    return _after(parent)


def _place(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> tuple[Node, int] | None:
    """Where the position rule (nextID > previousID > parentID) puts new or moved blocks."""
    blocks = ws.blocks
    next_id, previous_id, parent_id = op.next_id, op.previous_id, op.parent_id
    if strict:
        for anchor_id in (next_id, previous_id, parent_id):
            if anchor_id and anchor_id not in blocks:
                raise BlockNotFound(f"anchor block {anchor_id} not found")
    if next_id:
        anchor = blocks.get(next_id)
        if anchor is not None:
            parent = anchor.parent
            if parent is not None:
                return parent, child_index(anchor)
            refuse(strict, journal, op, StructureError, "cannot place a block before a document")
            return None
    if previous_id:
        anchor = blocks.get(previous_id)
        if anchor is not None:
            parent = anchor.parent
            if parent is not None:
                if anchor.type == "h":
                    return _after(anchor)
                # _after of a block that is not a heading, inlined (the common insert).
                return parent, child_index(anchor) + 1
            refuse(strict, journal, op, StructureError, "cannot place a block after a document")
            return None
    if parent_id:
        parent = blocks.get(parent_id)
        if parent is not None:
            # parentID alone means "first inside"; as a fallback for vanished anchors, "at the end".
            return _inside(parent, first=not (next_id or previous_id))
    if strict:
        raise InvalidTransaction("no position given: set nextID, previousID or parentID")
    journal.conflict(op.action, op.id, "anchor gone")
    return None


# ---------------------------------------------------------------- content


def _place_specs(
    ws: Workspace, op: pb.Operation, parent: Node, index: int, strict: bool, journal: UndoJournal
) -> list[str] | None:
    blocks = op.blocks
    if len(blocks) == 1 and parent.type != "l":
        spec = blocks[0]
        spec_type = spec.type
        if spec_type not in CONTAINER_TYPES:
            # Fast path: one leaf into a non-list container (each protobuf field is read once).
            block_id = spec.id
            if not block_id or block_id in ws.blocks:
                refuse(
                    strict,
                    journal,
                    op,
                    InvalidTransaction,
                    f"block id {block_id or '(empty)'} already exists",
                )
                return None
            if parent.type not in CONTAINER_TYPES:
                refuse(strict, journal, op, StructureError, fits(parent, spec_type))
                return None
            subtype = spec.subtype
            node = Node(block_id, spec_type, subtype, spec.markdown, spec_attrs(spec))
            if index:
                # in_folded_section can only say yes when the block before carries a fold attribute.
                before = parent.children[index - 1].attrs
                if ("heading-fold" in before or "fold" in before) and in_folded_section(
                    parent, index, spec_type, subtype
                ):
                    node.attrs["fold"] = "1"
                    node.attrs["heading-fold"] = "1"
            attach(ws, node, parent, index, journal)
            return [block_id]
    specs: list[pb.BlockSpec] = []
    for spec in op.blocks:
        # A list dropped into a list contributes its items (SiYuan does the same).
        if parent.type == "l" and spec.type == "l":
            specs.extend(_adopt_spec(item, parent) for item in spec.children)
        else:
            specs.append(_adopt_spec(spec, parent))
    if not specs:
        refuse(strict, journal, op, InvalidTransaction, "data holds no block")
        return None
    for spec in specs:
        reason = fits(parent, spec.type)
        if reason:
            refuse(strict, journal, op, StructureError, reason)
            return None
    taken = _ids_free(ws, specs)
    if taken:
        refuse(strict, journal, op, InvalidTransaction, f"block id {taken} already exists")
        return None
    ids = []
    for spec in specs:
        node = node_from_spec(spec)
        if in_folded_section(parent, index, node.type, node.subtype):
            # Hidden like its neighbours, so unfolding the heading shows it with them.
            node.attrs["fold"] = "1"
            node.attrs["heading-fold"] = "1"
        attach(ws, node, parent, index, journal)
        ids.append(node.id)
        index += 1
    return ids


def _insert(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    place = _place(ws, op, strict, journal)
    if place is None:
        return []
    return _place_specs(ws, op, place[0], place[1], strict, journal) or []


def _container_target(
    ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal, *, first: bool
) -> tuple[Node, int] | None:
    parent = ws.blocks.get(op.parent_id)
    if parent is None:
        refuse(strict, journal, op, BlockNotFound, f"parent block {op.parent_id or '(none)'} not found")
        return None
    if parent.type not in CONTAINER_TYPES and parent.type == "h" and not first:
        # Appending to a heading appends to its section (as SiYuan does).
        section = heading_section(parent)
        anchor = section[-1] if section else parent
        grand = anchor.parent
        assert grand is not None
        return grand, child_index(anchor) + 1
    return _inside(parent, first=first)


def _append(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    place = _container_target(ws, op, strict, journal, first=False)
    if place is None:
        return []
    return _place_specs(ws, op, place[0], place[1], strict, journal) or []


def _prepend(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    place = _container_target(ws, op, strict, journal, first=True)
    if place is None:
        return []
    return _place_specs(ws, op, place[0], place[1], strict, journal) or []


def _replace_children(ws: Workspace, node: Node, specs: Any, journal: UndoJournal) -> None:
    for child in reversed(node.children):
        detach(ws, child, journal)
    for index, spec in enumerate(specs):
        attach(ws, node_from_spec(spec), node, index, journal)


def _update(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    node = ws.blocks.get(op.id)
    if node is None:
        refuse(strict, journal, op, BlockNotFound, f"block {op.id or '(none)'} not found")
        return {"updateCount": 0}
    specs = op.blocks
    if len(specs) == 1 and not node.children:
        # Fast path, the common edit: a leaf stays the same kind of leaf, so it still fits where it is.
        spec = specs[0]
        kind = node.type
        if spec.type == kind and kind not in CONTAINER_TYPES:
            markdown = spec.markdown
            subtype = spec.subtype
            raw_attrs = spec.attrs
            if len(raw_attrs) == 1:  # spec_attrs, inlined: usually just `updated`
                attr = raw_attrs[0]
                attrs = {attr.name: attr.value}
            else:
                attrs = {attr.name: attr.value for attr in raw_attrs}
            if kind == "h" or journal.record:
                if markdown != node.markdown or subtype != node.subtype:
                    set_content(node, kind, subtype, markdown, journal)
                set_attrs(node, attrs, journal)
            else:
                # Replay of a plain edit: the primitives' bookkeeping, inlined (the hottest path).
                node.markdown = markdown
                node.subtype = subtype
                node.attrs = attrs
                journal.touched.add(node.id)
            return {"updateCount": 1}
    # Ids of the subtree being replaced may be reused by the new content (not the block's own id).
    own = {n.id for n in iter_blocks(node)} if node.children else set()
    own.discard(node.id)
    if node.type == "d":
        # Updating a document replaces its body; its own attributes stay (bar the stamp).
        taken = _ids_free(ws, specs, own)
        if taken:
            refuse(strict, journal, op, InvalidTransaction, f"block id {taken} already exists")
            return {"updateCount": 0}
        _replace_children(ws, node, specs, journal)
        set_attrs(node, _stamp(node.attrs, op.updated), journal)
        return {"updateCount": 1}
    if not specs:
        refuse(strict, journal, op, InvalidTransaction, "data holds no block")
        return {"updateCount": 0}
    parent = node.parent
    assert parent is not None
    spec = _adopt_spec(specs[0], parent)
    reason = fits(parent, spec.type)
    if not reason and spec.children and spec.type not in CONTAINER_TYPES:
        reason = f"a {spec.type} block holds no child blocks"
    if not reason:
        for extra in specs[1:]:
            reason = fits(parent, extra.type)
            if reason:
                break
    if reason:
        refuse(strict, journal, op, StructureError, reason)
        return {"updateCount": 0}
    if spec.children or len(specs) > 1:
        taken = _ids_free(ws, list(spec.children) + list(specs[1:]), own)
        if taken:
            refuse(strict, journal, op, InvalidTransaction, f"block id {taken} already exists")
            return {"updateCount": 0}
    if spec.children or node.children:
        _replace_children(ws, node, spec.children, journal)
    if node.type != spec.type or node.subtype != spec.subtype or node.markdown != spec.markdown:
        set_content(node, spec.type, spec.subtype, spec.markdown, journal)
    set_attrs(node, spec_attrs(spec), journal)
    if len(specs) > 1:
        # Extra blocks in the data follow the updated one.
        index = child_index(node) + 1
        for extra in specs[1:]:
            attach(ws, node_from_spec(_adopt_spec(extra, parent)), parent, index, journal)
            index += 1
    return {"updateCount": len(specs)}


def _delete(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    node = ws.blocks.get(op.id)
    if node is None:
        # Already gone: clients retry deletes, and a concurrent delete is no conflict.
        return {"deleteCount": 0}
    if node.type == "d":
        refuse(strict, journal, op, StructureError, "deleteBlock cannot remove a document; use removeDoc")
        return {"deleteCount": 0}
    top = removal_top(node)
    count = subtree_size(top) if top.children else 1
    detach(ws, top, journal)
    return {"deleteCount": count}


# ---------------------------------------------------------------- moves


def _under(target: Node, group: list[Node]) -> bool:
    members = {id(n) for n in group}
    cursor: Node | None = target
    while cursor is not None:
        if id(cursor) in members:
            return True
        cursor = cursor.parent
    return False


def _move_to(
    ws: Workspace,
    op: pb.Operation,
    node: Node,
    group: list[Node],
    parent: Node,
    index: int,
    stamp: str,
    strict: bool,
    journal: UndoJournal,
) -> int:
    if _under(parent, group):
        refuse(strict, journal, op, StructureError, "cannot move a block into its own subtree")
        return 0
    for member in group:
        reason = fits(parent, member.type)
        if reason:
            refuse(strict, journal, op, StructureError, reason)
            return 0
    siblings = parent.children
    members = {id(n) for n in group}
    before = None
    for sib in siblings[index:]:
        if id(sib) not in members:
            before = sib
            break
    old_parent = node.parent
    assert old_parent is not None
    for member in group:
        move(ws, member, parent, before, journal)
    _adopt_node(node, parent, journal)
    set_attrs(node, _stamp(node.attrs, stamp), journal)
    # A list item or list the blocks left empty goes, as on delete.
    cursor: Node | None = old_parent
    while cursor is not None and cursor.type in ("i", "l") and not cursor.children:
        up = cursor.parent
        detach(ws, cursor, journal)
        cursor = up
    return len(group)


def _move(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    stamp = op.updated
    node = target(ws, op, strict, journal)
    if node is None:
        return {"moveCount": 0}
    if node.type == "d":
        refuse(strict, journal, op, StructureError, "a document cannot be moved as a block")
        return {"moveCount": 0}
    if op.previous_id == op.id or op.next_id == op.id:
        if strict:
            _place(ws, op, strict, journal)  # still check that every anchor exists
        return {"moveCount": 0}
    group = move_group(node)
    place = _place(ws, op, strict, journal)
    if place is None:
        return {"moveCount": 0}
    parent, index = place
    anchor = ws.blocks.get(op.next_id or op.previous_id)
    if anchor is not None and anchor is not node and any(anchor is m for m in group):
        refuse(
            strict, journal, op, StructureError, "cannot move a folded heading next to its own hidden section"
        )
        return {"moveCount": 0}
    return {"moveCount": _move_to(ws, op, node, group, parent, index, stamp, strict, journal)}


def _append_to_doc(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    stamp = op.updated
    node = target(ws, op, strict, journal)
    if node is None:
        return {"moveCount": 0}
    doc = ws.docs.get(op.parent_id)
    if doc is None:
        refuse(strict, journal, op, BlockNotFound, f"document {op.parent_id or '(none)'} not found")
        return {"moveCount": 0}
    if node.type == "d":
        refuse(strict, journal, op, StructureError, "a document cannot be moved as a block")
        return {"moveCount": 0}
    group = move_group(node)
    parent, index = doc, len(doc.children)
    if node.type == "i":
        last = doc.children[-1] if doc.children else None
        if last is None or last.type != "l" or last is node.parent:
            refuse(strict, journal, op, StructureError, "a list item can only be appended after a list")
            return {"moveCount": 0}
        parent, index = last, len(last.children)
    return {"moveCount": _move_to(ws, op, node, group, parent, index, stamp, strict, journal)}


# ---------------------------------------------------------------- dispatch


def _unsupported(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    refuse(strict, journal, op, UnsupportedAction, f"unsupported action {op.action}")
    return None


HANDLERS: dict[str, Handler] = {
    "insertBlock": _insert,
    "appendBlock": _append,
    "prependBlock": _prepend,
    "updateBlock": _update,
    "deleteBlock": _delete,
    "moveBlock": _move,
    "append": _append_to_doc,
    **actions_attrs.HANDLERS,
    **actions_doc.HANDLERS,
    **actions_notebook.HANDLERS,
}
HANDLERS.update({kernel: HANDLERS[seed] for kernel, seed in ALIASES.items()})


def apply_op(ws: Workspace, op: pb.Operation, *, strict: bool, journal: UndoJournal) -> Any:
    """Apply one resolved operation; returns its ``retData`` as a JSON value."""
    handler = HANDLERS.get(op.action)
    if handler is None:
        if is_attribute_view_action(op.action):
            return _unsupported(ws, op, strict, journal)
        refuse(strict, journal, op, UnsupportedAction, f"unknown action {op.action!r}")
        return None
    return handler(ws, op, strict, journal)
