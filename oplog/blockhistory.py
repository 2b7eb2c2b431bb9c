"""One block's history: every event that named it, with the block's content before and after.

Two ways to know "before" and "after" (docs/inspect.md):

* ``BlockTracker`` (the default) derives them from the events that name the
  block, without folding anything else: the resolved operation carries what
  it placed (``blocks``: type, subtype, Markdown, attributes), an attribute
  change carries the changed attributes and the stamp, a move restamps,
  a delete ends the block. "Before" is the previous entry's "after" (or the
  state at the scan's start position). Cost: a byte search per event plus
  a few field reads for the events that name the block. Some effects depend on
  blocks the events do not name (a list item adopting its new list's kind,
  a folded heading's section, re-levelled headings); entries where a rule
  cannot know the exact result say ``exact=False``.
* ``ExactTracker`` folds every event through the engine (replay's cost) and
  reads the block from the real state; it also finds events that changed the
  block without naming it (the engine's ``touched`` set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from oplog.engine import apply_event
from oplog.resolve import seed_action
from oplog.scan import spec_ids
from oplog.tree import Node, Workspace
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import from_value

__all__ = ["BlockState", "HistoryEntry", "BlockTracker", "ExactTracker", "state_of"]

_INSERTS = frozenset({"insertBlock", "appendBlock", "prependBlock"})
_ATTRS = frozenset({"setBlockAttrs", "setBlockReminder"})
_MOVES = frozenset({"moveBlock", "append", "moveOutlineHeading"})
_REMOVALS = frozenset({"deleteBlock", "removeDoc", "updateBlock"})


@dataclass(frozen=True)
class BlockState:
    """A block's own content: type, subtype, own Markdown, attributes (without ``id``)."""

    type: str
    subtype: str
    markdown: str
    attrs: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """As a JSON object."""
        return {
            "type": self.type,
            "subtype": self.subtype,
            "markdown": self.markdown,
            "attrs": dict(sorted(self.attrs.items())),
        }

    def with_attrs(self, attrs: dict[str, str]) -> BlockState:
        """The same block with other attributes."""
        return BlockState(self.type, self.subtype, self.markdown, attrs)


def state_of(node: Node | None) -> BlockState | None:
    """A tree node's content as a ``BlockState`` (None for no node)."""
    if node is None:
        return None
    return BlockState(
        node.type, node.subtype, node.markdown, {k: v for k, v in node.attrs.items() if k != "id"}
    )


def _spec_state(spec: pb.BlockSpec) -> BlockState:
    return BlockState(
        spec.type, spec.subtype, spec.markdown, {a.name: a.value for a in spec.attrs if a.name != "id"}
    )


def _find_spec(specs: Any, block_id: str) -> pb.BlockSpec | None:
    stack = list(specs)
    while stack:
        spec = stack.pop()
        if spec.id == block_id:
            return spec
        if spec.children:
            stack.extend(spec.children)
    return None


def _stamped(attrs: dict[str, str], stamp: str) -> dict[str, str]:
    return {**attrs, "updated": stamp} if stamp else dict(attrs)


def _ret_ids(op: pb.Operation) -> list[str]:
    if not op.HasField("ret_data"):
        return []
    value = from_value(op.ret_data)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


@dataclass
class HistoryEntry:
    """One event that touched the block: where it sits, what it did to the block, before and after."""

    position: int
    event: pb.Event
    actions: list[str]
    roles: list[str]
    before: BlockState | None
    after: BlockState | None
    exact: bool = True


