"""Benchmark: ``oplog watch``'s added latency from a commit to the start of a sync.

A real daemon (``oplog watch --json --verbose``) watches a fresh data directory;
this process commits one transaction at a time and reads the time the daemon
logged for the start of the sync that commit triggered. Added latency =
sync start − commit − debounce window. Target: ≤ 100 ms.

``--mode local``: the commit is ``Store.open`` + ``apply`` + ``close`` in this
process (the daemon holds the writer's lock only while it syncs); the commit time
is when ``apply`` returned (the bytes were written, and fsynced, inside it), and
the figures "from before apply" count the apply itself too.
``--mode server``: an ``oplog serve`` holds the directory, the commit is a gRPC
``Apply`` and the daemon syncs through ``PerformSync``.

Between commits it waits for the sync to end and for a quiet pause, so each
commit starts its own debounce window.

    python bench/watch.py [--mode local|server] [--commits 20] [--debounce 0.5]
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from oplog.v1 import oplog_pb2 as pb

BOX = "20240101000000-notebk1"


def _request(i: int) -> pb.ApplyRequest:
    from oplog.wire import request_from_json

    return request_from_json(
        {
            "reqId": i,
            "app": "bench",
            "transactions": [
                {
                    "doOperations": [
                        {
                            "action": "createDoc",
                            "id": f"20240101000000-{i:07d}",
                            "data": {"box": BOX, "title": f"T{i}"},
                        }
                    ]
                }
            ],
        }
    )


class Child:
    """A child process whose stdout lines arrive in a queue."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True).start()

    @staticmethod
    def _pump(stream: Any, out: queue.Queue[str]) -> None:
        for line in stream:
            out.put(line.rstrip("\n"))

    def next_line(self, q: queue.Queue[str], timeout: float = 60.0) -> str:
        """The next line of ``q`` (stdout or stderr); exits when the child says nothing in time."""
        try:
            return q.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            sys.exit(f"no output from {self.proc.args[3]} within {timeout:g}s")

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "oplog.tools.cli", *args]


def _record(child: Child, event: str) -> dict[str, Any]:
    while True:
        record = json.loads(child.next_line(child.lines))
        if record["event"] == event:
            return record  # type: ignore[no-any-return]


def run(mode: str, commits: int, debounce: float, pause: float) -> dict[str, Any]:
    """Time ``commits`` commits; the added latencies in milliseconds."""
    warnings.simplefilter("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="oplog-bench-watch-"))
    data, remote = tmp / "data", tmp / "remote"
    server: Child | None = None
    address = ""
    if mode == "server":
        server = Child(
            _cli("serve", "--data", str(data), "--remote", str(remote), "--listen", "127.0.0.1:0"), tmp
        )
        match = re.search(r"listening on (\S+)", server.next_line(server.lines))
        if not match:
            sys.exit("oplog serve did not start")
        address = match.group(1)
    daemon = Child(
        _cli(
            "watch",
            "--data",
            str(data),
            "--remote",
            str(remote),
            "--debounce",
            str(debounce),
            "--interval",
            "0",
            "--json",
            "--verbose",
        ),
        tmp,
    )
    while "watching" not in daemon.next_line(daemon.err):
        pass
    _record(daemon, "sync")  # the start-up sync
    after: list[float] = []
    before: list[float] = []
    try:
        for i in range(1, commits + 1):
            time.sleep(pause)
            if mode == "server":
                from oplog.server.client import Client

                with Client(address) as client:
                    t0 = time.time()
                    client.stub.Apply(_request(i), timeout=30)
                    t1 = time.time()
            else:
                from oplog.store import Store, StoreOptions

                with Store.open(data, options=StoreOptions(lock_timeout_s=30)) as store:
                    t0 = time.time()
                    store.apply(_request(i))
                    t1 = time.time()
            start = _record(daemon, "start")
            end = _record(daemon, "sync")
            if end["result"] != "ok" or end["pushed_segments"] < 1:
                sys.exit(f"commit {i}: unexpected sync {end}")
            after.append((start["ts"] - t1 - debounce) * 1000)
            before.append((start["ts"] - t0 - debounce) * 1000)
    finally:
        daemon.stop()
        if server is not None:
            server.stop()
    return {"after_apply_ms": after, "before_apply_ms": before}


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return (
        f"median {statistics.median(ordered):6.1f}  p90 {p90:6.1f}  max {ordered[-1]:6.1f}  "
        f"min {ordered[0]:6.1f}"
    )


def main() -> None:
    """Run and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("local", "server"), default="local")
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--debounce", type=float, default=0.5)
    parser.add_argument(
        "--pause", type=float, default=0.3, help="quiet seconds between a sync and the next commit"
    )
    args = parser.parse_args()
    figures = run(args.mode, args.commits, args.debounce, args.pause)
    print(f"oplog watch, mode {args.mode}, debounce {args.debounce:g}s, {args.commits} commits")
    print("added latency (sync start - commit - debounce), ms:")
    print(f"  from the end of apply    {_summary(figures['after_apply_ms'])}")
    print(f"  from before apply        {_summary(figures['before_apply_ms'])}")
    worst = max(figures["after_apply_ms"])
    print(f"target <= 100 ms: {'met' if worst <= 100 else 'NOT met'} (worst {worst:.1f} ms)")


if __name__ == "__main__":
    main()
