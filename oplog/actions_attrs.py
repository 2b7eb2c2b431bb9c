"""Attribute and view-state actions: setBlockAttrs, setBlockReminder, doUpdateUpdated, fold/unfold, setAttrViewName.

Same contract as ``oplog.actions``: resolved operations only, ``strict`` for
live requests, a recorded ``Conflict`` and a skip for replay when the target is gone.
"""

from __future__ import annotations

from typing import Any

from oplog.actions_base import Handler, refuse, target
from oplog.errors import BlockNotFound, StructureError
from oplog.model import CONTAINER_TYPES
from oplog.tree import Node, UndoJournal, Workspace, heading_section, set_attrs, set_av_name
from oplog.v1 import oplog_pb2 as pb

__all__ = ["HANDLERS"]


def _set_block_attrs(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    node = target(ws, op, strict, journal)
    if node is None:
        return None
    new = dict(node.attrs)
    explicit_updated = False
    changes = op.attrs
    for i in range(len(changes)):  # indexing beats iterating a upb container
        attr = changes[i]
        name = attr.name
        if name == "updated":
            explicit_updated = True
        if attr.value:
            new[name] = attr.value
        else:
            new.pop(name, None)
    if not explicit_updated:
        stamp = op.updated
        if stamp:
            new["updated"] = stamp
    set_attrs(node, new, journal)
    return {"id": node.id, **new}


def _set_reminder(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    result = _set_block_attrs(ws, op, strict, journal)
    if result is None:
        return None
    return result.get("custom-reminder-wechat", "")


def _do_update_updated(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    node = target(ws, op, strict, journal)
    if node is None:
        return None
    new = dict(node.attrs)
    if op.text:
        new["updated"] = op.text
    else:
        new.pop("updated", None)
    set_attrs(node, new, journal)
    return None


def _foldable(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Node | None:
    """The block ``op`` folds or unfolds, or None (refused) when it is missing or a document."""
    node = target(ws, op, strict, journal)
    if node is not None and node.type == "d":
        refuse(strict, journal, op, StructureError, "a document cannot be folded")
        return None
    return node


def _fold(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    # Folding is view state: it does not restamp `updated` (docs/actions.md).
    node = _foldable(ws, op, strict, journal)
    if node is None:
        return []
    if node.type == "h":
        section = heading_section(node)
        if node.attrs.get("fold") != "1":
            set_attrs(node, {**node.attrs, "fold": "1"}, journal)
        for block in section:
            attrs = block.attrs
            if attrs.get("fold") != "1" or attrs.get("heading-fold") != "1":
                set_attrs(block, {**attrs, "fold": "1", "heading-fold": "1"}, journal)
        return [block.id for block in section]
    if node.type not in CONTAINER_TYPES:
        refuse(strict, journal, op, StructureError, f"a {node.type} block cannot be folded")
        return []
    if node.attrs.get("fold") != "1":
        set_attrs(node, {**node.attrs, "fold": "1"}, journal)
    return [child.id for child in node.children]


def _without(attrs: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in attrs.items() if k not in names}


def _unfold(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    node = _foldable(ws, op, strict, journal)
    if node is None:
        return []
    if "fold" in node.attrs:
        set_attrs(node, _without(node.attrs, "fold"), journal)
    if node.type == "h":
        section = heading_section(node)
        for block in section:
            if "fold" in block.attrs or "heading-fold" in block.attrs:
                set_attrs(block, _without(block.attrs, "fold", "heading-fold"), journal)
        return [block.id for block in section]
    return [child.id for child in node.children]


def _set_av_name(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    if op.id not in ws.avs:
        refuse(strict, journal, op, BlockNotFound, f"attribute view {op.id or '(none)'} not found")
        return None
    set_av_name(ws, op.id, op.text, journal)
    return op.text


HANDLERS: dict[str, Handler] = {
    "setBlockAttrs": _set_block_attrs,
    "foldBlock": _fold,
    "unfoldBlock": _unfold,
    "setBlockReminder": _set_reminder,
    "doUpdateUpdated": _do_update_updated,
    "setAttrViewName": _set_av_name,
}
