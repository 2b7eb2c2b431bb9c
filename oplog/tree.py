"""The block tree state: notebooks, documents, blocks, attribute views — and the primitive mutations.

Every change to a ``Workspace`` goes through the handful of primitives at the
bottom of this module. Each one records, in an ``UndoJournal``, how to undo
itself (so a failed request rolls back exactly) and which ids it *touched*:
every block created, changed, moved or removed, the next sibling of a block
inserted, removed or moved (its previous sibling changed, and the state hash
covers it), and the blocks whose SQL ``parent_id`` moved because a heading
came, went or changed level. Nothing here parses text or reads a clock.

Observable order never depends on dict order or the hash seed: documents are
visited by id, blocks in tree order.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from oplog.errors import InconsistentTree
from oplog.model import CONTAINER_TYPES

__all__ = [
    "Node",
    "Workspace",
    "UndoJournal",
    "Conflict",
    "check_invariants",
    "snapshot",
    "iter_blocks",
    "iter_documents",
    "heading_level",
    "child_index",
    "insert_child",
    "remove_child",
    "previous_sibling",
    "next_sibling",
    "heading_section",
    "hidden_section",
    "section_parent",
    "in_folded_section",
    "child_docs",
    "descendant_docs",
    "parent_doc_id",
    "doc_path",
    "render_subtree",
    "subtree_size",
    "attach",
    "detach",
    "move",
    "set_content",
    "set_attrs",
    "add_document",
    "remove_document",
    "relocate_document",
    "set_av_name",
    "set_notebook",
    "box_docs",
]


class Node:
    """One block. ``box`` and ``path`` are set on documents only; other blocks read them via ``root``.

    ``order`` is a position label among its siblings and ``orders`` (containers)
    the labels of its children, increasing along ``children``; ``insert_child``
    and ``remove_child`` keep them in step and ``child_index`` searches them.
    They are a cache, never part of the state: nothing observable depends on them.
    """

    __slots__ = (
        "id", "type", "subtype", "markdown", "attrs", "children", "parent", "root", "box", "path",
        "order", "orders",
    )  # fmt: skip

    def __init__(
        self,
        id: str,
        type: str,
        subtype: str = "",
        markdown: str = "",
        attrs: dict[str, str] | None = None,
        children: list[Node] | None = None,
    ) -> None:
        self.id = id
        self.type = type
        self.subtype = subtype
        self.markdown = markdown
        self.attrs: dict[str, str] = {} if attrs is None else attrs
        self.children: list[Node] = [] if children is None else children
        self.parent: Node | None = None
        self.root: Node | None = None
        self.box = ""
        self.path = ""
        self.order = 0
        self.orders: array[int] | None = None

    def __repr__(self) -> str:
        return f"Node({self.id!r}, {self.type!r}, {self.markdown[:30]!r})"


class Workspace:
    """The whole materialised state: every block by id, documents by id, attribute-view names."""

    __slots__ = ("blocks", "docs", "avs", "notebooks")

    def __init__(self) -> None:
        self.blocks: dict[str, Node] = {}
        self.docs: dict[str, Node] = {}
        #: attribute view id -> name; an entry appears when an ``av`` block first refers to the view.
        self.avs: dict[str, str] = {}
        #: notebook id -> conf (``oplog.boxconf``), for notebooks made or configured by a notebook
        #: action. A box that only holds documents (older logs) has no entry and the default conf.
        self.notebooks: dict[str, dict[str, str]] = {}

    def boxes(self) -> list[str]:
        """Notebook ids that hold at least one document, sorted."""
        return sorted({doc.box for doc in self.docs.values()})

    def notebook_ids(self) -> list[str]:
        """Every notebook: those with a conf and those that only hold documents, sorted."""
        return sorted({*self.notebooks, *(doc.box for doc in self.docs.values())})

    def has_notebook(self, box: str) -> bool:
        """Whether notebook ``box`` exists (has a conf or holds a document)."""
        return box in self.notebooks or any(doc.box == box for doc in self.docs.values())

    def closed_boxes(self) -> set[str]:
        """Ids of the notebooks that are closed (their blocks leave the SQL view)."""
        return {box for box, conf in self.notebooks.items() if conf.get("closed") == "true"}

    def get(self, block_id: str) -> Node | None:
        """The block with this id, or None."""
        return self.blocks.get(block_id)

    def __len__(self) -> int:
        return len(self.blocks)


class Conflict:
    """A replayed operation that could not be applied as recorded, and the deterministic rule that applied."""

    __slots__ = ("op_index", "action", "block_id", "reason")

    def __init__(self, op_index: int, action: str, block_id: str, reason: str) -> None:
        self.op_index = op_index
        self.action = action
        self.block_id = block_id
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Conflict) and self.as_tuple() == other.as_tuple()

    def __hash__(self) -> int:
        return hash(self.as_tuple())

    def as_tuple(self) -> tuple[int, str, str, str]:
        """The conflict as a plain tuple."""
        return (self.op_index, self.action, self.block_id, self.reason)

    def __repr__(self) -> str:
        return f"Conflict{self.as_tuple()!r}"


class UndoJournal:
    """What a run of mutations did: undo steps (when recording), touched/removed ids, conflicts."""

    __slots__ = ("undo", "touched", "removed", "conflicts", "record", "op_index")

    def __init__(self, record: bool = True) -> None:
        self.undo: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.touched: set[str] = set()
        self.removed: set[str] = set()
        self.conflicts: list[Conflict] = []
        self.record = record
        self.op_index = 0

    def conflict(self, action: str, block_id: str, reason: str) -> None:
        """Record that the current operation hit ``reason`` during replay."""
        self.conflicts.append(Conflict(self.op_index, action, block_id, reason))

    def mark(self) -> int:
        """A point to roll back to with ``rollback_to``."""
        return len(self.undo)

    def rollback_to(self, mark: int) -> None:
        """Undo every step recorded after ``mark``, newest first."""
        steps = self.undo
        while len(steps) > mark:
            fn, args = steps.pop()
            fn(*args)

    def rollback(self) -> None:
        """Undo everything recorded, newest first."""
        self.rollback_to(0)


# ---------------------------------------------------------------- reading


def heading_level(node: Node) -> int:
    """1…6 for a heading, 0 for anything else."""
    if node.type != "h":
        return 0
    sub = node.subtype
    return int(sub[1]) if len(sub) == 2 and sub[1].isdigit() else 1


def iter_blocks(node: Node) -> Iterator[Node]:
    """``node`` and every block below it, depth first, in document order."""
    stack = [node]
    pop = stack.pop
    extend = stack.extend
    while stack:
        current = pop()
        yield current
        if current.children:
            extend(reversed(current.children))


def subtree_size(node: Node) -> int:
    """How many blocks ``node``'s subtree holds, itself included."""
    return sum(1 for _ in iter_blocks(node))


