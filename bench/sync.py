"""Sync cost: incremental sync must cost what the change costs; an initial pull must run near copy speed.

Usage: python bench/sync.py [--quick] [--sizes 1000,10000,100000] [--rounds 5] [--pull-mb 100]
                            [--dir DIR] [--json FILE] [--profile] [--s3]

Everything is real: ``oplog.store.Store`` data directories, a ``LocalDirRemote``
on real files, the real sync (``run_sync``). The remote is wrapped in a
``CountingRemote`` that counts calls, files and bytes; local I/O is read from
``/proc/self/io`` (bytes through read/write system calls, page-cache hits
included, minus the remote's own bytes) and from a before/after listing of the
data directory (files created, changed or removed).

1. Incremental sync. For each history size N: device A holds N events (its own
   log) and has synced them to B. Each round A applies one new event, syncs
   (push), then B syncs (pull). The median round is reported per size, and the
   ratio largest/smallest of each figure (target <= 2x: cost proportional to the
   change, not to the history).
2. Initial pull. A remote holding ~``--pull-mb`` MB of sealed segments (4
   devices, manifests and ``EPOCH`` as sync writes them) is pulled by a fresh
   device; MB/s next to ``cp -r`` of the same folder in the same run (target
   >= 50 % of ``cp``). The pull is split into transfer (download, verify, store)
   and apply (fold the events into the state and the SQL view).
3. ``--s3``: both again over S3 — moto's S3 server in a child process on
   127.0.0.1 (a real HTTP server, its own process, so it does not share this
   one's GIL). Incremental: the same rounds, with the remote calls counted (each
   S3 call is one HTTP request here: no multipart below 16 MiB) and the bytes.
   Initial pull: the same ~``--pull-mb`` MB remote uploaded to the bucket, pulled
   by a fresh device, next to a bare ``get_object`` of every segment on 8 threads
   with the same boto3 in the same run (target >= 0.7x), and next to the pull
   of the same remote as a folder.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


from bench.replay import _Device  # noqa: E402
from bench.synth import publish_log  # noqa: E402
from oplog.clock import SystemClock  # noqa: E402
from oplog.eventlog import EventLog  # noqa: E402
from oplog.remote import LocalDirRemote  # noqa: E402
from oplog.store import Store  # noqa: E402
from oplog.syncformat import (  # noqa: E402
    EPOCH_FILE,
    EpochInfo,
)
from oplog.syncrunner import run_sync  # noqa: E402
from oplog.wire import request_from_json  # noqa: E402

CLOUD = "main"


# ---------------------------------------------------------------- counting


@dataclass
class RemoteCounts:
    """What one sync asked of the remote."""

    lists: int = 0
    reads: int = 0
    writes: int = 0
    deletes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0

    @property
    def files(self) -> int:
        """Files (and folders) touched: every list, read, write and delete is one."""
        return self.lists + self.reads + self.writes + self.deletes


class CountingRemote:
    """A remote (a ``LocalDirRemote`` or an ``S3Remote``) that counts what sync asks of it."""

    def __init__(self, inner: Any) -> None:
        """Wrap ``inner``."""
        self.inner = inner
        self.counts = RemoteCounts()

    def reset(self) -> RemoteCounts:
        """Return the counts so far and start again from zero."""
        counts, self.counts = self.counts, RemoteCounts()
        return counts

    def list(self, folder: str) -> list[str]:
        """Count a listing."""
        self.counts.lists += 1
        return self.inner.list(folder)

    def sizes(self, folder: str) -> dict[str, int]:
        """Count a listing with sizes."""
        self.counts.lists += 1
        return self.inner.sizes(folder)

    def read(self, path: str) -> bytes | None:
        """Count a read and its bytes."""
        self.counts.reads += 1
        data = self.inner.read(path)
        self.counts.bytes_read += len(data) if data is not None else 0
        return data

    def write_new(self, path: str, data: bytes) -> bool:
        """Count a create-only write."""
        self.counts.writes += 1
        self.counts.bytes_written += len(data)
        return self.inner.write_new(path, data)

    def replace(self, path: str, data: bytes) -> None:
        """Count a replacing write."""
        self.counts.writes += 1
        self.counts.bytes_written += len(data)
        self.inner.replace(path, data)

    def read_versioned(self, path: str) -> tuple[bytes | None, str | None]:
        """Count a read (with the version) and its bytes."""
        self.counts.reads += 1
        data, version = self.inner.read_versioned(path)
        self.counts.bytes_read += len(data) if data is not None else 0
        return data, version

    def replace_if(self, path: str, data: bytes, version: str | None) -> bool:
        """Count a conditional write."""
        self.counts.writes += 1
        self.counts.bytes_written += len(data)
        return self.inner.replace_if(path, data, version)

    def delete(self, path: str) -> None:
        """Count a delete."""
        self.counts.deletes += 1
        self.inner.delete(path)

    def sweep(self, folder: str) -> int:
        """Count a sweep (a listing, and a delete per leftover)."""
        self.counts.lists += 1
        removed = self.inner.sweep(folder)
        self.counts.deletes += removed
        return removed


def _proc_io() -> dict[str, int]:
    """This process's I/O counters (Linux); empty elsewhere."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return {}
    return {k: int(v) for k, v in (line.split(": ") for line in text.splitlines())}


