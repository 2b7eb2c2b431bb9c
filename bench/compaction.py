"""Compaction: what N syncs of one event each leave on the remote, with and without merging.

Usage: python bench/compaction.py [--syncs 10000] [--without-syncs N] [--dir DIR] [--json FILE]

Everything is real: an ``oplog.store.Store`` data directory, a ``LocalDirRemote``
on real files, the real ``SyncSession``. Device A applies one ``createDoc`` and
syncs, ``--syncs`` times; a second device B pulls once half-way and once at the
end. Reported per run: the remote's object count and bytes under the cloud
folder (segments, manifests, ``EPOCH``), A's local segment count, B's archived
segments (0: B took the merged segments without archiving), the largest
manifest, and the wall time. The run without compaction (``compact=False``)
costs O(N²) manifest bytes over the run (each push rewrites a manifest listing
every segment), so ``--without-syncs`` may be smaller; the figures then say so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oplog.clock import FakeClock, RandomIds  # noqa: E402
from oplog.remote import LocalDirRemote  # noqa: E402
from oplog.store import Store  # noqa: E402
from oplog.sync import SyncSession, parse_sync_params  # noqa: E402
from oplog.wire import request_from_json  # noqa: E402

T0 = 1_721_527_400_000
BOX = "20240101000000-notebk1"


def _body(n: int) -> dict[str, Any]:
    op = {"action": "createDoc", "id": f"20240101000000-{n:07d}", "data": {"box": BOX, "title": f"T{n}"}}
    return {"reqId": n, "app": "bench", "transactions": [{"doOperations": [op]}]}


def _remote_size(root: Path) -> tuple[int, int, int]:
    """Objects, bytes, and the largest manifest's bytes under the remote folder."""
    files = [p for p in root.rglob("*") if p.is_file()]
    manifests = [p.stat().st_size for p in files if p.name == "MANIFEST"]
    return len(files), sum(p.stat().st_size for p in files), max(manifests, default=0)


def run(work: Path, syncs: int, compact: bool) -> dict[str, Any]:
    """One run of ``syncs`` single-event syncs; the figures."""
    warnings.simplefilter("ignore")
    remote_root = work / "remote"
    remote = LocalDirRemote(remote_root)
    a = Store.open(work / "a", clock=FakeClock(T0, step_ms=11), ids=RandomIds(1))
    b = Store.open(work / "b", clock=FakeClock(T0 + 1, step_ms=11), ids=RandomIds(2))
    archived = 0
    start = time.perf_counter()
    try:
        for n in range(syncs):
            a.apply(request_from_json(_body(n)))
            SyncSession(a, remote, parse_sync_params("bench"), a.clock, compact=compact).run()
            if n == syncs // 2:
                archived += (
                    SyncSession(b, remote, parse_sync_params("bench"), b.clock, compact=compact)
                    .run()
                    .archived_segments
                )
        elapsed = time.perf_counter() - start
        archived += (
            SyncSession(b, remote, parse_sync_params("bench"), b.clock, compact=compact)
            .run()
            .archived_segments
        )
        objects, size, manifest = _remote_size(remote_root)
        local = len([n for n in os.listdir(a.device_dir(a.device_id)) if n.endswith(".seg")])
        same = a.state_hash.hexdigest() == b.state_hash.hexdigest()
    finally:
        a.close()
        b.close()
    return {
        "syncs": syncs,
        "compaction": compact,
        "remote_objects": objects,
        "remote_bytes": size,
        "largest_manifest_bytes": manifest,
        "local_segments_a": local,
        "archived_segments_b": archived,
        "hashes_equal": same,
        "seconds": round(elapsed, 1),
    }


def main() -> None:
    """Parse, run with and without compaction, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncs", type=int, default=10_000)
    parser.add_argument(
        "--without-syncs", type=int, help="syncs for the run without compaction (default: --syncs)"
    )
    parser.add_argument("--dir", help="work directory (default: a temporary one)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="oplog-bench-compaction-"))
    results = []
    try:
        for compact, syncs in ((True, args.syncs), (False, args.without_syncs or args.syncs)):
            work = base / ("on" if compact else "off")
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            results.append(run(work, syncs, compact))
            r = results[-1]
            print(
                f"compaction {'on ' if compact else 'off'}: {r['syncs']} syncs of one event: remote "
                f"{r['remote_objects']} objects, {r['remote_bytes'] / 1e6:.2f} MB (largest manifest "
                f"{r['largest_manifest_bytes'] / 1e3:.1f} KB); A keeps {r['local_segments_a']} segments; "
                f"B archived {r['archived_segments_b']}; hashes equal: {r['hashes_equal']}; {r['seconds']} s",
                flush=True,
            )
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
