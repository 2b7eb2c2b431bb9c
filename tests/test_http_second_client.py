"""A second SiYuan client no one here wrote: ``siyuan-mcp-server`` (PyPI) over stdio, against oplog.

siyuan-mcp-server is an MCP tool server for AI assistants: it turns MCP tool
calls into SiYuan kernel HTTP requests. It runs here as its own process,
started and driven by the official ``mcp`` Python SDK client over stdin/stdout
(JSON-RPC lines), pointed at a real ``oplog serve`` with its documented
``SIYUAN_API_URL`` and ``SIYUAN_API_TOKEN``. Each tool's result is checked,
then the state is checked again through oplog's own endpoints, and the
notification every write tool sends (``pushMsg``/``pushErrMsg`` — the tool
server reports a write as failed when that notification fails) is read back
from ``/ws``. The tools that read SiYuan's workspace files (``file/readDir``,
``file/getFile``), which oplog does not serve, are called too: the test
asserts they fail with oplog's 404, and ``docs/http.md`` lists them.

The tool server masks anything that looks like a secret in what it returns,
including block ids inside ``execute_sql`` rows (its own deliberate design),
so ids are taken from write replies, ``find_documents`` and kramdown IALs,
and SQL rows are compared by content.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.http_helpers import TOKENS, HttpServe, ok

pytest.importorskip("mcp.client.stdio", reason="mcp is a test extra: pip install -e '.[test]'")
if importlib.util.find_spec("siyuan_mcp_server") is None:
    pytest.skip("siyuan-mcp-server is a test extra: pip install -e '.[test]'", allow_module_level=True)

from anyio.from_thread import start_blocking_portal  # noqa: E402  (after the skip: mcp brings anyio's portal)
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

Tool = Callable[..., Any]
UNKNOWN = "20200101000000-zzzzzzz"


class ToolFailed(Exception):
    """A tool call the MCP server answered with ``isError`` (its text is the message)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServe]:
    with HttpServe.with_tokens(tmp_path_factory.mktemp("mcp")) as serve:
        yield serve


@pytest.fixture(scope="module")
def admin(server: HttpServe) -> Iterator[httpx.Client]:
    with server.client(TOKENS["admin"]) as client:
        yield client


@pytest.fixture(scope="module")
def mcp_session(
    server: HttpServe, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Tool]]:
    """``open_as(role)`` starts (once per role) a siyuan-mcp-server process and returns its ``tool(name, **args)``."""
    exe = shutil.which("siyuan-mcp-server", path=str(Path(sys.executable).parent))
    fallback = (sys.executable, ["-c", "from siyuan_mcp_server import main; main()"])
    command, args = (exe, []) if exe else fallback
    logs = tmp_path_factory.mktemp("mcp-logs")
    opened: dict[str, Tool] = {}
    with ExitStack() as stack:
        portal = stack.enter_context(start_blocking_portal())

        def open_as(role: str) -> Tool:
            if role in opened:
                return opened[role]
            token = TOKENS[role]
            errlog = stack.enter_context((logs / f"{role}.log").open("w"))
            params = StdioServerParameters(
                command=command, args=args, env={"SIYUAN_API_URL": server.url, "SIYUAN_API_TOKEN": token}
            )
            transport = stdio_client(params, errlog=errlog)  # the server's stderr to a file, not the test's
            client = stack.enter_context(
                portal.wrap_async_context_manager(Client(transport, read_timeout_seconds=60))
            )

            def tool(name: str, /, **arguments: Any) -> Any:
                result = portal.call(partial(client.call_tool, name, arguments))
                text = " ".join(getattr(part, "text", "") for part in result.content)
                assert token not in text
                if result.is_error:
                    raise ToolFailed(text)
                assert result.structured_content is not None, text
                return result.structured_content["result"]

            opened[role] = tool
            return tool

        yield open_as


def _frames_until(ws: Any, cmd: str, limit: int = 200) -> list[dict[str, Any]]:
    """Messages received up to and including the first whose cmd is ``cmd``."""
    seen = []
    for _ in range(limit):
        message = json.loads(ws.recv(timeout=30))
        seen.append(message)
        if message["cmd"] == cmd:
            return seen
    raise AssertionError(f"no {cmd} frame in {limit} messages: {[m['cmd'] for m in seen]}")


def _notified(ws: Any) -> tuple[list[str], dict[str, Any]]:
    """The actions of the ``transactions`` frames up to the next notification, and that ``msg`` frame."""
    frames = _frames_until(ws, "msg")
    actions = [
        op["action"]
        for frame in frames
        if frame["cmd"] == "transactions"
        for tx in frame["data"]
        for op in tx["doOperations"]
    ]
    return actions, frames[-1]


