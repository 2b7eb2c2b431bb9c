"""Notebook actions: createNotebook, renameNotebook, openNotebook, closeNotebook, setNotebookConf, removeNotebook.

Same contract as ``oplog.actions``: resolved operations only (``id`` is the
notebook, ``attrs`` the conf fields, ``text`` the name, all fixed at the
edge), ``strict`` for live requests, a recorded ``Conflict`` and a
deterministic fallback for replay. A notebook exists when it has a conf or
holds a document (logs from before these actions only have the latter); the
first notebook action on such a box gives it the default conf.
"""

from __future__ import annotations

from typing import Any

from oplog.actions_base import Handler, refuse
from oplog.boxconf import default_conf, is_closed, typed
from oplog.errors import BlockNotFound, InvalidTransaction
from oplog.tree import UndoJournal, Workspace, box_docs, remove_document, set_notebook
from oplog.v1 import oplog_pb2 as pb

__all__ = ["HANDLERS"]


def _conf(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> dict[str, str] | None:
    """A fresh copy of the conf of the notebook ``op.id`` names, or None (refused) when there is none."""
    box = op.id
    conf = ws.notebooks.get(box)
    if conf is not None:
        return dict(conf)
    if box and ws.has_notebook(box):
        return default_conf()
    refuse(strict, journal, op, BlockNotFound, f"notebook {box or '(none)'} not found")
    return None


def _fields(op: pb.Operation) -> dict[str, str]:
    changes = op.attrs
    return {changes[i].name: changes[i].value for i in range(len(changes))}


def _create(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    box = op.id
    if not box or box in ws.notebooks:
        refuse(strict, journal, op, InvalidTransaction, f"notebook {box or '(empty)'} already exists")
        return None
    if box in ws.blocks:
        refuse(strict, journal, op, InvalidTransaction, f"id {box} is a block's")
        return None
    conf = default_conf(op.text) if op.text else default_conf()
    conf.update(_fields(op))
    # A box that already holds documents (an older log's) keeps them: it simply gets a conf.
    set_notebook(ws, box, conf, journal)
    return {"id": box, **typed(conf)}


def _rename(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    conf = _conf(ws, op, strict, journal)
    if conf is None:
        return None
    conf["name"] = op.text
    set_notebook(ws, op.id, conf, journal)
    return {"box": op.id, "name": op.text}


def _set_closed(closed: bool) -> Handler:
    def handler(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
        conf = _conf(ws, op, strict, journal)
        if conf is None:
            return None
        if is_closed(conf) != closed:
            conf["closed"] = "true" if closed else "false"
            set_notebook(ws, op.id, conf, journal)
        return {"id": op.id, **typed(conf)}

    return handler


def _set_conf(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    conf = _conf(ws, op, strict, journal)
    if conf is None:
        return None
    conf.update(_fields(op))
    set_notebook(ws, op.id, conf, journal)
    return typed(conf)


def _remove(ws: Workspace, op: pb.Operation, strict: bool, journal: UndoJournal) -> Any:
    box = op.id
    if not box or not ws.has_notebook(box):
        # Already gone: clients retry removals, and a concurrent removal is no conflict (as removeDoc).
        if strict:
            raise BlockNotFound(f"notebook {box or '(none)'} not found")
        return []
    docs = box_docs(ws, box)
    for doc in reversed(docs):
        remove_document(ws, doc, journal)
    if box in ws.notebooks:
        set_notebook(ws, box, None, journal)
    return [doc.id for doc in docs]


HANDLERS: dict[str, Handler] = {
    "createNotebook": _create,
    "renameNotebook": _rename,
    "openNotebook": _set_closed(False),
    "closeNotebook": _set_closed(True),
    "setNotebookConf": _set_conf,
    "removeNotebook": _remove,
}
