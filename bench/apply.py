"""Benchmark: applying resolved events with the engine on a 100,000-block workspace.

Mixed workload: 70% updateBlock, 15% insertBlock, 10% setBlockAttrs, 5% deleteBlock, one
operation per event. The events are built (resolved) before timing and then decoded from their
serialized form, as every caller of the engine gets them from a log. Three ways through the engine
are timed, one after the other, each from a fresh workspace and each on its own decoded copy of the
events, and must reach the same state hash: the fold (``replay_operations`` with one journal per
run of events — how ``oplog.replay``, start-up and checkpoint tails apply stored events),
``apply_event`` (one event at a time, a fresh journal and result each — how a single pulled event or
``oplog history --exact`` applies one), and the reader path (the parent's side of a big replay: the
reader process's marshalled batches turned back into operations and folded). A bare dict-based tree
loop doing the same mutations is timed as a baseline, and resident memory per block is measured with
tracemalloc.

    python bench/apply.py [--blocks 100000] [--ops 200000] [--seed 1]
"""

from __future__ import annotations

import argparse
import gc
import marshal
import random
import time
import tracemalloc
from typing import Any

from oplog.engine import apply_event, replay_operations
from oplog.replayreader import BATCH, op_tuple, reader_op
from oplog.statehash import StateHash
from oplog.tree import UndoJournal, Workspace, check_invariants
from oplog.v1 import oplog_pb2 as pb

BOX = "20240101000000-notebk1"
STAMP = "20240721020320"
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _ids(rng: random.Random) -> Any:
    seen: set[str] = set()
    while True:
        new = "20240721020320-" + "".join(rng.choice(_ALPHABET) for _ in range(7))
        if new not in seen:
            seen.add(new)
            yield new


def _text(rng: random.Random) -> str:
    return f"Paragraph {rng.randrange(10**6)} with a few words"


def _spec(block_id: str, text: str, stamp: str) -> pb.BlockSpec:
    spec = pb.BlockSpec(id=block_id, type="p", markdown=text)
    spec.attrs.add(name="updated", value=stamp)
    return spec


def _event(op: pb.Operation, seq: int) -> pb.Event:
    event = pb.Event(device_id="bench", device_seq=seq, req_id=seq)
    event.transaction.do_operations.append(op)
    return event


def build_setup(
    blocks: int, per_doc: int, rng: random.Random, ids: Any
) -> tuple[list[pb.Event], dict[str, list[str]]]:
    """createDoc events holding ``blocks`` short paragraphs in documents of ``per_doc`` blocks."""
    events = []
    docs: dict[str, list[str]] = {}
    made = 0
    while made < blocks:
        doc_id = next(ids)
        op = pb.Operation(
            action="createDoc", id=doc_id, box=BOX, text=f"Doc {len(docs)}", updated=STAMP, resolved=True
        )
        body = []
        for _ in range(min(per_doc, blocks - made - 1)):
            block_id = next(ids)
            op.blocks.append(_spec(block_id, _text(rng), STAMP))
            body.append(block_id)
        made += len(body) + 1
        docs[doc_id] = body
        events.append(_event(op, len(events) + 1))
    return events, docs


def build_workload(
    docs: dict[str, list[str]], count: int, rng: random.Random, ids: Any
) -> tuple[list[pb.Event], list[tuple]]:
    """Resolved events of the mixed workload, and the same mutations as plain tuples for the baseline."""
    live = [(doc_id, block_id) for doc_id, body in docs.items() for block_id in body]
    events = []
    plain: list[tuple] = []
    for seq in range(count):
        roll = rng.random()
        stamp = f"2024072103{seq // 60 % 60:02d}{seq % 60:02d}"
        pick = rng.randrange(len(live))
        doc_id, target = live[pick]
        if roll < 0.70:
            text = _text(rng)
            op = pb.Operation(action="updateBlock", id=target, updated=stamp, resolved=True)
            op.blocks.append(_spec(target, text, stamp))
            plain.append(("u", target, text, stamp))
        elif roll < 0.85:
            new = next(ids)
            text = _text(rng)
            op = pb.Operation(
                action="insertBlock",
                id=new,
                previous_id=target,
                parent_id=doc_id,
                updated=stamp,
                resolved=True,
            )
            op.blocks.append(_spec(new, text, stamp))
            live.append((doc_id, new))
            plain.append(("i", new, text, stamp, target))
        elif roll < 0.95:
            value = str(rng.randrange(100))
            op = pb.Operation(action="setBlockAttrs", id=target, updated=stamp, resolved=True)
            op.attrs.add(name="custom-score", value=value)
            plain.append(("a", target, value, stamp))
        else:
            op = pb.Operation(action="deleteBlock", id=target, updated=stamp, resolved=True)
            live[pick] = live[-1]
            live.pop()
            plain.append(("d", target))
        events.append(_event(op, seq + 1))
    return events, plain


