"""Durable ``Apply`` over gRPC against the echo ceiling of the same server stack.

Runs a server in a child process (its own interpreter, so client and server
do not share a GIL): the real ``oplog.v1.OpLog`` service over a fresh store,
with the same interceptor, thread pool and options, plus a bench-only
``/bench.Echo/Echo`` method that returns its request bytes. Then, with 1 and
with 8 client threads, it measures the echo (sent the same bytes as an Apply
request) and a durable one-operation ``Apply``: throughput, p50, p99, and
Apply's share of the echo ceiling.

    python bench/grpc_apply.py                 # defaults: 2,000 calls per case
    python bench/grpc_apply.py --calls 5000 --durability interval --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from oplog import wire
from oplog.server.client import Client
from oplog.v1 import oplog_pb2 as pb

ECHO_METHOD = "/bench.Echo/Echo"
DOC = "20240720090000-benchdc"
BOX = "20240720085959-benchbx"


def _echo_handler() -> grpc.GenericRpcHandler:
    def echo(request: bytes, _context: grpc.ServicerContext) -> bytes:
        return request

    return grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )


def serve_child(data: str, durability: str, workers: int) -> None:
    """Child process: open a store, serve it plus the echo method, print the port, run until stdin closes."""
    from oplog.clock import RandomIds, SystemClock
    from oplog.server.app import start_server, tune_gc
    from oplog.store import Store, StoreOptions

    store = Store.open(
        data, options=StoreOptions(durability=durability), clock=SystemClock(), ids=RandomIds()
    )
    running = start_server(store, listen="127.0.0.1:0", workers=workers, extra_handlers=[_echo_handler()])
    tune_gc()  # as ``oplog serve`` does
    print(running.port, flush=True)
    sys.stdin.read()
    running.stop(grace=5)
    store.close()


#: Blocks the ``update`` workload rewrites (one per client thread, at most 64 threads).
TARGETS = [f"20240720090001-bench{t:02d}" for t in range(64)]


def _apply_request(n: int, op: str = "update") -> pb.ApplyRequest:
    """One transaction of one operation: rewrite the thread's paragraph, or append a new one."""
    if op == "update":
        operation = {
            "action": "updateBlock",
            "id": TARGETS[n // 10_000_000],
            "dataType": "markdown",
            "data": f"bench {n}",
        }
    else:
        operation = {"action": "appendBlock", "parentID": DOC, "dataType": "markdown", "data": f"bench {n}"}
    return wire.request_from_json(
        {"reqId": n, "app": "bench", "transactions": [{"doOperations": [operation]}]}
    )


def _setup_request() -> pb.ApplyRequest:
    ops: list[dict[str, Any]] = [{"action": "createDoc", "id": DOC, "data": {"box": BOX, "title": "bench"}}]
    ops += [
        {"action": "appendBlock", "parentID": DOC, "id": target, "dataType": "markdown", "data": "start"}
        for target in TARGETS
    ]
    return wire.request_from_json({"transactions": [{"doOperations": ops}]})


def _run_case(address: str, kind: str, threads: int, calls: int, warmup: int, op: str) -> dict[str, Any]:
    per_thread = calls // threads
    latencies: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            with Client(address) as c:
                if kind == "echo":
                    call = c.channel.unary_unary(ECHO_METHOD)
                    payload = _apply_request(t * 10_000_000, op).SerializeToString()

                    def one(_n: int) -> None:
                        call(payload, timeout=30)

                else:

                    def one(n: int) -> None:
                        c.stub.Apply(_apply_request(n, op), timeout=30)

                for i in range(warmup):
                    one(t * 10_000_000 + i)
                barrier.wait()
                out = latencies[t]
                for i in range(per_thread):
                    started = time.perf_counter()
                    one(t * 10_000_000 + warmup + i)
                    out.append(time.perf_counter() - started)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)
            barrier.abort()

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    barrier.wait()
    started = time.perf_counter()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    flat = sorted(x for per in latencies for x in per)
    q = statistics.quantiles(flat, n=100)
    return {
        "kind": kind,
        "threads": threads,
        "calls": len(flat),
        "per_s": len(flat) / elapsed,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table (or JSON)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per case (default 2000)")
    parser.add_argument(
        "--warmup", type=int, default=50, help="unmeasured calls per thread first (default 50)"
    )
    parser.add_argument("--threads", default="1,8", help="client thread counts (default 1,8)")
    parser.add_argument("--durability", choices=("always", "interval"), default="always")
    parser.add_argument(
        "--op",
        choices=("update", "append"),
        default="update",
        help="update: each thread rewrites its own paragraph (steady state, default); "
        "append: paragraphs appended to one growing document",
    )
    parser.add_argument("--workers", type=int, default=32, help="server worker threads (default 32)")
    parser.add_argument("--data", help="data directory (default: a fresh temporary one)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_child:
        serve_child(args.data, args.durability, args.workers)
        return 0

    with tempfile.TemporaryDirectory(
        prefix="oplog-bench-", dir=args.data and str(Path(args.data).parent)
    ) as tmp:
        data = args.data or str(Path(tmp) / "data")
        child = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve-child",
                "--data",
                data,
                "--durability",
                args.durability,
                "--workers",
                str(args.workers),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            port = int(child.stdout.readline())  # type: ignore[union-attr]
            address = f"127.0.0.1:{port}"
            with Client(address) as c:
                c.stub.Apply(_setup_request(), timeout=30)
            results = []
            for threads in (int(x) for x in args.threads.split(",")):
                echo = _run_case(address, "echo", threads, args.calls, args.warmup, args.op)
                apply = _run_case(address, "apply", threads, args.calls, args.warmup, args.op)
                apply["of_echo"] = apply["per_s"] / echo["per_s"]
                apply["p99_over_p50"] = apply["p99_ms"] / apply["p50_ms"]
                results += [echo, apply]
        finally:
            child.stdin.close()  # type: ignore[union-attr]
            child.wait(timeout=60)

    if args.json:
        print(json.dumps({"op": args.op, "durability": args.durability, "results": results}, indent=2))
        return 0
    print(
        f"op={args.op}, durability={args.durability}, {args.calls} calls per case, server workers={args.workers}"
    )
    print("| rpc | client threads | calls/s | p50 ms | p99 ms | share of echo | p99/p50 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        share = f"{r['of_echo']:.0%}" if "of_echo" in r else ""
        ratio = f"{r['p99_over_p50']:.2f}" if "p99_over_p50" in r else f"{r['p99_ms'] / r['p50_ms']:.2f}"
        print(
            f"| {r['kind']} | {r['threads']} | {r['per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {share} | {ratio} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
