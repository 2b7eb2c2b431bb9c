"""The kernel's notebook endpoints and ``moveDocs``/``moveDocsByID``, over notebooks as logged state.

Notebooks are state in the core (``Workspace.notebooks``, the actions of
``oplog/actions_notebook.py``); this module only maps the kernel's request
fields and reply shapes (kernel/api/notebook.go, filetree.go) onto
:mod:`oplog.notebooks`: reads answer from the store's tree, every write is one
operation list wrapped as one transaction and sent down the path
``/api/transactions`` takes (:func:`oplog.server.http_api.apply_json`) — one
logged event, undo, the change feed (a ``transactions`` message on ``/ws``),
sync. The kernel checks a notebook id's shape first (``invalid ID argument``);
so does each endpoint here, before anything is applied.
"""

from __future__ import annotations

from typing import Any

from oplog import notebooks
from oplog.errors import BlockNotFound, InvalidArgument
from oplog.model import is_block_id
from oplog.server.http_api import apply_json
from oplog.server.http_envelope import arg, opt
from oplog.server.http_routes import READ, WRITE, HttpContext, endpoint
from oplog.tree import Workspace

__all__: list[str] = []

#: The kernel's answer to a malformed id (util.InvalidIDPattern).
_INVALID_ID = "invalid ID argument"
#: setNotebookConf fields the kernel reads back from the saved conf whatever the request says.
_KERNEL_KEPT = ("encrypted", "boxCrypt")


def _ws(ctx: HttpContext) -> Workspace:
    return ctx.store.ws  # type: ignore[attr-defined, no-any-return]


def _write(ctx: HttpContext, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One transaction of one request through ``Store.apply``: one logged event."""
    body = notebooks.request_body(ops, app="oplog-http", req_id=ctx.clock_ms())
    return apply_json(ctx, body)


def _box_id(body: dict[str, Any], name: str = "notebook") -> str:
    box = arg(body, name, str)
    if not is_block_id(box):
        raise InvalidArgument(_INVALID_ID)
    return box


def _known(ctx: HttpContext, box: str) -> None:
    if not _ws(ctx).has_notebook(box):
        raise BlockNotFound(f"notebook [{box}] not found")


@endpoint("notebook/lsNotebooks", READ)
def _ls_notebooks(ctx: HttpContext, body: dict[str, Any]) -> dict[str, Any]:
    # oplog keeps no flashcards: the flashcard listing is empty, as a kernel without any decks answers.
    if opt(body, "flashcard", bool, False):
        return {"notebooks": [], "boxDocEnabled": False}
    return {"notebooks": notebooks.list_notebooks(_ws(ctx)), "boxDocEnabled": False}


@endpoint("notebook/createNotebook", WRITE)
def _create_notebook(ctx: HttpContext, body: dict[str, Any]) -> dict[str, Any]:
    name = arg(body, "name", str, empty_ok=True)
    reply = _write(ctx, [notebooks.create_notebook_op(name)])
    made = reply[0]["doOperations"][0]["retData"]
    box = notebooks.get_notebook(_ws(ctx), made["id"])
    # A removal racing in between would leave nothing to read: answer with what the write returned.
    return {"notebook": box if box is not None else made}


@endpoint("notebook/renameNotebook", WRITE)
def _rename_notebook(ctx: HttpContext, body: dict[str, Any]) -> None:
    box = _box_id(body)
    name = arg(body, "name", str, empty_ok=True)
    _known(ctx, box)
    _write(ctx, [notebooks.rename_notebook_op(box, name)])


@endpoint("notebook/removeNotebook", WRITE)
def _remove_notebook(ctx: HttpContext, body: dict[str, Any]) -> None:
    # The kernel removes an unknown notebook quietly; the core's removeNotebook is a no-op then too.
    _write(ctx, [notebooks.remove_notebook_op(_box_id(body))])


@endpoint("notebook/openNotebook", WRITE)
def _open_notebook(ctx: HttpContext, body: dict[str, Any]) -> None:
    box = _box_id(body)
    _known(ctx, box)
    _write(ctx, [notebooks.open_notebook_op(box)])


@endpoint("notebook/closeNotebook", WRITE)
def _close_notebook(ctx: HttpContext, body: dict[str, Any]) -> None:
    box = _box_id(body)
    _known(ctx, box)
    _write(ctx, [notebooks.close_notebook_op(box)])


@endpoint("notebook/getNotebookConf", READ)
def _get_notebook_conf(ctx: HttpContext, body: dict[str, Any]) -> dict[str, Any]:
    return notebooks.notebook_conf(_ws(ctx), _box_id(body))


@endpoint("notebook/setNotebookConf", WRITE)
def _set_notebook_conf(ctx: HttpContext, body: dict[str, Any]) -> Any:
    box = _box_id(body)
    conf = dict(arg(body, "conf", dict, empty_ok=True))
    for key in _KERNEL_KEPT:
        # The kernel restores these from the saved conf after reading the request; oplog has none.
        conf.pop(key, None)
    _known(ctx, box)
    reply = _write(ctx, [notebooks.set_notebook_conf_op(box, conf)])
    return reply[0]["doOperations"][0]["retData"]


# ---- moving documents ----


def _str_list(body: dict[str, Any], name: str) -> list[str]:
    values = arg(body, name, list)
    if not all(isinstance(value, str) for value in values):
        raise InvalidArgument(f"Field [{name}] should be of type [Array of String]")
    return list(dict.fromkeys(values))  # the kernel drops duplicates, keeping the order


@endpoint("filetree/moveDocs", WRITE)
def _move_docs(ctx: HttpContext, body: dict[str, Any]) -> None:
    from_paths = _str_list(body, "fromPaths")
    to_notebook = _box_id(body, "toNotebook")
    to_path = arg(body, "toPath", str)
    _write(ctx, notebooks.move_docs_ops(from_paths, to_notebook, to_path))


@endpoint("filetree/moveDocsByID", WRITE)
def _move_docs_by_id(ctx: HttpContext, body: dict[str, Any]) -> None:
    from_ids = _str_list(body, "fromIDs")
    to_id = arg(body, "toID", str)
    if not all(is_block_id(value) for value in [*from_ids, to_id]):
        raise InvalidArgument(_INVALID_ID)
    ws = _ws(ctx)
    docs = []
    for block_id in from_ids:
        # Any block names its document, as the kernel's LoadTreeByBlockID does.
        node = ws.get(block_id)
        if node is None:
            raise BlockNotFound(f"block not found [id={block_id}]")
        docs.append((node.root or node).id)
    if to_id not in ws.docs and not ws.has_notebook(to_id):
        raise BlockNotFound(f"can't found box or tree by id [{to_id}]")
    _write(ctx, notebooks.move_docs_by_id_ops(ws, list(dict.fromkeys(docs)), to_id))