def _stored(events: list[pb.Event]) -> list[pb.Event]:
    """The events as a log reader hands them to the engine: decoded from their serialized form."""
    return [pb.Event.FromString(event.SerializeToString()) for event in events]


def _fold(ws: Workspace, events: list[pb.Event]) -> None:
    """Apply events as ``oplog.replay`` folds them: one journal for the whole run."""
    journal = UndoJournal(False)
    for event in events:
        replay_operations(ws, event.transaction.do_operations, journal)


def _batches(events: list[pb.Event]) -> list[bytes]:
    """What the replay reader process sends for these events: marshalled batches of plain tuples."""
    items = [
        (e.hlc, e.device_id, e.device_seq, [op_tuple(op) for op in e.transaction.do_operations])
        for e in events
    ]
    return [marshal.dumps(items[lo : lo + BATCH]) for lo in range(0, len(items), BATCH)]


def _fold_batches(ws: Workspace, batches: list[bytes]) -> None:
    """The parent's side of a replay through the reader process: unmarshal, rebuild, fold."""
    journal = UndoJournal(False)
    for payload in batches:
        for item in marshal.loads(payload):
            replay_operations(ws, [reader_op(values) for values in item[3]], journal)


def _read_floor(events: list[pb.Event]) -> float:
    """Seconds to read, from fresh copies of these events, exactly the fields the engine reads, as it reads them.

    Indexed upb containers and each field once: what any engine that reads these events pays
    (upb makes a wrapper per sub-message and container, and a ``str`` per string read).
    """
    fresh = [pb.Event.FromString(e.SerializeToString()) for e in events]
    start = time.perf_counter()
    for event in fresh:
        ops = event.transaction.do_operations
        for index in range(len(ops)):
            op = ops[index]
            action = op.action
            _ = op.id
            if action == "setBlockAttrs":
                attrs = op.attrs
                for i in range(len(attrs)):
                    attr = attrs[i]
                    _ = (attr.name, attr.value)
            elif action != "deleteBlock":
                if action == "insertBlock":
                    _ = (op.next_id, op.previous_id, op.parent_id)
                specs = op.blocks
                for i in range(len(specs)):
                    spec = specs[i]
                    _ = (spec.type, spec.subtype, spec.markdown)
                    if action == "insertBlock":
                        _ = spec.id
                    attrs = spec.attrs
                    for j in range(len(attrs)):
                        attr = attrs[j]
                        _ = (attr.name, attr.value)
    return time.perf_counter() - start


class _DictTree:
    """The baseline: a bare dict tree (id -> dict) doing the same mutations."""

    def __init__(self, docs: dict[str, list[str]]) -> None:
        self.blocks: dict[str, dict[str, Any]] = {}
        for doc_id, body in docs.items():
            children: list[str] = []
            self.blocks[doc_id] = {"parent": None, "children": children, "md": "", "attrs": {}}
            for block_id in body:
                self.blocks[block_id] = {
                    "parent": doc_id,
                    "children": [],
                    "md": "x",
                    "attrs": {"updated": STAMP},
                }
                children.append(block_id)

    def run(self, plain: list[tuple]) -> float:
        blocks = self.blocks
        start = time.perf_counter()
        self._run(blocks, plain)
        return time.perf_counter() - start

    @staticmethod
    def _run(blocks: dict[str, dict[str, Any]], plain: list[tuple]) -> None:
        for step in plain:
            kind = step[0]
            if kind == "u":
                block = blocks[step[1]]
                block["md"] = step[2]
                block["attrs"] = {"updated": step[3]}
            elif kind == "i":
                anchor = blocks[step[4]]
                siblings = blocks[anchor["parent"]]["children"]
                siblings.insert(siblings.index(step[4]) + 1, step[1])
                blocks[step[1]] = {
                    "parent": anchor["parent"],
                    "children": [],
                    "md": step[2],
                    "attrs": {"updated": step[3]},
                }
            elif kind == "a":
                attrs = dict(blocks[step[1]]["attrs"])
                attrs["custom-score"] = step[2]
                attrs["updated"] = step[3]
                blocks[step[1]]["attrs"] = attrs
            else:
                block = blocks.pop(step[1])
                blocks[block["parent"]]["children"].remove(step[1])


def _fresh(setup: list[pb.Event]) -> Workspace:
    """A new workspace holding the setup's documents (the previous one should be dropped first)."""
    gc.collect()
    ws = Workspace()
    _fold(ws, setup)
    gc.collect()
    return ws


