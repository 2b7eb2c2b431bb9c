"""A new device joining a big history: from a remote snapshot, next to a full ``oplog replay`` in the same run.

Usage: python bench/join.py [--quick] [--events N] [--devices K] [--dir DIR] [--no-full-join] [--json FILE]

Builds a synthetic history of ``--events`` resolved events on ``--devices`` devices
(bench/replay.py's generator: the shapes the engine logs), lays it out as a folder
remote exactly as sync writes one (sealed segments, manifests, ``EPOCH``), and adds the
snapshot a device that holds it all would upload (``oplog.remotesnap``). Then, on the
same machine in the same run:

* the baseline: ``oplog replay`` of the whole history (a real process, as a user runs it);
* a new device's first sync with snapshots (``SyncSession.run``): the time until it is
  usable (its new state swapped in and served: the snapshot plus the segments after its
  heads), the time until its history is complete (every older segment downloaded, checked,
  stored and recorded), and the blocks view; then its own check of the snapshot (a full
  fold off the write path);
* unless ``--no-full-join``: the same first sync with snapshots off (every event folded).

Figures go to stdout (and ``--json``); docs/benchmarks-sync.md *Joining* keeps the latest.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from replay import write_history  # noqa: E402
from synth import publish_log  # noqa: E402

from oplog.checkpoint import capture_base  # noqa: E402
from oplog.clock import SystemClock  # noqa: E402
from oplog.eventlog import EventLog  # noqa: E402
from oplog.remote import LocalDirRemote  # noqa: E402
from oplog.remotesnap import SNAPSHOTS, encode_snapshot, snapshot_name  # noqa: E402
from oplog.replay import replay  # noqa: E402
from oplog.snapcheck import check_pending  # noqa: E402
from oplog.store import Store  # noqa: E402
from oplog.sync import SyncSession, parse_sync_params  # noqa: E402
from oplog.syncformat import EPOCH_FILE, EpochInfo  # noqa: E402

CLOUD = "main"


def build(folder: Path, events: int, devices: int) -> dict[str, Any]:
    """The origin data directory, the remote laid out from it, and the snapshot; what it took."""
    origin = folder / "origin"
    start = time.perf_counter()
    write_history(origin, events, devices)
    remote_root = folder / "remote"
    cloud = remote_root / CLOUD
    total = sum(
        publish_log(EventLog.open(p, p.name, durability="interval", interval_ms=1000), cloud)
        for p in sorted((origin / "devices").iterdir())
    )
    (cloud / EPOCH_FILE).write_bytes(EpochInfo("0").encode())
    built_s = time.perf_counter() - start
    # The snapshot a device holding all of it uploads (what SyncSession's upload_snapshot writes).
    logs = {p.name: EventLog.open(p, p.name, writable=False) for p in sorted((origin / "devices").iterdir())}
    result = replay(logs)
    for log in logs.values():
        log.close()
    snap = capture_base(result)
    start = time.perf_counter()
    blob = encode_snapshot(snap, epoch="0", device=sorted(logs)[0], created_ms=0)
    encode_s = time.perf_counter() - start
    (cloud / SNAPSHOTS).mkdir()
    (cloud / SNAPSHOTS / snapshot_name(snap.position, snap.state_hash)).write_bytes(blob)
    return {
        "events": result.position,
        "blocks": len(result.ws.blocks),
        "state_hash": result.state_hash.hexdigest(),
        "remote_mb": total / 1e6,
        "snapshot_mb": len(blob) / 1e6,
        "checkpoint_blob_mb": len(snap.blob) / 1e6,
        "snapshot_encode_s": encode_s,
        "build_s": built_s,
    }


def oplog_replay(origin: Path) -> dict[str, Any]:
    """``oplog replay --data ORIGIN --json`` as a user runs it: a real process, timed around it."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "oplog.tools.cli", "replay", "--data", str(origin), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "state_hash": json.loads(proc.stdout)["state_hash"]}


