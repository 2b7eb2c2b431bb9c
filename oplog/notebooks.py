"""Notebooks for the edges: the kernel's reply shapes read from a workspace, and the requests that change them.

An HTTP endpoint such as ``lsNotebooks`` or ``getNotebookConf`` reads
``list_notebooks``/``notebook_conf`` (under the store's lock, as any read of
``Store.ws``); a writing endpoint builds its operation here (``*_op``), wraps
it with ``apply_request`` and hands that to ``Store.apply`` — one logged
transaction, so the change is undoable, on the change feed and synced like
any other. Nothing here changes state or reads a clock: ids and stamps are
picked where every request's are, in ``oplog.resolve``.

``moveDocs`` (by paths) and ``moveDocsByID`` become one ``moveDoc`` operation
per document (``move_docs_ops``/``move_docs_by_id_ops``), applied atomically
in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from oplog.boxconf import default_conf, typed
from oplog.errors import BlockNotFound, InvalidArgument
from oplog.model import is_block_id
from oplog.tree import Workspace
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import request_from_json

__all__ = [
    "list_notebooks",
    "get_notebook",
    "notebook_conf",
    "create_notebook_op",
    "rename_notebook_op",
    "open_notebook_op",
    "close_notebook_op",
    "set_notebook_conf_op",
    "remove_notebook_op",
    "move_doc_op",
    "move_docs_ops",
    "move_docs_by_id_ops",
    "request_body",
    "apply_request",
]


def _conf_of(ws: Workspace, box: str) -> dict[str, str]:
    conf = ws.notebooks.get(box)
    return dict(conf) if conf is not None else default_conf()


def _box(ws: Workspace, box: str) -> dict[str, Any]:
    conf = typed(_conf_of(ws, box))
    top_level = sum(1 for doc in ws.docs.values() if doc.box == box and doc.path.count("/") == 1)
    return {
        "id": box,
        "name": conf["name"],
        "icon": conf["icon"],
        "sort": conf["sort"],
        "sortMode": conf["sortMode"],
        "closed": conf["closed"],
        "subFileCount": top_level,
        "newFlashcardCount": 0,
        "dueFlashcardCount": 0,
        "flashcardCount": 0,
        "encrypted": False,
        "unlocked": False,
    }


def list_notebooks(ws: Workspace) -> list[dict[str, Any]]:
    """Every notebook, open and closed, as the kernel's ``lsNotebooks`` lists them, by ``sort`` then id."""
    boxes = [_box(ws, box) for box in ws.notebook_ids()]
    return sorted(boxes, key=lambda b: (b["sort"], b["id"]))


def get_notebook(ws: Workspace, box: str) -> dict[str, Any] | None:
    """One notebook in the ``lsNotebooks`` shape (createNotebook's ``notebook``), or None."""
    return _box(ws, box) if ws.has_notebook(box) else None


def notebook_conf(ws: Workspace, box: str) -> dict[str, Any]:
    """``getNotebookConf``'s data: ``{box, name, conf}``; ``BlockNotFound`` when there is no such notebook."""
    if not ws.has_notebook(box):
        raise BlockNotFound(f"notebook [{box}] not found")
    conf = typed(_conf_of(ws, box))
    return {"box": box, "name": conf["name"], "conf": conf}


def _op(action: str, op_id: str = "", data: Any = None) -> dict[str, Any]:
    op: dict[str, Any] = {"action": action}
    if op_id:
        op["id"] = op_id
    if data is not None:
        op["data"] = data
    return op


def create_notebook_op(
    name: str, *, notebook_id: str = "", conf: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``createNotebook``: a new, open notebook (its id fresh unless a free ``notebook_id`` is given)."""
    return _op("createNotebook", notebook_id, {**(conf or {}), "name": name})


def rename_notebook_op(box: str, name: str) -> dict[str, Any]:
    """``renameNotebook``."""
    return _op("renameNotebook", box, {"name": name})


def open_notebook_op(box: str) -> dict[str, Any]:
    """``openNotebook``: its blocks come back into the SQL view."""
    return _op("openNotebook", box)


def close_notebook_op(box: str) -> dict[str, Any]:
    """``closeNotebook``: its blocks leave the SQL view."""
    return _op("closeNotebook", box)


def set_notebook_conf_op(box: str, conf: Mapping[str, Any]) -> dict[str, Any]:
    """``setNotebookConf``: the fields given change, the others stay (the kernel's merge)."""
    return _op("setNotebookConf", box, dict(conf))


def remove_notebook_op(box: str) -> dict[str, Any]:
    """``removeNotebook``: the notebook and every document in it."""
    return _op("removeNotebook", box)


def move_doc_op(doc_id: str, *, box: str = "", parent_doc: str = "") -> dict[str, Any]:
    """``moveDoc``: a document with its child documents under ``parent_doc``, or to the top of ``box``."""
    data: dict[str, str] = {}
    if box:
        data["box"] = box
    if parent_doc:
        data["parentDoc"] = parent_doc
    return _op("moveDoc", doc_id, data)


def _doc_id_of_path(path: str) -> str:
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last[:-3] if last.endswith(".sy") else last


def move_docs_ops(from_paths: Iterable[str], to_notebook: str, to_path: str) -> list[dict[str, Any]]:
    """The kernel's ``moveDocs``: documents named by ``.sy`` paths to ``to_path`` (``/``: the top) of ``to_notebook``."""
    parent = "" if to_path.strip() in ("", "/") else _doc_id_of_path(to_path)
    if parent and not is_block_id(parent):
        raise InvalidArgument(f"toPath {to_path!r} is not a document path")
    ops = []
    for path in from_paths:
        doc_id = _doc_id_of_path(path)
        if not is_block_id(doc_id):
            raise InvalidArgument(f"fromPaths: {path!r} is not a document path")
        ops.append(move_doc_op(doc_id, box=to_notebook, parent_doc=parent))
    return ops


def move_docs_by_id_ops(ws: Workspace, from_ids: Iterable[str], to_id: str) -> list[dict[str, Any]]:
    """The kernel's ``moveDocsByID``: ``to_id`` is a document (move under it) or a notebook (move to its top)."""
    target = ws.docs.get(to_id)
    if target is not None:
        return [move_doc_op(doc_id, box=target.box, parent_doc=to_id) for doc_id in from_ids]
    if ws.has_notebook(to_id):
        return [move_doc_op(doc_id, box=to_id) for doc_id in from_ids]
    raise BlockNotFound(f"toID {to_id} is neither a document nor a notebook")


def request_body(
    ops: Iterable[Mapping[str, Any]], *, app: str = "", session: str = "", req_id: int = 0
) -> dict[str, Any]:
    """A performTransactions body holding ``ops`` as one transaction (all or nothing)."""
    body: dict[str, Any] = {"transactions": [{"doOperations": [dict(op) for op in ops]}]}
    if app:
        body["app"] = app
    if session:
        body["session"] = session
    if req_id:
        body["reqId"] = req_id
    return body


def apply_request(
    ops: Iterable[Mapping[str, Any]], *, app: str = "", session: str = "", req_id: int = 0
) -> pb.ApplyRequest:
    """``request_body`` as the ``ApplyRequest`` ``Store.apply`` takes."""
    return request_from_json(request_body(ops, app=app, session=session, req_id=req_id))
