"""The kernel endpoints over a real ``oplog serve``: documents, blocks, attributes, SQL, export.

Every write is checked twice: its reply in the kernel's shape, and what a
later read (or the gRPC GetState/GetBlock of the same process) sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from oplog.v1 import oplog_pb2 as pb
from oplog.v1 import oplog_pb2_grpc as pb_grpc
from tests.http_helpers import HttpServe, ok

BOX = "20240102000000-bbbbbbb"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServe]:
    serve = HttpServe(tmp_path_factory.mktemp("blocks") / "d", "--no-boot-sync")
    yield serve
    serve.stop()


@pytest.fixture(scope="module")
def client(server: HttpServe) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _post(client: httpx.Client, endpoint: str, /, **body: object) -> Any:
    return ok(client.post(f"/api/{endpoint}", json=body))


def _children(client: httpx.Client, block_id: str) -> list[dict[str, str]]:
    return list(_post(client, "block/getChildBlocks", id=block_id))


def test_document_lifecycle_and_paths(client: httpx.Client) -> None:
    parent = _post(client, "filetree/createDocWithMd", notebook=BOX, path="/Projects", markdown="top")
    child = _post(
        client, "filetree/createDocWithMd", notebook=BOX, path="/Projects/Plan", markdown="# Goals\n\nship it"
    )
    assert _post(client, "filetree/getHPathByID", id=child) == "/Projects/Plan"
    path = _post(client, "filetree/getPathByID", id=child)
    assert path == {"notebook": BOX, "path": f"/{parent}/{child}.sy"}
    assert _post(client, "filetree/getIDsByHPath", notebook=BOX, path="/Projects/Plan") == [child]
    listing = _post(client, "filetree/listDocsByPath", notebook=BOX, path="/")
    top = {f["id"]: f for f in listing["files"]}
    assert top[parent]["subFileCount"] == 1 and top[parent]["name"] == "Projects.sy"
    below = _post(client, "filetree/listDocsByPath", notebook=BOX, path=f"/{parent}.sy")
    assert [f["id"] for f in below["files"]] == [child]
    notebooks = _post(client, "notebook/lsNotebooks")
    assert BOX in [n["id"] for n in notebooks["notebooks"]]
    # Missing parents along the path are made, as the kernel makes them, in the same transaction.
    deeper = _post(
        client, "filetree/createDocWithMd", notebook=BOX, path="/Nope/Deeper/Deepest", markdown="x"
    )
    assert _post(client, "filetree/getHPathByID", id=deeper) == "/Nope/Deeper/Deepest"
    (nope,) = _post(client, "filetree/getIDsByHPath", notebook=BOX, path="/Nope")
    assert _post(client, "filetree/getPathByID", id=deeper)["path"].startswith(f"/{nope}/")
    by_path = _post(
        client,
        "filetree/createDoc",
        notebook=BOX,
        path=f"/{parent}/20240102000001-ccccccc.sy",
        title="Made",
        md="body",
    )
    assert by_path == "20240102000001-ccccccc"
    assert _post(client, "filetree/getHPathByID", id=by_path) == "/Projects/Made"
    assert _post(client, "filetree/renameDocByID", id=parent, title="Work") is None
    assert _post(client, "filetree/getHPathByID", id=by_path) == "/Work/Made"
    assert _post(client, "filetree/renameDoc", notebook=BOX, path=f"/{parent}.sy", title="Projects") is None
    assert _post(client, "filetree/removeDoc", notebook=BOX, path=f"/{parent}/{by_path}.sy") is None
    assert _post(client, "filetree/removeDocByID", id=child) is None
    assert _post(client, "filetree/getIDsByHPath", notebook=BOX, path="/Projects/Plan") == []
    gone = client.post("/api/filetree/removeDocByID", json={"id": child}).json()
    assert gone["code"] == -1


def test_block_writes_reply_the_kernels_ops(server: HttpServe, client: httpx.Client) -> None:
    doc = str(_post(client, "filetree/createDocWithMd", notebook=BOX, path="/Blocks", markdown="first"))
    (first,) = [c["id"] for c in _children(client, doc)]
    inserted = _post(client, "block/insertBlock", dataType="markdown", data="after first", previousID=first)
    op = inserted[0]["doOperations"][0]
    assert op["action"] == "insert"
    new_id = op["id"]
    prepended = _post(client, "block/prependBlock", dataType="markdown", data="at top", parentID=doc)
    top = prepended[0]["doOperations"][0]
    assert top["action"] == "prependInsert"
    appended = _post(
        client, "block/appendBlock", dataType="markdown", data="## Tail\n\nunder tail", parentID=doc
    )
    tail_ops = appended[0]["doOperations"][0]
    assert tail_ops["action"] == "appendInsert"
    ids = [c["id"] for c in _children(client, doc)]
    assert ids[:3] == [top["id"], first, new_id] and len(ids) == 5
    heading = ids[3]
    assert _children(client, heading) == [{"id": ids[4], "type": "p"}]

    updated = _post(client, "block/updateBlock", id=new_id, dataType="markdown", data="changed **bold**")
    assert updated[0]["doOperations"][0]["action"] == "update"
    kramdown = _post(client, "block/getBlockKramdown", id=new_id)
    assert kramdown["id"] == new_id
    assert kramdown["kramdown"].startswith('changed **bold**\n{: id="' + new_id)

    moved = _post(client, "block/moveBlock", id=top["id"], previousID=new_id)
    assert moved[0]["doOperations"][0]["action"] == "move"
    assert [c["id"] for c in _children(client, doc)][:3] == [first, new_id, top["id"]]
    refused = client.post("/api/block/moveBlock", json={"id": top["id"], "previousID": doc}).json()
    assert refused == {"code": -1, "msg": "`previousID` can not be the ID of a document", "data": None}

    _post(client, "block/foldBlock", id=heading)
    assert _post(client, "attr/getBlockAttrs", id=heading)["fold"] == "1"
    _post(client, "block/unfoldBlock", id=heading)
    assert "fold" not in _post(client, "attr/getBlockAttrs", id=heading)
    assert client.post("/api/block/foldBlock", json={"id": doc}).json()["msg"] == "document can not be folded"

    deleted = _post(client, "block/deleteBlock", id=top["id"])
    assert deleted[0]["doOperations"][0]["action"] == "delete"
    assert top["id"] not in [c["id"] for c in _children(client, doc)]

    # The HTTP writes are gRPC-visible state in the same process.
    with grpc.insecure_channel(server.grpc) as channel:
        block = pb_grpc.OpLogStub(channel).GetBlock(pb.GetBlockRequest(id=new_id), timeout=30)
    assert block.markdown == "changed **bold**"


def test_insert_needs_an_anchor_and_a_known_data_type(client: httpx.Client) -> None:
    no_anchor = client.post("/api/block/insertBlock", json={"dataType": "markdown", "data": "x"}).json()
    assert no_anchor["code"] == -1 and "previousID" in no_anchor["msg"]
    bad_type = client.post(
        "/api/block/appendBlock", json={"dataType": "rtf", "data": "x", "parentID": "20200101000000-zzzzzzz"}
    ).json()
    assert bad_type["code"] == -1 and "dataType" in bad_type["msg"]
    missing_anchor = client.post(
        "/api/block/insertBlock",
        json={"dataType": "markdown", "data": "x", "previousID": "20200101000000-zzzzzzz"},
    ).json()
    assert missing_anchor["code"] == -1 and "20200101000000-zzzzzzz" in missing_anchor["msg"]


def test_attributes(client: httpx.Client) -> None:
    doc = str(_post(client, "filetree/createDocWithMd", notebook=BOX, path="/Attrs", markdown="p"))
    (block,) = [c["id"] for c in _children(client, doc)]
    assert _post(client, "attr/setBlockAttrs", id=block, attrs={"custom-a": "1", "custom-b": "2"}) is None
    attrs = _post(client, "attr/getBlockAttrs", id=block)
    assert attrs["custom-a"] == "1" and attrs["custom-b"] == "2" and attrs["id"] == block
    _post(client, "attr/setBlockAttrs", id=block, attrs={"custom-a": ""})
    assert "custom-a" not in _post(client, "attr/getBlockAttrs", id=block)
    assert _post(client, "attr/getBlockAttrs", id="20200101000000-zzzzzzz") == {}
    bad = client.post("/api/attr/setBlockAttrs", json={"id": block, "attrs": {"Bad Name": "x"}}).json()
    assert bad["code"] == -1


def test_sql_limit_64_and_errors_are_code_1(client: httpx.Client) -> None:
    markdown = "\n\n".join(f"line {i}" for i in range(70))
    doc = _post(client, "filetree/createDocWithMd", notebook=BOX, path="/Many", markdown=markdown)
    rows = _post(client, "query/sql", stmt=f"SELECT id FROM blocks WHERE root_id = '{doc}' AND type = 'p'")
    assert len(rows) == 64
    rows = _post(
        client,
        "query/sql",
        stmt=f"SELECT id, content FROM blocks WHERE root_id = '{doc}' AND type = 'p' LIMIT 100",
    )
    assert len(rows) == 70 and set(rows[0]) == {"id", "content"}
    error = client.post("/api/query/sql", json={"stmt": "SELEC nothing"}).json()
    assert error["code"] == 1 and error["msg"], error
    write = client.post("/api/query/sql", json={"stmt": "DELETE FROM blocks"}).json()
    assert write["code"] == 1


def test_block_info_breadcrumb_export_and_conf(client: httpx.Client) -> None:
    doc = str(
        _post(
            client,
            "filetree/createDocWithMd",
            notebook=BOX,
            path="/Export",
            markdown="# Head\n\n- item one\n- item two",
        )
    )
    heading, listing = [c["id"] for c in _children(client, doc)]
    item = _children(client, listing)[0]["id"]
    info = _post(client, "block/getBlockInfo", id=item)
    assert info["rootID"] == doc and info["box"] == BOX and info["rootTitle"] == "Export"
    assert info["rootChildID"] == listing
    crumbs = _post(client, "block/getBlockBreadcrumb", id=item)
    assert [c["id"] for c in crumbs] == [doc, listing, item]
    exported = _post(client, "export/exportMdContent", id=doc)
    assert exported["hPath"] == "/Export"
    content = exported["content"]
    assert (
        content.startswith("---\ntitle: Export\n")
        and "\n# Export\n\n# Head\n\n- item one\n- item two" in content
    )
    conf = _post(client, "system/getConf")
    assert conf["conf"]["system"]["kernelVersion"]
    assert conf["conf"]["stat"]["treeCount"] >= 1 and conf["conf"]["stat"]["blockCount"] >= 4
    assert conf["conf"]["api"]["token"] == ""
    missing = client.post("/api/block/getBlockInfo", json={"id": "20200101000000-zzzzzzz"}).json()
    assert missing["code"] == -1
