"""Real ``oplog serve`` processes and acknowledging clients, for the crash-loop and full-disk tests.

``Served`` starts ``python -m oplog.tools.cli serve`` on port 0 and reads the
address from its ``--json`` line. ``Writer`` is one client thread: it sends
appendBlock requests with client-chosen ids and nonzero reqIds, records each
acknowledged one, and keeps the request whose reply it never saw (the server
died mid-call) to send again first — a retry that must be answered, not
applied twice.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from oplog.server.client import Client
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import request_from_json
from tests.serve_helpers import spawn_serve
from tests.server_helpers import block_id

REPO = Path(__file__).resolve().parents[1]
BOX = "20240101000000-notebk1"
DOC = "20240101000000-docaaaa"


def create_doc_request() -> pb.ApplyRequest:
    """The request creating the document every writer appends to."""
    op = {"action": "createDoc", "id": DOC, "data": {"box": BOX, "title": "Crash"}}
    return request_from_json(
        {"reqId": 1, "app": "crash", "session": "setup", "transactions": [{"doOperations": [op]}]}
    )


def append_request(writer: int, n: int, size: int = 40) -> pb.ApplyRequest:
    """Writer ``writer``'s ``n``-th append: block ``block_id(writer * 10**6 + n)``, reqId ``n + 1``."""
    op = {
        "action": "appendBlock",
        "parentID": DOC,
        "id": block_id(writer * 1_000_000 + n),
        "dataType": "markdown",
        "data": f"w{writer} n{n} " + "x" * size,
    }
    return request_from_json(
        {"reqId": n + 1, "app": "crash", "session": f"w{writer}", "transactions": [{"doOperations": [op]}]}
    )


class Served:
    """A running ``oplog serve`` child and the address it printed."""

    def __init__(self, data: Path, *extra: str) -> None:
        """Start it and wait (up to 60 s) for its address line."""
        remote = str(data.parent / f"{data.name}-remote")
        args = [
            "--data",
            str(data),
            "--listen",
            "127.0.0.1:0",
            "--no-boot-sync",
            "--remote",
            remote,
            "--json",
        ]
        self.proc, first = spawn_serve([*args, *extra], cwd=REPO)
        if not first.startswith("{"):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"oplog serve did not start: {first!r} {err}")
        self.address: str = json.loads(first)["listening"]

    def kill(self) -> str:
        """SIGKILL it; its stderr."""
        self.proc.kill()
        _, err = self.proc.communicate(timeout=60)
        return err

    def stop(self) -> tuple[int, str]:
        """SIGTERM and wait; the exit code and stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


@dataclass
class Writer:
    """One client's history across server lives: acknowledged ids, the request in doubt, errors by code."""

    index: int
    next_n: int = 0
    acked: dict[str, pb.ApplyResponse] = field(default_factory=dict)
    in_doubt: int | None = None
    retried_ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def run(self, address: str, stop: threading.Event, size: int = 40) -> None:
        """Send requests until ``stop`` is set or the server goes away."""
        with Client(address) as client:
            while not stop.is_set():
                n = self.in_doubt if self.in_doubt is not None else self.next_n
                request = append_request(self.index, n, size)
                try:
                    reply = client.stub.Apply(request, timeout=30)
                except grpc.RpcError as exc:
                    self.errors[exc.code().name] += 1
                    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                        # The reply was lost: the request may or may not be in the log. Send it again later.
                        self.in_doubt = n
                    # Anything else is a wrong answer: counted, and the test fails on it.
                    return
                if self.in_doubt is not None:
                    self.retried_ok += 1
                self.in_doubt = None
                self.acked[request.transactions[0].do_operations[0].id] = reply
                self.next_n = max(self.next_n, n + 1)
