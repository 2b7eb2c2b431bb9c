"""A Node.js client (@grpc/grpc-js + @grpc/proto-loader, protos loaded at run time) talks to the server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from oplog.server.app import start_server
from oplog.server.auth import AuthConfig
from tests.conftest import REPO
from tests.fixtures import request_body, request_path
from tests.server_helpers import DOC, HEADING, open_store

NODE_PACKAGES = ("@grpc/grpc-js@^1.10", "@grpc/proto-loader@>=0.7 <1")
CLIENT = Path(__file__).parent / "node" / "client.mjs"


@pytest.fixture(scope="session")
def node_deps(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose node_modules holds the gRPC packages, installed once and kept in the pytest cache."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed for the Node.js client test (not found on PATH)")
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    folder = Path(cache.mkdir("oplog-node-grpc")) if cache is not None else tmp_path_factory.mktemp("node")
    marker = folder / "installed.json"
    wanted = json.dumps(NODE_PACKAGES)
    if marker.is_file() and marker.read_text(encoding="utf-8") == wanted:
        return folder
    (folder / "package.json").write_text('{"name": "oplog-node-test", "private": true}\n', encoding="utf-8")
    try:
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *NODE_PACKAGES],
            cwd=folder,
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        output = getattr(exc, "stderr", "") or ""
        pytest.skip(f"npm could not install {', '.join(NODE_PACKAGES)}: {output.strip()[-300:] or exc}")
    marker.write_text(wanted, encoding="utf-8")
    return folder


def test_node_client_applies_reads_and_subscribes(node_deps: Path, tmp_path: Path) -> None:
    body = request_path("00")
    store = open_store(tmp_path / "data")
    running = start_server(store, listen="127.0.0.1:0", auth=AuthConfig.single_token("node-token"))
    try:
        env = {**os.environ, "OPLOG_NODE_DEPS": str(node_deps), "OPLOG_TOKEN": "node-token"}
        done = subprocess.run(
            ["node", str(CLIENT), running.address, str(REPO / "proto"), str(body), HEADING],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        state = store.state()
    finally:
        running.stop(grace=1)
        store.close()
    assert out["transactions"] == 1
    assert out["positions"] == [{"device_id": store.device_id, "device_seq": 1}]
    assert out["server_timing"].startswith("total;dur=")
    assert out["block"] == {
        "id": HEADING,
        "type": "h",
        "markdown": "## Wetlands",
        "root_id": DOC,
    }
    assert out["subscribed"] == [
        {
            "position": 1,
            "device_seq": 1,
            "req_id": str(request_body("00")["reqId"]),
            "first_action": "createDoc",
        }
    ]
    assert out["not_found"] == "NOT_FOUND"
    assert state.position == 1
