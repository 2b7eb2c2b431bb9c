"""Notebooks over SiYuan's HTTP API against real ``oplog serve`` processes: lifecycle, undo, replay, sync.

Every notebook endpoint and ``moveDocs``/``moveDocsByID`` is driven with httpx
against a child ``oplog serve``; a ``/ws`` client sees the writes as
``transactions`` messages; a restart on the same data directory gives the same
state hash (replay); two servers with one ``--remote`` folder converge through
``/api/sync/performSync`` (same state hash, same notebooks).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from websockets.sync.client import connect

from oplog.v1 import oplog_pb2 as pb
from oplog.v1 import oplog_pb2_grpc as pb_grpc
from tests.http_helpers import TOKENS, HttpServe, ok

ADMIN = TOKENS["admin"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServe]:
    with HttpServe.with_tokens(tmp_path_factory.mktemp("nbhttp")) as serve:
        yield serve


@pytest.fixture(scope="module")
def admin(server: HttpServe) -> Iterator[httpx.Client]:
    with server.client(ADMIN) as client:
        yield client


def _post(client: httpx.Client, endpoint: str, **body: Any) -> Any:
    return ok(client.post(f"/api/{endpoint}", json=body))


def _refused(client: httpx.Client, endpoint: str, **body: Any) -> str:
    response = client.post(f"/api/{endpoint}", json=body)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["code"] == -1, reply
    return str(reply["msg"])


def _state_hash(serve: HttpServe) -> str:
    with grpc.insecure_channel(serve.grpc) as channel:
        state = pb_grpc.OpLogStub(channel).GetState(
            pb.GetStateRequest(), metadata=[("authorization", f"Bearer {ADMIN}")], timeout=30
        )
    return str(state.state_hash)


def _notebooks(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {nb["id"]: nb for nb in _post(client, "notebook/lsNotebooks")["notebooks"]}


def _box_blocks(client: httpx.Client, box: str) -> int:
    rows = _post(client, "query/sql", stmt=f"SELECT count(*) AS n FROM blocks WHERE box = '{box}'")
    return int(rows[0]["n"])


def _ws_frames(serve: HttpServe, session: str) -> Any:
    return connect(f"ws://{serve.http}/ws?app=t&id={session}&type=main&token={ADMIN}", open_timeout=30)


def _next(ws: Any, cmds: tuple[str, ...], limit: int = 300) -> dict[str, Any]:
    for _ in range(limit):
        frame: dict[str, Any] = json.loads(ws.recv(timeout=60))
        if frame["cmd"] in cmds:
            return frame
    raise AssertionError(f"no {cmds} frame in {limit} messages")


# ---- the lifecycle on one server ----


def test_notebook_lifecycle(server: HttpServe, admin: httpx.Client) -> None:
    with _ws_frames(server, "watcher") as ws:
        made = _post(admin, "notebook/createNotebook", name="  Work\n")["notebook"]
        frame = _next(ws, ("transactions",))
        assert frame["data"][0]["doOperations"][0]["action"] == "createNotebook"
    box = made["id"]
    assert made["name"] == "Work" and made["closed"] is False and made["icon"] == ""
    assert set(made) >= {"id", "name", "icon", "sort", "sortMode", "closed", "newFlashcardCount"}
    assert _notebooks(admin)[box] == made

    doc = _post(admin, "filetree/createDocWithMd", notebook=box, path="/Plan", markdown="# Goals\n\nship it")
    assert _box_blocks(admin, box) == 3

    assert _post(admin, "notebook/renameNotebook", notebook=box, name="Projects") is None
    assert _notebooks(admin)[box]["name"] == "Projects"

    conf = _post(
        admin,
        "notebook/setNotebookConf",
        notebook=box,
        conf={"icon": "1f4d4", "dailyNoteSavePath": "daily/x"},
    )
    assert conf["icon"] == "1f4d4" and conf["dailyNoteSavePath"] == "/daily/x" and conf["name"] == "Projects"
    got = _post(admin, "notebook/getNotebookConf", notebook=box)
    assert got == {"box": box, "name": "Projects", "conf": conf}
    # What getNotebookConf gave goes back unchanged (siyuan-cli's set-conf sends the whole conf).
    assert _post(admin, "notebook/setNotebookConf", notebook=box, conf=got["conf"]) == conf

    assert _post(admin, "notebook/closeNotebook", notebook=box) is None
    assert _notebooks(admin)[box]["closed"] is True
    assert _box_blocks(admin, box) == 0  # a closed notebook's blocks leave the SQL view
    # ... and every other read, as SiYuan unmounts it.
    assert _refused(admin, "block/getBlockKramdown", id=doc) == f"block not found [id={doc}]"
    assert _post(admin, "attr/getBlockAttrs", id=doc) == {}
    assert _post(admin, "filetree/getIDsByHPath", notebook=box, path="/Plan") == []
    assert _post(admin, "filetree/listDocsByPath", notebook=box, path="/")["files"] == []
    assert _post(admin, "notebook/openNotebook", notebook=box) is None
    assert _notebooks(admin)[box]["closed"] is False and _box_blocks(admin, box) == 3
    assert _post(admin, "filetree/getIDsByHPath", notebook=box, path="/Plan") == [doc]

    other = _post(admin, "notebook/createNotebook", name="Archive")["notebook"]["id"]
    assert _post(admin, "filetree/moveDocsByID", fromIDs=[doc], toID=other) is None
    assert _post(admin, "filetree/getPathByID", id=doc) == {"notebook": other, "path": f"/{doc}.sy"}
    host = _post(admin, "filetree/createDocWithMd", notebook=box, path="/Host", markdown="")
    moved = _post(admin, "filetree/moveDocs", fromPaths=[f"/{doc}.sy"], toNotebook=box, toPath=f"/{host}.sy")
    assert moved is None
    assert _post(admin, "filetree/getHPathByID", id=doc) == "/Host/Plan"
    # moveDocsByID takes any block and moves its document; to a document: under it.
    heading = _post(admin, "block/getChildBlocks", id=doc)[0]["id"]
    _post(admin, "filetree/moveDocsByID", fromIDs=[heading], toID=box)
    assert _post(admin, "filetree/getPathByID", id=doc) == {"notebook": box, "path": f"/{doc}.sy"}

    assert _post(admin, "notebook/removeNotebook", notebook=box) is None
    assert box not in _notebooks(admin)
    assert _post(admin, "filetree/getIDsByHPath", notebook=box, path="/Plan") == []
    assert _box_blocks(admin, box) == 0
    assert other in _notebooks(admin)


def test_notebook_refusals(server: HttpServe, admin: httpx.Client) -> None:
    missing = "20240101000000-zzzzzzz"
    assert _refused(admin, "notebook/renameNotebook", notebook="not-an-id", name="x") == "invalid ID argument"
    assert _refused(admin, "notebook/getNotebookConf", notebook=missing) == f"notebook [{missing}] not found"
    assert "not found" in _refused(admin, "notebook/openNotebook", notebook=missing)
    assert _refused(admin, "notebook/createNotebook") == "Field [name] is required"
    box = _post(admin, "notebook/createNotebook", name="Strict")["notebook"]["id"]
    assert "unknown notebook conf field" in _refused(
        admin, "notebook/setNotebookConf", notebook=box, conf={"nope": 1}
    )
    assert "root" in _refused(
        admin, "notebook/setNotebookConf", notebook=box, conf={"dailyNoteSavePath": "/"}
    )
    doc = _post(admin, "filetree/createDocWithMd", notebook=box, path="/Stays", markdown="")
    moved = _refused(admin, "filetree/moveDocsByID", fromIDs=[doc], toID=missing)
    assert moved == f"can't found box or tree by id [{missing}]"
    assert _refused(admin, "filetree/moveDocs", fromPaths=[f"/{doc}.sy"], toNotebook=box, toPath="/x/y")
    # A refused request changed nothing.
    assert _post(admin, "notebook/getNotebookConf", notebook=box)["conf"]["dailyNoteSavePath"].startswith(
        "/daily note/"
    )
    with server.client(TOKENS["reader"]) as reader:
        assert reader.post("/api/notebook/createNotebook", json={"name": "x"}).status_code == 403
        assert box in _notebooks(reader)


def test_notebook_action_undo_over_transactions(admin: httpx.Client) -> None:
    box = _post(admin, "notebook/createNotebook", name="Undoable")["notebook"]["id"]
    before = _post(admin, "notebook/getNotebookConf", notebook=box)
    body = {
        "reqId": 1,
        "app": "t",
        "session": "s",
        "transactions": [{"doOperations": [{"action": "closeNotebook", "id": box}]}],
    }
    (tx,) = _post(admin, "transactions", **body)
    assert _notebooks(admin)[box]["closed"] is True
    undo = {**body, "transactions": [{"doOperations": tx["undoOperations"]}]}
    _post(admin, "transactions", **undo)
    assert _post(admin, "notebook/getNotebookConf", notebook=box) == before


# ---- replay and sync ----


def _lifecycle(client: httpx.Client) -> str:
    box = _post(client, "notebook/createNotebook", name="Shared")["notebook"]["id"]
    doc = _post(client, "filetree/createDocWithMd", notebook=box, path="/Note", markdown="hello")
    _post(client, "notebook/renameNotebook", notebook=box, name="Shared notes")
    _post(client, "notebook/setNotebookConf", notebook=box, conf={"icon": "1f4a1"})
    gone = _post(client, "notebook/createNotebook", name="Scratch")["notebook"]["id"]
    _post(client, "filetree/moveDocsByID", fromIDs=[doc], toID=gone)
    _post(client, "filetree/moveDocsByID", fromIDs=[doc], toID=box)
    _post(client, "notebook/removeNotebook", notebook=gone)
    _post(client, "notebook/closeNotebook", notebook=box)
    return box


def test_notebook_lifecycle_replays(tmp_path: Path) -> None:
    first = HttpServe.with_tokens(tmp_path)
    try:
        with first.client(ADMIN) as client:
            box = _lifecycle(client)
            listed = _notebooks(client)
        digest = _state_hash(first)
    finally:
        first.stop()
    again = HttpServe.with_tokens(tmp_path)
    try:
        assert _state_hash(again) == digest
        with again.client(ADMIN) as client:
            assert _notebooks(client) == listed
            assert listed[box]["name"] == "Shared notes" and listed[box]["closed"] is True
    finally:
        again.stop()


def _sync(serve: HttpServe, client: httpx.Client) -> None:
    with _ws_frames(serve, "sync") as ws:
        _post(client, "sync/performSync", app="t")
        frame = _next(ws, ("syncEnd", "syncFail"))
    assert frame["cmd"] == "syncEnd", frame


def test_notebooks_sync_between_two_servers(tmp_path: Path) -> None:
    remote = str(tmp_path / "remote")
    one = HttpServe.with_tokens(tmp_path, "--remote", remote, data="a")
    two = HttpServe.with_tokens(tmp_path, "--remote", remote, data="b")
    try:
        with one.client(ADMIN) as a, two.client(ADMIN) as b:
            box = _lifecycle(a)
            _sync(one, a)
            _sync(two, b)
            assert _notebooks(b) == _notebooks(a)
            assert _state_hash(two) == _state_hash(one)
            # And back: B opens and renames it, A sees that.
            _post(b, "notebook/openNotebook", notebook=box)
            _post(b, "notebook/renameNotebook", notebook=box, name="From B")
            _sync(two, b)
            _sync(one, a)
            assert _notebooks(a)[box]["name"] == "From B" and _notebooks(a)[box]["closed"] is False
            assert _box_blocks(a, box) == 2
            assert _state_hash(two) == _state_hash(one)
    finally:
        one.stop()
        two.stop()