def _children(admin: httpx.Client, block: str) -> list[str]:
    return [c["id"] for c in ok(admin.post("/api/block/getChildBlocks", json={"id": block}))]


def test_everyday_session(server: HttpServe, admin: httpx.Client, mcp_session: Callable[[str], Tool]) -> None:
    box = ok(admin.post("/api/notebook/createNotebook", json={"name": "Research"}))["notebook"]["id"]
    other = ok(admin.post("/api/notebook/createNotebook", json={"name": "Archive"}))["notebook"]["id"]
    tool = mcp_session("editor")
    watch = f"ws://{server.http}/ws?app=mcp-test&id=watcher&type=main&token={TOKENS['reader']}"
    with connect(watch, open_timeout=30) as ws:
        assert {nb["id"] for nb in tool("find_notebooks")} >= {box, other}
        [found] = tool("find_notebooks", name="resea")
        assert (found["id"], found["name"], found["closed"]) == (box, "Research", False)

        markdown = "# Hello\n\nfirst para\n\n## Sub\n\nunder sub\n\n## Other\n\nlast"
        doc = tool("create_document", notebook_id=box, path="/Notes/Hello", markdown=markdown)
        actions, note = _notified(ws)
        assert actions and note["code"] == 0 and "Hello" in note["msg"]
        assert ok(admin.post("/api/filetree/getHPathByID", json={"id": doc})) == "/Notes/Hello"
        docs = {d["hpath"]: d["id"] for d in tool("find_documents", notebook_id=box)}
        assert set(docs) == {"/Notes", "/Notes/Hello"} and docs["/Notes/Hello"] == doc

        kramdown = tool("get_block_content", block_id=doc)["kramdown"]
        assert kramdown.startswith("# Hello\n{:id=") and "\n## Sub\n" in kramdown
        h1, first, h2, under, h3, last = re.findall(r'\{:\s*id="([^"]+)"', kramdown)
        assert _children(admin, doc) == [h1, first, h2, under, h3, last]

        def write(name: str, expect: list[str], /, **arguments: Any) -> str:
            """A write tool: its op list, the ws frames it caused and its notification; the new block's id."""
            reply = tool(name, **arguments)
            ops = [op for tx in reply for op in tx["doOperations"]]
            assert [op["action"] for op in ops] == expect
            actions, note = _notified(ws)
            assert actions == expect and note["code"] == 0, note
            return str(ops[0]["id"])

        appended = write("append_block", ["appendInsert"], parent_id=doc, data="appended")
        prepended = write("prepend_block", ["prependInsert"], parent_id=doc, data="prepended")
        after = write("insert_block", ["insert"], previous_id=first, data="after first")
        before = write("insert_block", ["insert"], next_id=first, data="before first")
        # A heading as parentID: the new block opens the heading's section (headings are flat in SiYuan).
        in_sub = write("insert_block", ["insert"], parent_id=h2, data="opens the Sub section")
        write("update_block", ["update"], block_id=first, data="updated **first**")
        section = [h2, in_sub, under]
        assert _children(admin, doc) == [prepended, h1, before, first, after, *section, h3, last, appended]
        assert ok(admin.post("/api/block/getChildBlocks", json={"id": h2})) == [
            {"id": in_sub, "type": "p"},
            {"id": under, "type": "p"},
        ]
        got = tool("get_blocks_content", block_ids=[first, UNKNOWN])
        assert got[0]["kramdown"].startswith("updated **first**\n{:id=")
        assert got[1] == {"id": UNKNOWN, "error": f"Siyuan API Error: block not found [id={UNKNOWN}]"}

        # A heading moves with its section: the tool reads getChildBlocks and the SQL view's parent_id
        # (the heading a block sits under, as in SiYuan) and sends one moveBlock per block.
        write("move_block", ["move", "move", "move"], block_id=h2, previous_id=h3)
        assert _children(admin, doc) == [prepended, h1, before, first, after, h3, last, appended, *section]

        write("delete_block", ["delete"], block_id=last)
        assert ok(admin.post("/api/attr/getBlockAttrs", json={"id": last})) == {}
        with pytest.raises(ToolFailed, match="Refusing to delete a document block"):
            tool("delete_block", block_id=doc)  # the tool's own rule, decided from the SQL row's type 'd'
        _notified(ws)  # its error notification
        assert ok(admin.post("/api/filetree/getHPathByID", json={"id": doc})) == "/Notes/Hello"

        rows = tool("execute_sql", query=f"SELECT content FROM blocks WHERE root_id = '{doc}' AND type = 'p'")
        assert {r["content"] for r in rows} == {
            "prepended",
            "before first",
            "updated first",
            "after first",
        } | {
            "appended",
            "opens the Sub section",
            "under sub",
        }
        assert len(rows) == 7
        with pytest.raises(ToolFailed, match="Siyuan API Error: SQL error: no such column: nosuch"):
            tool("execute_sql", query="SELECT nosuch FROM blocks")
        hits = tool("search_blocks", query="first")
        assert {h["id"] for h in hits} == {before, first, after}
        assert {h["hpath"] for h in hits} == {"/Notes/Hello"}
        assert [h["id"] for h in tool("search_blocks", query="Sub", block_type="h")] == [h2]
        # parent_id is the SQL column: a block under a heading has that heading as its parent.
        assert {h["id"] for h in tool("search_blocks", query="e", parent_id=h2)} == {in_sub, under}

        # Attributes: no tool sets them, but find_documents filters on the `name` attribute's column.
        assert tool("find_documents", notebook_id=box, title="Greet") == []
        ok(admin.post("/api/attr/setBlockAttrs", json={"id": doc, "attrs": {"name": "Greeting"}}))
        assert [d["id"] for d in tool("find_documents", title="Greet")] == [doc]

        changes = tool("get_block_changes", start_time="20000101000000", limit=100)
        assert {a["content"] for a in changes["added"]} >= {"Hello", "appended", "opens the Sub section"}
        assert changes["history_available"] is False and "404" in changes["history_error"]

        sent = tool("push_message", msg="from the assistant")
        note = _frames_until(ws, "msg")[-1]
        assert (note["code"], note["msg"], note["data"]["id"]) == (0, "from the assistant", sent["id"])
        sent = tool("push_error_message", msg="something failed")
        note = _frames_until(ws, "msg")[-1]
        assert (note["code"], note["msg"], note["data"]["id"]) == (-1, "something failed", sent["id"])

        # A write oplog refuses (the kernel answers success and inserts nothing) fails the tool and notifies.
        with pytest.raises(ToolFailed, match=r"transactions\[0\]\.doOperations\[0\]"):
            tool("insert_block", previous_id=UNKNOWN, data="nowhere")
        actions, note = _notified(ws)
        assert actions == [] and note["code"] == -1
        assert len(_children(admin, doc)) == 10


