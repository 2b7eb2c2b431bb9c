"""Builders for the tests that talk to a real store or server: stores, requests, block ids.

They lived in ``tests/test_server.py`` and five other test modules imported them from there, which
made one test module a library for the others (and ran its collection for each). The document the
server tests read back is the one ``tests/fixtures/requests/00-setup.json`` creates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oplog import wire
from oplog.clock import RandomIds, SystemClock
from oplog.store import Store, StoreOptions
from oplog.v1 import oplog_pb2 as pb
from tests import fixtures
from tests.fixtures import setup_request

DOC = fixtures.ROOT
BOX = fixtures.BOX
HELLO = fixtures.A  # the first paragraph ("Saw two heron")
HEADING = fixtures.H  # "## Wetlands"
QUOTE = fixtures.L  # the blockquote

__all__ = [
    "DOC",
    "BOX",
    "HELLO",
    "HEADING",
    "QUOTE",
    "open_store",
    "setup_request",
    "append_request",
    "block_id",
]


def open_store(path: Path, *, durability: str = "always", readonly: bool = False, seed: int = 7) -> Any:
    """A real store in ``path`` with the system clock and a seeded id source."""
    options = StoreOptions(durability=durability, readonly=readonly, lock_timeout_s=0.0)
    return Store.open(path, options=options, clock=SystemClock(), ids=RandomIds(seed))


def append_request(block_id: str, text: str, *, req_id: int = 0, parent: str = DOC) -> pb.ApplyRequest:
    """One transaction appending a paragraph with a client-chosen id."""
    op = {"action": "appendBlock", "parentID": parent, "id": block_id, "dataType": "markdown", "data": text}
    return wire.request_from_json(
        {"reqId": req_id, "app": "test", "session": "s", "transactions": [{"doOperations": [op]}]}
    )


def block_id(n: int, prefix: str = "20240722100000") -> str:
    """A valid, unique SiYuan block id for counter ``n``."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    suffix = ""
    for _ in range(7):
        n, r = divmod(n, 36)
        suffix = digits[r] + suffix
    return f"{prefix}-{suffix}"