def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``root`` with (size, mtime_ns, inode)."""
    out: dict[str, tuple[int, int, int]] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


@dataclass
class SyncCost:
    """One measured sync: time, remote calls and bytes, local bytes and files written."""

    seconds: float
    remote: RemoteCounts
    local_read: int
    local_written: int
    local_files: int
    changed_files: list[str] = field(default_factory=list)


def measure_sync(store: Store, remote: CountingRemote) -> SyncCost:
    """Run one sync of ``store`` and measure it."""
    remote.reset()
    before_tree = _tree(store.data_dir)
    before = _proc_io()
    start = time.perf_counter()
    run_sync(store, remote, SystemClock(), "bench")
    seconds = time.perf_counter() - start
    after = _proc_io()
    counts = remote.reset()
    after_tree = _tree(store.data_dir)
    changed = sorted(
        k for k in before_tree.keys() | after_tree.keys() if before_tree.get(k) != after_tree.get(k)
    )
    read = after.get("rchar", 0) - before.get("rchar", 0) - counts.bytes_read
    written = after.get("wchar", 0) - before.get("wchar", 0) - counts.bytes_written
    return SyncCost(seconds, counts, max(read, 0), max(written, 0), len(changed), changed)


# ---------------------------------------------------------------- histories


def write_device_history(data_dir: Path, device: _Device, events: int) -> int:
    """Write ``events`` synthetic resolved events to ``device``'s log in ``data_dir``; return its bytes."""
    folder = data_dir / "devices" / device.id
    with EventLog.open(folder, device.id, durability="interval", interval_ms=1000) as log:
        batch = []
        for _ in range(events):
            batch.append(device.event())
            if len(batch) == 512:
                log.append(batch)
                batch = []
        if batch:
            log.append(batch)
        log.log.seal()
    (data_dir / "DEVICE").write_text(device.id + "\n")
    return sum(p.stat().st_size for p in folder.glob("*.seg"))


def open_store(data_dir: Path) -> Store:
    """Open a data directory with the real clock (the bench is the edge)."""
    return Store.open(data_dir, clock=SystemClock())


def one_edit(store: Store, n: int) -> None:
    """Apply one appendBlock to the newest document: one new event."""
    doc = max(store.ws.docs)
    body = {
        "reqId": n,
        "app": "bench",
        "transactions": [
            {
                "doOperations": [
                    {"action": "appendBlock", "parentID": doc, "data": f"edit {n}", "dataType": "markdown"}
                ]
            }
        ],
    }
    store.apply(request_from_json(body))


# ---------------------------------------------------------------- 1. incremental sync


def _median_cost(costs: list[SyncCost]) -> dict[str, float]:
    def med(get: Callable[[SyncCost], float]) -> float:
        return statistics.median(get(c) for c in costs)

    return {
        "ms": med(lambda c: c.seconds * 1000),
        "remote_files": med(lambda c: c.remote.files),
        "remote_bytes": med(lambda c: c.remote.bytes_read + c.remote.bytes_written),
        "local_bytes": med(lambda c: c.local_read + c.local_written),
        "local_files": med(lambda c: c.local_files),
    }


