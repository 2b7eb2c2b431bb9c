"""The kernel endpoints everyday SiYuan clients call, mapped onto oplog's actions and reads.

Every write endpoint builds one transaction of the kernel's own actions
(``insert``, ``prependInsert``, ``appendInsert``, ``update``, ``delete``,
``move``, ``setAttrs``…, or the seed's ``foldBlock``/``createDoc``/``removeDoc``)
and sends it down the same path as ``/api/transactions``
(:func:`oplog.server.http_api.apply_json`): one logged event, undo, change feed,
sync, a ``transactions`` message on ``/ws``. The reply is what the kernel
replies — for block writes the processed transactions, so a client reads the
new id in ``data[0].doOperations[0].id``.

Reads look at the store's tree (``Store.ws``), as ``GetBlock`` does, or run SQL
through the shared query worker pool with the server's time budget. A closed
notebook's blocks are out of every read, as SiYuan unmounts a closed notebook
(the SQL view leaves them out in the core). Request
fields and reply shapes follow the kernel's handlers (kernel/api/block.go,
filetree.go, attr.go, sql.go, export.go); where the kernel quietly succeeds on
a bad request oplog refuses with ``code: -1`` (docs/http.md lists each case).
"""

from __future__ import annotations

import re
from typing import Any, cast

from oplog.boxconf import is_closed
from oplog.errors import BlockNotFound, InvalidArgument
from oplog.kramdown import render_block, render_markdown
from oplog.server.http_api import apply_json
from oplog.server.http_envelope import arg, opt
from oplog.server.http_routes import QUERY, READ, WRITE, HttpContext, endpoint
from oplog.sqlview import hpath_of
from oplog.tree import Node, Workspace, heading_section, iter_documents

__all__ = ["SQL_DEFAULT_LIMIT", "with_default_limit"]

#: The kernel adds ``LIMIT 64`` to a ``query/sql`` statement that has none.
SQL_DEFAULT_LIMIT = 64
_LIMIT_RE = re.compile(r"\blimit\b", re.IGNORECASE)


def _ws(ctx: HttpContext) -> Workspace:
    # StoreLike is what gRPC needs; the HTTP reads walk the tree the real Store keeps.
    return cast(Workspace, ctx.store.ws)  # type: ignore[attr-defined]


def _in_closed_notebook(ws: Workspace, node: Node) -> bool:
    # SiYuan unmounts a closed notebook: its documents are out of every read, not only SQL.
    conf = ws.notebooks.get((node.root or node).box)
    return conf is not None and is_closed(conf)


def _visible(ws: Workspace, block_id: str) -> Node | None:
    node = ws.get(block_id)
    return None if node is None or _in_closed_notebook(ws, node) else node


def _node(ctx: HttpContext, block_id: str) -> Node:
    node = _visible(_ws(ctx), block_id)
    if node is None:
        raise BlockNotFound(f"block not found [id={block_id}]")
    return node


def _root(node: Node) -> Node:
    return node.root or node


