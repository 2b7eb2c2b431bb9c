"""Document-level actions: createDoc, removeDoc, moveDoc, doc2Heading, heading2Doc, li2Doc, moveOutlineHeading.

Same contract as ``oplog.actions``: resolved operations only, ``strict`` for
live requests, a recorded ``Conflict`` and a deterministic fallback for replay.
"""

from __future__ import annotations

import re
from typing import Any

from oplog.actions_base import Handler, node_from_spec, refuse, target
from oplog.errors import BlockNotFound, InvalidTransaction, StructureError
from oplog.tree import (
    Node,
    UndoJournal,
    Workspace,
    add_document,
    attach,
    child_docs,
    child_index,
    descendant_docs,
    detach,
    doc_path,
    heading_level,
    heading_section,
    iter_blocks,
    move,
    parent_doc_id,
    relocate_document,
    remove_document,
    set_attrs,
    set_content,
)
from oplog.v1 import oplog_pb2 as pb

__all__ = ["HANDLERS", "relevel"]

_ATX = re.compile(r"[ ]{0,3}#{1,6}(?:[ \t]+|$)")


def relevel(markdown: str, level: int) -> str:
    """A heading's Markdown at another level (ATX form)."""
    match = _ATX.match(markdown)
    text = markdown[match.end() :] if match else markdown.split("\n", 1)[0]
    return "#" * level + " " + text if text else "#" * level


def _set_level(node: Node, level: int, stamp: str, journal: UndoJournal) -> None:
    level = max(1, min(6, level))
    if heading_level(node) != level:
        set_content(node, "h", f"h{level}", relevel(node.markdown, level), journal)
        set_attrs(node, {**node.attrs, "updated": stamp} if stamp else dict(node.attrs), journal)


def _prune_empty(ws: Workspace, cursor: Node | None, journal: UndoJournal) -> None:
    # A list item or list left empty goes, as on delete.
    while cursor is not None and cursor.type in ("i", "l") and not cursor.children:
        up = cursor.parent
        detach(ws, cursor, journal)
        cursor = up


def _ids_clash(ws: Workspace, specs: Any) -> str:
    stack = list(specs)
    seen: set[str] = set()
    while stack:
        spec = stack.pop()
        if not spec.id or spec.id in ws.blocks or spec.id in seen:
            return spec.id or "(empty)"
        seen.add(spec.id)
        stack.extend(spec.children)
    return ""


