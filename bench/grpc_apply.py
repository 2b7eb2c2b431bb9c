"""Durable ``Apply`` over gRPC against the echo ceiling of the same server stack.

Runs a server in a child process (its own interpreter, so client and server
do not share a GIL): the real ``oplog.v1.OpLog`` service over a fresh store,
with the same interceptor, thread pool and options, plus bench-only methods
(generic handlers defined here, not in the product proto), each sent the
bytes of an Apply request:

* ``echo`` returns them: the ceiling of the gRPC stack;
* ``log`` also appends them durably to a group-committed device log;
* ``floor`` also rewrites one row of a ``blocks.db`` with the view's pragmas
  before replying: the least a durable Apply that a ``sqlite3`` reader sees
  at once can cost, with no engine (see ``Floor``).

Then, with 1 and with 8 client threads, it measures those and a durable
one-operation ``Apply``: throughput, p50, p99, each one's share of the echo
ceiling, and the CPU time per call of the server and of the client process.

    python bench/grpc_apply.py                 # defaults: 2,000 calls per case
    python bench/grpc_apply.py --calls 5000 --durability interval --json
    python bench/grpc_apply.py --calls 400 --callgrind   # server instructions per call

Wall-clock figures on a shared machine move by tens of percent between runs;
``--callgrind`` counts the server's instructions instead, which do not.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
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

DOC = "20240720090000-benchdc"
BOX = "20240720085959-benchbx"
#: The bench-only methods, by case name (``apply`` is the product's ``Apply``).
METHODS = {"echo": "/bench.Echo/Echo", "log": "/bench.Echo/Log", "floor": "/bench.Echo/Floor"}
CPU_METHOD = "/bench.Echo/Cpu"
#: The one ``blocks`` row the floor case rewrites.
FLOOR_ROW = "20240720090001-floorrw"


class Floor:
    """What a durable, visible Apply must cost at least, with the engine left out.

    ``log``: the echo plus a durable append of the request bytes to a
    group-committed device log (``DeviceLog.append`` + ``wait_durable``, as
    ``Store.apply`` does). ``floor``: that, then one row of a ``blocks``
    table with the blocks view's schema and pragmas (``BlocksView``: WAL,
    ``synchronous=OFF``) rewritten before the reply, batched as the store
    batches its view writes: the first request back from the fsync writes
    the rows of every request waiting so far in one SQLite transaction. What
    "durable before the acknowledgement, visible to a reader of blocks.db
    after it" costs with no request parsing, engine, state hash or change
    feed.
    """

    def __init__(self, folder: Path, durability: str) -> None:
        from oplog.devicelog import DeviceLog
        from oplog.sqlview import VIEW_FILE, BlocksView

        self.log = DeviceLog.open(folder / "log", "f100f100f100f100", durability=durability)
        self.view = BlocksView(folder / VIEW_FILE)
        self.conn = self.view.db.conn
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO blocks (id, markdown) VALUES (?, '')", (FLOOR_ROW,))
        self.lock = threading.Lock()
        self.rows: list[tuple[bytes, str]] = []  # waiting for the next view write
        self.written = 0  # requests whose row is in the file

    def durable(self, request: bytes, _context: grpc.ServicerContext) -> bytes:
        self.log.wait_durable(self.log.append([request]))
        return request

    def visible(self, request: bytes, _context: grpc.ServicerContext) -> bytes:
        with self.lock:
            seq = self.log.append([request])
            self.rows.append((request, FLOOR_ROW))
        self.log.wait_durable(seq)
        with self.lock:
            if self.written < seq:
                self.conn.executemany("UPDATE blocks SET markdown = ? WHERE id = ?", self.rows)
                self.conn.commit()
                self.rows = []
                self.written = self.log.last_seq
        return request

    def close(self) -> None:
        self.log.close()
        self.view.close()


def _bench_handler(floor: Floor) -> grpc.GenericRpcHandler:
    def echo(request: bytes, _context: grpc.ServicerContext) -> bytes:
        return request

    def cpu(_request: bytes, _context: grpc.ServicerContext) -> bytes:
        # The server process's CPU seconds and context switches so far (all threads).
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return f"{time.process_time()!r} {usage.ru_nvcsw + usage.ru_nivcsw}".encode()

    handlers = {"Echo": echo, "Log": floor.durable, "Floor": floor.visible, "Cpu": cpu}
    return grpc.method_handlers_generic_handler(
        "bench.Echo", {name: grpc.unary_unary_rpc_method_handler(f) for name, f in handlers.items()}
    )


def _server_cpu(address: str) -> tuple[float, int]:
    """The server's CPU seconds and context switches so far."""
    with Client(address) as c:
        cpu, switches = c.channel.unary_unary(CPU_METHOD)(b"", timeout=30).split()
    return float(cpu), int(switches)


