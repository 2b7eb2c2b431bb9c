"""What every action handler shares: the handler signature, the refuse-or-record rule, spec → node.

The action handlers are split by family (``actions`` for block placement,
``actions_attrs`` for attributes and view state, ``actions_doc`` for
documents); ``actions`` also holds the dispatch table over all of them. The
helpers every family needs live here, one layer below all three, so each
family module imports on its own and none imports another family's module:
``actions`` imports the families, never the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oplog.errors import BlockNotFound
from oplog.tree import Node, UndoJournal, Workspace
from oplog.v1 import oplog_pb2 as pb

__all__ = ["Handler", "refuse", "target", "spec_attrs", "node_from_spec"]

#: An action handler: ``(workspace, resolved operation, strict, journal) -> retData``.
Handler = Callable[[Workspace, pb.Operation, bool, UndoJournal], Any]


def refuse(strict: bool, journal: UndoJournal, op: pb.Operation, error: type[Exception], reason: str) -> None:
    """Raise ``error(reason)`` for a live request; record a conflict (and let the caller skip) in replay."""
    if strict:
        raise error(reason)
    journal.conflict(op.action, op.id, reason)


def target(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Node | None:
    """The block ``op.id`` names, or ``None`` after refusing (``BlockNotFound``) when it does not exist."""
    node = ws.blocks.get(op.id)
    if node is None:
        refuse(strict, journal, op, BlockNotFound, f"block {op.id or '(none)'} not found")
    return node


def spec_attrs(spec: pb.BlockSpec) -> dict[str, str]:
    """A resolved spec's attributes as a plain dict."""
    attrs = spec.attrs
    if len(attrs) == 1:  # usually just `updated`; indexing beats iterating a upb container
        attr = attrs[0]
        return {attr.name: attr.value}
    return {attr.name: attr.value for attr in attrs}


def node_from_spec(spec: pb.BlockSpec) -> Node:
    """A fresh, unindexed subtree built from a resolved block spec."""
    node = Node(spec.id, spec.type, spec.subtype, spec.markdown, spec_attrs(spec))
    if spec.children:
        children = node.children
        for child_spec in spec.children:
            child = node_from_spec(child_spec)
            child.parent = node
            children.append(child)
    return node