def join(folder: Path, remote_root: Path, name: str, snapshot_every: int) -> dict[str, Any]:
    """A new device's first sync (timed to usable), then its snapshot check (timed)."""
    data = folder / name
    store = Store.open(data, clock=SystemClock())
    marks: dict[str, float] = {}
    inner_fold, inner_ahead, inner_swap, inner_after = (
        store.fold_pulled,
        store.fold_ahead,
        store._swap,
        store.after_pull,
    )

    def timed_fold() -> None:
        marks.setdefault("fold_start", time.perf_counter())
        inner_fold()

    def timed_ahead(*args: Any) -> bool:
        marks.setdefault("fold_start", time.perf_counter())
        return inner_ahead(*args)

    def timed_swap(result: Any) -> None:
        inner_swap(result)
        marks.setdefault("swapped", time.perf_counter())  # the new state is the one served from here on

    def timed_after(*args: Any, **kwargs: Any) -> bool:
        beside = inner_after(*args, **kwargs)
        marks["stored"] = time.perf_counter()  # every pulled segment stored and recorded
        return beside

    store.fold_pulled = timed_fold  # type: ignore[method-assign]
    store.fold_ahead = timed_ahead  # type: ignore[method-assign]
    store._swap = timed_swap  # type: ignore[method-assign]
    store.after_pull = timed_after  # type: ignore[method-assign]
    try:
        params = parse_sync_params("bench")
        start = time.perf_counter()
        summary = SyncSession(
            store, LocalDirRemote(remote_root), params, store.clock, snapshot_every=snapshot_every
        ).run()
        done_s = time.perf_counter() - start
        state_hash = store.state().state_hash
        check_start = time.perf_counter()
        outcome = check_pending(store)
        check_s = time.perf_counter() - check_start
    finally:
        store.close()
    usable_s = marks["swapped"] - start
    transfer_s = marks["fold_start"] - start
    return {
        "usable_s": usable_s,
        "history_complete_s": marks["stored"] - start,
        "fold_s": usable_s - transfer_s,
        "transfer_s": transfer_s,
        "view_done_s": done_s,
        "check_s": check_s,
        "check": outcome,
        "snapshot": summary.snapshot,
        "pulled_events": summary.pulled_events,
        "state_hash": state_hash,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run (20,000 events)")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--dir", help="work folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--no-full-join", action="store_true", help="skip the join without snapshots")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    events = 20_000 if args.quick else args.events
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="oplog-bench-join-"))
    try:
        print(
            f"building a history of {events:,} events on {args.devices} devices in {folder} ...", flush=True
        )
        built = build(folder, events, args.devices)
        print(
            f"  {built['events']:,} events, {built['blocks']:,} blocks; remote {built['remote_mb']:.1f} MB of "
            f"segments; snapshot {built['snapshot_mb']:.1f} MB (checkpoint bytes {built['checkpoint_blob_mb']:.1f} MB, "
            f"encoded in {built['snapshot_encode_s']:.2f} s)"
        )
        base = oplog_replay(folder / "origin")
        print(f"oplog replay (full, a real process): {base['seconds']:.2f} s")
        snap = join(folder, folder / "remote", "joiner", 10_000)
        ratio = snap["usable_s"] / base["seconds"]
        print(
            f"new device from the snapshot: usable (state loaded and served) after {snap['usable_s']:.2f} s "
            f"= {ratio:.2f}x the replay (target <= 0.3x); history complete (every segment stored) after "
            f"{snap['history_complete_s']:.2f} s"
        )
        print(
            f"  before the swap: snapshot and the segments after its heads fetched and checked "
            f"{snap['transfer_s']:.2f} s, fold from the snapshot {snap['fold_s']:.2f} s; blocks view complete "
            f"after {snap['view_done_s']:.2f} s; its own check {snap['check_s']:.2f} s ({snap['check']}); "
            f"started from {snap['snapshot'] or 'no snapshot'}"
        )
        out: dict[str, Any] = {"build": built, "replay": base, "join_snapshot": snap, "ratio_usable": ratio}
        hashes = {built["state_hash"], base["state_hash"], snap["state_hash"]}
        if not args.no_full_join:
            full = join(folder, folder / "remote", "joiner-full", 0)
            out["join_full"] = full
            hashes.add(full["state_hash"])
            print(
                f"new device without snapshots: usable after {full['usable_s']:.2f} s "
                f"= {full['usable_s'] / base['seconds']:.2f}x the replay (transfer {full['transfer_s']:.2f} s, "
                f"fold {full['fold_s']:.2f} s; blocks view complete after {full['view_done_s']:.2f} s)"
            )
        print(f"state hashes equal: {len(hashes) == 1} ({built['state_hash'][:16]})")
        if len(hashes) != 1:
            print(f"MISMATCH: {hashes}", file=sys.stderr)
            return 1
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2, sort_keys=True))
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
