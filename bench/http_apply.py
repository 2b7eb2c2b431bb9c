"""``/api/transactions`` over HTTP next to gRPC ``Apply`` and a bare Starlette echo, in one run.

Starts a real ``oplog serve`` (gRPC and HTTP on free ports, a fresh data
directory, no boot sync) and, in a second child process, a bare Starlette app
on uvicorn whose one endpoint returns the request body: the ceiling of the
HTTP stack oplog's API sits on. Then, with N client threads (default 8), each
updating its own block, it measures:

* ``http``: ``POST /api/transactions`` with a one-operation ``updateBlock`` body;
* ``grpc``: ``Apply`` with the same request;
* ``echo``: the same body posted to the bare echo endpoint.

Each case reports calls/s, p50 and p99 latency, the server's CPU per call
(user + system time of the serving process from /proc, so it does not count
the clients' CPU or other work on the machine), and the ratio http/grpc. The
cases run interleaved in ``--rounds`` rounds (echo, grpc, http, echo, …) and
each figure is the median over rounds, so a burst of other work on the
machine lands on all three cases rather than on one.

    python bench/http_apply.py                       # 8 threads, 1,000 calls per case, 3 rounds
    python bench/http_apply.py --threads 1,8 --calls 2000 --rounds 5 --json

Wall-clock figures on a shared 2-core machine move by tens of percent between
runs, and the Python clients share the cores with the servers: read ratios
and the CPU per call, not absolute rates.
"""

from __future__ import annotations

import argparse
import http.client
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


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run(threads: int, calls: int, one: Callable[[int, int], None], pid: int = 0) -> dict[str, Any]:
    latencies: list[list[float]] = [[] for _ in range(threads)]
    per = max(1, calls // threads)

    failures: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(per):
                started = time.perf_counter()
                one(t, i)
                latencies[t].append(time.perf_counter() - started)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, on the measuring thread
            failures.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    cpu_before = _cpu_s(pid) if pid else 0.0
    began = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    if failures:
        raise failures[0]
    wall = time.perf_counter() - began
    cpu = (_cpu_s(pid) - cpu_before) if pid else 0.0
    flat = sorted(x for lat in latencies for x in lat)
    return {
        "calls": len(flat),
        "server_cpu_us_per_call": cpu / len(flat) * 1e6,
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
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds; medians reported (default 3)"
    )
    parser.add_argument(
        "--client",
        choices=("stdlib", "httpx"),
        default="stdlib",
        help="HTTP client for the http and echo cases (default stdlib http.client: less client CPU)",
    )
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
            pids = {"echo": echo.pid, "grpc": serve.pid, "http": serve.pid}
            results = _bench(
                base, info["listening"], echo_url, thread_counts, args.calls, args.rounds, pids, args.client
            )
        finally:
            for proc in (serve, echo):
                proc.terminate()
                proc.wait(timeout=60)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(
            f"{'threads':>7} {'case':>5} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'srv CPU us/call':>16}"
        )
        for row in results:
            print(
                f"{row['threads']:>7} {row['case']:>5} {row['calls_per_s']:>9.0f} {row['p50_ms']:>8.2f} "
                f"{row['p99_ms']:>8.2f} {row['server_cpu_us_per_call']:>16.0f}"
            )
        for threads in thread_counts:
            by = {r["case"]: r for r in results if r["threads"] == threads}
            ratio = by["http"]["calls_per_s"] / by["grpc"]["calls_per_s"]
            share = by["http"]["calls_per_s"] / by["echo"]["calls_per_s"]
            rounds = ", ".join(f"{x:.2f}" for x in by["http"]["http_grpc_by_round"])
            print(f"{threads} threads: http/grpc = {ratio:.2f} (rounds: {rounds}), http/echo = {share:.2f}")
    return 0


class _StdlibClient:
    """A keep-alive ``http.client`` connection: far less client CPU per call than httpx.

    The clients share the 2 cores with the servers, and grpcio's client is C: with httpx the
    HTTP cases measured mostly the Python client (see docs/http.md). Each call sends one
    segment (headers and body together) on a TCP_NODELAY socket.
    """

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url)
        self._conn = http.client.HTTPConnection(parsed.host, parsed.port, timeout=60)
        self._connect()

    def _connect(self) -> None:
        self._conn.close()
        self._conn.connect()
        self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(self, path: str, content: bytes) -> tuple[int, bytes]:
        """POST ``content``; the status and body (reconnecting once if the server closed an idle connection)."""
        for attempt in (0, 1):
            try:
                self._conn.request("POST", path, body=content, headers={"Content-Type": "application/json"})
                reply = self._conn.getresponse()
                return reply.status, reply.read()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                # uvicorn closes a keep-alive connection idle for 5 s (while the other cases ran).
                if attempt:
                    raise
                self._connect()
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def _transport() -> httpx.HTTPTransport:
    # httpx writes the headers and the body in two sends: without TCP_NODELAY the body waits for
    # the server's delayed ACK (~40 ms a call on Linux), which would measure the kernel, not oplog.
    return httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("calls_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_call")
    return {"calls": rows[0]["calls"], "rounds": len(rows)} | {
        k: statistics.median(r[k] for r in rows) for k in keys
    }