class BlockTracker:
    """Follows one block through the events that name it (``feed`` each scanned event in merged order)."""

    def __init__(self, block_id: str, initial: BlockState | None = None) -> None:
        """Start from the block's state at the scan's first position (None: it does not exist yet)."""
        self.block_id = block_id
        self.needle = block_id.encode()
        self.state = initial
        self.seen = initial is not None

    def feed(self, position: int, event: pb.Event, raw: bytes) -> HistoryEntry | None:
        """The entry for this event, or None when the event does not mention the block."""
        if self.needle not in raw:
            return None
        x = self.block_id
        before = self.state
        state = before
        actions: list[str] = []
        roles: list[str] = []
        exact = True
        removal_ops = False
        for op in event.transaction.do_operations:
            action = seed_action(op.action)
            removal_ops = removal_ops or action in _REMOVALS
            role = ""
            target = op.id == x
            if action in _INSERTS or (action == "createDoc" and not target):
                spec = _find_spec(op.blocks, x) if op.blocks else None
                if spec is not None:
                    if state is None:
                        state, role = _spec_state(spec), "created"
                        exact = exact and spec.type != "i"  # an item may take its new list's kind
                    else:
                        role = "skipped: id exists"
            elif action == "createDoc":
                if state is None:
                    attrs = {"title": op.text}
                    if op.updated:
                        attrs["updated"] = op.updated
                    state, role = BlockState("d", "", "", attrs), "created"
                else:
                    role = "skipped: id exists"
            elif action == "updateBlock":
                spec = _find_spec(op.blocks, x) if op.blocks else None
                if target:
                    if state is None:
                        role = "skipped: gone"
                    elif state.type == "d":
                        state, role = state.with_attrs(_stamped(state.attrs, op.updated)), "body replaced"
                    elif op.blocks:
                        state, role = _spec_state(op.blocks[0]), "updated"
                        exact = exact and state.type != "i"
                elif spec is not None:
                    state, role = _spec_state(spec), ("updated with its parent" if state else "created")
            elif target and state is None and action != "deleteBlock" and action != "removeDoc":
                role = "skipped: gone"
            elif action == "deleteBlock" and target:
                if state is not None and state.type != "d":
                    state, role = None, "deleted"
            elif action == "removeDoc" and target:
                if state is not None:
                    state, role = None, "removed"
            elif action in _ATTRS and target:
                assert state is not None
                attrs = dict(state.attrs)
                explicit = False
                for attr in op.attrs:
                    explicit = explicit or attr.name == "updated"
                    if attr.value:
                        attrs[attr.name] = attr.value
                    else:
                        attrs.pop(attr.name, None)
                if not explicit and op.updated:
                    attrs["updated"] = op.updated
                state, role = state.with_attrs(attrs), "attributes"
            elif action == "doUpdateUpdated" and target:
                assert state is not None
                attrs = {k: v for k, v in state.attrs.items() if k != "updated"}
                if op.text:
                    attrs["updated"] = op.text
                state, role = state.with_attrs(attrs), "updated stamp"
            elif action in ("foldBlock", "unfoldBlock") and target:
                assert state is not None
                if state.type != "d":
                    attrs = {k: v for k, v in state.attrs.items() if k != "fold"}
                    if action == "foldBlock":
                        attrs["fold"] = "1"
                    state, role = state.with_attrs(attrs), action[:-5] + "ed"
            elif action in ("foldBlock", "unfoldBlock") and x in _ret_ids(op):
                # Hidden or shown with a folded heading's section, or as a folded container's child:
                # only the first changes the block, and which one it was is not in the event.
                role, exact = "in a " + action[:-5] + "ed section", False
            elif action in _MOVES and target:
                assert state is not None
                if state.type != "d":
                    state, role = state.with_attrs(_stamped(state.attrs, op.updated)), "moved"
                    exact = exact and action != "moveOutlineHeading" and state.type != "i"
            elif action in ("heading2Doc", "li2Doc") and target:
                assert state is not None
                attrs = {k: v for k, v in state.attrs.items() if k not in ("fold", "heading-fold")}
                attrs["title"] = op.text
                state, role = BlockState("d", "", "", _stamped(attrs, op.updated)), "became a document"
            elif action == "doc2Heading" and target:
                state, role, exact = state, "became a heading", False
            elif action not in _INSERTS and op.blocks and x in spec_ids(op.blocks):
                role, exact = "content", False
            if not role and x in (op.parent_id, op.previous_id, op.next_id, op.parent_doc):
                role = "anchor"
            if role:
                actions.append(op.action)
                roles.append(role)
        if not roles:
            # Not named by a do operation. When the undo operations re-create it (its id is in their
            # Markdown), it went with an ancestor that was deleted or replaced, or moved along with one;
            # named anywhere else (an undo op's anchor, say) it was only a neighbour.
            if before is None or not self._recreated_by_undo(event):
                return None
            ops = event.transaction.do_operations
            actions = [op.action for op in ops]
            if removal_ops and not any(seed_action(op.action) in _MOVES for op in ops):
                state, roles = None, ["removed with an ancestor"]
            else:
                roles, exact = ["affected"], False
        self.state = state
        self.seen = True
        return HistoryEntry(position, event, actions, roles, before, state, exact)

    def _recreated_by_undo(self, event: pb.Event) -> bool:
        needle = self.needle
        for op in event.transaction.undo_operations:
            if op.HasField("data") and needle in op.data.SerializeToString():
                return True
        return False


class ExactTracker:
    """Follows one block by folding every event through the engine (replay's cost; exact)."""

    def __init__(self, block_id: str, ws: Workspace | None = None) -> None:
        """Start from ``ws`` (the state at the scan's first position; consumed) or from nothing."""
        self.block_id = block_id
        self.needle = block_id.encode()
        self.ws = ws if ws is not None else Workspace()
        self.state = state_of(self.ws.blocks.get(block_id))
        self.seen = self.state is not None

    def feed(self, position: int, event: pb.Event, raw: bytes) -> HistoryEntry | None:
        """Fold the event; the entry when it named the block or changed it."""
        result = apply_event(self.ws, event)
        x = self.block_id
        named = self.needle in raw and any(
            x in (op.id, op.parent_id, op.previous_id, op.next_id, op.parent_doc)
            or (op.blocks and x in spec_ids(op.blocks))
            for op in event.transaction.do_operations
        )
        if not named and x not in result.touched and x not in result.removed:
            return None
        before = self.state
        after = state_of(self.ws.blocks.get(x))
        if not named and before == after:
            return None  # a neighbour changed (the engine counts the next sibling as touched)
        self.state = after
        self.seen = True
        ops = event.transaction.do_operations
        mine = [
            op.action for op in ops if x in (op.id, op.parent_id, op.previous_id, op.next_id, op.parent_doc)
        ]
        role = "named" if named else "changed without being named"
        if any(c.block_id == x for c in result.conflicts):
            role = "conflict: skipped"
        return HistoryEntry(position, event, mine or [op.action for op in ops], [role], before, after, True)