def iter_documents(ws: Workspace) -> Iterator[Node]:
    """Documents in id order."""
    for doc_id in sorted(ws.docs):
        yield ws.docs[doc_id]


#: Gap between neighbouring ``order`` labels after a relabel: room for 16 inserts at one spot.
_ORDER_GAP = 1 << 16


def _relabel(parent: Node) -> None:
    siblings = parent.children
    orders = array("q", range(0, len(siblings) * _ORDER_GAP, _ORDER_GAP))
    for sibling, order in zip(siblings, orders, strict=True):
        sibling.order = order
    parent.orders = orders


def child_index(node: Node) -> int:
    """``node``'s position in its parent's ``children``, by binary search of the parent's ``orders``.

    A linear ``list.index`` over a 600-block document costs 5–8 µs (two rich
    comparisons per block passed); an insert, a delete or a move needs one or
    two. ``orders`` is a packed array (no node touched while searching). The
    answer is checked by identity, so labels that are missing or stale — a list
    built by appending, loaded from a checkpoint — are simply relabelled here.
    """
    parent = node.parent
    assert parent is not None
    siblings = parent.children
    orders = parent.orders
    if orders is not None and len(orders) == len(siblings):
        index = bisect_left(orders, node.order)
        if index < len(siblings) and siblings[index] is node:
            return index
    _relabel(parent)
    index = node.order // _ORDER_GAP
    if index < len(siblings) and siblings[index] is node:
        return index
    raise ValueError(f"block {node.id} is not among its parent's children")  # as list.index would


