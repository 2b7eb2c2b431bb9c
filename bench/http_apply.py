"""``/api/transactions`` over HTTP next to gRPC ``Apply`` and a bare Starlette echo, in one run.

Starts a real ``oplog serve`` (gRPC and HTTP on free ports, a fresh data
directory, no boot sync) and, in a second child process, a bare Starlette app
on uvicorn whose one endpoint returns the request body: the ceiling of the
HTTP stack oplog's API sits on. Then, with N client threads (default 8), each
updating its own block, it measures:

* ``http``: ``POST /api/transactions`` with a one-operation ``updateBlock`` body;
* ``grpc``: ``Apply`` with the same request;
* ``echo``: the same body posted to the bare echo endpoint.

Each case reports calls/s, p50 and p99 latency, and the ratio http/grpc.

    python bench/http_apply.py                       # 8 threads, 1,000 calls per case
    python bench/http_apply.py --threads 1,8 --calls 2000 --json

Wall-clock figures on a shared 2-core machine move by tens of percent between
runs, and the Python clients share a core with the servers: read ratios, not
absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx

from oplog import wire
from oplog.v1 import oplog_pb2_grpc as pb_grpc

BOX = "20240720085959-benchbx"


def echo_child() -> None:
    """Serve a bare Starlette echo endpoint on a free port; print the port."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/json")

    # Bound as oplog serve binds its HTTP socket (proto TCP, so asyncio sets TCP_NODELAY).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


def _body(block_id: str, n: int) -> dict[str, Any]:
    op = {"action": "updateBlock", "id": block_id, "data": f"text {n}", "dataType": "markdown"}
    return {"reqId": n, "app": "bench", "session": "s", "transactions": [{"doOperations": [op]}]}


def _run(threads: int, calls: int, one: Callable[[int, int], None]) -> dict[str, Any]:
    latencies: list[list[float]] = [[] for _ in range(threads)]
    per = max(1, calls // threads)

    def worker(t: int) -> None:
        for i in range(per):
            started = time.perf_counter()
            one(t, i)
            latencies[t].append(time.perf_counter() - started)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    began = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    wall = time.perf_counter() - began
    flat = sorted(x for lat in latencies for x in lat)
    return {
        "calls": len(flat),
        "calls_per_s": len(flat) / wall,
        "p50_ms": statistics.median(flat) * 1000,
        "p99_ms": flat[min(len(flat) - 1, int(len(flat) * 0.99))] * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1000, help="measured calls per case (default 1000)")
    parser.add_argument("--threads", default="8", help="client thread counts, comma-separated (default 8)")
    parser.add_argument("--durability", choices=("always", "interval"), default="always")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--echo-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_child:
        echo_child()
        return 0
    thread_counts = [int(x) for x in args.threads.split(",")]
    with tempfile.TemporaryDirectory(prefix="oplog-http-bench-") as tmp:
        data = Path(tmp) / "d"
        serve = subprocess.Popen(
            [sys.executable, "-m", "oplog.tools.cli", "serve", "--data", str(data), "--json", "--listen",
             "127.0.0.1:0", "--http", "127.0.0.1:0", "--no-boot-sync", "--remote", str(Path(tmp) / "r"),
             "--durability", args.durability],
            stdout=subprocess.PIPE, text=True, env={k: v for k, v in os.environ.items() if k != "OPLOG_TOKEN"},
        )  # fmt: skip
        echo = subprocess.Popen([sys.executable, __file__, "--echo-child"], stdout=subprocess.PIPE, text=True)
        try:
            info = json.loads(serve.stdout.readline())  # type: ignore[union-attr]
            echo_url = f"http://127.0.0.1:{int(echo.stdout.readline())}/echo"  # type: ignore[union-attr]
            base = f"http://{info['http']}"
            results = _bench(base, info["listening"], echo_url, thread_counts, args.calls)
        finally:
            for proc in (serve, echo):
                proc.terminate()
                proc.wait(timeout=60)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'threads':>7} {'case':>5} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for row in results:
            print(
                f"{row['threads']:>7} {row['case']:>5} {row['calls_per_s']:>9.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f}"
            )
        for threads in thread_counts:
            by = {r["case"]: r for r in results if r["threads"] == threads}
            ratio = by["http"]["calls_per_s"] / by["grpc"]["calls_per_s"]
            share = by["http"]["calls_per_s"] / by["echo"]["calls_per_s"]
            print(f"{threads} threads: http/grpc = {ratio:.2f}, http/echo = {share:.2f}")
    return 0


def _transport() -> httpx.HTTPTransport:
    # httpx writes the headers and the body in two sends: without TCP_NODELAY the body waits for
    # the server's delayed ACK (~40 ms a call on Linux), which would measure the kernel, not oplog.
    return httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])


def _bench(
    base: str, grpc_address: str, echo_url: str, thread_counts: list[int], calls: int
) -> list[dict[str, Any]]:
    setup = httpx.post(f"{base}/api/filetree/createDocWithMd", json={"notebook": BOX, "path": "/bench", "markdown": "\n\n".join(f"b{i}" for i in range(max(thread_counts)))}, timeout=60).json()  # fmt: skip
    doc = setup["data"]
    children = httpx.post(f"{base}/api/block/getChildBlocks", json={"id": doc}, timeout=60).json()["data"]
    blocks = [c["id"] for c in children]
    results = []
    for threads in thread_counts:
        http_clients = [
            httpx.Client(base_url=base, timeout=60, transport=_transport()) for _ in range(threads)
        ]
        echo_clients = [httpx.Client(timeout=60, transport=_transport()) for _ in range(threads)]
        channels = [grpc.insecure_channel(grpc_address) for _ in range(threads)]
        stubs = [pb_grpc.OpLogStub(ch) for ch in channels]

        def http_one(t: int, i: int, http_clients: list[httpx.Client] = http_clients) -> None:
            reply = http_clients[t].post("/api/transactions", content=json.dumps(_body(blocks[t], i)))
            assert reply.status_code == 200 and reply.json()["code"] == 0, reply.text

        def grpc_one(t: int, i: int, stubs: list[pb_grpc.OpLogStub] = stubs) -> None:
            stubs[t].Apply(wire.request_from_json(_body(blocks[t], i)), timeout=60)

        def echo_one(t: int, i: int, echo_clients: list[httpx.Client] = echo_clients) -> None:
            reply = echo_clients[t].post(echo_url, content=json.dumps(_body(blocks[t], i)))
            assert reply.status_code == 200

        for case, one in (("echo", echo_one), ("grpc", grpc_one), ("http", http_one)):
            _run(threads, min(calls, 100), one)  # warm up
            row = _run(threads, calls, one)
            results.append({"threads": threads, "case": case, **row})
        for c in http_clients + echo_clients:
            c.close()
        for ch in channels:
            ch.close()
    return results


if __name__ == "__main__":
    sys.exit(main())