def _parent_doc(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Node | None:
    if not op.parent_doc:
        return None
    parent = ws.docs.get(op.parent_doc)
    if parent is None:
        # Replay: the parent document is gone, so the new one lands at the notebook's top level.
        refuse(strict, journal, op, BlockNotFound, f"parent document {op.parent_doc} not found")
    return parent


def _create_doc(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    stamp = op.updated
    if op.id in ws.blocks or not op.id:
        refuse(strict, journal, op, InvalidTransaction, f"block id {op.id or '(empty)'} already exists")
        return None
    clash = _ids_clash(ws, op.blocks)
    if clash:
        refuse(strict, journal, op, InvalidTransaction, f"block id {clash} already exists")
        return None
    parent = _parent_doc(ws, op, strict, journal)
    box = parent.box if parent is not None else op.box
    if not box:
        refuse(strict, journal, op, InvalidTransaction, "createDoc needs a box")
        return None
    if strict and _closed(ws, box):
        # The kernel cannot write into a notebook it has not mounted; replay keeps a concurrent document.
        raise StructureError(f"notebook {box} is closed")
    attrs = {"title": op.text}
    if stamp:
        attrs["updated"] = stamp
    for attr in op.attrs:
        # Document attributes from front matter (older createDoc events carry none).
        attrs[attr.name] = attr.value
    doc = Node(op.id, "d", attrs=attrs)
    for spec in op.blocks:
        child = node_from_spec(spec)
        child.parent = doc
        doc.children.append(child)
    add_document(ws, doc, box, doc_path(parent, doc.id), journal)
    return doc.id


def _remove_doc(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    doc = ws.docs.get(op.id)
    if doc is None:
        if strict:
            raise BlockNotFound(f"document {op.id or '(none)'} not found")
        return []  # already gone: nothing to do, as for deleteBlock
    docs = [doc, *descendant_docs(ws, doc)]
    for victim in reversed(docs):
        remove_document(ws, victim, journal)
    return [d.id for d in docs]


def _closed(ws: Workspace, box: str) -> bool:
    conf = ws.notebooks.get(box)
    return conf is not None and conf.get("closed") == "true"


def _move_doc(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    doc = ws.docs.get(op.id)
    if doc is None:
        refuse(strict, journal, op, BlockNotFound, f"document {op.id or '(none)'} not found")
        return None
    parent = _parent_doc(ws, op, strict, journal)
    box = parent.box if parent is not None else op.box
    if not box or not ws.has_notebook(box):
        # Replay: the target notebook was removed meanwhile; the document stays where it is.
        refuse(strict, journal, op, BlockNotFound, f"notebook {box or '(none)'} not found")
        return None
    if strict and (_closed(ws, box) or _closed(ws, doc.box)):
        raise StructureError(f"notebook {box if _closed(ws, box) else doc.box} is closed")
    subtree = descendant_docs(ws, doc)
    if parent is not None and (parent is doc or any(parent is d for d in subtree)):
        refuse(strict, journal, op, StructureError, "cannot move a document under itself")
        return None
    path = doc_path(parent, doc.id)
    if box != doc.box or path != doc.path:
        old_prefix = doc.path[:-3]
        new_prefix = path[:-3]
        relocate_document(doc, box, path, journal)
        for child in subtree:
            relocate_document(child, box, new_prefix + child.path[len(old_prefix) :], journal)
    return {"id": doc.id, "box": box, "path": path, "parentDoc": parent_doc_id(doc)}


def _doc2heading(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    stamp = op.updated
    src = ws.docs.get(op.id)
    if src is None:
        refuse(strict, journal, op, BlockNotFound, f"document {op.id or '(none)'} not found")
        return None
    if child_docs(ws, src):
        refuse(strict, journal, op, StructureError, "a document with child documents cannot become a heading")
        return None
    after = not op.next_id
    target_id = op.next_id or op.previous_id
    pivot = ws.blocks.get(target_id) if target_id else None
    if pivot is None:
        refuse(strict, journal, op, BlockNotFound, f"target block {target_id or '(none)'} not found")
        return None
    if pivot.root is src or pivot.parent is None:
        refuse(strict, journal, op, StructureError, "the target must be a block in another document")
        return None
    if pivot.type == "i" and pivot.children:
        pivot = pivot.children[-1]
    pivot_level = heading_level(pivot)
    levels = [heading_level(c) for c in src.children if c.type == "h"]
    top = min(levels) if levels else 0
    delta = pivot_level - top + 1
    level = pivot_level
    if pivot.type == "h":
        if after:
            section = heading_section(pivot)
            if section:
                pivot = section[-1]
    else:
        level += 1
        delta += 1
    level = min(level, 6)
    parent = pivot.parent
    assert parent is not None
    title = src.attrs.get("title", "")
    attrs = {k: v for k, v in src.attrs.items() if k not in ("title", "type", "scroll")}
    if stamp:
        attrs["updated"] = stamp
    body = list(src.children)
    for child in reversed(body):
        detach(ws, child, journal)
    remove_document(ws, src, journal)
    heading = Node(src.id, "h", f"h{level}", relevel(title, level), attrs)
    index = child_index(pivot) + (1 if after else 0)
    attach(ws, heading, parent, index, journal)
    for offset, child in enumerate(body, start=1):
        attach(ws, child, parent, index + offset, journal)
        if child.type == "h" and top:
            _set_level(child, heading_level(child) + delta, stamp, journal)
    return heading.id


def _unfolded(node: Node, journal: UndoJournal) -> None:
    for n in iter_blocks(node):
        if "fold" in n.attrs or "heading-fold" in n.attrs:
            set_attrs(n, {k: v for k, v in n.attrs.items() if k not in ("fold", "heading-fold")}, journal)


def _new_doc_from(
    ws: Workspace,
    op: pb.Operation,
    source: Node,
    body: list[Node],
    stamp: str,
    strict: bool,
    journal: UndoJournal,
) -> Node | None:
    parent = _parent_doc(ws, op, strict, journal)
    box = parent.box if parent is not None else (op.box or (source.root.box if source.root else ""))
    old_parent = source.parent
    for child in reversed(body):
        detach(ws, child, journal)
    detach(ws, source, journal)
    _prune_empty(ws, old_parent, journal)
    attrs = {k: v for k, v in source.attrs.items() if k not in ("fold", "heading-fold")}
    attrs["title"] = op.text
    if stamp:
        attrs["updated"] = stamp
    doc = Node(source.id, "d", attrs=attrs)
    add_document(ws, doc, box, doc_path(parent, doc.id), journal)
    for index, child in enumerate(body):
        attach(ws, child, doc, index, journal)
    return doc


def _heading2doc(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    stamp = op.updated
    heading = target(ws, op, strict, journal)
    if heading is None:
        return None
    if heading.type != "h":
        refuse(strict, journal, op, StructureError, f"block {op.id} is not a heading")
        return None
    section = heading_section(heading)
    doc = _new_doc_from(ws, op, heading, section, stamp, strict, journal)
    if doc is None:
        return None
    levels = [heading_level(c) for c in section if c.type == "h"]
    top = min(levels) if levels else 0
    for child in section:
        # Folded sections open up in their own document (SiYuan does the same).
        _unfolded(child, journal)
        if child.type == "h":
            _set_level(child, heading_level(child) - top + 2, stamp, journal)
    return doc.id


def _li2doc(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    stamp = op.updated
    item = target(ws, op, strict, journal)
    if item is None:
        return None
    if item.type != "i":
        refuse(strict, journal, op, StructureError, f"block {op.id} is not a list item")
        return None
    children = item.children
    body = children[1:] if children and children[0].type == "p" else list(children)
    doc = _new_doc_from(ws, op, item, list(body), stamp, strict, journal)
    return doc.id if doc is not None else None


def _move_outline_heading(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    stamp = op.updated
    heading = target(ws, op, strict, journal)
    if heading is None:
        return None
    doc = heading.parent
    if heading.type != "h" or doc is None or doc.type != "d":
        refuse(
            strict,
            journal,
            op,
            StructureError,
            "only a heading at the top level of a document moves in the outline",
        )
        return None
    if op.id in (op.parent_id, op.previous_id):
        return doc.id
    group = [heading, *heading_section(heading)]
    members = {id(n) for n in group}
    old_level = heading_level(heading)
    anchor_id = op.previous_id or op.parent_id
    if anchor_id:
        anchor = ws.blocks.get(anchor_id)
        if anchor is None:
            refuse(strict, journal, op, BlockNotFound, f"anchor block {anchor_id} not found")
            return None
        if anchor.type != "h" or anchor.parent is not doc or id(anchor) in members:
            refuse(
                strict,
                journal,
                op,
                StructureError,
                "the anchor must be another top-level heading of the same document",
            )
            return None
        end = anchor
        for sib in heading_section(anchor):
            if sib is heading or (op.parent_id and not op.previous_id and sib.type == "h"):
                break
            end = sib
        new_level = heading_level(anchor) if op.previous_id else heading_level(anchor) + 1
        index = child_index(end) + 1
    else:
        new_level = old_level
        index = 0
    before = None
    for sib in doc.children[index:]:
        if id(sib) not in members:
            before = sib
            break
    for member in group:
        move(ws, member, doc, before, journal)
    shift = min(new_level, 6) - old_level
    if shift:
        for member in group:
            if member.type == "h":
                _set_level(member, heading_level(member) + shift, stamp, journal)
    elif stamp:
        set_attrs(heading, {**heading.attrs, "updated": stamp}, journal)
    return doc.id


HANDLERS: dict[str, Handler] = {
    "createDoc": _create_doc,
    "removeDoc": _remove_doc,
    "moveDoc": _move_doc,
    "doc2Heading": _doc2heading,
    "heading2Doc": _heading2doc,
    "li2Doc": _li2doc,
    "moveOutlineHeading": _move_outline_heading,
}
