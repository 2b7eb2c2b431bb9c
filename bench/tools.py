"""The read-only inspection tools on a large history: ``oplog dump`` and ``oplog history`` against a bare read.

Usage: python bench/tools.py [--quick] [--events N] [--devices K] [--dir DIR] [--keep]

Builds (or reuses, when ``DIR`` already holds a history of the same size and
generator version) a multi-device history of resolved events shaped like the
engine's (inserts with parsed blocks, updates, attribute changes, moves,
deletes, documents, each with its undo operations), written straight into
device logs. Then, each step in a fresh child process (so peak RSS is the
step's own), it measures:

* the bare read: every event of every device read from the segments and decoded;
* the merged scan alone (``oplog.scan.scan``: the bare read plus the k-way merge, nothing printed),
  which splits a dump's cost into reading + merging and turning events into text;
* the ``--json`` read floor: the bare read plus reading, once each, every field
  ``dump --json`` prints (``read_printed_fields``), building nothing — no dump
  of these protobuf events written in Python can take less;
* ``oplog dump --json`` in full (to /dev/null) and filtered by one block id;
* ``oplog history BLOCK_ID --json`` for the most edited block;
* the same at 10 % of the events (``--to``), to show peak RSS does not grow with events.

It prints a JSON report: seconds, events/s, ratio to the bare read, peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from synth import block_id, write_events  # noqa: E402

from oplog.v1 import oplog_pb2 as pb  # noqa: E402
from oplog.wire import to_value  # noqa: E402

__all__ = ["build_history", "main"]

GENERATOR = "tools-v2"
BOX = "20240101000000-notebk1"
T0 = 1_721_527_400_000
_WORDS = ["alpha", "beta", "gamma", "delta", "**bold**", "`code`", "epsilon", "zeta", "theta", "kappa"]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- synthetic history


class _History:
    """One shared workspace edited by several devices; each event carries its resolved ops and undo ops."""

    def __init__(self, devices: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.devices = [f"{i + 1:016x}" for i in range(devices)]
        self.seqs = dict.fromkeys(self.devices, 0)
        self.ms = T0
        self.serial = 0
        self.docs: list[str] = []
        #: doc id -> its top-level blocks in order; block id -> (markdown, attrs).
        self.order: dict[str, list[str]] = {}
        self.content: dict[str, tuple[str, dict[str, str]]] = {}
        self.edits: dict[str, int] = {}

    def new_id(self) -> str:
        self.serial += 1
        return block_id(self.ms, self.serial)

    def text(self) -> str:
        return " ".join(self.rng.choice(_WORDS) for _ in range(self.rng.randint(3, 12)))

    @staticmethod
    def _ial(block_id: str, attrs: dict[str, str]) -> str:
        return "{: " + " ".join(f'{k}="{v}"' for k, v in {"id": block_id, **attrs}.items()) + "}"

    def event(self) -> pb.Event:
        rng = self.rng
        self.ms += rng.randint(1, 400)
        stamp = "20240721" + f"{self.ms // 1000 % 1000000:06d}"
        op = pb.Operation(resolved=True, updated=stamp)
        undo = pb.Operation()
        if not self.docs or rng.random() < 0.01:
            self._create_doc(op, undo)
        else:
            doc = self.docs[-1] if rng.random() < 0.6 else rng.choice(self.docs)
            live = self.order[doc]
            roll = rng.random()
            if not live or roll < 0.22:
                self._place(op, undo, "appendBlock", doc, live, len(live))
            elif roll < 0.37:
                prev = rng.randrange(len(live))
                self._place(op, undo, "insertBlock", doc, live, prev + 1)
            elif roll < 0.80:
                self._update(op, undo, rng.choice(live[-40:]))
            elif roll < 0.90:
                self._attrs(op, undo, rng.choice(live[-40:]))
            elif roll < 0.96 and len(live) > 1:
                self._move(op, undo, doc, live)
            else:
                self._delete(op, undo, live)
        device = rng.choice(self.devices)
        self.seqs[device] += 1
        tx = pb.Transaction(timestamp=self.ms, do_operations=[op], undo_operations=[undo])
        return pb.Event(
            device_id=device, device_seq=self.seqs[device], hlc=self.ms << 16, req_id=self.ms, app="bench",
            session="s", tx_index=0, tx_count=1, time_ms=self.ms, transaction=tx,
        )  # fmt: skip

    def _create_doc(self, op: pb.Operation, undo: pb.Operation) -> None:
        doc = self.new_id()
        op.action, op.id, op.text, op.box = "createDoc", doc, self.text()[:20], BOX
        op.data.CopyFrom(to_value({"box": BOX, "title": op.text}))
        op.ret_data.CopyFrom(to_value(doc))
        undo.action, undo.id = "removeDoc", doc
        self.docs.append(doc)
        self.order[doc] = []

    def _place(
        self, op: pb.Operation, undo: pb.Operation, action: str, doc: str, live: list[str], index: int
    ) -> None:
        block_id = self.new_id()
        heading = self.rng.random() < 0.1
        markdown = ("## " + self.text()) if heading else self.text()
        op.action, op.id, op.parent_id = action, block_id, doc
        if action == "insertBlock" and index > 0:
            op.previous_id = live[index - 1]
        op.data.CopyFrom(to_value(markdown))
        op.data_type = "markdown"
        attrs = {"updated": op.updated}
        spec = op.blocks.add(
            id=block_id, type="h" if heading else "p", subtype="h2" if heading else "", markdown=markdown
        )
        spec.attrs.add(name="updated", value=op.updated)
        op.ret_data.CopyFrom(to_value([block_id]))
        undo.action, undo.id = "deleteBlock", block_id
        live.insert(index, block_id)
        self.content[block_id] = (markdown, attrs)

    def _update(self, op: pb.Operation, undo: pb.Operation, block_id: str) -> None:
        old_markdown, attrs = self.content[block_id]
        heading = old_markdown.startswith("## ")
        markdown = ("## " + self.text()) if heading else self.text()
        new_attrs = {**attrs, "updated": op.updated}
        op.action, op.id, op.data_type = "updateBlock", block_id, "markdown"
        op.data.CopyFrom(to_value(markdown + "\n" + self._ial(block_id, new_attrs)))
        spec = op.blocks.add(
            id=block_id, type="h" if heading else "p", subtype="h2" if heading else "", markdown=markdown
        )
        for name in sorted(new_attrs):
            spec.attrs.add(name=name, value=new_attrs[name])
        op.ret_data.CopyFrom(to_value({"updateCount": 1}))
        undo.action, undo.id, undo.data_type = "updateBlock", block_id, "markdown"
        undo.data.CopyFrom(to_value(old_markdown + "\n" + self._ial(block_id, attrs)))
        self.content[block_id] = (markdown, new_attrs)
        self.edits[block_id] = self.edits.get(block_id, 0) + 1

    def _attrs(self, op: pb.Operation, undo: pb.Operation, block_id: str) -> None:
        markdown, attrs = self.content[block_id]
        name = self.rng.choice(["custom-a", "custom-b", "name", "memo"])
        value = self.text()[:30]
        op.action, op.id = "setBlockAttrs", block_id
        op.data.CopyFrom(to_value({name: value}))
        op.attrs.add(name=name, value=value)
        new_attrs = {**attrs, name: value, "updated": op.updated}
        op.ret_data.CopyFrom(to_value({"id": block_id, **new_attrs}))
        undo.action, undo.id = "setBlockAttrs", block_id
        undo.data.CopyFrom(to_value({name: attrs.get(name, ""), "updated": attrs.get("updated", "")}))
        self.content[block_id] = (markdown, new_attrs)
        self.edits[block_id] = self.edits.get(block_id, 0) + 1

    def _move(self, op: pb.Operation, undo: pb.Operation, doc: str, live: list[str]) -> None:
        index = self.rng.randrange(len(live))
        block_id = live.pop(index)
        target = self.rng.randrange(len(live))
        op.action, op.id, op.previous_id = "moveBlock", block_id, live[target]
        op.ret_data.CopyFrom(to_value({"moveCount": 1}))
        undo.action, undo.id = "moveBlock", block_id
        if index > 0:
            undo.previous_id = live[index - 1]
        else:
            undo.parent_id = doc
        live.insert(target + 1, block_id)
        markdown, attrs = self.content[block_id]
        self.content[block_id] = (markdown, {**attrs, "updated": op.updated})
        self.edits[block_id] = self.edits.get(block_id, 0) + 1

    def _delete(self, op: pb.Operation, undo: pb.Operation, live: list[str]) -> None:
        index = self.rng.randrange(len(live))
        block_id = live.pop(index)
        op.action, op.id = "deleteBlock", block_id
        op.ret_data.CopyFrom(to_value({"deleteCount": 1}))
        markdown, attrs = self.content.pop(block_id)
        undo.action, undo.id, undo.data_type = "insertBlock", block_id, "markdown"
        if index > 0:
            undo.previous_id = live[index - 1]
        undo.data.CopyFrom(to_value(markdown + "\n" + self._ial(block_id, attrs)))
        self.edits.pop(block_id, None)


def build_history(folder: Path, events: int, devices: int = 4, seed: int = 7) -> dict[str, Any]:
    """Write the history into ``folder`` (or reuse it when its meta file matches); return the meta."""
    meta_file = folder / "bench-meta.json"
    want = {"generator": GENERATOR, "events": events, "devices": devices, "seed": seed}
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if all(meta.get(k) == v for k, v in want.items()):
            return meta
    if (folder / "devices").exists():
        raise SystemExit(f"{folder} holds another history; remove it or pick another --dir")
    history = _History(devices, seed)
    started = time.perf_counter()
    early = ""

    def generated() -> Iterator[pb.Event]:
        nonlocal early
        for i in range(events):
            if i == max(events // 10, 1) - 1 and history.edits:
                early = max(history.edits, key=lambda b: (history.edits[b], b))
            yield history.event()

    write_events(folder, history.devices, generated())
    hot = max(history.edits, key=lambda b: (history.edits[b], b))
    meta = {
        **want,
        "hot_block": hot,
        "hot_block_edits": history.edits[hot],
        "early_block": early or hot,
        "documents": len(history.docs),
        "build_s": round(time.perf_counter() - started, 1),
    }
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


# ---------------------------------------------------------------- children (one step each, fresh process)


class _CountingSink:
    """Stands in for stdout: counts lines, keeps nothing (like writing to /dev/null)."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return os.open(os.devnull, os.O_WRONLY)