def incremental(
    folder: Path, events: int, rounds: int, seed: int, make_remote: Callable[[Path], Any] | None = None
) -> dict[str, Any]:
    """Build an N-event history on A, sync it to B, then time ``rounds`` one-event syncs."""
    root = folder / f"inc-{events}"
    shutil.rmtree(root, ignore_errors=True)
    t = time.perf_counter()
    history_bytes = write_device_history(root / "a", _Device(0, random.Random(seed)), events)
    remote = CountingRemote(make_remote(root) if make_remote else LocalDirRemote(root / "remote"))
    a = open_store(root / "a")
    b = open_store(root / "b")
    try:
        run_sync(a, remote, SystemClock(), "bench")
        run_sync(b, remote, SystemClock(), "bench")
        assert b.state().state_hash == a.state().state_hash, "B did not converge on A's history"
        build_s = time.perf_counter() - t
        pushes: list[SyncCost] = []
        pulls: list[SyncCost] = []
        for n in range(rounds):
            one_edit(a, n)
            pushes.append(measure_sync(a, remote))
            pulls.append(measure_sync(b, remote))
            assert pulls[-1].remote.bytes_read > 0 and b.state().state_hash == a.state().state_hash
        return {
            "events": events,
            "history_mb": history_bytes / 1e6,
            "segments": len(a.device_log(a.device_id).log.segments()),
            "build_s": build_s,
            "push": _median_cost(pushes),
            "pull": _median_cost(pulls),
            "push_calls": asdict(pushes[-1].remote),
            "pull_calls": asdict(pulls[-1].remote),
            "pull_files_example": pulls[-1].changed_files,
        }
    finally:
        a.close()
        b.close()


def print_incremental(rows: list[dict[str, Any]], where: str = "folder") -> dict[str, dict[str, float]]:
    """Print one line per size and the largest/smallest ratios; return the ratios."""
    print(f"incremental sync of one new event over the {where} remote (median of rounds):")
    for row in rows:
        for side in ("push", "pull"):
            c = row[side]
            print(
                f"  {row['events']:>9,} events ({row['history_mb']:6.1f} MB, {row['segments']:>3} seg) {side}: "
                f"{c['ms']:7.1f} ms  remote {c['remote_files']:3.0f} files {c['remote_bytes'] / 1e3:8.1f} KB  "
                f"local {c['local_bytes'] / 1e3:8.1f} KB, {c['local_files']:2.0f} files written"
            )
    ratios: dict[str, dict[str, float]] = {}
    small, large = rows[0], rows[-1]
    for side in ("push", "pull"):
        ratios[side] = {
            k: (large[side][k] / small[side][k] if small[side][k] else float("inf")) for k in small[side]
        }
        shown = ", ".join(f"{k} {v:.2f}x" for k, v in ratios[side].items())
        print(f"  {side} ratio {large['events']:,} / {small['events']:,} events: {shown}")
    for row in rows:
        calls = ", ".join(
            f"{side} {c['lists']} list {c['reads']} read {c['writes']} write {c['deletes']} delete"
            for side, c in (("push", row["push_calls"]), ("pull", row["pull_calls"]))
        )
        print(f"  remote calls at {row['events']:,} events (last round): {calls}")
    worst = max(v for side in ratios.values() for v in side.values())
    print(f"  worst ratio {worst:.2f}x (target <= 2x): {'met' if worst <= 2 else 'MISSED'}")
    print(f"  files B changed in its last pull: {rows[-1]['pull_files_example']}")
    return ratios


# ---------------------------------------------------------------- 2. initial pull