def serve_child(data: str, floor_dir: str, durability: str, workers: int) -> None:
    """Child process: open a store, serve it plus the bench methods, print the port, run until stdin closes."""
    from oplog.clock import RandomIds, SystemClock
    from oplog.server.app import start_server, tune_gc
    from oplog.store import Store, StoreOptions

    store = Store.open(
        data, options=StoreOptions(durability=durability), clock=SystemClock(), ids=RandomIds()
    )
    floor = Floor(Path(floor_dir), durability)
    running = start_server(
        store, listen="127.0.0.1:0", workers=workers, extra_handlers=[_bench_handler(floor)]
    )
    tune_gc()  # as ``oplog serve`` does
    print(running.port, flush=True)
    sys.stdin.read()
    running.stop(grace=5)
    floor.close()
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


class Callgrind:
    """Counts the server's instructions per case: the child runs under ``valgrind --tool=callgrind``.

    Instruction counts do not depend on what else the machine runs, so a
    change can be judged on a shared machine where wall-clock figures move by
    tens of percent. (valgrind runs one thread at a time, so wall-clock
    figures, and how many requests share a group commit, mean little here.)
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.pid = 0

    def command(self) -> list[str]:
        """The prefix that runs the child under callgrind."""
        return [
            "valgrind",
            "--tool=callgrind",
            "--dump-instr=no",
            f"--callgrind-out-file={self.folder}/cg.out",
        ]

    def zero(self) -> None:
        """Forget what was counted so far (start-up, set-up, warm-up)."""
        subprocess.run(["callgrind_control", "-z", str(self.pid)], check=True, capture_output=True)

    def dump(self, label: str) -> int:
        """Instructions counted since ``zero``."""
        subprocess.run(["callgrind_control", "-d", label, str(self.pid)], check=True, capture_output=True)
        for path in sorted(Path(self.folder).glob("cg.out.*"), key=lambda p: p.stat().st_mtime, reverse=True):
            text = path.read_text()
            if f"desc: Trigger: dump {label}\n" in text:
                found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
                if found:
                    return int(found.group(1))
        raise RuntimeError(f"no callgrind dump for {label} in {self.folder}")


def _run_case(
    address: str,
    kind: str,
    threads: int,
    calls: int,
    warmup: int,
    op: str,
    callgrind: Callgrind | None = None,
) -> dict[str, Any]:
    per_thread = calls // threads
    latencies: list[list[float]] = [[] for _ in range(threads)]
    # Warm-ups end at ``ready``; the counters are read (or zeroed); all threads start at ``go``.
    ready = threading.Barrier(threads + 1)
    go = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            with Client(address) as c:
                # The bench methods are sent the bytes of an Apply request like the ones Apply gets.
                call = c.channel.unary_unary(METHODS.get(kind, METHODS["echo"]))
                payload = _apply_request(t * 10_000_000, op).SerializeToString()

                def one(n: int) -> None:
                    if kind == "apply":
                        c.stub.Apply(_apply_request(n, op), timeout=300)
                    else:
                        call(payload, timeout=300)

                for i in range(warmup):
                    one(t * 10_000_000 + i)
                ready.wait()
                go.wait()
                out = latencies[t]
                for i in range(per_thread):
                    started = time.perf_counter()
                    one(t * 10_000_000 + warmup + i)
                    out.append(time.perf_counter() - started)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)
            ready.abort()
            go.abort()

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    try:
        ready.wait()
        server_cpu, server_switches = _server_cpu(address)
        if callgrind is not None:
            callgrind.zero()
        client_cpu = time.process_time()
        go.wait()
    except threading.BrokenBarrierError:
        pass
    started = time.perf_counter()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    client_cpu = time.process_time() - client_cpu
    instructions = callgrind.dump(f"{kind}{threads}") if callgrind is not None else 0
    cpu_after, switches_after = _server_cpu(address)
    server_cpu = cpu_after - server_cpu
    server_switches = switches_after - server_switches
    flat = sorted(x for per in latencies for x in per)
    q = statistics.quantiles(flat, n=100)
    return {
        "kind": kind,
        "threads": threads,
        "calls": len(flat),
        "per_s": len(flat) / elapsed,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        # CPU per call (all threads of the process), less noisy than wall clock on a shared machine.
        "server_cpu_ms": server_cpu / len(flat) * 1000,
        "client_cpu_ms": client_cpu / len(flat) * 1000,
        "server_switches": server_switches / len(flat),
        "server_minstr": instructions / len(flat) / 1e6,
    }


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per case (default 2000)")
    parser.add_argument(
        "--warmup", type=int, default=50, help="unmeasured calls per thread first (default 50)"
    )
    parser.add_argument("--threads", default="1,8", help="client thread counts (default 1,8)")
    parser.add_argument(
        "--cases",
        default="echo,log,floor,apply",
        help="cases in the order run, echo first (default echo,log,floor,apply): "
        "log = echo + durable append of the request bytes; floor = log + a one-row blocks.db write",
    )
    parser.add_argument("--durability", choices=("always", "interval"), default="always")
    parser.add_argument(
        "--op",
        choices=("update", "append"),
        default="update",
        help="update: each thread rewrites its own paragraph (steady state, default); "
        "append: paragraphs appended to one growing document",
    )
    parser.add_argument("--workers", type=int, default=32, help="server worker threads (default 32)")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="run the server under valgrind's callgrind and report its instructions per call "
        "(machine-independent; use a few hundred calls: everything runs ~50x slower)",
    )
    parser.add_argument("--data", help="data directory (default: a fresh temporary one)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.cases = args.cases.split(",")
    if args.cases[0] != "echo" or not set(args.cases) <= {"echo", "apply", *METHODS}:
        parser.error(f"--cases: echo first, then any of log, floor, apply; got {','.join(args.cases)}")
    return args


def _run_all(args: argparse.Namespace, address: str, callgrind: Callgrind | None) -> list[dict[str, Any]]:
    """Every case with every client thread count; each case's share of the echo of the same count."""
    results = []
    for threads in (int(x) for x in args.threads.split(",")):
        echo = _run_case(address, "echo", threads, args.calls, args.warmup, args.op, callgrind)
        results.append(echo)
        for kind in args.cases[1:]:
            r = _run_case(address, kind, threads, args.calls, args.warmup, args.op, callgrind)
            r["of_echo"] = r["per_s"] / echo["per_s"]
            if callgrind:
                r["of_echo_instr"] = echo["server_minstr"] / r["server_minstr"]
            results.append(r)
    return results