def _child(step: str, folder: Path, block: str, to: int | None) -> dict[str, Any]:
    # Imports (every subcommand module, gRPC included) happen before the clock starts, for every step.
    from oplog.tools.cli import build_parser
    from oplog.tools.cli import main as cli

    build_parser()
    started = time.perf_counter()
    cpu = time.process_time()
    lines = 0
    if step == "bare":
        from oplog.datadir import open_logs_readonly

        logs = open_logs_readonly(folder)
        for log in logs.values():
            for _ in log.read():
                lines += 1
        for log in logs.values():
            log.close()
    elif step == "fields":
        from floors import read_printed_fields

        from oplog.datadir import open_logs_readonly

        logs = open_logs_readonly(folder)
        for log in logs.values():
            for event in log.read():
                read_printed_fields(event)
                lines += 1
        for log in logs.values():
            log.close()
    elif step == "scan":
        from oplog.datadir import open_logs_readonly
        from oplog.scan import scan

        logs = open_logs_readonly(folder)
        for _ in scan(logs):
            lines += 1
        for log in logs.values():
            log.close()
    else:
        argv = {
            "dump": ["dump", "--json"],
            "dump-human": ["dump"],
            "dump-block": ["dump", "--json", "--block", block],
            "history": ["history", block, "--json"],
        }[step]
        if to is not None:
            argv += ["--to", str(to)]
        sink = _CountingSink()
        real, sys.stdout = sys.stdout, sink  # type: ignore[assignment]
        try:
            code = cli([*argv, "--data", str(folder)])
        finally:
            sys.stdout = real
        if code != 0:
            raise SystemExit(f"{step} exited {code}")
        lines = sink.lines
    return {
        "step": step,
        "to": to,
        "seconds": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "lines": lines,
        "peak_rss_mb": round(_rss_mb(), 1),
    }