def build_remote(folder: Path, megabytes: float, devices: int, seed: int) -> tuple[Path, int, int]:
    """Write ~``megabytes`` MB of sealed segments for ``devices`` devices as a remote folder; (path, bytes, events)."""
    staging = folder / "staging"
    remote_root = folder / "pull-remote"
    cloud = remote_root / CLOUD
    rng = random.Random(seed)
    fleet = [_Device(i, random.Random(rng.random())) for i in range(devices)]
    logs = {
        d.id: EventLog.open(
            staging / d.id, d.id, durability="interval", interval_ms=1000, segment_bytes=16 << 20
        )
        for d in fleet
    }
    target = megabytes * 1e6
    written = events = 0
    while written < target:
        for device in fleet:
            batch = [device.event() for _ in range(512)]
            logs[device.id].append(batch)
            written += sum(len(e.SerializeToString()) + 10 for e in batch)
            events += len(batch)
    total = sum(publish_log(log, cloud) for log in logs.values())
    (cloud / EPOCH_FILE).write_bytes(EpochInfo("0").encode())
    shutil.rmtree(staging)
    return remote_root, total, events


def initial_pull(folder: Path, megabytes: float, seed: int, profile: bool) -> dict[str, Any]:
    """A fresh device pulls a ~``megabytes`` MB remote; timed next to ``cp -r`` of the same folder."""
    t = time.perf_counter()
    remote_root, total, events = build_remote(folder, megabytes, 4, seed)
    build_s = time.perf_counter() - t
    copy_to = folder / "cp-copy"
    start = time.perf_counter()
    subprocess.run(["cp", "-r", str(remote_root), str(copy_to)], check=True)
    cp_s = time.perf_counter() - start
    shutil.rmtree(copy_to)
    store = open_store(folder / "fresh")
    applying = _time_after_pull(store)
    remote = CountingRemote(LocalDirRemote(remote_root))
    profiler = cProfile.Profile() if profile else None
    try:
        if profiler is not None:
            profiler.enable()
        cost = measure_sync(store, remote)
        if profiler is not None:
            profiler.disable()
        pulled = store.state().position
    finally:
        store.close()
    apply_s = sum(applying)
    out = {
        "mb": total / 1e6,
        "events": events,
        "pulled_events": pulled,
        "build_s": build_s,
        "cp_s": cp_s,
        "cp_mb_s": total / 1e6 / cp_s,
        "pull_s": cost.seconds,
        "pull_mb_s": total / 1e6 / cost.seconds,
        "apply_s": apply_s,
        "transfer_s": cost.seconds - apply_s,
        "transfer_mb_s": total / 1e6 / max(cost.seconds - apply_s, 1e-9),
        "remote_files": cost.remote.files,
        "after_pull_calls": len(applying),
    }
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
        out["profile"] = text.getvalue()
    return out


def _time_after_pull(store: Store) -> list[float]:
    """Time every ``after_pull`` (the fold of pulled events) of ``store``; the list fills as sync runs."""
    spans: list[float] = []
    inner = store.after_pull
    fold = store.fold_pulled

    def timed(*args: Any, **kwargs: Any) -> bool:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spans.append(time.perf_counter() - start)

    def timed_fold() -> None:
        start = time.perf_counter()
        try:
            fold()
        finally:
            # A fold beside the state belongs to the after_pull that left it.
            if spans:
                spans[-1] += time.perf_counter() - start

    store.after_pull = timed  # type: ignore[method-assign]
    store.fold_pulled = timed_fold  # type: ignore[method-assign]
    return spans


def print_pull(p: dict[str, Any]) -> None:
    """Print the initial pull figures."""
    ratio = p["pull_mb_s"] / p["cp_mb_s"]
    transfer_ratio = p["transfer_mb_s"] / p["cp_mb_s"]
    print(
        f"initial pull of {p['mb']:.1f} MB ({p['events']:,} events, 4 devices, {p['remote_files']} remote files):\n"
        f"  cp -r:            {p['cp_s']:7.2f} s  {p['cp_mb_s']:8.1f} MB/s\n"
        f"  pull (whole sync): {p['pull_s']:6.2f} s  {p['pull_mb_s']:8.1f} MB/s = {ratio:.1%} of cp (target >= 50%): "
        f"{'met' if ratio >= 0.5 else 'MISSED'}\n"
        f"    transfer (download+verify+store): {p['transfer_s']:6.2f} s  {p['transfer_mb_s']:8.1f} MB/s "
        f"= {transfer_ratio:.1%} of cp\n"
        f"    apply (fold {p['pulled_events']:,} events + SQL view, {p['after_pull_calls']} fold call(s)): "
        f"{p['apply_s']:6.2f} s"
    )
    if "profile" in p:
        print(p["profile"])


