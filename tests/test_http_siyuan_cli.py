"""A SiYuan client no one here wrote: ``siyuan-cli`` (from the package index) runs an everyday session against oplog.

The CLI is pointed at a real ``oplog serve`` with ``SIYUAN_URL`` and
``SIYUAN_TOKEN`` and a temporary ``HOME`` (its config and audit files go
there); each command runs as its own process with ``--json`` and its output
is checked, then the state is checked again through oplog's own endpoints. A second
session drives its notebook commands (create, list, rename, conf, set-conf, close,
open, remove) and `doc move`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.http_helpers import HttpServe, ok

TOKEN = "cli-token-123"
BOX = "20240103000000-ddddddd"

pytest.importorskip("siyuan_cli", reason="siyuan-cli is a test extra: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServe]:
    serve = HttpServe(tmp_path_factory.mktemp("cli") / "d", "--token", TOKEN, "--no-boot-sync")
    yield serve
    serve.stop()


@pytest.fixture(scope="module")
def siyuan(server: HttpServe, tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("home")
    exe = shutil.which("siyuan", path=str(Path(sys.executable).parent))
    argv0 = [exe] if exe else [sys.executable, "-m", "siyuan_cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIYUAN_")}
    env.update(SIYUAN_URL=server.url, SIYUAN_TOKEN=TOKEN, HOME=str(home), NO_COLOR="1")

    def run(*args: str, expect_ok: bool = True) -> Any:
        done = subprocess.run(
            [*argv0, "--json", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        out = json.loads(done.stdout)
        assert out["ok"] is expect_ok, (args, done.stdout, done.stderr)
        assert TOKEN not in done.stdout + done.stderr
        return out["data"] if expect_ok else out["error"]

    return run


def test_everyday_session(server: HttpServe, siyuan: Any) -> None:
    markdown = "# Hello\n\nfirst para\n\n## Sub\n\nunder sub"
    created = siyuan("create", "/Notes/Hello", markdown, "--notebook", BOX)
    doc = created["id"]
    assert created["path"] == "/Notes/Hello"
    notebooks = siyuan("list-notebooks")
    assert BOX in [n["id"] for n in notebooks["notebooks"]]

    read = siyuan("read", "/Notes/Hello", "--notebook", BOX)
    assert "first para" in read["content"] and "## Sub" in read["content"]

    children = siyuan("block", "children", doc)["children"]
    assert [c["type"] for c in children] == ["h", "p", "h", "p"]
    h1, first, h2, _under = (c["id"] for c in children)

    appended = siyuan("block", "append", doc, "-c", "appended para")
    prepended = siyuan("block", "prepend", doc, "-c", "prepended para")
    inserted = siyuan("block", "insert", "--previous", first, "-c", "inserted after first")
    siyuan("block", "update", first, "-c", "updated **first**")
    ids = [c["id"] for c in siyuan("block", "children", doc)["children"]]
    assert ids[0] == prepended["id"] and ids[-1] == appended["id"]
    assert ids.index(inserted["id"]) == ids.index(first) + 1
    got = siyuan("block", "get", first)
    assert got["content"] == "updated first" and got["type"] == "p"

    siyuan("block", "fold", h2)
    assert siyuan("attr", "get", h2)["attributes"]["fold"] == "1"
    siyuan("block", "unfold", h2)
    assert "fold" not in siyuan("attr", "get", h2)["attributes"]

    siyuan("attr", "set", first, "custom-status", "done")
    assert siyuan("attr", "get", first)["attributes"]["custom-status"] == "done"

    siyuan("block", "move", first, "--previous", h2)
    ids = [c["id"] for c in siyuan("block", "children", doc)["children"]]
    assert ids.index(first) == ids.index(h2) + 1
    siyuan("block", "delete", inserted["id"], "--yes")
    assert inserted["id"] not in [c["id"] for c in siyuan("block", "children", doc)["children"]]
    crumbs = siyuan("block", "breadcrumb", first)
    assert crumbs[0]["id"] == doc and crumbs[-1]["id"] == first

    rows = siyuan("sql", f"SELECT id FROM blocks WHERE root_id = '{doc}' AND type = 'h'")
    assert sorted(r["id"] for r in rows) == sorted([h1, h2])
    found = siyuan("search", "prepended")
    assert prepended["id"] in [r["id"] for r in found["results"]]
    stats = siyuan("stats")
    assert stats["notes"] >= 2 and stats["blocks"] >= 8

    siyuan("doc", "rename", "--id", doc, "Greetings")
    assert siyuan("read", "/Notes/Greetings", "--notebook", BOX)["content"].count("updated **first**") == 1
    sent = siyuan("notify", "push", "hello from the cli")
    assert len(sent["id"]) == 7

    siyuan("delete", "/Notes/Greetings", "--notebook", BOX, "--yes")
    with server.client(TOKEN) as client:
        assert (
            ok(client.post("/api/filetree/getIDsByHPath", json={"notebook": BOX, "path": "/Notes/Greetings"}))
            == []
        )
        assert ok(client.post("/api/attr/getBlockAttrs", json={"id": first})) == {}


def test_notebook_session(server: HttpServe, siyuan: Any) -> None:
    made = siyuan("notebook", "create", "Work")
    box = made["id"]
    assert made["name"] == "Work" and len(box) == 22
    listed = {nb["id"]: nb for nb in siyuan("notebook", "list")["notebooks"]}
    assert listed[box]["name"] == "Work" and listed[box]["closed"] is False

    renamed = siyuan("notebook", "rename", box, "Projects")
    assert renamed["id"] == box and renamed["status"].startswith("notebook renamed")
    assert {nb["id"]: nb["name"] for nb in siyuan("list-notebooks")["notebooks"]}[box] == "Projects"
    conf = siyuan("notebook", "conf", box)
    assert conf["box"] == box and conf["name"] == "Projects" and conf["conf"]["closed"] is False
    # set-conf reads the conf, changes the fields given and sends the whole conf back.
    assert siyuan("notebook", "set-conf", box, "dailyNoteSavePath=journal/{{now}}", "icon=1f4d3")["id"] == box
    conf = siyuan("notebook", "conf", box)["conf"]
    assert conf["dailyNoteSavePath"] == "/journal/{{now}}" and conf["icon"] == "1f4d3"

    doc = siyuan("create", "/Plan", "ship it", "--notebook", box)["id"]
    assert siyuan("sql", f"SELECT id FROM blocks WHERE box = '{box}' AND type = 'd'") == [{"id": doc}]
    assert siyuan("notebook", "close", box)["status"] == "notebook closed"
    assert {nb["id"]: nb for nb in siyuan("notebook", "list")["notebooks"]}[box]["closed"] is True
    assert siyuan("sql", f"SELECT id FROM blocks WHERE box = '{box}'") == []
    assert siyuan("notebook", "open", box)["status"] == "notebook opened"
    assert {nb["id"]: nb for nb in siyuan("notebook", "list")["notebooks"]}[box]["closed"] is False

    other = siyuan("notebook", "create", "Archive")["id"]
    moved = siyuan("doc", "move", doc, "--to-notebook", other, "--by-id")
    assert moved["count"] == 1 and moved["to_notebook"] == other
    with server.client(TOKEN) as client:
        where = ok(client.post("/api/filetree/getPathByID", json={"id": doc}))
    assert where == {"notebook": other, "path": f"/{doc}.sy"}

    removed = siyuan("notebook", "remove", other, "--yes")
    assert removed["id"] == other and removed["status"] == "notebook removed"
    remaining = [nb["id"] for nb in siyuan("notebook", "list")["notebooks"]]
    assert other not in remaining and box in remaining
    assert siyuan("sql", f"SELECT id FROM blocks WHERE id = '{doc}'") == []
