"""The suite's example bodies over HTTP give the same state hash as over gRPC, after every file.

Two real ``oplog serve`` processes are fed the same bodies in the same order,
one through ``POST /api/transactions``, the other through gRPC ``Apply``.
A store stamps ``updated`` from its clock where a request does not carry one
(00-setup's Markdown blocks and document) and names the blocks a request
leaves unnamed from its clock and random source,
so both servers run with the test seams ``OPLOG_TEST_CLOCK_MS`` and
``OPLOG_TEST_SEED`` (tools/testseams.py) set alike: the only thing that
differs between them is the protocol. A third
server whose clock starts elsewhere shows the comparison can fail: same
bodies, other stamps, another hash.

The bodies are the suite's own requests, tests/fixtures/requests (written in
the shapes of SiYuan's editor, see their README), so the test needs no ../shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from oplog import wire
from oplog.clock import FakeClock, SystemClock
from oplog.errors import InvalidArgument
from oplog.tools.testseams import store_seams
from oplog.v1 import oplog_pb2 as pb
from oplog.v1 import oplog_pb2_grpc as pb_grpc
from tests.http_helpers import TOKENS, HttpServe, ok

BODIES = Path(__file__).resolve().parent / "fixtures" / "requests"
ADMIN = TOKENS["admin"]
METADATA = [("authorization", f"Bearer {ADMIN}")]
#: Where both clocks start; each clock read moves 1 ms, as requests in a row would.
CLOCK = "1721527400000+1"
SEED = "18"


def _files() -> list[Path]:
    return sorted(BODIES.glob("0*.json"))


def _serve(folder: Path, name: str, clock: str) -> HttpServe:
    return HttpServe.with_tokens(
        folder, data=name, env_extra={"OPLOG_TEST_CLOCK_MS": clock, "OPLOG_TEST_SEED": SEED}
    )


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[HttpServe, HttpServe, HttpServe]]:
    started: list[HttpServe] = []
    try:
        for name, clock in (("http", CLOCK), ("grpc", CLOCK), ("other", "1721527999000+1")):
            started.append(_serve(tmp_path, name, clock))
        yield started[0], started[1], started[2]
    finally:
        for serve in started:
            serve.stop()


def _state_hash(stub: Any, metadata: list[tuple[str, str]] = METADATA) -> str:
    return str(stub.GetState(pb.GetStateRequest(), metadata=metadata, timeout=30).state_hash)


def _ops(transactions: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [tx["doOperations"] for tx in transactions]


def test_examples_over_http_and_grpc_give_the_same_state_hash(
    servers: tuple[HttpServe, HttpServe, HttpServe],
) -> None:
    over_http, over_grpc, other_clock = servers
    files = _files()
    assert [f.name[:2] for f in files] == ["00", "01", "02", "03", "04", "05"]
    with (
        over_http.client(ADMIN) as client,
        other_clock.client(ADMIN) as other,
        grpc.insecure_channel(over_http.grpc) as http_channel,
        grpc.insecure_channel(over_grpc.grpc) as grpc_channel,
        grpc.insecure_channel(other_clock.grpc) as other_channel,
    ):
        http_stub = pb_grpc.OpLogStub(http_channel)
        grpc_stub = pb_grpc.OpLogStub(grpc_channel)
        other_stub = pb_grpc.OpLogStub(other_channel)
        for path in files:
            body = json.loads(path.read_text())
            replied = ok(client.post("/api/transactions", content=path.read_bytes()))
            response = grpc_stub.Apply(wire.request_from_json(body), metadata=METADATA, timeout=30)
            ok(other.post("/api/transactions", json=body))
            # The same processed operations (ids, retData) either way.
            assert _ops(replied) == _ops([wire.transaction_to_json(tx) for tx in response.transactions])
            assert _state_hash(http_stub) == _state_hash(grpc_stub), f"after {path.name}"
            if path.name.startswith("00"):
                # Stamps from another clock: the hash differs, so equal hashes above are a real check.
                assert _state_hash(other_stub) != _state_hash(grpc_stub)
        final = _state_hash(grpc_stub)
    # Each server's log replays to the state it served (restarted on the same data directory).
    for serve in (over_http, over_grpc):
        serve.stop()
    for serve in (over_http, over_grpc):
        again = HttpServe(Path(serve.info["data"]), "--no-boot-sync")
        try:
            with grpc.insecure_channel(again.grpc) as channel:
                assert _state_hash(pb_grpc.OpLogStub(channel), metadata=[]) == final
        finally:
            again.stop()


def test_the_seams_parse_and_refuse_malformed_values(tmp_path: Path) -> None:
    clock, _ids, warning = store_seams({})
    assert isinstance(clock, SystemClock) and warning == ""
    clock, ids, warning = store_seams({"OPLOG_TEST_CLOCK_MS": "5+2", "OPLOG_TEST_SEED": "7"})
    assert isinstance(clock, FakeClock) and [clock.now_ms(), clock.now_ms()] == [5, 7]
    assert ids.new_block_id(0) == store_seams({"OPLOG_TEST_SEED": "7"})[1].new_block_id(0)
    assert "never for real data" in warning
    for bad in ({"OPLOG_TEST_CLOCK_MS": "soon"}, {"OPLOG_TEST_CLOCK_MS": "5+x"}, {"OPLOG_TEST_SEED": "-1"}):
        with pytest.raises(InvalidArgument):
            store_seams(bad)
    env = {**os.environ, "OPLOG_TEST_CLOCK_MS": "soon"}
    argv = [
        sys.executable,
        "-m",
        "oplog.tools.cli",
        "serve",
        "--data",
        str(tmp_path / "d"),
        "--listen",
        "127.0.0.1:0",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode != 0 and "OPLOG_TEST_CLOCK_MS" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