# ---------------------------------------------------------------- 3. over S3

BUCKET = "oplog-bench"


class MotoProcess:
    """moto's S3 server as a child process on a free loopback port, with the bench's bucket."""

    def __init__(self) -> None:
        import socket

        os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client().create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise
                time.sleep(0.2)

    def client(self) -> Any:
        """A boto3 client for the server (the library oplog's S3 remote uses)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            config=Config(max_pool_connections=16, retries={"total_max_attempts": 1}),
        )

    def remote(self, prefix: str) -> Any:
        """An ``S3Remote`` under ``prefix``."""
        from oplog.remote_s3 import S3Remote

        return S3Remote(BUCKET, prefix, endpoint=self.endpoint)

    def close(self) -> None:
        """Stop the server."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def s3_initial_pull(folder: Path, megabytes: float, seed: int, moto: MotoProcess) -> dict[str, Any]:
    """The initial pull from S3 next to bare concurrent GETs of the same objects and a pull from the folder."""
    from concurrent.futures import ThreadPoolExecutor

    remote_root, total, events = build_remote(folder / "s3pull", megabytes, 4, seed)
    files = sorted(p for p in remote_root.rglob("*") if p.is_file())
    prefix = "pull"
    uploader = moto.remote(prefix)
    for path in files:
        uploader.write_new(path.relative_to(remote_root).as_posix(), path.read_bytes())
    keys = [f"{prefix}/{p.relative_to(remote_root).as_posix()}" for p in files if p.suffix == ".seg"]
    from oplog.remotefetch import read_many

    client = moto.client()
    reader = moto.remote(prefix)
    got = sum(p.stat().st_size for p in files if p.suffix == ".seg")

    def bare() -> int:
        with ThreadPoolExecutor(max_workers=8) as pool:
            return sum(pool.map(lambda k: len(client.get_object(Bucket=BUCKET, Key=k)["Body"].read()), keys))

    def oplog_download() -> int:
        # oplog's download path alone: S3Remote.read over read_many's pool (what sync's pull loop runs).
        paths = [k[len(prefix) + 1 :] for k in keys]
        return sum(len(d or b"") for _, d in read_many(reader.read, paths))

    # Alternated, best of 3 each: the first requests of a run pay for cold connections.
    bare_times: list[float] = []
    download_times: list[float] = []
    for _ in range(3):
        for fn, times in ((bare, bare_times), (oplog_download, download_times)):
            start = time.perf_counter()
            assert fn() == got
            times.append(time.perf_counter() - start)
    bare_s, download_s = min(bare_times), min(download_times)

    def pull(remote: Any, where: str) -> tuple[float, float, RemoteCounts, int]:
        store = open_store(folder / f"fresh-{where}")
        applying = _time_after_pull(store)
        counting = CountingRemote(remote)
        try:
            cost = measure_sync(store, counting)
            pulled = store.state().position
        finally:
            store.close()
        return cost.seconds, cost.seconds - sum(applying), cost.remote, pulled

    s3_s, s3_transfer_s, s3_calls, pulled = pull(moto.remote(prefix), "s3")
    folder_s, folder_transfer_s, _, _ = pull(LocalDirRemote(remote_root), "folder")
    mb = got / 1e6
    return {
        "mb": mb,
        "events": events,
        "pulled_events": pulled,
        "objects": len(keys),
        "bare_get_s": bare_s,
        "bare_get_mb_s": mb / bare_s,
        "download_s": download_s,
        "download_mb_s": mb / download_s,
        "s3_pull_s": s3_s,
        "s3_pull_mb_s": mb / s3_s,
        "s3_transfer_s": s3_transfer_s,
        "s3_transfer_mb_s": mb / max(s3_transfer_s, 1e-9),
        "s3_calls": asdict(s3_calls),
        "folder_pull_s": folder_s,
        "folder_pull_mb_s": mb / folder_s,
        "folder_transfer_mb_s": mb / max(folder_transfer_s, 1e-9),
    }


