"""Replay throughput, start-up from a checkpoint, and peak memory — next to the ``eventsourcing`` library.

Usage: python bench/replay.py [--quick] [--events N] [--devices K] [--dir DIR] [--profile]

Writes a synthetic multi-device history of resolved events (the shapes the
engine logs: appendBlock/insertBlock/updateBlock with parsed blocks,
setBlockAttrs, moveBlock, deleteBlock, createDoc) to real device logs, then
measures, each in a fresh child process (so peak RSS is the step's own):

* full replay from the logs (read + decode + apply, streaming k-way merge), events/s;
* start-up: newest checkpoint (taken ``--tail`` events before the end) + the tail;
* the peer: the ``eventsourcing`` library on SQLite rebuilding aggregates from
  the same number of events (skipped, with a message, when it is not installed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from synth import block_id, write_events  # noqa: E402

from oplog.eventlog import EventLog  # noqa: E402
from oplog.v1 import oplog_pb2 as pb  # noqa: E402
from oplog.wire import to_value  # noqa: E402

BOX = "20240101000000-notebk1"
T0 = 1_721_527_400_000
_WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "**bold**",
    "`code`",
    "epsilon",
    "zeta",
    "theta",
    "kappa",
    "lambda",
]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- synthetic history


class _Device:
    def __init__(self, index: int, rng: random.Random) -> None:
        self.id = f"{index + 1:016x}"
        self.rng = rng
        self.ms = T0 + index
        self.counter = 0
        self.seq = 0
        self.docs: list[str] = []
        self.blocks: dict[str, list[str]] = {}
        self.serial = 0

    def new_id(self) -> str:
        self.serial += 1
        return block_id(self.ms, self.serial * 36 + int(self.id, 16))

    def text(self) -> str:
        return " ".join(self.rng.choice(_WORDS) for _ in range(self.rng.randint(3, 12)))

    def event(self) -> pb.Event:
        rng = self.rng
        self.ms += rng.randint(1, 400)
        stamp = "20240721" + f"{self.ms // 1000 % 1000000:06d}"
        op = pb.Operation(resolved=True, updated=stamp)
        if not self.docs or (rng.random() < 0.01) or len(self.blocks[self.docs[-1]]) > 300:
            doc = self.new_id()
            op.action = "createDoc"
            op.id = doc
            op.text = self.text()[:20]
            op.box = BOX
            op.data.CopyFrom(to_value({"box": BOX, "title": op.text}))
            self.docs.append(doc)
            self.blocks[doc] = []
        else:
            doc = self.docs[-1] if rng.random() < 0.7 else rng.choice(self.docs)
            live = self.blocks[doc]
            roll = rng.random()
            if not live or roll < 0.22:
                self._content(op, "appendBlock", parent=doc)
                live.append(op.id)
            elif roll < 0.37:
                prev = rng.choice(live)
                self._content(op, "insertBlock", parent=doc, previous=prev)
                live.insert(live.index(prev) + 1, op.id)
            elif roll < 0.80:
                target = rng.choice(live)
                self._content(op, "updateBlock", target=target)
            elif roll < 0.90:
                op.action = "setBlockAttrs"
                op.id = rng.choice(live)
                op.attrs.add(
                    name=rng.choice(["custom-a", "custom-b", "name", "memo"]), value=self.text()[:30]
                )
                op.attrs.add(name="updated", value=stamp)
            elif roll < 0.96 and len(live) > 1:
                op.action = "moveBlock"
                op.id = block = rng.choice(live)
                live.remove(block)
                prev = rng.choice(live)
                op.previous_id = prev
                live.insert(live.index(prev) + 1, block)
            else:
                op.action = "deleteBlock"
                op.id = block = rng.choice(live)
                live.remove(block)
        self.seq += 1
        hlc = (self.ms << 16) | self.counter
        tx = pb.Transaction(timestamp=self.ms, do_operations=[op])
        return pb.Event(
            device_id=self.id, device_seq=self.seq, hlc=hlc, req_id=self.ms, app="bench", session="s",
            tx_index=0, tx_count=1, time_ms=self.ms, transaction=tx,
        )  # fmt: skip

    def _content(
        self, op: pb.Operation, action: str, *, parent: str = "", previous: str = "", target: str = ""
    ) -> None:
        rng = self.rng
        op.action = action
        block_id = target or self.new_id()
        op.id = block_id
        if parent:
            op.parent_id = parent
        if previous:
            op.previous_id = previous
        heading = rng.random() < 0.1
        text = self.text()
        markdown = ("## " + text) if heading else text
        op.data.CopyFrom(to_value(markdown))
        op.data_type = "markdown"
        spec = op.blocks.add(
            id=block_id, type="h" if heading else "p", subtype="h2" if heading else "", markdown=markdown
        )
        spec.attrs.add(name="updated", value=op.updated)


def write_history(folder: Path, events: int, devices: int, seed: int = 1) -> None:
    """Write ``events`` synthetic events spread over ``devices`` device logs under ``folder/devices``."""
    rng = random.Random(seed)
    fleet = [_Device(i, random.Random(rng.random())) for i in range(devices)]
    write_events(folder, [d.id for d in fleet], (rng.choice(fleet).event() for _ in range(events)))


# ---------------------------------------------------------------- children


def _open(folder: Path) -> dict[str, EventLog]:
    root = folder / "devices"
    return {p.name: EventLog.open(p, p.name, writable=False) for p in sorted(root.iterdir())}


def child_full(folder: Path) -> dict[str, Any]:
    """Full replay from the logs."""
    from oplog.replay import replay, replay_uses_reader

    logs = _open(folder)
    samples: list[float] = []

    def progress(n: int) -> None:
        if n % (1 << 16) == 0:
            samples.append(_rss_mb())

    start = time.perf_counter()
    result = replay(logs, progress=progress)
    seconds = time.perf_counter() - start
    return {
        "events": result.position,
        "blocks": len(result.ws.blocks),
        "seconds": seconds,
        "events_per_s": result.position / seconds,
        "state_hash": result.state_hash.hexdigest(),
        "peak_rss_mb": _rss_mb(),
        # The log reader process (oplog.replayreader), when replay started one: its own peak.
        "reader_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "reader": replay_uses_reader(logs),
        "rss_samples_mb": [round(s) for s in samples[:: max(1, len(samples) // 8)]],
    }


#: What each action's replay must read besides ``action``, ``id`` and ``updated`` (the floor step).
_ANCHORS = {
    "insertBlock": ("parent_id", "previous_id"),
    "appendBlock": ("parent_id",),
    "moveBlock": ("previous_id",),
}


def child_floor(folder: Path) -> dict[str, Any]:
    """The read floor of replay: read, decode and merge every event and read what its fold needs — apply nothing.

    Per operation: ``action``, ``id`` and ``updated``, the anchors its action
    places by, its block specs and its attributes, each read once. No engine
    could fold these events faster than this, whatever it did with them.
    """
    import heapq

    from floors import read_spec

    logs = _open(folder)
    start = time.perf_counter()
    count = 0
    for _, _, _, event, _ in heapq.merge(*(log.records() for log in logs.values())):
        for op in event.transaction.do_operations:
            action = op.action
            op.id, op.updated  # noqa: B018
            for name in _ANCHORS.get(action, ()):
                getattr(op, name)
            for spec in op.blocks:
                read_spec(spec)
            for attr in op.attrs:
                attr.name, attr.value  # noqa: B018
            if action == "createDoc":
                op.text, op.box  # noqa: B018
        count += 1
    seconds = time.perf_counter() - start
    return {"events": count, "seconds": seconds, "events_per_s": count / seconds}


def child_checkpoint(folder: Path, tail: int) -> dict[str, Any]:
    """Write a checkpoint ``tail`` events before the end."""
    from oplog.checkpoint import CheckpointStore, capture
    from oplog.replay import replay

    logs = _open(folder)
    total = sum(log.last_seq for log in logs.values())
    r = replay(logs, until_position=max(0, total - tail))
    start = time.perf_counter()
    snap = capture(
        r.ws, r.state_hash, position=r.position, heads=r.heads, head_hlcs=r.head_hlcs, last_key=r.last_key,
        conflicts=r.conflicts,
    )  # fmt: skip
    captured = time.perf_counter() - start
    with CheckpointStore(folder / "checkpoints.db") as store:
        store.save(snap)
    saved = time.perf_counter() - start
    return {"position": r.position, "capture_s": captured, "save_s": saved, "bytes": len(snap.blob)}


def child_startup(folder: Path) -> dict[str, Any]:
    """Start-up as the store does it: open the logs, newest checkpoint + tail (then, separately, the load alone)."""
    from oplog.checkpoint import CheckpointStore
    from oplog.replay import rewind

    start = time.perf_counter()
    logs = _open(folder)
    opened = time.perf_counter() - start
    with CheckpointStore(folder / "checkpoints.db", readonly=True) as store:
        result = rewind(logs, store)
        total = time.perf_counter() - start
        rss = _rss_mb()
        t = time.perf_counter()
        checkpoint = store.load(store.list()[0])
        load_s = time.perf_counter() - t
    return {
        "open_logs_s": opened,
        "checkpoint_load_s": load_s,
        "rewind_total_s": total,
        "tail_events": result.applied,
        "blocks": len(checkpoint.ws.blocks),
        "state_hash": result.state_hash.hexdigest(),
        "peak_rss_mb": rss,
    }


def child_view(folder: Path) -> dict[str, Any]:
    """Rebuild the SQL view of the final state."""
    from oplog.replay import replay
    from oplog.sqlview import BlocksView

    result = replay(_open(folder))
    start = time.perf_counter()
    with BlocksView(folder / "bench-view.db") as view:
        view.rebuild(result.ws)
    return {"blocks": len(result.ws.blocks), "seconds": time.perf_counter() - start}


def child_peer(folder: Path, events: int) -> dict[str, Any]:
    """The eventsourcing library on SQLite: store ``events`` events on aggregates, then rebuild them all."""
    try:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event
    except ImportError:
        return {"skipped": "eventsourcing is not installed (pip install eventsourcing)"}

    class Doc(Aggregate):
        @event("Created")
        def __init__(self, title: str) -> None:
            self.title = title
            self.blocks: dict[str, str] = {}
            self.order: list[str] = []

        @event("BlockAppended")
        def append_block(self, block_id: str, markdown: str) -> None:
            self.blocks[block_id] = markdown
            self.order.append(block_id)

        @event("BlockUpdated")
        def update_block(self, block_id: str, markdown: str) -> None:
            self.blocks[block_id] = markdown

    class Docs(Application[Any]):
        pass

    db = folder / "peer.sqlite"
    os.environ["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
    os.environ["SQLITE_DBNAME"] = str(db)
    os.environ["SQLITE_LOCK_TIMEOUT"] = "10"
    app = Docs()
    rng = random.Random(3)
    ids = []
    doc = None
    pending: list[Any] = []
    written = 0
    words = " ".join(_WORDS)
    while written < events:
        if doc is None or len(doc.order) > 300:
            if doc is not None:
                app.save(doc)
            doc = Doc(title="t")
            ids.append(doc.id)
            written += 1
            continue
        if not doc.order or rng.random() < 0.3:
            doc.append_block(f"b{written}", words)
        else:
            doc.update_block(rng.choice(doc.order), words[: rng.randint(10, 60)])
        written += 1
        if len(doc.pending_events) >= 256:
            app.save(doc)
    if doc is not None:
        app.save(doc)
    del pending
    app = Docs()  # a fresh process-like application: no snapshots, no cache
    start = time.perf_counter()
    rebuilt = 0
    for aggregate_id in ids:
        aggregate = app.repository.get(aggregate_id)
        rebuilt += aggregate.version
    seconds = time.perf_counter() - start
    return {
        "events": rebuilt,
        "seconds": seconds,
        "events_per_s": rebuilt / seconds,
        "peak_rss_mb": _rss_mb(),
    }


def child_profile(folder: Path) -> str:
    """cProfile of a full replay: where the time goes."""
    import cProfile
    import io
    import pstats

    from oplog.replay import replay

    logs = _open(folder)
    profiler = cProfile.Profile()
    profiler.enable()
    replay(logs)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(14)
    return out.getvalue()


# ---------------------------------------------------------------- driver


def _child(step: str, folder: Path, *extra: str) -> Any:
    out = subprocess.run(
        [sys.executable, __file__, "--child", step, "--dir", str(folder), *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"step {step} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small run (50,000 events)")
    parser.add_argument("--events", type=int, default=None, help="events in the history (default 300,000)")
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--tail", type=int, default=10_000, help="events after the checkpoint at start-up")
    parser.add_argument("--dir", help="work folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the full replay")
    parser.add_argument("--no-peer", action="store_true", help="skip the eventsourcing comparison")
    parser.add_argument("--no-view", action="store_true", help="skip the SQL view rebuild")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder = Path(args.dir)
        if args.child == "full":
            print(json.dumps(child_full(folder)))
        elif args.child == "floor":
            print(json.dumps(child_floor(folder)))
        elif args.child == "checkpoint":
            print(json.dumps(child_checkpoint(folder, args.tail)))
        elif args.child == "startup":
            print(json.dumps(child_startup(folder)))
        elif args.child == "view":
            print(json.dumps(child_view(folder)))
        elif args.child == "peer":
            print(json.dumps(child_peer(folder, args.events)))
        elif args.child == "profile":
            print(json.dumps(child_profile(folder)))
        return 0

    events = args.events or (50_000 if args.quick else 300_000)
    owned = args.dir is None
    folder = Path(args.dir or tempfile.mkdtemp(prefix="oplog-bench-replay-"))
    try:
        t = time.perf_counter()
        write_history(folder, events, args.devices)
        print(
            f"history: {events:,} events on {args.devices} devices, written in {time.perf_counter() - t:.1f}s"
        )
        full = _child("full", folder)
        print(
            f"full replay:   {full['events_per_s']:>10,.0f} events/s  ({full['seconds']:.2f}s, {full['blocks']:,} blocks, "
            f"peak RSS {full['peak_rss_mb']:.0f} MB, RSS along the way {full['rss_samples_mb']} MB; "
            + (
                f"logs read by a reader process, its peak RSS {full['reader_peak_rss_mb']:.0f} MB)"
                if full["reader"]
                else "logs read in the same process)"
            )
        )
        floor = _child("floor", folder)
        print(
            f"read floor:    {floor['events_per_s']:>10,.0f} events/s  (read + decode + merge + read what the fold "
            f"needs, apply nothing; full replay is {full['events_per_s'] / floor['events_per_s']:.0%} of it)"
        )
        ckpt = _child("checkpoint", folder, "--tail", str(args.tail))
        print(
            f"checkpoint:    capture {ckpt['capture_s']:.2f}s, capture+save {ckpt['save_s']:.2f}s, "
            f"{ckpt['bytes'] / 1e6:.1f} MB at position {ckpt['position']:,}"
        )
        start = _child("startup", folder)
        assert start["state_hash"] == full["state_hash"], "start-up state differs from the full replay"
        print(
            f"start-up:      {start['rewind_total_s']:.2f}s (logs opened in {start['open_logs_s']:.2f}s; "
            f"checkpoint load+verify alone {start['checkpoint_load_s']:.2f}s "
            f"for {start['blocks']:,} blocks, tail {start['tail_events']:,} events) vs full replay {full['seconds']:.2f}s; "
            f"peak RSS {start['peak_rss_mb']:.0f} MB"
        )
        if not args.no_view:
            view = _child("view", folder)
            print(f"view rebuild:  {view['seconds']:.2f}s for {view['blocks']:,} blocks")
        peer = {"skipped": "--no-peer"} if args.no_peer else _child("peer", folder, "--events", str(events))
        if "skipped" in peer:
            print(f"peer:          skipped — {peer['skipped']}")
        else:
            ratio = full["events_per_s"] / peer["events_per_s"]
            print(
                f"peer eventsourcing (SQLite, rebuild aggregates): {peer['events_per_s']:,.0f} events/s "
                f"({peer['seconds']:.2f}s); oplog / peer = {ratio:.2f}x (target >= 2.5x)"
            )
        if args.profile:
            print(_child("profile", folder))
    finally:
        if owned:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