def insert_child(parent: Node, index: int, node: Node) -> None:
    """``parent.children.insert(index, node)``, labelling ``node`` between its new neighbours."""
    siblings = parent.children
    siblings.insert(index, node)
    orders = parent.orders
    if orders is None or len(orders) + 1 != len(siblings):
        _relabel(parent)
        return
    if index == len(orders):
        order = orders[index - 1] + _ORDER_GAP if index else 0
    elif not index:
        order = orders[0] - _ORDER_GAP
    else:
        low, high = orders[index - 1], orders[index]
        if high - low < 2:
            _relabel(parent)
            return
        order = (low + high) // 2
    node.order = order
    orders.insert(index, order)


def remove_child(parent: Node, index: int) -> None:
    """``del parent.children[index]``, keeping the labels in step."""
    del parent.children[index]
    orders = parent.orders
    if orders is not None:
        if len(orders) == len(parent.children) + 1:
            del orders[index]
        else:
            parent.orders = None


def previous_sibling(node: Node) -> Node | None:
    """The block right before ``node`` under the same parent."""
    parent = node.parent
    if parent is None:
        return None
    index = child_index(node)
    return parent.children[index - 1] if index else None


def next_sibling(node: Node) -> Node | None:
    """The block right after ``node`` under the same parent."""
    parent = node.parent
    if parent is None:
        return None
    siblings = parent.children
    index = child_index(node) + 1
    return siblings[index] if index < len(siblings) else None


def _section_from(siblings: list[Node], start: int, level: int) -> list[Node]:
    out = []
    for sib in siblings[start:]:
        if sib.type == "h" and heading_level(sib) <= level:
            break
        out.append(sib)
    return out


def heading_section(node: Node) -> list[Node]:
    """The blocks a heading governs: following siblings until a heading of the same or a higher level."""
    if node.type != "h" or node.parent is None:
        return []
    siblings = node.parent.children
    return _section_from(siblings, child_index(node) + 1, heading_level(node))


def hidden_section(node: Node) -> list[Node]:
    """The run of a folded heading's section that folding hid: the blocks after it marked ``heading-fold``."""
    if node.type != "h" or node.attrs.get("fold") != "1":
        return []
    hidden = []
    for block in heading_section(node):
        if block.attrs.get("heading-fold") != "1":
            break  # contiguous, so moving the heading never splits the blocks around it
        hidden.append(block)
    return hidden


def section_parent(node: Node) -> Node | None:
    """SiYuan's SQL parent: the nearest heading whose section holds ``node``, else the structural parent."""
    parent = node.parent
    if parent is None:
        return None
    siblings = parent.children
    limit = heading_level(node) or 7
    for sib in reversed(siblings[: child_index(node)]):
        if sib.type == "h":
            level = heading_level(sib)
            if level < limit:
                return sib
    return parent


def in_folded_section(parent: Node, index: int, node_type: str, node_subtype: str) -> bool:
    """Whether a block of this type placed at ``parent.children[index]`` lands inside a folded heading's hidden section."""
    siblings = parent.children
    level = (
        int(node_subtype[1])
        if node_type == "h" and len(node_subtype) == 2
        else (1 if node_type == "h" else 7)
    )
    i = index - 1
    while i >= 0:
        sib = siblings[i]
        attrs = sib.attrs
        hidden = attrs.get("heading-fold") == "1"
        if sib.type == "h" and attrs.get("fold") == "1" and not hidden:
            return heading_level(sib) < level
        if not hidden:
            return False
        i -= 1
    return False


