"""Small builders shared by the engine tests: requests from plain dicts, events from results."""

from __future__ import annotations

from typing import Any

from oplog.clock import FakeClock, RandomIds
from oplog.engine import Applied, Engine, apply_event
from oplog.tree import Workspace, snapshot
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import request_from_json

BOX = "20240101000000-notebk1"
DOC = "20240101000000-docaaaa"
T0 = 1_721_527_400_000  # 2024-07-21 02:03:20 UTC
STAMP0 = "20240721020320"


def numbered_doc_body(n: int, *, req_id: int | None = None, app: str = "t") -> dict[str, Any]:
    """The JSON body of a request creating document ``20240101000000-<n>``, titled ``T<n>``, in ``BOX``."""
    op = {"action": "createDoc", "id": f"20240101000000-{n:07d}", "data": {"box": BOX, "title": f"T{n}"}}
    return {"reqId": n if req_id is None else req_id, "app": app, "transactions": [{"doOperations": [op]}]}


def bid(n: int) -> str:
    """A valid block id numbered ``n``."""
    return f"20240101000000-{n:07d}"


def request(
    *ops: dict[str, Any], req_id: int = 1, undo: list[dict[str, Any]] | None = None
) -> pb.ApplyRequest:
    """One transaction with these operations (SiYuan JSON spelling)."""
    tx: dict[str, Any] = {"doOperations": list(ops)}
    if undo is not None:
        tx["undoOperations"] = undo
    return request_from_json({"reqId": req_id, "app": "test", "session": "s", "transactions": [tx]})


def md(action: str, data: str, **fields: str) -> dict[str, Any]:
    """A seed content operation with Markdown data."""
    return {"action": action, "data": data, "dataType": "markdown", **fields}


def new_engine(seed: int = 7, step_ms: int = 1000) -> Engine:
    """A fresh engine on an empty workspace with a fake clock and seeded ids."""
    return Engine(Workspace(), FakeClock(T0, step_ms=step_ms), RandomIds(seed))


def with_doc(engine: Engine, body: str = "", doc: str = DOC) -> Applied:
    """Create ``doc`` in BOX with a Markdown body."""
    data = {"box": BOX, "title": "Doc"}
    if body:
        data["markdown"] = body
    return engine.apply_request(request({"action": "createDoc", "id": doc, "data": data}))


def events_of(applied: Applied) -> list[pb.Event]:
    """The events a store would log for an accepted request."""
    return [
        pb.Event(
            req_id=tx.timestamp,
            tx_index=i,
            tx_count=len(applied.transactions),
            time_ms=applied.time_ms,
            transaction=tx,
        )
        for i, tx in enumerate(applied.transactions)
    ]


def replay(events: list[pb.Event]) -> Workspace:
    """A fresh workspace with these events replayed."""
    ws = Workspace()
    for event in events:
        apply_event(ws, event)
    return ws


def undo_request(applied: Applied, req_id: int = 99) -> pb.ApplyRequest:
    """A request that applies the undo operations of ``applied`` (transactions in reverse)."""
    req = pb.ApplyRequest(req_id=req_id, app="test", session="s")
    for tx in reversed(applied.transactions):
        req.transactions.add().do_operations.extend(tx.undo_operations)
    return req


def children(engine: Engine, parent: str = DOC) -> list[str]:
    """Ids of a block's children."""
    return [c.id for c in engine.ws.blocks[parent].children]


def strip_updated(snap: Any) -> Any:
    """A snapshot with every ``updated`` attribute removed (for undo the client could not stamp back)."""
    if isinstance(snap, tuple):
        if len(snap) == 2 and snap[0] == "updated" and isinstance(snap[1], str):
            return None
        return tuple(x for x in (strip_updated(s) for s in snap) if x is not None)
    return snap


__all__ = [
    "BOX", "DOC", "T0", "STAMP0", "bid", "request", "md", "new_engine", "with_doc", "events_of", "replay",
    "undo_request", "children", "strip_updated", "snapshot",
]  # fmt: skip