NOT_SERVED = {
    "list_files": ({"path": "/data"}, "/api/file/readDir"),
    "list_history_entries": ({}, "/api/file/readDir"),
    "get_block_diffs": ({"start_time": "20000101000000"}, "/api/file/readDir"),
    "get_file": ({"path": "/data/x.sy"}, "/api/file/getFile"),
    "get_file_base64": ({"path": "/data/x.sy"}, "/api/file/getFile"),
    "get_history_file": ({"path": "/history/x.sy"}, "/api/file/getFile"),
}


def test_workspace_file_tools_get_the_clear_refusal(
    admin: httpx.Client, mcp_session: Callable[[str], Tool]
) -> None:
    tool = mcp_session("editor")
    for name, (arguments, endpoint) in NOT_SERVED.items():
        with pytest.raises(ToolFailed) as failed:
            tool(name, **arguments)
        assert "404 Client Error" in str(failed.value) and endpoint in str(failed.value), (name, failed.value)
    for endpoint in {e for _, e in NOT_SERVED.values()}:
        response = admin.post(endpoint, json={"path": "/data"})
        assert response.status_code == 404
        assert response.json() == {"code": -1, "msg": f"unsupported endpoint POST {endpoint}", "data": None}


def test_a_reader_token_reads_but_cannot_write(
    admin: httpx.Client, mcp_session: Callable[[str], Tool]
) -> None:
    box = ok(admin.post("/api/notebook/createNotebook", json={"name": "ReadOnlyView"}))["notebook"]["id"]
    tool = mcp_session("reader")
    assert box in {nb["id"] for nb in tool("find_notebooks", limit=100)}
    with pytest.raises(ToolFailed, match="403 Client Error"):
        tool("create_document", notebook_id=box, path="/Nope", markdown="no")
    assert ok(admin.post("/api/filetree/getIDsByHPath", json={"notebook": box, "path": "/Nope"})) == []
    with pytest.raises(ToolFailed, match="403 Client Error"):
        tool("push_message", msg="readers cannot notify")