def parent_doc_id(doc: Node) -> str:
    """The id of the document a nested document sits under, or ``""`` at the top level."""
    parts = doc.path.split("/")
    return parts[-2] if len(parts) > 2 else ""


def doc_path(parent: Node | None, doc_id: str) -> str:
    """The path of document ``doc_id`` created under ``parent`` (None: top level)."""
    if parent is None:
        return f"/{doc_id}.sy"
    return f"{parent.path[:-3]}/{doc_id}.sy"


def child_docs(ws: Workspace, doc: Node) -> list[Node]:
    """Documents directly under ``doc``, in id order."""
    prefix = doc.path[:-3] + "/"
    depth = doc.path.count("/") + 1
    return sorted(
        (
            d
            for d in ws.docs.values()
            if d.box == doc.box and d.path.startswith(prefix) and d.path.count("/") == depth
        ),
        key=lambda d: d.id,
    )


def descendant_docs(ws: Workspace, doc: Node) -> list[Node]:
    """Every document below ``doc`` (not ``doc`` itself), parents before children, then by id."""
    prefix = doc.path[:-3] + "/"
    found = [d for d in ws.docs.values() if d.box == doc.box and d.path.startswith(prefix)]
    return sorted(found, key=lambda d: (d.path.count("/"), d.id))


def render_subtree(nodes: Iterable[Node], *, ial: bool = True) -> str:
    """Kramdown Markdown for these blocks and their subtrees (with IAL lines by default, so re-inserting recreates them)."""
    from oplog import kramdown

    return kramdown.render_markdown(list(nodes), ial=ial)


def _block_tuple(node: Node) -> tuple[Any, ...]:
    return (
        node.id,
        node.type,
        node.subtype,
        node.markdown,
        tuple(sorted(node.attrs.items())),
        tuple(_block_tuple(child) for child in node.children),
    )


def snapshot(ws: Workspace) -> tuple[Any, ...]:
    """A canonical, hash-seed-independent deep copy of the state, for comparisons in tests and tools."""
    docs = tuple((doc.box, doc.path, _block_tuple(doc)) for doc in iter_documents(ws))
    notebooks = tuple((box, tuple(sorted(conf.items()))) for box, conf in sorted(ws.notebooks.items()))
    return (docs, tuple(sorted(ws.avs.items())), notebooks)


def check_invariants(ws: Workspace) -> None:
    """Raise ``InconsistentTree`` if the tree is inconsistent (reachability, links, ids, paths, nesting rules)."""
    problem = _first_inconsistency(ws)
    if problem:
        raise InconsistentTree(problem)