def _print_table(results: list[dict[str, Any]], callgrind: bool) -> None:
    if callgrind:
        print("| rpc | client threads | server M instructions/call | echo/rpc (instructions) |")
        print("|---|---:|---:|---:|")
        for r in results:
            share = f"{r['of_echo_instr']:.0%}" if "of_echo_instr" in r else ""
            print(f"| {r['kind']} | {r['threads']} | {r['server_minstr']:.3f} | {share} |")
        return
    print(
        "| rpc | client threads | calls/s | p50 ms | p99 ms | share of echo | p99/p50 "
        "| server CPU ms/call | client CPU ms/call | server context switches/call |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        share = f"{r['of_echo']:.0%}" if "of_echo" in r else ""
        print(
            f"| {r['kind']} | {r['threads']} | {r['per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {share} | {r['p99_ms'] / r['p50_ms']:.2f} | {r['server_cpu_ms']:.3f} | {r['client_cpu_ms']:.3f} "
            f"| {r['server_switches']:.1f} |"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table (or JSON)."""
    args = _parse_args(argv)
    if args.serve_child:
        serve_child(args.data, args.floor_dir, args.durability, args.workers)
        return 0

    with tempfile.TemporaryDirectory(
        prefix="oplog-bench-", dir=args.data and str(Path(args.data).parent)
    ) as tmp:
        data = args.data or str(Path(tmp) / "data")
        callgrind = Callgrind(tmp) if args.callgrind else None
        child = subprocess.Popen(
            [
                *(callgrind.command() if callgrind else []),
                sys.executable,
                __file__,
                "--serve-child",
                "--data",
                data,
                "--floor-dir",
                str(Path(tmp) / "floor"),
                "--durability",
                args.durability,
                "--workers",
                str(args.workers),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if callgrind else None,
            text=True,
        )
        if callgrind:
            callgrind.pid = child.pid
        try:
            port = int(child.stdout.readline())  # type: ignore[union-attr]
            address = f"127.0.0.1:{port}"
            with Client(address) as c:
                c.stub.Apply(_setup_request(), timeout=300)
            results = _run_all(args, address, callgrind)
        finally:
            child.stdin.close()  # type: ignore[union-attr]
            child.wait(timeout=600)

    if args.json:
        print(json.dumps({"op": args.op, "durability": args.durability, "results": results}, indent=2))
        return 0
    print(
        f"op={args.op}, durability={args.durability}, {args.calls} calls per case, server workers={args.workers}"
    )
    _print_table(results, callgrind is not None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