PostFn = Callable[[int, str, bytes], tuple[int, bytes]]


def _posters(
    client: str, base: str, echo_url: str, threads: int
) -> tuple[PostFn, PostFn, list[Callable[[], None]]]:
    """One HTTP connection per client thread to the API and to the echo: two post functions and closers."""
    if client == "httpx":
        hx_http = [httpx.Client(base_url=base, timeout=60, transport=_transport()) for _ in range(threads)]
        hx_echo = [
            httpx.Client(base_url=echo_url.rsplit("/", 1)[0], timeout=60, transport=_transport())
            for _ in range(threads)
        ]

        def hx_post(clients: list[httpx.Client]) -> PostFn:
            def post(t: int, path: str, content: bytes) -> tuple[int, bytes]:
                reply = clients[t].post(path, content=content)
                return reply.status_code, reply.content

            return post

        return hx_post(hx_http), hx_post(hx_echo), [c.close for c in hx_http + hx_echo]
    std_http = [_StdlibClient(base) for _ in range(threads)]
    std_echo = [_StdlibClient(echo_url) for _ in range(threads)]

    def std_post(clients: list[_StdlibClient]) -> PostFn:
        return lambda t, path, content: clients[t].post(path, content)

    return std_post(std_http), std_post(std_echo), [c.close for c in std_http + std_echo]


def _bench_threads(
    threads: int,
    blocks: list[str],
    base: str,
    grpc_address: str,
    echo_url: str,
    calls: int,
    rounds: int,
    pids: dict[str, int],
    client: str,
) -> list[dict[str, Any]]:
    post_http, post_echo, closers = _posters(client, base, echo_url, threads)
    echo_path = httpx.URL(echo_url).path
    channels = [grpc.insecure_channel(grpc_address) for _ in range(threads)]
    stubs = [pb_grpc.OpLogStub(ch) for ch in channels]

    def http_one(t: int, i: int) -> None:
        status, body = post_http(t, "/api/transactions", json.dumps(_body(blocks[t], i)).encode())
        assert status == 200 and json.loads(body)["code"] == 0, body

    def grpc_one(t: int, i: int) -> None:
        stubs[t].Apply(wire.request_from_json(_body(blocks[t], i)), timeout=60)

    def echo_one(t: int, i: int) -> None:
        status, _reply = post_echo(t, echo_path, json.dumps(_body(blocks[t], i)).encode())
        assert status == 200

    cases = (("echo", echo_one), ("grpc", grpc_one), ("http", http_one))
    try:
        for _case, one in cases:
            _run(threads, min(calls, 100), one)  # warm up
        rows: dict[str, list[dict[str, Any]]] = {case: [] for case, _ in cases}
        for _round in range(max(1, rounds)):
            for case, one in cases:
                rows[case].append(_run(threads, calls, one, pids[case]))
    finally:
        for close in closers:
            close()
        for ch in channels:
            ch.close()
    results = [{"threads": threads, "case": case, **_median_row(rows[case])} for case, _ in cases]
    results[-1]["http_grpc_by_round"] = [
        h["calls_per_s"] / g["calls_per_s"] for h, g in zip(rows["http"], rows["grpc"], strict=True)
    ]
    return results


def _bench(
    base: str,
    grpc_address: str,
    echo_url: str,
    thread_counts: list[int],
    calls: int,
    rounds: int,
    pids: dict[str, int],
    client: str = "stdlib",
) -> list[dict[str, Any]]:
    setup = httpx.post(f"{base}/api/filetree/createDocWithMd", json={"notebook": BOX, "path": "/bench", "markdown": "\n\n".join(f"b{i}" for i in range(max(thread_counts)))}, timeout=60).json()  # fmt: skip
    doc = setup["data"]
    children = httpx.post(f"{base}/api/block/getChildBlocks", json={"id": doc}, timeout=60).json()["data"]
    blocks = [c["id"] for c in children]
    results = []
    for threads in thread_counts:
        results += _bench_threads(threads, blocks, base, grpc_address, echo_url, calls, rounds, pids, client)
    return results


if __name__ == "__main__":
    sys.exit(main())