def _spawn(step: str, folder: Path, block: str, to: int | None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", step, "--dir", str(folder), "--block", block]
    if to is not None:
        cmd += ["--to", str(to)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"step {step} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout.splitlines()[-1])


# ---------------------------------------------------------------- driver


def measure(folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Run every step in its own process; ratios are to the bare read of the same range."""
    events, block = meta["events"], meta["hot_block"]
    small = max(events // 10, 1)
    rows = []
    for to in (small, None):
        bare = _spawn("bare", folder, block, None)
        merged = _spawn("scan", folder, block, None) if to is None else None
        floor = _spawn("fields", folder, block, None) if to is None else None
        n = events if to is None else small
        target = block if to is None else meta["early_block"]
        for step in ("dump", "dump-human", "dump-block", "history"):
            row = _spawn(step, folder, target, to)
            row["events"] = n
            row["events_per_s"] = round(n / row["seconds"]) if row["seconds"] else None
            if to is None:
                row["ratio_to_bare"] = round(row["seconds"] / bare["seconds"], 2)
                row["cpu_ratio_to_bare"] = round(row["cpu_s"] / bare["cpu_s"], 2)
                row["block"] = target if step in ("dump-block", "history") else None
            rows.append(row)
        if to is None and merged is not None and floor is not None:
            bare["events"] = events
            bare["events_per_s"] = round(events / bare["seconds"])
            for row in (merged, floor):
                row["events"] = events
                row["events_per_s"] = round(events / row["seconds"])
                row["ratio_to_bare"] = round(row["seconds"] / bare["seconds"], 2)
                row["cpu_ratio_to_bare"] = round(row["cpu_s"] / bare["cpu_s"], 2)
            rows[len(rows) - 4 : len(rows) - 4] = [bare, merged, floor]
    return {"history": meta, "steps": rows}


def main(argv: list[str] | None = None) -> int:
    """Build or reuse the history, measure, print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="20,000 events: a smoke run")
    parser.add_argument("--dir", help="where the history is built or reused (default: a temp folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--block", help=argparse.SUPPRESS)
    parser.add_argument("--to", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, Path(args.dir), args.block, args.to)))
        return 0
    events = 20_000 if args.quick else args.events
    with tempfile.TemporaryDirectory(prefix="oplog-bench-tools-") as tmp:
        folder = Path(args.dir) if args.dir else Path(tmp) / "data"
        folder.mkdir(parents=True, exist_ok=True)
        meta = build_history(folder, events, args.devices)
        report = measure(folder, meta)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
