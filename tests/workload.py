"""Seeded multi-device workloads: resolved events made by the real engine, written to real device logs.

Each device edits its own copy of the workspace through ``Engine.apply_request``
(fake clock, seeded ids), stamps its events with its own hybrid clock and, at
random, "syncs": it takes every event the others have made so far and rebuilds
its copy in merged order, so later edits race with theirs (conflicts included).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oplog.clock import FakeClock, RandomIds
from oplog.engine import Engine, apply_event
from oplog.errors import OplogError
from oplog.eventlog import EventLog
from oplog.hlc import HybridClock
from oplog.merge import merge_events
from oplog.tree import Node, Workspace, iter_blocks
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import request_from_json

__all__ = ["Device", "simulate", "write_logs", "open_logs", "random_request", "BOX"]

BOX = "20240101000000-notebk1"
T0 = 1_721_527_400_000
_WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "eps",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "**bold**",
    "`code`",
    "#tag#",
]


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 6)))


def _markdown(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.55:
        return _text(rng)
    if kind < 0.7:
        return "#" * rng.randint(1, 3) + " " + _text(rng)
    if kind < 0.82:
        return "\n".join(f"- {_text(rng)}" for _ in range(rng.randint(1, 3)))
    if kind < 0.9:
        return "> " + _text(rng)
    if kind < 0.95:
        return "1. " + _text(rng) + "\n2. " + _text(rng)
    return "```\n" + _text(rng) + "\n```"


def _pick_block(rng: random.Random, ws: Workspace) -> tuple[Node, Node | None]:
    doc = ws.docs[rng.choice(sorted(ws.docs))]
    blocks = [b for b in iter_blocks(doc) if b is not doc]
    return doc, (rng.choice(blocks) if blocks else None)


def random_request(rng: random.Random, ws: Workspace, req_id: int) -> dict[str, Any]:
    """One random performTransactions body that is usually valid for ``ws``."""
    ops: list[dict[str, Any]] = []
    if not ws.docs or rng.random() < 0.04:
        data: dict[str, Any] = {"box": BOX, "title": _text(rng)}
        if ws.docs and rng.random() < 0.3:
            data["parentID"] = rng.choice(sorted(ws.docs))
        ops.append({"action": "createDoc", "data": data})
    else:
        doc, block = _pick_block(rng, ws)
        roll = rng.random()
        if block is None or roll < 0.22:
            ops.append(
                {"action": "appendBlock", "parentID": doc.id, "data": _markdown(rng), "dataType": "markdown"}
            )
        elif roll < 0.40:
            ops.append(
                {
                    "action": "insertBlock",
                    "previousID": block.id,
                    "data": _markdown(rng),
                    "dataType": "markdown",
                }
            )
        elif roll < 0.62:
            if block.type in ("p", "h"):
                text = ("#" * int(block.subtype[1]) + " " if block.type == "h" else "") + _text(rng)
            else:
                text = _markdown(rng)
            ops.append({"action": "updateBlock", "id": block.id, "data": text, "dataType": "markdown"})
        elif roll < 0.72:
            ops.append({"action": "deleteBlock", "id": block.id})
        elif roll < 0.82:
            _, other = _pick_block(rng, ws)
            if other is not None and other is not block:
                ops.append({"action": "moveBlock", "id": block.id, "previousID": other.id})
            else:
                ops.append({"action": "moveBlock", "id": block.id, "parentID": doc.id})
        elif roll < 0.92:
            key = rng.choice(["custom-a", "custom-b", "name", "alias", "memo", "bookmark", "style"])
            value = "" if rng.random() < 0.2 else _text(rng)
            ops.append({"action": "setBlockAttrs", "id": block.id, "data": {key: value}})
        elif roll < 0.96:
            heading = next((b for b in iter_blocks(doc) if b.type == "h"), None)
            if heading is not None:
                action = "unfoldBlock" if heading.attrs.get("fold") == "1" else "foldBlock"
                ops.append({"action": action, "id": heading.id})
            else:
                ops.append({"action": "setBlockAttrs", "id": doc.id, "data": {"custom-d": _text(rng)}})
        elif roll < 0.98:
            ops.append({"action": "setBlockAttrs", "id": doc.id, "data": {"title": _text(rng)}})
        else:
            ops.append({"action": "removeDoc", "id": doc.id})
    return {"reqId": req_id, "app": "sim", "session": "s", "transactions": [{"doOperations": ops}]}


@dataclass
class Device:
    """One simulated device: its id, its copy of the state, its clock and the events it made."""

    device_id: str
    seed: int
    clock: FakeClock = field(init=False)
    hlc: HybridClock = field(init=False)
    engine: Engine = field(init=False)
    events: list[pb.Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.clock = FakeClock(T0 + self.seed % 997, step_ms=0)
        self.hlc = HybridClock(self.clock)
        self.engine = Engine(Workspace(), self.clock, RandomIds(self.seed))

    def act(self, rng: random.Random) -> None:
        """Make one random request; keep its events if it was accepted."""
        self.clock.advance(rng.randint(1, 900))
        body = random_request(rng, self.engine.ws, self.clock.ms)
        try:
            applied = self.engine.apply_request(request_from_json(body))
        except OplogError:
            return
        count = len(applied.transactions)
        for index, tx in enumerate(applied.transactions):
            self.events.append(
                pb.Event(
                    device_id=self.device_id,
                    device_seq=len(self.events) + 1,
                    hlc=self.hlc.tick(),
                    req_id=body["reqId"],
                    app="sim",
                    session="s",
                    tx_index=index,
                    tx_count=count,
                    time_ms=applied.time_ms,
                    transaction=tx,
                )
            )

    def sync(self, streams: Iterable[list[pb.Event]]) -> None:
        """Adopt every event of ``streams``: rebuild the copy in merged order and observe their clocks."""
        lists = list(streams)
        ws = Workspace()
        for event in merge_events(lists):
            apply_event(ws, event)
            self.hlc.observe(event.hlc)
        self.engine.ws = ws


def simulate(
    seed: int, *, devices: int = 3, rounds: int = 5, per_round: int = 12, sync_chance: float = 0.6
) -> dict[str, list[pb.Event]]:
    """Events per device id for a seeded run of ``devices`` devices editing and syncing."""
    rng = random.Random(seed)
    fleet = [Device(f"{i + 1:016x}", seed * 31 + i) for i in range(devices)]
    for _ in range(rounds):
        for device in fleet:
            if rng.random() < sync_chance:
                device.sync(d.events for d in fleet)
            for _ in range(rng.randint(1, per_round)):
                device.act(rng)
    return {d.device_id: d.events for d in fleet if d.events}


def write_logs(data_dir: Path, streams: dict[str, list[pb.Event]], *, segment_bytes: int = 64 << 20) -> None:
    """Write each device's events to ``data_dir/devices/<id>/`` and the first device id to ``DEVICE``."""
    (data_dir / "devices").mkdir(parents=True, exist_ok=True)
    for device_id, events in streams.items():
        with EventLog.open(data_dir / "devices" / device_id, device_id, segment_bytes=segment_bytes) as log:
            for start in range(0, len(events), 256):
                log.append(events[start : start + 256])
    if streams and not (data_dir / "DEVICE").exists():
        (data_dir / "DEVICE").write_text(sorted(streams)[0] + "\n")


def open_logs(data_dir: Path) -> dict[str, EventLog]:
    """Every device log under ``data_dir/devices``, opened read-only."""
    root = data_dir / "devices"
    return {p.name: EventLog.open(p, p.name, writable=False) for p in sorted(root.iterdir()) if p.is_dir()}