def print_s3_pull(p: dict[str, Any]) -> None:
    """Print the S3 initial pull figures."""
    ratio = p["download_mb_s"] / p["bare_get_mb_s"]
    c = p["s3_calls"]
    print(
        f"initial pull over S3 of {p['mb']:.1f} MB of segments ({p['objects']} objects, {p['events']:,} events):\n"
        f"  bare boto3 get_object, 8 threads (best of 3): {p['bare_get_s']:6.2f} s {p['bare_get_mb_s']:8.1f} MB/s\n"
        f"  oplog S3Remote.read over read_many(8) (best of 3): {p['download_s']:6.2f} s {p['download_mb_s']:8.1f} MB/s "
        f"= {ratio:.2f}x bare GET (target >= 0.7x): {'met' if ratio >= 0.7 else 'MISSED'}\n"
        f"  oplog pull from S3 (whole sync):  {p['s3_pull_s']:6.2f} s {p['s3_pull_mb_s']:8.1f} MB/s\n"
        f"    transfer (download+verify+store): {p['s3_transfer_s']:6.2f} s {p['s3_transfer_mb_s']:8.1f} MB/s\n"
        f"    requests: {c['lists']} list, {c['reads']} GET, {c['writes']} PUT, {c['deletes']} DELETE\n"
        f"  oplog pull from the same remote as a folder: {p['folder_pull_s']:6.2f} s "
        f"{p['folder_pull_mb_s']:8.1f} MB/s (transfer {p['folder_transfer_mb_s']:.1f} MB/s)"
    )


# ---------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print their figures and ratios."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run (sizes 100,1000; 2 MB pull)")
    parser.add_argument("--sizes", help="history sizes, comma separated (default 1000,10000,100000)")
    parser.add_argument("--rounds", type=int, default=None, help="one-event syncs per size (default 5)")
    parser.add_argument("--pull-mb", type=float, default=None, help="size of the initial pull (default 100)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", help="work folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the initial pull")
    parser.add_argument("--s3", action="store_true", help="also measure both over moto's S3 server")
    parser.add_argument("--s3-only", action="store_true", help="only the S3 measurements")
    args = parser.parse_args(argv)
    default_sizes = "100,1000" if args.quick else "1000,10000,100000"
    sizes = [int(s) for s in (args.sizes or default_sizes).split(",")]
    rounds = args.rounds or (3 if args.quick else 5)
    pull_mb = args.pull_mb or (2.0 if args.quick else 100.0)
    owned = args.dir is None
    folder = Path(args.dir or tempfile.mkdtemp(prefix="oplog-bench-sync-"))
    folder.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore")
    figures: dict[str, Any] = {}
    try:
        if not args.s3_only:
            rows = []
            for events in sizes:
                row = incremental(folder, events, rounds, args.seed)
                print(f"  (history of {events:,} events built and synced to B in {row['build_s']:.1f} s)")
                rows.append(row)
            ratios = print_incremental(rows)
            pull = initial_pull(folder, pull_mb, args.seed, args.profile)
            print_pull(pull)
            figures.update({"incremental": rows, "ratios": ratios, "initial_pull": pull})
        if args.s3 or args.s3_only:
            moto = MotoProcess()
            try:
                s3_rows = []
                for events in sizes:
                    row = incremental(
                        folder / "s3", events, rounds, args.seed, lambda root: moto.remote(root.name)
                    )
                    print(
                        f"  (history of {events:,} events built and synced to B over S3 in {row['build_s']:.1f} s)"
                    )
                    s3_rows.append(row)
                s3_ratios = print_incremental(s3_rows, "S3")
                s3_pull = s3_initial_pull(folder, pull_mb, args.seed, moto)
                print_s3_pull(s3_pull)
            finally:
                moto.close()
            figures.update({"s3_incremental": s3_rows, "s3_ratios": s3_ratios, "s3_initial_pull": s3_pull})
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1, default=_jsonable))
    finally:
        if owned:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def _jsonable(value: object) -> object:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)  # type: ignore[call-overload]
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


if __name__ == "__main__":
    sys.exit(main())
