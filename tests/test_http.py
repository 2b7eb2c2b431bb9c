"""SiYuan's HTTP API inside a real ``oplog serve`` process: envelope, auth matrix, read-only, seed endpoints.

Each module-scoped server is a real child process on free ports (gRPC and
HTTP), driven with httpx and, for ``/ws``, the ``websockets`` client.
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

from oplog import wire
from oplog.v1 import oplog_pb2 as pb
from oplog.v1 import oplog_pb2_grpc as pb_grpc
from tests.http_helpers import TOKENS, HttpServe, ok

BOX = "20240101000000-aaaaaaa"
ADMIN = {"Authorization": f"Token {TOKENS['admin']}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServe]:
    with HttpServe.with_tokens(tmp_path_factory.mktemp("http")) as serve:
        yield serve


@pytest.fixture(scope="module")
def admin(server: HttpServe) -> Iterator[httpx.Client]:
    with server.client(TOKENS["admin"]) as client:
        yield client


def _doc(client: httpx.Client, title: str, markdown: str) -> str:
    return str(
        ok(
            client.post(
                "/api/filetree/createDocWithMd",
                json={"notebook": BOX, "path": f"/{title}", "markdown": markdown},
            )
        )
    )


def _ws(server: HttpServe, token: str, session: str) -> Any:
    return connect(f"ws://{server.http}/ws?app=test&id={session}&type=main&token={token}", open_timeout=30)


def _frames_until(ws: Any, cmd: str, limit: int = 200) -> list[dict[str, Any]]:
    """Messages received up to and including the first whose cmd is ``cmd``."""
    seen = []
    for _ in range(limit):
        message = json.loads(ws.recv(timeout=30))
        seen.append(message)
        if message["cmd"] == cmd:
            return seen
    raise AssertionError(f"no {cmd} frame in {limit} messages: {[m['cmd'] for m in seen]}")


# ---- envelope ----


def test_version_and_current_time_need_no_token(server: HttpServe) -> None:
    with server.client() as client:
        assert isinstance(ok(client.post("/api/system/version")), str)
        assert ok(client.get("/api/system/version")) == ok(client.post("/api/system/version"))
        assert isinstance(ok(client.post("/api/system/currentTime")), int)


def test_unknown_endpoint_is_404_with_a_json_body(admin: httpx.Client) -> None:
    for path in ("/api/block/noSuchThing", "/api/nope", "/not/api"):
        response = admin.post(path, json={})
        assert response.status_code == 404
        body = response.json()
        assert body["code"] == -1 and body["msg"].startswith("unsupported endpoint"), body


def test_json_body_whatever_the_content_type_and_empty_body_is_empty_object(admin: httpx.Client) -> None:
    # Empty body -> {} -> the missing field is named as the kernel names it.
    response = admin.post("/api/sync/performSync", content=b"")
    assert response.status_code == 200
    assert response.json() == {"code": -1, "msg": "Field [app] is required", "data": None}
    doc = _doc(admin, "plain", "text body")
    response = admin.post(
        "/api/filetree/getHPathByID",
        content=json.dumps({"id": doc}).encode(),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert ok(response) == "/plain"


def test_bad_bodies_are_code_minus_one(admin: httpx.Client) -> None:
    for raw in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        response = admin.post("/api/transactions", content=raw)
        assert response.status_code == 200
        body = response.json()
        assert body["code"] == -1 and body["msg"].startswith("Parses request [/api/transactions] failed"), (
            body
        )
    wrong_type = admin.post("/api/block/getBlockKramdown", json={"id": 5})
    assert wrong_type.json()["msg"] == "Field [id] should be of type [String]"
    missing = admin.post("/api/transactions", json={"reqId": 1})
    assert missing.json() == {"code": -1, "msg": "Field [transactions] is required", "data": None}


# ---- auth: the same decisions as gRPC ----


def _grpc_apply_code(server: HttpServe, token: str | None) -> grpc.StatusCode:
    metadata = (("authorization", f"Token {token}"),) if token else ()
    with grpc.insecure_channel(server.grpc) as channel:
        stub = pb_grpc.OpLogStub(channel)
        request = pb.ApplyRequest(
            req_id=1,
            transactions=[
                pb.Transaction(
                    do_operations=[pb.Operation(action="deleteBlock", id="20200101000000-zzzzzzz")]
                )
            ],
        )
        try:
            stub.Apply(request, metadata=metadata, timeout=30)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK


def test_wrong_or_missing_token_is_401_in_the_kernels_words(server: HttpServe) -> None:
    expected = {"code": -1, "msg": "Auth failed [header: Authorization]"}
    with server.client() as anonymous:
        assert (
            anonymous.post("/api/block/getChildBlocks", json={}).status_code,
            anonymous.post("/api/block/getChildBlocks", json={}).json(),
        ) == (401, expected)
    with server.client("not-a-token") as wrong:
        response = wrong.post("/api/transactions", json={})
        assert (response.status_code, response.json()) == (401, expected)
    with server.client() as anonymous:
        response = anonymous.post("/api/query/sql?token=wrong", json={"stmt": "select 1"})
        assert (response.status_code, response.json()) == (
            401,
            {"code": -1, "msg": "Auth failed [query: token]"},
        )
    assert _grpc_apply_code(server, None) == grpc.StatusCode.UNAUTHENTICATED
    assert _grpc_apply_code(server, "not-a-token") == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("prefix", ["Token ", "token ", "Bearer ", "bearer "])
def test_every_token_prefix_and_the_query_parameter(server: HttpServe, prefix: str) -> None:
    response = httpx.post(
        f"{server.url}/api/attr/getBlockAttrs",
        json={"id": "20200101000000-zzzzzzz"},
        headers={"Authorization": prefix + TOKENS["reader"]},
    )
    assert ok(response) == {}
    response = httpx.post(
        f"{server.url}/api/attr/getBlockAttrs?token={TOKENS['reader']}", json={"id": "20200101000000-zzzzzzz"}
    )
    assert ok(response) == {}


# endpoint, body, lowest role that may call it (the role of the gRPC method it shares)
MATRIX = [
    (
        "/api/transactions",
        {
            "reqId": 1,
            "transactions": [{"doOperations": [{"action": "deleteBlock", "id": "20200101000000-zzzzzzz"}]}],
        },
        "editor",
    ),
    ("/api/block/deleteBlock", {"id": "20200101000000-zzzzzzz"}, "editor"),
    ("/api/sync/getSyncInfo", {}, "admin"),
    ("/api/query/sql", {"stmt": "select 1 as one"}, "reader"),
    ("/api/attr/getBlockAttrs", {"id": "20200101000000-zzzzzzz"}, "reader"),
    ("/api/system/getConf", {}, "reader"),
]
_RANK = {"reader": 0, "editor": 1, "admin": 2}


@pytest.mark.parametrize(("path", "body", "lowest"), MATRIX)
def test_auth_matrix_roles(server: HttpServe, path: str, body: dict[str, Any], lowest: str) -> None:
    for role, token in TOKENS.items():
        with server.client(token) as client:
            response = client.post(path, json=body)
        if _RANK[role] >= _RANK[lowest]:
            assert response.status_code == 200, (role, response.text)
            assert response.json()["code"] == 0, (role, response.json())
        else:
            assert response.status_code == 403, (role, response.text)
    # gRPC decides Apply the same way for each role.
    for role, token in TOKENS.items():
        expected = grpc.StatusCode.OK if _RANK[role] >= _RANK["editor"] else grpc.StatusCode.PERMISSION_DENIED
        assert _grpc_apply_code(server, token) == expected, role


def test_read_only_server_refuses_writes_in_the_kernels_words(tmp_path: Path) -> None:
    serve = HttpServe.with_tokens(tmp_path)
    with serve.client(TOKENS["admin"]) as client:
        doc = _doc(client, "ro", "before")
    serve.stop()
    serve = HttpServe.with_tokens(tmp_path, "--readonly")
    try:
        with serve.client(TOKENS["admin"]) as client:
            refusal = {
                "code": -1,
                "msg": "This operation is not supported in read-only mode",
                "data": {"closeTimeout": 5000},
            }
            for path, body in (
                (
                    "/api/transactions",
                    {"reqId": 1, "transactions": [{"doOperations": [{"action": "deleteBlock", "id": doc}]}]},
                ),
                ("/api/block/appendBlock", {"parentID": doc, "data": "x", "dataType": "markdown"}),
                ("/api/sync/performSync", {"app": "t"}),
            ):
                response = client.post(path, json=body)
                assert (response.status_code, response.json()) == (200, refusal), path
            assert ok(client.post("/api/filetree/getHPathByID", json={"id": doc})) == "/ro"
    finally:
        serve.stop()


# ---- /api/transactions ----


def test_transactions_reply_server_timing_and_atomic_refusal(admin: httpx.Client) -> None:
    doc = _doc(admin, "tx", "first")
    body = {
        "reqId": 1700000000000,
        "app": "t",
        "session": "s1",
        "transactions": [
            {
                "doOperations": [
                    {"action": "appendBlock", "parentID": doc, "data": "second", "dataType": "markdown"}
                ]
            }
        ],
    }
    response = admin.post(
        "/api/transactions", content=json.dumps(body), headers={"Content-Type": "text/plain"}
    )
    data = ok(response)
    assert response.headers["Server-Timing"].startswith("total;dur=")
    assert data[0]["timestamp"] == 1700000000000
    op = data[0]["doOperations"][0]
    assert op["action"] == "appendBlock" and op["retData"] == [op["id"]]
    before = ok(admin.post("/api/block/getChildBlocks", json={"id": doc}))
    bad = {
        "reqId": 2,
        "transactions": [
            {
                "doOperations": [
                    {"action": "appendBlock", "parentID": doc, "data": "third", "dataType": "markdown"},
                    {
                        "action": "updateBlock",
                        "id": "20200101000000-zzzzzzz",
                        "data": "x",
                        "dataType": "markdown",
                    },
                ]
            }
        ],
    }
    refused = admin.post("/api/transactions", json=bad).json()
    assert refused["code"] == -1 and refused["msg"].startswith("transactions[0].doOperations[1]"), refused
    assert ok(admin.post("/api/block/getChildBlocks", json={"id": doc})) == before


# ---- /ws ----


def test_ws_gets_a_transactions_frame_after_each_applied_request(
    server: HttpServe, admin: httpx.Client
) -> None:
    doc = _doc(admin, "ws", "one")
    with _ws(server, TOKENS["reader"], "watcher") as ws:
        ok(
            admin.post(
                "/api/block/appendBlock", json={"parentID": doc, "data": "two", "dataType": "markdown"}
            )
        )
        frames = _frames_until(ws, "transactions")
        frame = frames[-1]
        assert frame["data"][0]["doOperations"][0]["action"] == "appendInsert"
        assert frame["data"][0]["doOperations"][0]["parentID"] == doc
        assert {"cmd", "code", "msg", "data", "sid", "app"} <= set(frame)
        message = ok(admin.post("/api/notification/pushMsg", json={"msg": "hello", "timeout": 1000}))
        pushed = _frames_until(ws, "msg")[-1]
        assert pushed["msg"] == "hello" and pushed["data"]["id"] == message["id"] and pushed["code"] == 0
        err = ok(admin.post("/api/notification/pushErrMsg", json={"msg": "bad"}))
        pushed = _frames_until(ws, "msg")[-1]
        assert (pushed["code"], pushed["data"]["id"]) == (-1, err["id"])


def test_ws_gets_a_writes_message_before_the_notification_sent_after_its_reply(
    server: HttpServe, admin: httpx.Client
) -> None:
    # The kernel pushes a request's transactions message before replying; a client that writes and
    # then notifies (as siyuan-mcp-server's tools do) sees them in that order. CI once saw the msg first.
    doc = _doc(admin, "ws-order", "one")
    with _ws(server, TOKENS["reader"], "order") as ws:
        for round_ in range(100):
            body = {"parentID": doc, "data": f"r{round_}", "dataType": "markdown"}
            ok(admin.post("/api/block/appendBlock", json=body))
            ok(admin.post("/api/notification/pushMsg", json={"msg": f"done {round_}"}))
            frames = _frames_until(ws, "msg")
            assert [f["cmd"] for f in frames] == ["transactions", "msg"], round_
            assert frames[0]["data"][0]["doOperations"][0]["data"].startswith(f"r{round_}")
            assert frames[1]["msg"] == f"done {round_}"


def test_ws_gets_a_transactions_frame_for_a_grpc_request_too(server: HttpServe, admin: httpx.Client) -> None:
    doc = _doc(admin, "ws-grpc", "one")
    with _ws(server, TOKENS["reader"], "watcher2") as ws:
        body = {
            "reqId": 7,
            "app": "grpc-app",
            "session": "grpc-session",
            "transactions": [
                {
                    "doOperations": [
                        {"action": "appendBlock", "parentID": doc, "data": "a", "dataType": "markdown"}
                    ]
                },
                {
                    "doOperations": [
                        {"action": "appendBlock", "parentID": doc, "data": "b", "dataType": "markdown"}
                    ]
                },
            ],
        }
        metadata = (("authorization", f"Token {TOKENS['editor']}"),)
        with grpc.insecure_channel(server.grpc) as channel:
            pb_grpc.OpLogStub(channel).Apply(wire.request_from_json(body), metadata=metadata, timeout=30)
        frame = _frames_until(ws, "transactions")[-1]
        # One message for the request, both transactions in it, with the sender's app and session.
        assert (frame["app"], frame["sid"], len(frame["data"])) == ("grpc-app", "grpc-session", 2)
        assert [tx["doOperations"][0]["data"] for tx in frame["data"]] == ["a", "b"]


def test_ws_skips_the_senders_own_session(server: HttpServe, admin: httpx.Client) -> None:
    doc = _doc(admin, "ws-self", "one")

    def body(session: str, text: str) -> dict[str, Any]:
        op = {"action": "appendBlock", "parentID": doc, "data": text, "dataType": "markdown"}
        return {"reqId": 1, "app": "t", "session": session, "transactions": [{"doOperations": [op]}]}

    with _ws(server, TOKENS["reader"], "me") as ws:
        ok(admin.post("/api/transactions", json=body("me", "mine")))
        ok(admin.post("/api/transactions", json=body("other", "theirs")))
        frame = _frames_until(ws, "transactions")[-1]
        # The first transactions message this session sees is the other session's.
        assert frame["sid"] == "other" and frame["data"][0]["doOperations"][0]["data"] == "theirs"


def test_ws_refuses_a_wrong_token(server: HttpServe) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the handshake is refused, how the client says so varies
        with connect(f"ws://{server.http}/ws?app=t&id=x&type=main&token=wrong", open_timeout=30) as ws:
            ws.recv(timeout=30)


def test_perform_sync_reports_on_ws_and_refuses_a_second_one(server: HttpServe, admin: httpx.Client) -> None:
    with _ws(server, TOKENS["admin"], "syncwatch") as ws:
        first = ok(admin.post("/api/sync/performSync", json={"app": "t", "pushMode": ""}))
        assert first == {"current": 0, "total": 0, "info": "准备同步中...", "msg": ""}
        frames = _frames_until(ws, "syncEnd")
        cmds = [f["cmd"] for f in frames]
        assert cmds[0] == "syncBegin"
        syncing = [f["code"] for f in frames if f["cmd"] == "syncing"]
        assert syncing[0] == 0
        frames += _frames_until(ws, "syncing")
        assert [f["code"] for f in frames if f["cmd"] == "syncing"][-1] == 1
    info = ok(admin.post("/api/sync/getSyncInfo"))
    assert info["synced"] > 0 and info["cloudName"] == "main"
    bad = admin.post("/api/sync/performSync", json={"app": "t", "cloudName": "../x"}).json()
    assert bad["code"] == -1 and "cloudName" in bad["msg"]
    bad = admin.post("/api/sync/performSync", json={"app": "t", "pushMode": "sideways"}).json()
    assert bad["code"] == -1
