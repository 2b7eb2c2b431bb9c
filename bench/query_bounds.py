"""Hostile queries against ``oplog serve``: the status each ends with, its time, and the server's peak RSS.

Starts ``oplog serve`` at its defaults (or ``--budget``/``--max-queries``)
over a fresh data directory, then sends the four hostile queries of
``tests/test_sqlquery.py`` one at a time, four at once and eight at once, and
prints each query's status and time, then the server process's ``VmHWM``.
The figures in docs/server.md (*Query bounds*) come from

    python bench/query_bounds.py
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oplog.server.client import Client  # noqa: E402
from oplog.v1 import oplog_pb2 as pb  # noqa: E402
from tests.test_sqlquery import MEMORY_BOMB, PRINTF_LOOP, REPLACE_CTE, TRIM_NM  # noqa: E402

NAMES = {
    PRINTF_LOOP: "printf('%.*c', 2e9, 'x')",
    REPLACE_CTE: "replace(hex(zeroblob)) CTE",
    MEMORY_BOMB: "60 x 16 MB in one row",
    TRIM_NM: "trim(8 MB, 4 KB)",
}


def _vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    """Run the three loads and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=None, help="--query-timeout for the server")
    parser.add_argument("--max-queries", type=int, default=None, help="--max-queries for the server")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="oplog-query-bounds-"))
    extra = []
    if args.budget is not None:
        extra += ["--query-timeout", str(args.budget)]
    if args.max_queries is not None:
        extra += ["--max-queries", str(args.max_queries)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "oplog.tools.cli", "serve", "--data", str(tmp / "data"),
         "--listen", "127.0.0.1:0", "--remote", str(tmp / "remote"), *extra],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        found = re.search(r"listening on (\S+)", first)
        if found is None:
            print(f"oplog serve did not start: {first!r}", file=sys.stderr)
            return 1
        results: list[tuple[str, str, float]] = []
        lock = threading.Lock()
        with Client(found.group(1)) as client:
            client.wait_ready(30)

            def run(sql: str) -> None:
                started = time.monotonic()
                try:
                    client.stub.Query(pb.QueryRequest(sql=sql), timeout=120)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                with lock:
                    results.append((NAMES[sql], code, time.monotonic() - started))

            loads = {
                "one at a time": [[sql] for sql in NAMES],
                "4 at once": [list(NAMES)],
                "8 at once": [list(NAMES) * 2],
            }
            for label, groups in loads.items():
                results.clear()
                for group in groups:
                    threads = [threading.Thread(target=run, args=(sql,)) for sql in group]
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
                print(f"## {label}")
                for name, code, seconds in sorted(results):
                    print(f"  {name:28s} {code:20s} {seconds:.2f} s")
        print(f"server peak RSS (VmHWM): {_vm_hwm_mib(proc.pid):.0f} MiB")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