def _first_inconsistency(ws: Workspace) -> str:
    # Checks, not asserts: ``oplog verify`` relies on them, and ``python -O`` strips asserts.
    seen: set[str] = set()
    for doc_id, doc in ws.docs.items():
        if doc.id != doc_id:
            return f"doc index {doc_id} holds {doc.id}"
        if doc.type != "d":
            return f"document {doc_id} has type {doc.type}"
        if doc.parent is not None or doc.root is not doc:
            return f"document {doc_id} has a parent or wrong root"
        if ws.blocks.get(doc_id) is not doc:
            return f"document {doc_id} missing from the block index"
        if not doc.box:
            return f"document {doc_id} has no box"
        if not doc.path.endswith(f"/{doc_id}.sy"):
            return f"document {doc_id} has path {doc.path}"
        parent_id = parent_doc_id(doc)
        if parent_id:
            parent = ws.docs.get(parent_id)
            if parent is None:
                return f"document {doc_id} sits under missing document {parent_id}"
            if parent.box != doc.box:
                return f"document {doc_id} is in another box than its parent"
            if doc.path != doc_path(parent, doc_id):
                return f"document {doc_id} path {doc.path} disagrees with parent"
        stack = [doc]
        while stack:
            node = stack.pop()
            if node.id in seen:
                return f"block {node.id} reachable twice (cycle or duplicate)"
            seen.add(node.id)
            if ws.blocks.get(node.id) is not node:
                return f"block {node.id} not indexed as itself"
            if node.root is not doc:
                return f"block {node.id} has root {node.root and node.root.id}, expected {doc_id}"
            if "id" in node.attrs:
                return f"block {node.id} carries an id attribute"
            if node is not doc:
                if node.type == "d":
                    return f"document type below {doc_id}: {node.id}"
                if node.box or node.path:
                    return f"block {node.id} carries box/path"
            if node.children and node.type not in CONTAINER_TYPES:
                return f"leaf {node.id} ({node.type}) has children"
            for child in node.children:
                if child.parent is not node:
                    return f"block {child.id} parent link disagrees"
                if node.type == "l" and child.type != "i":
                    return f"list {node.id} holds a {child.type}"
                if child.type == "i" and node.type != "l":
                    return f"list item {child.id} under a {node.type}"
                stack.append(child)
    if seen != set(ws.blocks):
        return f"unreachable blocks: {sorted(set(ws.blocks) - seen)[:5]}"
    for box, conf in ws.notebooks.items():
        if not isinstance(conf, dict) or not all(isinstance(v, str) for v in conf.values()):
            return f"notebook {box} has a malformed conf"
        if conf.get("closed") not in ("true", "false"):
            return f"notebook {box} is neither open nor closed"
    return ""


# ---------------------------------------------------------------- mutating
#
# Undo steps are (function, args) pairs rather than closures: cheaper, and the
# replay path (record=False) skips them entirely.


def _touch_heading_span(siblings: list[Node], start: int, level: int, touched: set[str]) -> None:
    # Blocks after a heading change their SQL parent when the heading comes, goes or changes level.
    for sib in siblings[start:]:
        if sib.type == "h" and heading_level(sib) <= level:
            break
        touched.add(sib.id)


def _register(ws: Workspace, node: Node, root: Node, journal: UndoJournal) -> None:
    blocks = ws.blocks
    touched = journal.touched
    removed = journal.removed
    if not node.children and node.type != "av":
        blocks[node.id] = node
        node.root = root
        touched.add(node.id)
        removed.discard(node.id)
        return
    for n in iter_blocks(node):
        blocks[n.id] = n
        n.root = root
        touched.add(n.id)
        removed.discard(n.id)
        if n.type == "av":
            _register_av(ws, n, journal)


def _register_av(ws: Workspace, node: Node, journal: UndoJournal) -> None:
    from oplog.kramdown import attribute_view_id

    av_id = attribute_view_id(node.markdown)
    if av_id and av_id not in ws.avs:
        ws.avs[av_id] = ""
        if journal.record:
            journal.undo.append((ws.avs.pop, (av_id,)))


def _unregister(ws: Workspace, node: Node, journal: UndoJournal) -> None:
    blocks = ws.blocks
    touched = journal.touched
    removed = journal.removed
    if not node.children:
        del blocks[node.id]
        touched.add(node.id)
        removed.add(node.id)
        return
    for n in iter_blocks(node):
        del blocks[n.id]
        touched.add(n.id)
        removed.add(n.id)


def _undo_attach(ws: Workspace, node: Node) -> None:
    parent = node.parent
    assert parent is not None
    remove_child(parent, child_index(node))
    node.parent = None
    for n in iter_blocks(node):
        del ws.blocks[n.id]


def attach(ws: Workspace, node: Node, parent: Node, index: int, journal: UndoJournal) -> None:
    """Place a new (unindexed) subtree at ``parent.children[index]`` and index its blocks."""
    siblings = parent.children
    insert_child(parent, index, node)
    node.parent = parent
    root = parent.root
    assert root is not None
    touched = journal.touched
    node_type = node.type
    if not node.children and node_type != "av":
        # _register of a single leaf, inlined (every insert of a paragraph takes this path).
        node_id = node.id
        ws.blocks[node_id] = node
        node.root = root
        touched.add(node_id)
        journal.removed.discard(node_id)
    else:
        _register(ws, node, root, journal)
    if index + 1 < len(siblings):
        touched.add(siblings[index + 1].id)
    if node_type == "h":
        _touch_heading_span(siblings, index + 1, heading_level(node), touched)
    if journal.record:
        journal.undo.append((_undo_attach, (ws, node)))