def _write(ctx: HttpContext, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply ``ops`` as one transaction of one request: one logged event."""
    body = {"transactions": [{"doOperations": ops}], "reqId": ctx.clock_ms(), "app": "oplog-http"}
    return apply_json(ctx, body)


def _data_type(body: dict[str, Any]) -> str:
    data_type = arg(body, "dataType", str)
    if data_type not in ("markdown", "dom"):
        raise InvalidArgument(f"Field [dataType] must be markdown or dom, got {data_type!r}")
    return data_type


# ---- block writes ----


@endpoint("block/insertBlock", WRITE)
def _insert_block(ctx: HttpContext, body: dict[str, Any]) -> Any:
    op: dict[str, Any] = {"action": "insert", "data": arg(body, "data", str, empty_ok=True)}
    op["dataType"] = _data_type(body)
    for key in ("nextID", "previousID", "parentID"):
        value = opt(body, key, str, "")
        if value:
            op[key] = value
    if not any(key in op for key in ("nextID", "previousID", "parentID")):
        raise InvalidArgument("Field [nextID], [previousID] or [parentID] is required")
    return _write(ctx, [op])


def _insert_into(ctx: HttpContext, body: dict[str, Any], action: str) -> Any:
    op = {
        "action": action,
        "data": arg(body, "data", str, empty_ok=True),
        "dataType": _data_type(body),
        "parentID": arg(body, "parentID", str),
    }
    return _write(ctx, [op])


@endpoint("block/prependBlock", WRITE)
def _prepend_block(ctx: HttpContext, body: dict[str, Any]) -> Any:
    return _insert_into(ctx, body, "prependInsert")


@endpoint("block/appendBlock", WRITE)
def _append_block(ctx: HttpContext, body: dict[str, Any]) -> Any:
    return _insert_into(ctx, body, "appendInsert")


@endpoint("block/updateBlock", WRITE)
def _update_block(ctx: HttpContext, body: dict[str, Any]) -> Any:
    op = {
        "action": "update",
        "id": arg(body, "id", str),
        "data": arg(body, "data", str, empty_ok=True),
        "dataType": _data_type(body),
    }
    return _write(ctx, [op])


@endpoint("block/deleteBlock", WRITE)
def _delete_block(ctx: HttpContext, body: dict[str, Any]) -> Any:
    return _write(ctx, [{"action": "delete", "id": arg(body, "id", str)}])


@endpoint("block/moveBlock", WRITE)
def _move_block(ctx: HttpContext, body: dict[str, Any]) -> Any:
    op: dict[str, Any] = {"action": "move", "id": arg(body, "id", str)}
    previous = opt(body, "previousID", str, "")
    parent = opt(body, "parentID", str, "")
    if not previous and not parent:
        raise InvalidArgument("Field [previousID] or [parentID] is required")
    if previous and previous in _ws(ctx).docs:
        raise InvalidArgument("`previousID` can not be the ID of a document")
    if previous:
        op["previousID"] = previous
    if parent:
        op["parentID"] = parent
    return _write(ctx, [op])


def _fold(ctx: HttpContext, body: dict[str, Any], action: str) -> Any:
    block_id = arg(body, "id", str)
    node = _node(ctx, block_id)
    if node.type == "d":
        raise InvalidArgument(f"document can not be {'folded' if action == 'foldBlock' else 'unfolded'}")
    return _write(ctx, [{"action": action, "id": block_id}])


@endpoint("block/foldBlock", WRITE)
def _fold_block(ctx: HttpContext, body: dict[str, Any]) -> Any:
    return _fold(ctx, body, "foldBlock")


@endpoint("block/unfoldBlock", WRITE)
def _unfold_block(ctx: HttpContext, body: dict[str, Any]) -> Any:
    return _fold(ctx, body, "unfoldBlock")


# ---- block reads ----


@endpoint("block/getBlockKramdown", READ)
def _get_block_kramdown(ctx: HttpContext, body: dict[str, Any]) -> dict[str, Any]:
    block_id = arg(body, "id", str)
    mode = opt(body, "mode", str, "md")
    if mode not in ("md", "textmark"):
        raise InvalidArgument("Invalid mode")
    node = _node(ctx, block_id)
    if node.type == "d":
        kramdown = render_markdown(node.children, ial=True)
    else:
        kramdown = render_block(node, ial=True)
    return {"id": block_id, "kramdown": kramdown}


def _child(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {"id": node.id, "type": node.type}
    if node.subtype:
        out["subType"] = node.subtype
    return out


@endpoint("block/getChildBlocks", READ)
def _get_child_blocks(ctx: HttpContext, body: dict[str, Any]) -> list[dict[str, Any]]:
    node = _node(ctx, arg(body, "id", str))
    # A heading's children are its section (SiYuan keeps headings flat among their siblings).
    children = heading_section(node) if node.type == "h" else list(node.children)
    return [_child(child) for child in children]


@endpoint("block/getBlockInfo", READ)
def _get_block_info(ctx: HttpContext, body: dict[str, Any]) -> dict[str, Any]:
    node = _node(ctx, arg(body, "id", str))
    root = _root(node)
    top = node
    while top.parent is not None and top.parent is not root:
        top = top.parent
    return {
        "box": root.box,
        "path": root.path,
        "rootID": root.id,
        "rootTitle": root.attrs.get("title", ""),
        "rootTitleEmpty": not root.attrs.get("title", ""),
        "rootChildID": top.id if node is not root else root.id,
        "rootIcon": root.attrs.get("icon", ""),
    }


@endpoint("block/getBlockBreadcrumb", READ)
def _get_block_breadcrumb(ctx: HttpContext, body: dict[str, Any]) -> list[dict[str, Any]]:
    node = _node(ctx, arg(body, "id", str))
    exclude = set(opt(body, "excludeTypes", list, []))
    chain: list[Node] = []
    current: Node | None = node
    while current is not None:
        chain.append(current)
        current = current.parent
    out = []
    for item in reversed(chain):
        if item.type in exclude:
            continue
        name = item.attrs.get("title", "") if item.type == "d" else _short(item)
        out.append({"id": item.id, "name": name, "type": item.type, "subType": item.subtype, "children": []})
    return out


def _short(node: Node) -> str:
    text = node.markdown.strip().splitlines()[0] if node.markdown.strip() else ""
    return text.lstrip("#").strip()[:64]


# ---- attributes ----


@endpoint("attr/setBlockAttrs", WRITE)
def _set_block_attrs(ctx: HttpContext, body: dict[str, Any]) -> None:
    block_id = arg(body, "id", str)
    attrs = arg(body, "attrs", dict, empty_ok=True)
    for name, value in attrs.items():
        if value is not None and not isinstance(value, str):
            raise InvalidArgument(f"Field [attrs] value of [{name}] should be of type [String]")
    clean = {name: (value or "") for name, value in attrs.items()}
    _write(ctx, [{"action": "setAttrs", "id": block_id, "data": clean}])
    return None


@endpoint("attr/getBlockAttrs", READ)
def _get_block_attrs(ctx: HttpContext, body: dict[str, Any]) -> dict[str, str]:
    block_id = arg(body, "id", str)
    node = _visible(_ws(ctx), block_id)
    if node is None:
        return {}  # the kernel's answer for an unknown id
    out = dict(node.attrs)
    out["id"] = node.id
    return out


# ---- SQL ----


def with_default_limit(stmt: str) -> str:
    """The statement with ``LIMIT 64`` appended when it has no LIMIT, as the kernel does."""
    if _LIMIT_RE.search(stmt):
        return stmt
    return stmt.rstrip().rstrip(";") + f" LIMIT {SQL_DEFAULT_LIMIT}"


# The kernel answers a failed statement with code 1 and the SQL error.
@endpoint("query/sql", QUERY, error_code=1)
def _sql(ctx: HttpContext, body: dict[str, Any]) -> list[dict[str, Any]]:
    stmt = with_default_limit(arg(body, "stmt", str))
    result = ctx.store.query(
        stmt,
        (),
        max_rows=ctx.limits.query_max_rows,
        time_budget_s=ctx.limits.query_time_budget_s,
        runner=ctx.query_runner,
    )
    columns = list(result.columns)
    return [dict(zip(columns, row, strict=True)) for row in result.rows]


# ---- documents ----


def _doc(ctx: HttpContext, doc_id: str) -> Node:
    ws = _ws(ctx)
    doc = ws.docs.get(doc_id)
    if doc is None or _in_closed_notebook(ws, doc):
        raise BlockNotFound(f"document not found [id={doc_id}]")
    return doc


def _doc_by_hpath(ws: Workspace, box: str, hpath: str) -> list[Node]:
    conf = ws.notebooks.get(box)
    if conf is not None and is_closed(conf):
        return []
    return [doc for doc in iter_documents(ws) if doc.box == box and hpath_of(ws, doc) == hpath]


def _id_of_path(path: str) -> str:
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last[:-3] if last.endswith(".sy") else last


def _create_doc(ctx: HttpContext, box: str, title: str, markdown: str, parent: str, doc_id: str = "") -> str:
    data: dict[str, Any] = {"box": box, "title": title, "markdown": markdown}
    if parent:
        data["parentDoc"] = parent
    op: dict[str, Any] = {"action": "createDoc", "data": data}
    if doc_id:
        op["id"] = doc_id
    reply = _write(ctx, [op])
    ret = reply[0]["doOperations"][0].get("retData")
    return str(ret if isinstance(ret, str) else reply[0]["doOperations"][0].get("id", ""))


@endpoint("filetree/createDocWithMd", WRITE)
def _create_doc_with_md(ctx: HttpContext, body: dict[str, Any]) -> str:
    box = arg(body, "notebook", str)
    hpath = arg(body, "path", str)
    markdown = arg(body, "markdown", str, empty_ok=True)
    parent = opt(body, "parentID", str, "")
    doc_id = opt(body, "id", str, "")
    parts = [part for part in hpath.split("/") if part]
    if not parts:
        raise InvalidArgument("Field [path] is required")
    ops: list[dict[str, Any]] = []
    if not parent:
        # As the kernel does, missing parent documents along the path are created, in the same
        # transaction (one logged event), with ids made here at the edge so the log holds them.
        ws = _ws(ctx)
        for depth in range(1, len(parts)):
            found = _doc_by_hpath(ws, box, "/" + "/".join(parts[:depth]))
            if found and not ops:
                parent = found[0].id
                continue
            made = ctx.new_id()
            data: dict[str, Any] = {"box": box, "title": parts[depth - 1], "markdown": ""}
            if parent:
                data["parentDoc"] = parent
            ops.append({"action": "createDoc", "id": made, "data": data})
            parent = made
    data = {"box": box, "title": parts[-1], "markdown": markdown}
    if parent:
        data["parentDoc"] = parent
    last: dict[str, Any] = {"action": "createDoc", "data": data}
    if doc_id:
        last["id"] = doc_id
    reply = _write(ctx, [*ops, last])
    final = reply[0]["doOperations"][-1]
    ret = final.get("retData")
    return str(ret if isinstance(ret, str) else final.get("id", ""))


@endpoint("filetree/createDoc", WRITE)
def _create_doc_endpoint(ctx: HttpContext, body: dict[str, Any]) -> str:
    box = arg(body, "notebook", str)
    path = arg(body, "path", str)
    title = opt(body, "title", str, "")
    markdown = opt(body, "md", str, "")
    segments = [_id_of_path(part) for part in path.strip("/").split("/") if part]
    parent = segments[-2] if len(segments) > 1 else ""
    return _create_doc(ctx, box, title or "Untitled", markdown, parent, segments[-1] if segments else "")


def _remove(ctx: HttpContext, doc_id: str) -> None:
    _doc(ctx, doc_id)
    _write(ctx, [{"action": "removeDoc", "id": doc_id}])


@endpoint("filetree/removeDoc", WRITE)
def _remove_doc(ctx: HttpContext, body: dict[str, Any]) -> None:
    arg(body, "notebook", str)
    _remove(ctx, _id_of_path(arg(body, "path", str)))


@endpoint("filetree/removeDocByID", WRITE)
def _remove_doc_by_id(ctx: HttpContext, body: dict[str, Any]) -> None:
    _remove(ctx, arg(body, "id", str))


def _rename(ctx: HttpContext, doc_id: str, title: str) -> None:
    _doc(ctx, doc_id)
    # A document's title is its ``title`` attribute; the hpaths below it follow from it.
    _write(ctx, [{"action": "setAttrs", "id": doc_id, "data": {"title": title}}])


@endpoint("filetree/renameDoc", WRITE)
def _rename_doc(ctx: HttpContext, body: dict[str, Any]) -> None:
    arg(body, "notebook", str)
    _rename(ctx, _id_of_path(arg(body, "path", str)), arg(body, "title", str))


@endpoint("filetree/renameDocByID", WRITE)
def _rename_doc_by_id(ctx: HttpContext, body: dict[str, Any]) -> None:
    _rename(ctx, arg(body, "id", str), arg(body, "title", str))


@endpoint("filetree/getHPathByID", READ)
def _get_hpath_by_id(ctx: HttpContext, body: dict[str, Any]) -> str:
    node = _node(ctx, arg(body, "id", str))
    return hpath_of(_ws(ctx), _root(node))


@endpoint("filetree/getPathByID", READ)
def _get_path_by_id(ctx: HttpContext, body: dict[str, Any]) -> dict[str, str]:
    root = _root(_node(ctx, arg(body, "id", str)))
    return {"notebook": root.box, "path": root.path}


@endpoint("filetree/getIDsByHPath", READ)
def _get_ids_by_hpath(ctx: HttpContext, body: dict[str, Any]) -> list[str]:
    box = arg(body, "notebook", str)
    hpath = arg(body, "path", str)
    return [doc.id for doc in _doc_by_hpath(_ws(ctx), box, hpath)]


@endpoint("filetree/listDocsByPath", READ)
def _list_docs_by_path(ctx: HttpContext, body: dict[str, Any]) -> dict[str, Any]:
    box = arg(body, "notebook", str)
    path = opt(body, "path", str, "/")
    ws = _ws(ctx)
    parent_id = _id_of_path(path) if path.strip("/") else ""
    files = []
    for doc in iter_documents(ws):
        if doc.box != box or _in_closed_notebook(ws, doc):
            continue
        segments = [_id_of_path(part) for part in doc.path.strip("/").split("/") if part]
        doc_parent = segments[-2] if len(segments) > 1 else ""
        if doc_parent != parent_id:
            continue
        sub = sum(1 for other in iter_documents(ws) if other.path.startswith(doc.path[:-3] + "/"))
        files.append(
            {
                "id": doc.id,
                "name": doc.attrs.get("title", "") + ".sy",
                "path": doc.path,
                "icon": doc.attrs.get("icon", ""),
                "subFileCount": sub,
                "mtime": 0,
                "ctime": 0,
                "hMtime": doc.attrs.get("updated", ""),
                "hCtime": doc.id[:14],
            }
        )
    return {"box": box, "path": path, "files": files}


# ---- export ----


@endpoint("export/exportMdContent", READ)
def _export_md_content(ctx: HttpContext, body: dict[str, Any]) -> dict[str, str]:
    doc = _doc(ctx, arg(body, "id", str))
    ws = _ws(ctx)
    title = doc.attrs.get("title", "")
    created = _iso(doc.id[:14])
    updated = _iso(doc.attrs.get("updated", "") or doc.id[:14])
    front = f"---\ntitle: {title}\ndate: {created}\nlastmod: {updated}\n---\n\n"
    content = front + f"# {title}\n\n" + render_markdown(doc.children)
    return {"hPath": hpath_of(ws, doc), "content": content}


def _iso(stamp: str) -> str:
    if len(stamp) != 14 or not stamp.isdigit():
        return ""
    return f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[8:10]}:{stamp[10:12]}:{stamp[12:14]}Z"