def _timed(ws: Workspace, chunks: list[Any], fold: Any) -> list[float]:
    """Seconds per event of ``fold(ws, chunk)`` for each chunk, without the cyclic collector."""
    times = []
    gc.disable()
    try:
        for chunk, count in chunks:
            start = time.perf_counter()
            fold(ws, chunk)
            times.append((time.perf_counter() - start) / count)
    finally:
        gc.enable()
    return times


def _rates(times: list[float]) -> tuple[float, float]:
    """Best chunk and mean over the chunks (of equal size), in events per second."""
    return 1 / min(times), len(times) / sum(times)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a Markdown summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=100_000)
    parser.add_argument("--per-doc", type=int, default=500)
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--check", action="store_true", help="check tree invariants at the end")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    ids = _ids(rng)
    setup, docs = build_setup(args.blocks, args.per_doc, rng, ids)
    built, plain = build_workload(docs, args.ops, rng, ids)
    setup = _stored(setup)
    chunk = max(1, len(built) // 10)
    spans = [(lo, min(lo + chunk, len(built))) for lo in range(0, len(built), chunk)]

    gc.collect()
    tracemalloc.start()
    ws = Workspace()
    for event in setup:
        apply_event(ws, event)
    gc.collect()
    resident, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    block_count = len(ws)
    per_block = resident / block_count

    # apply_event, with the dict baseline and the read floor timed between its chunks. The machine
    # may be shared, so the best chunk of each is compared (and the means are printed too).
    workload = _stored(built)
    base = _DictTree(docs)
    times: list[float] = []
    base_times: list[float] = []
    floor_times: list[float] = []
    conflicts = 0
    gc.collect()
    gc.disable()
    for lo, hi in spans:
        events = workload[lo:hi]
        start = time.perf_counter()
        for event in events:
            conflicts += len(apply_event(ws, event).conflicts)
        times.append((time.perf_counter() - start) / len(events))
        base_times.append(base.run(plain[lo:hi]) / len(events))
        floor_times.append(_read_floor(events) / len(events))
    gc.enable()
    if args.check:
        check_invariants(ws)
    digest = StateHash.of(ws).hexdigest()

    # The fold, then the reader path, each from a fresh workspace on its own copy of the events
    # (the previous workspace dropped first, so every run sees the same memory).
    del ws, workload
    ws = _fresh(setup)
    workload = _stored(built)
    fold_times = _timed(ws, [(workload[lo:hi], hi - lo) for lo, hi in spans], _fold)
    assert StateHash.of(ws).hexdigest() == digest, "the fold and apply_event reached different states"
    if args.check:
        check_invariants(ws)
    del ws, workload
    ws = _fresh(setup)
    batches = [(_batches(built[lo:hi]), hi - lo) for lo, hi in spans]
    reader_times = _timed(ws, batches, _fold_batches)
    assert StateHash.of(ws).hexdigest() == digest, "the reader path and apply_event reached different states"

    rate, mean = _rates(times)
    fold_rate, fold_mean = _rates(fold_times)
    reader_rate, reader_mean = _rates(reader_times)
    base_rate = 1 / min(base_times)
    floor_rate = 1 / min(floor_times)
    print(f"workspace: {block_count:,} blocks in {len(docs):,} documents ({args.per_doc} blocks each)")
    print(
        f"workload: {len(built):,} events, one op each (70% update, 15% insert, 10% setAttrs, 5% delete), "
        "decoded from their serialized form"
    )
    print(
        f"fold (replay_operations, one journal per run): best chunk {fold_rate:,.0f} ops/s, "
        f"mean {fold_mean:,.0f} ops/s (target >= 150,000)"
    )
    print(
        f"apply_event (fresh journal per event): best chunk {rate:,.0f} ops/s, "
        f"mean {mean:,.0f} ops/s; conflicts: {conflicts}"
    )
    print(
        f"reader path (a big replay's parent side: unmarshal, rebuild, fold): best chunk {reader_rate:,.0f} "
        f"ops/s, mean {reader_mean:,.0f} ops/s"
    )
    print(
        f"dict baseline: best chunk {base_rate:,.0f} ops/s; fold / baseline = {fold_rate / base_rate:.2f}, "
        f"apply_event / baseline = {rate / base_rate:.2f}, reader path / baseline = {reader_rate / base_rate:.2f}"
    )
    print(
        f"proto read floor (the fields the engine reads, read as it reads them from fresh events; no mutation): {floor_rate:,.0f} ops/s"
    )
    ceiling = 1 / (min(floor_times) + min(base_times))
    print(
        f"ceiling (read floor + dict baseline per op: an engine whose own work cost no more than the bare "
        f"dict tree): {ceiling:,.0f} ops/s; fold / ceiling = {fold_rate / ceiling:.2f}"
    )
    print(
        f"memory: {resident / 2**20:.1f} MiB traced for {block_count:,} blocks -> {per_block:.0f} B/block (target <= 1024)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