def _undo_detach(ws: Workspace, node: Node, parent: Node, index: int) -> None:
    insert_child(parent, index, node)
    node.parent = parent
    root = parent.root
    for n in iter_blocks(node):
        ws.blocks[n.id] = n
        n.root = root


def detach(ws: Workspace, node: Node, journal: UndoJournal) -> int:
    """Remove ``node`` and its subtree from the tree and the index; returns the old index."""
    parent = node.parent
    assert parent is not None and parent.root is not None
    siblings = parent.children
    index = child_index(node)
    remove_child(parent, index)
    node.parent = None
    _unregister(ws, node, journal)
    touched = journal.touched
    if index < len(siblings):
        touched.add(siblings[index].id)
    if node.type == "h":
        _touch_heading_span(siblings, index, heading_level(node), touched)
    if journal.record:
        journal.undo.append((_undo_detach, (ws, node, parent, index)))
    return index


def _set_root(node: Node, root: Node, touched: set[str]) -> None:
    for n in iter_blocks(node):
        n.root = root
        touched.add(n.id)


def _undo_move(node: Node, parent: Node, index: int, old_root: Node) -> None:
    current = node.parent
    assert current is not None
    remove_child(current, child_index(node))
    insert_child(parent, index, node)
    node.parent = parent
    if node.root is not old_root:
        for n in iter_blocks(node):
            n.root = old_root


def move(ws: Workspace, node: Node, parent: Node, before: Node | None, journal: UndoJournal) -> None:
    """Move ``node`` (with its subtree) under ``parent``, right before ``before`` (None: at the end)."""
    old_parent = node.parent
    assert old_parent is not None and old_parent.root is not None and parent.root is not None
    old_root = old_parent.root
    touched = journal.touched
    siblings = old_parent.children
    old_index = child_index(node)
    remove_child(old_parent, old_index)
    if old_index < len(siblings):
        touched.add(siblings[old_index].id)
    is_heading = node.type == "h"
    if is_heading:
        _touch_heading_span(siblings, old_index, heading_level(node), touched)
    targets = parent.children
    index = child_index(before) if before is not None else len(targets)
    insert_child(parent, index, node)
    node.parent = parent
    touched.add(node.id)
    if index + 1 < len(targets):
        touched.add(targets[index + 1].id)
    if is_heading:
        _touch_heading_span(targets, index + 1, heading_level(node), touched)
    new_root = parent.root
    if new_root is not old_root:
        _set_root(node, new_root, touched)
    if journal.record:
        journal.undo.append((_undo_move, (node, old_parent, old_index, old_root)))


def _undo_content(node: Node, type_: str, subtype: str, markdown: str) -> None:
    node.type = type_
    node.subtype = subtype
    node.markdown = markdown


def set_content(node: Node, type_: str, subtype: str, markdown: str, journal: UndoJournal) -> None:
    """Change a block's type, subtype and own Markdown."""
    old_type = node.type
    old_subtype = node.subtype
    if journal.record:
        journal.undo.append((_undo_content, (node, old_type, old_subtype, node.markdown)))
    node.type = type_
    node.subtype = subtype
    node.markdown = markdown
    journal.touched.add(node.id)
    if (old_type == "h" or type_ == "h") and (old_type != type_ or old_subtype != subtype) and node.parent:
        siblings = node.parent.children
        old_level = int(old_subtype[1]) if old_type == "h" else 7
        new_level = heading_level(node) or 7
        _touch_heading_span(siblings, child_index(node) + 1, min(old_level, new_level), journal.touched)


