"""Resolve a client operation at the edge: parse its data, pick ids, stamp it.

The resolved copy carries everything replay needs (parsed ``blocks`` with
final ids and attributes, ``attrs``, ``updated``, ``text``, ``box``,
``parent_doc``), so replay never parses ``data`` and never reads a clock.
Resolution reads the current state (to keep client ids that are free, to
default a notebook, to take a heading's title) but never changes it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import cache
from types import ModuleType
from typing import Any

from oplog import boxconf
from oplog.actions import ALIASES, HANDLERS, is_attribute_view_action
from oplog.clock import IdSource
from oplog.errors import BlockNotFound, InvalidTransaction, UnsupportedAction
from oplog.model import BLOCK_TYPES, BlockSpec, is_block_id
from oplog.tree import Node, Workspace, iter_blocks
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import from_value

__all__ = ["resolve_op", "ATTR_NAME", "REMINDER_ATTR", "seed_action"]

#: Attribute names a client may set.
ATTR_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
#: Where SiYuan keeps a block's reminder.
REMINDER_ATTR = "custom-reminder-wechat"
_STAMP = re.compile(r"^\d{14}$")


def _is_stamp(value: str) -> bool:
    """Whether ``value`` is a real ``YYYYMMDDHHMMSS`` time (month 13 or hour 25 is not)."""
    if not _STAMP.match(value):
        return False
    try:
        datetime.strptime(value, "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return True


def _check_value(value: str, where: str, name: str) -> None:
    # SQLite's C API and SiYuan's .sy files end a string at NUL: the view would show less than the log.
    if "\x00" in value:
        raise InvalidTransaction(f"{where}: attribute {name} must not contain NUL characters")


_CONTENT = {"insertBlock", "appendBlock", "prependBlock", "updateBlock"}
_NEEDS_ID = {
    "updateBlock", "deleteBlock", "moveBlock", "append", "moveOutlineHeading", "setBlockAttrs", "foldBlock",
    "unfoldBlock", "setBlockReminder", "doc2Heading", "heading2Doc", "li2Doc", "setAttrViewName", "removeDoc",
    "doUpdateUpdated", "moveDoc",
}  # fmt: skip
#: Actions whose ``id`` names an existing notebook.
_NOTEBOOK_ID = {"renameNotebook", "openNotebook", "closeNotebook", "setNotebookConf", "removeNotebook"}


def seed_action(action: str) -> str:
    """The seed name for a kernel alias (other names unchanged)."""
    return ALIASES.get(action, action)


@cache
def _kramdown() -> ModuleType:
    # Imported on first use, so replay does not load markdown-it; cached, because an import
    # statement on the request path costs more than this call.
    from oplog import kramdown

    return kramdown


class _Ids:
    """Final ids for one operation: client ids when valid and free, fresh ones otherwise."""

    def __init__(self, ws: Workspace, ids: IdSource, time_ms: int, free: set[str]) -> None:
        self.blocks = ws.blocks
        self.ids = ids
        self.time_ms = time_ms
        self.free = free
        self.used: set[str] = set()

    def take(self, wanted: str) -> str:
        if (
            is_block_id(wanted)
            and wanted not in self.used
            and (wanted not in self.blocks or wanted in self.free)
        ):
            self.used.add(wanted)
            return wanted
        while True:
            fresh = self.ids.new_block_id(self.time_ms)
            if fresh not in self.blocks and fresh not in self.used:
                self.used.add(fresh)
                return fresh


def _check_attrs(attrs: dict[str, str], where: str) -> None:
    for name, value in attrs.items():
        if not ATTR_NAME.match(name):
            raise InvalidTransaction(f"{where}: attribute name {name!r} must match [a-z][a-z0-9-]*")
        if not isinstance(value, str):
            raise InvalidTransaction(f"{where}: attribute {name} must be a string")
        _check_value(value, where, name)


def _add_pb(
    into: Any, spec: BlockSpec, ids: _Ids, stamp: str, wanted: str = "", *, block_id: str | None = None
) -> pb.BlockSpec:
    """Add the resolved ``spec`` (and its subtree) to the repeated field ``into``; return it.

    Its id is ``block_id`` if given, else the spec's own, else ``wanted``, when
    free (``_Ids.take``). Built in place: appending a finished message would copy it.
    """
    if spec.type not in BLOCK_TYPES or spec.type == "d":
        raise InvalidTransaction(f"unsupported block type {spec.type!r} in data")
    attrs = {k: v for k, v in spec.attrs.items() if k != "id"}
    _check_attrs(attrs, "data")
    if "updated" not in attrs and stamp:
        attrs["updated"] = stamp
    out = into.add(
        id=ids.take(spec.id or wanted if block_id is None else block_id),
        type=spec.type,
        subtype=spec.subtype,
        markdown=spec.markdown,
    )
    for name in sorted(attrs):
        out.attrs.add(name=name, value=attrs[name])
    for child in spec.children:
        _add_pb(out.children, child, ids, stamp)
    return out


def _data(op: pb.Operation) -> Any:
    return from_value(op.data) if op.HasField("data") else None


def _text_data(op: pb.Operation) -> str:
    data = _data(op)
    if not isinstance(data, str):
        raise InvalidTransaction(f"{op.action}: data must be a string")
    return data.replace("<wbr>", "")


def _parse_content(op: pb.Operation, text: str) -> list[BlockSpec]:
    kind = op.data_type or "dom"
    if kind == "markdown":
        return _kramdown().parse_markdown(text)
    if kind == "dom":
        from oplog.dom import parse_dom

        return parse_dom(text)
    raise InvalidTransaction(f"dataType must be 'markdown' or 'dom', got {op.data_type!r}")


def _object_data(op: pb.Operation, *, allow_none: bool = False) -> dict[str, Any]:
    data = _data(op)
    if data is None and allow_none:
        return {}
    if isinstance(data, str):
        # SiYuan's editor sends attribute objects as JSON-encoded strings.
        try:
            data = json.loads(data) if data.strip() else {}
        except ValueError as exc:
            raise InvalidTransaction(f"{op.action}: data is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidTransaction(f"{op.action}: data must be an object")
    return data


def _str_field(data: dict[str, Any], key: str, action: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidTransaction(f"{action}: {key} must be a string")
    return value


def _resolve_content(
    ws: Workspace, op: pb.Operation, out: pb.Operation, ids: IdSource, time_ms: int, stamp: str
) -> None:
    specs = _parse_content(op, _text_data(op))
    action = seed_action(op.action)
    if action == "updateBlock":
        node = ws.blocks.get(op.id)
        free = {n.id for n in iter_blocks(node)} if node is not None else set()
        allot = _Ids(ws, ids, time_ms, free)
        if node is not None and node.type == "d":
            for spec in specs:
                _add_pb(out.blocks, spec, allot, stamp)
            return
        if (
            node is not None
            and node.parent is not None
            and node.parent.type == "l"
            and specs
            and specs[0].type == "l"
        ):
            # A list item edited as a one-item list: the item is what changes.
            specs = [*specs[0].children, *specs[1:]]
        if not specs:
            specs = [BlockSpec(type="p")]
        # The first block is the updated one: it keeps the operation's id whatever the data says.
        _add_pb(out.blocks, specs[0], allot, stamp, block_id=op.id).id = op.id
        for spec in specs[1:]:
            _add_pb(out.blocks, spec, allot, stamp)
        return
    if not specs:
        raise InvalidTransaction(f"{op.action}: data holds no block")
    allot = _Ids(ws, ids, time_ms, set())
    for index, spec in enumerate(specs):
        _add_pb(out.blocks, spec, allot, stamp, op.id if index == 0 else "")


def _resolve_set_attrs(op: pb.Operation, out: pb.Operation) -> None:
    data = _object_data(op)
    for name in sorted(data):
        value = data[name]
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise InvalidTransaction(f"{op.action}: attribute {name} must be a string")
        if name == "id":
            if value and value != op.id:
                raise InvalidTransaction(f"{op.action}: the id attribute cannot change")
            continue
        if not ATTR_NAME.match(name):
            raise InvalidTransaction(f"{op.action}: attribute name {name!r} must match [a-z][a-z0-9-]*")
        if name == "updated" and value and not _is_stamp(value):
            raise InvalidTransaction(f"{op.action}: updated must be a real time YYYYMMDDHHMMSS")
        _check_value(value, op.action, name)
        out.attrs.add(name=name, value=value)


def _resolve_reminder(op: pb.Operation, out: pb.Operation) -> None:
    data = _data(op)
    if isinstance(data, dict):
        data = data.get("timed")
    value = data or ""
    if not isinstance(value, str) or (value and not _is_stamp(value)):
        raise InvalidTransaction("setBlockReminder: timed must be a real time YYYYMMDDHHMMSS or empty")
    out.attrs.add(name=REMINDER_ATTR, value=value)


def _resolve_box(
    ws: Workspace, out: pb.Operation, data: dict[str, Any], action: str, default_box: str
) -> None:
    box = _str_field(data, "box", action)
    parent_doc = _str_field(data, "parentDoc", action)
    if parent_doc:
        if not is_block_id(parent_doc):
            raise InvalidTransaction(f"{action}: parentDoc {parent_doc!r} is not a block id")
        parent = ws.docs.get(parent_doc)
        if parent is not None:
            if box and box != parent.box:
                raise InvalidTransaction(
                    f"{action}: parentDoc {parent_doc} is in notebook {parent.box}, not {box}"
                )
            box = parent.box
    box = box or default_box
    if not is_block_id(box):
        raise InvalidTransaction(f"{action}: box must be a notebook id, got {box!r}")
    out.box = box
    out.parent_doc = parent_doc


def _resolve_create_doc(
    ws: Workspace, op: pb.Operation, out: pb.Operation, ids: IdSource, time_ms: int, stamp: str
) -> None:
    data = _object_data(op)
    allot = _Ids(ws, ids, time_ms, set())
    out.id = allot.take(op.id)
    _resolve_box(ws, out, data, "createDoc", "")
    title = _str_field(data, "title", "createDoc")
    markdown = _str_field(data, "markdown", "createDoc")
    if markdown:
        # Front matter (an exportMdContent document) gives document attributes, as SiYuan's import.
        doc_attrs, specs = _kramdown().parse_import_markdown(markdown)
        title = title or doc_attrs.pop("title", "")
        doc_attrs.pop("title", None)
        if not _is_stamp(doc_attrs.get("updated", "")):
            doc_attrs.pop("updated", None)
        doc_attrs = {k: v for k, v in doc_attrs.items() if ATTR_NAME.match(k)}
        _check_attrs(doc_attrs, "createDoc: front matter")
        for name in sorted(doc_attrs):
            out.attrs.add(name=name, value=doc_attrs[name])
        for spec in specs:
            _add_pb(out.blocks, spec, allot, stamp)
    out.text = title or "Untitled"


def _title_of(node: Node | None) -> str:
    plain_text = _kramdown().plain_text
    if node is None:
        return ""
    if node.type == "i":
        first = node.children[0] if node.children else None
        return plain_text(first.markdown).strip() if first is not None and first.type == "p" else ""
    return plain_text(node.markdown).strip()


def _resolve_to_doc(ws: Workspace, op: pb.Operation, out: pb.Operation) -> None:
    data = _object_data(op, allow_none=True)
    node = ws.blocks.get(op.id)
    if node is None:
        raise BlockNotFound(f"block {op.id} not found")
    default_box = node.root.box if node is not None and node.root is not None else ""
    _resolve_box(ws, out, data, op.action, default_box)
    out.text = _title_of(node) or "Untitled"


def _resolve_update_updated(op: pb.Operation, out: pb.Operation) -> None:
    value = _text_data(op)
    if not _is_stamp(value):
        raise InvalidTransaction(
            f"doUpdateUpdated: data must be a real time YYYYMMDDHHMMSS, got {value[:32]!r}"
        )
    out.text = value


def _resolve_av_name(op: pb.Operation, out: pb.Operation) -> None:
    data = _data(op)
    if isinstance(data, dict):
        data = data.get("name")
    if not isinstance(data, str):
        raise InvalidTransaction("setAttrViewName: data must be the name (a string)")
    out.text = data


def _notebook_data(op: pb.Operation) -> dict[str, Any]:
    # The name alone may come as a string: {"action": "renameNotebook", "id": …, "data": "New name"}.
    data = _data(op)
    if isinstance(data, str):
        return {"name": data}
    return _object_data(op, allow_none=True)


def _add_conf(out: pb.Operation, conf: dict[str, str]) -> None:
    for name in sorted(conf):
        out.attrs.add(name=name, value=conf[name])


def _resolve_create_notebook(
    ws: Workspace, op: pb.Operation, out: pb.Operation, ids: IdSource, time_ms: int
) -> None:
    data = _notebook_data(op)
    fields = boxconf.normalize_fields({"name": data.get("name"), **data}, "createNotebook")
    if "sort" not in fields:
        # New notebooks go last in the custom order (the kernel renumbers every other notebook instead).
        sorts = [int(c.get("sort", "0") or "0") for c in ws.notebooks.values()]
        fields["sort"] = str(max(len(ws.notebook_ids()), max(sorts, default=-1) + 1))
    fields.setdefault("closed", "false")
    box = op.id
    if op.id and not is_block_id(op.id):
        raise InvalidTransaction(f"createNotebook: id {op.id!r} is not a notebook id")
    if not box or ws.has_notebook(box) or box in ws.blocks:
        while True:
            box = ids.new_block_id(time_ms)
            if not ws.has_notebook(box) and box not in ws.blocks:
                break
    out.id = box
    out.text = fields["name"]
    # The whole conf is recorded, so replay never depends on today's defaults.
    conf = boxconf.default_conf()
    conf.update(fields)
    _add_conf(out, conf)


def _resolve_notebook(ws: Workspace, op: pb.Operation, out: pb.Operation) -> None:
    action = op.action
    if not is_block_id(op.id):
        raise InvalidTransaction(f"{action}: id {op.id!r} is not a notebook id")
    if action == "renameNotebook":
        out.text = boxconf.normalize_name(_notebook_data(op).get("name"), action)
    elif action == "setNotebookConf":
        data = _notebook_data(op)
        conf = data.get("conf", data)
        if not isinstance(conf, dict):
            raise InvalidTransaction(f"{action}: conf must be an object")
        _add_conf(out, boxconf.normalize_fields(conf, action))


def _resolve_move_doc(ws: Workspace, op: pb.Operation, out: pb.Operation) -> None:
    doc = ws.docs.get(op.id)
    if doc is None:
        raise BlockNotFound(f"document {op.id} not found")
    _resolve_box(ws, out, _object_data(op, allow_none=True), "moveDoc", doc.box)


_Resolver = Callable[[Workspace, pb.Operation, pb.Operation, IdSource, int, str], None]

_RESOLVERS: dict[str, _Resolver] = {
    "createDoc": _resolve_create_doc,
    "setBlockAttrs": lambda ws, op, out, ids, t, s: _resolve_set_attrs(op, out),
    "setBlockReminder": lambda ws, op, out, ids, t, s: _resolve_reminder(op, out),
    "heading2Doc": lambda ws, op, out, ids, t, s: _resolve_to_doc(ws, op, out),
    "li2Doc": lambda ws, op, out, ids, t, s: _resolve_to_doc(ws, op, out),
    "doUpdateUpdated": lambda ws, op, out, ids, t, s: _resolve_update_updated(op, out),
    "setAttrViewName": lambda ws, op, out, ids, t, s: _resolve_av_name(op, out),
    "createNotebook": lambda ws, op, out, ids, t, s: _resolve_create_notebook(ws, op, out, ids, t),
    "moveDoc": lambda ws, op, out, ids, t, s: _resolve_move_doc(ws, op, out),
    **{
        action: (lambda ws, op, out, ids, t, s: _resolve_notebook(ws, op, out))
        for action in sorted(_NOTEBOOK_ID)
    },
}


def resolve_op(ws: Workspace, op: pb.Operation, *, ids: IdSource, time_ms: int, stamp: str) -> pb.Operation:
    """A resolved copy of client operation ``op`` against the current state (the state is not changed)."""
    action = op.action
    if action not in HANDLERS:
        if is_attribute_view_action(action):
            raise UnsupportedAction(f"unsupported action {action}")
        raise UnsupportedAction(f"unknown action {action!r}")
    seed = seed_action(action)
    if (seed in _NEEDS_ID or seed in _NOTEBOOK_ID) and not op.id:
        raise InvalidTransaction(f"{action}: id is required")
    out = pb.Operation()
    out.CopyFrom(op)
    for name in ("blocks", "attrs", "updated", "text", "box", "parent_doc", "ret_data"):
        out.ClearField(name)
    out.resolved = True
    out.updated = stamp
    if seed in _CONTENT:
        _resolve_content(ws, op, out, ids, time_ms, stamp)
    else:
        resolver = _RESOLVERS.get(seed)
        if resolver is not None:
            resolver(ws, op, out, ids, time_ms, stamp)
    return out


def first_ids(specs: Iterable[pb.BlockSpec]) -> list[str]:
    """Top-level ids of resolved block specs."""
    return [spec.id for spec in specs]