def _undo_attrs(node: Node, attrs: dict[str, str]) -> None:
    node.attrs = attrs


def set_attrs(node: Node, attrs: dict[str, str], journal: UndoJournal) -> None:
    """Replace a block's whole attribute dict (callers build the new dict; the old one is kept for undo)."""
    if journal.record:
        journal.undo.append((_undo_attrs, (node, node.attrs)))
    node.attrs = attrs
    journal.touched.add(node.id)


def _undo_add_document(ws: Workspace, doc: Node) -> None:
    del ws.docs[doc.id]
    for n in iter_blocks(doc):
        del ws.blocks[n.id]


def add_document(ws: Workspace, doc: Node, box: str, path: str, journal: UndoJournal) -> None:
    """Add a new document (with any body already under it) to notebook ``box`` at ``path``."""
    doc.parent = None
    doc.box = box
    doc.path = path
    ws.docs[doc.id] = doc
    _register(ws, doc, doc, journal)
    if journal.record:
        journal.undo.append((_undo_add_document, (ws, doc)))


def _undo_remove_document(ws: Workspace, doc: Node) -> None:
    ws.docs[doc.id] = doc
    for n in iter_blocks(doc):
        ws.blocks[n.id] = n


def remove_document(ws: Workspace, doc: Node, journal: UndoJournal) -> None:
    """Remove one document and all its blocks (child documents are the caller's business)."""
    del ws.docs[doc.id]
    _unregister(ws, doc, journal)
    if journal.record:
        journal.undo.append((_undo_remove_document, (ws, doc)))


def _undo_relocate(doc: Node, box: str, path: str) -> None:
    doc.box = box
    doc.path = path


def relocate_document(doc: Node, box: str, path: str, journal: UndoJournal) -> None:
    """Change a document's notebook and path (its blocks' box/path follow through ``root``)."""
    if journal.record:
        journal.undo.append((_undo_relocate, (doc, doc.box, doc.path)))
    doc.box = box
    doc.path = path
    journal.touched.update(n.id for n in iter_blocks(doc))


def _undo_av(ws: Workspace, av_id: str, old: str | None) -> None:
    if old is None:
        ws.avs.pop(av_id, None)
    else:
        ws.avs[av_id] = old


def set_av_name(ws: Workspace, av_id: str, name: str, journal: UndoJournal) -> None:
    """Name attribute view ``av_id``."""
    if journal.record:
        journal.undo.append((_undo_av, (ws, av_id, ws.avs.get(av_id))))
    ws.avs[av_id] = name


def box_docs(ws: Workspace, box: str) -> list[Node]:
    """The documents of notebook ``box``, parents before children, then by id."""
    return sorted((d for d in ws.docs.values() if d.box == box), key=lambda d: (d.path.count("/"), d.id))


def _undo_notebook(ws: Workspace, box: str, old: dict[str, str] | None) -> None:
    if old is None:
        ws.notebooks.pop(box, None)
    else:
        ws.notebooks[box] = old


def set_notebook(ws: Workspace, box: str, conf: dict[str, str] | None, journal: UndoJournal) -> None:
    """Set notebook ``box``'s whole conf (None: drop it); opening or closing touches its blocks.

    ``conf`` is the caller's new dict: a conf is replaced, never changed in place
    (the state hash and the undo journal keep the old dict).

    The blocks are touched so the SQL view drops or restores their rows (a
    closed notebook's blocks leave it, as in SiYuan); their digests do not change.
    """
    old = ws.notebooks.get(box)
    if journal.record:
        journal.undo.append((_undo_notebook, (ws, box, old)))
    if conf is None:
        ws.notebooks.pop(box, None)
    else:
        ws.notebooks[box] = conf
    was_closed = old is not None and old.get("closed") == "true"
    now_closed = conf is not None and conf.get("closed") == "true"
    if was_closed != now_closed:
        touched = journal.touched
        for doc in box_docs(ws, box):
            touched.update(n.id for n in iter_blocks(doc))
