"""Queries run in worker processes the server can kill: bounded in time and memory whatever one step costs.

SQLite checks its progress handler between virtual-machine steps, and its
limits bound the size of a value, but one step can still run for seconds
(``printf('%.*c', 900000000, 'x')`` loops inside one step; ``instr``, ``trim``,
``LIKE`` are O(n·m) on values the length limit allows) and a thread cannot be
stopped from outside. A process can. Each worker is a plain
``python -m oplog.server.querypool`` (no fork of the threaded server), talking
over a socket pair, with SQLite's process-wide heap limit and an address-space
limit set on itself; the server's own memory only ever holds a reply.

``run`` takes a free worker (spawning one if none is idle), waiting for one at
most until the query's budget is spent (then ``QueryOverLimit``, gRPC's
``RESOURCE_EXHAUSTED``); at most ``size`` queries run at once. The worker
enforces the budget itself (``QueryTimeout``); if it has not answered by the
budget plus a grace, it is killed and the query ends with ``QueryTimeout``.
A worker that dies (out of memory) ends its query with ``QueryOverLimit``.

Where no worker can be started at all (the interpreter cannot be re-run by the
server's user, or the process limit is reached) the query still runs, in
process, with the same SQLite limits and progress-handler budget but without
the kill bound; the server logs that once, so an operator can see why.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from oplog.errors import OplogError, QueryOverLimit, QueryTimeout, StorageError
from oplog.sqlquery import QueryResult, run_query, set_heap_limit

_log = logging.getLogger("oplog.server")

__all__ = ["QueryPool", "DEFAULT_QUERY_WORKERS", "DEFAULT_QUERY_MEMORY"]

#: Queries that run at once (one worker process each).
DEFAULT_QUERY_WORKERS = 4
#: SQLite heap per worker process (its address space may be this plus 256 MiB).
DEFAULT_QUERY_MEMORY = 128 << 20
# Python, SQLite and the libraries mapped into a worker, beyond SQLite's own heap (measured ≈ 30 MiB).
_ADDRESS_SPACE_BASE = 256 << 20


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection

    def kill(self) -> None:
        self.conn.close()
        self.process.kill()
        self.process.wait()


def _grace(budget_s: float) -> float:
    """How long past its budget a worker may take to answer before it is killed."""
    return min(1.0, max(0.2, budget_s / 4))


class QueryPool:
    """Up to ``size`` query worker processes; ``run`` has ``oplog.sqlquery.run_query``'s signature."""

    def __init__(
        self,
        size: int = DEFAULT_QUERY_WORKERS,
        *,
        memory_bytes: int = DEFAULT_QUERY_MEMORY,
        max_bytes: int = 16 << 20,
    ) -> None:
        if size < 1:
            raise ValueError("a query pool needs at least one worker")
        self.size = size
        self.memory_bytes = memory_bytes
        self.max_bytes = max_bytes
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._closed = False
        #: Workers killed past their budget or found dead (for tests and stats).
        self.killed = 0
        #: True once a worker could not be started and queries fell back to running in process.
        self._degraded = False

    # ---- workers ----

    def _spawn(self) -> _Worker:
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "oplog.server.querypool",
                    str(theirs.fileno()),
                    str(self.memory_bytes),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        return _Worker(process, Connection(ours.detach()))

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise StorageError("the server is shutting down")
            while self._idle:
                worker = self._idle.pop()
                if worker.process.poll() is None:
                    self._busy.add(worker)
                    return worker
                worker.kill()
        worker = self._spawn()
        with self._lock:
            self._busy.add(worker)
        return worker

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
            if not self._closed:
                self._idle.append(worker)
                return
        worker.kill()

    def _discard(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
            self.killed += 1
        worker.kill()

    # ---- queries ----

    def run(
        self,
        db_path: str | os.PathLike[str],
        sql: str,
        args: Sequence[Any] = (),
        *,
        max_rows: int = 1000,
        time_budget_s: float = 5.0,
    ) -> QueryResult:
        """Run one read-only statement in a worker; ``QueryTimeout`` / ``QueryOverLimit`` / ``QueryRefused``."""
        deadline = time.monotonic() + time_budget_s
        if not self._slots.acquire(timeout=max(0.0, time_budget_s)):
            raise QueryOverLimit(
                f"{self.size} queries are running and none ended within this query's budget; try again later"
            )
        try:
            try:
                worker = self._take()
            except OSError as exc:
                return self._in_process(exc, db_path, sql, args, max_rows, deadline - time.monotonic())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._give_back(worker)
                raise QueryTimeout(f"query ran past its time budget of {time_budget_s:g}s waiting to start")
            job = (os.fspath(db_path), sql, list(args), max_rows, remaining, self.max_bytes)
            try:
                worker.conn.send(job)
                answered = worker.conn.poll(remaining + _grace(time_budget_s))
            except OSError:
                self._discard(worker)
                raise QueryOverLimit("the query worker stopped; try again") from None
            if not answered:
                # Stuck inside one step past the budget and the grace: only a kill ends it.
                self._discard(worker)
                raise QueryTimeout(f"query ran past its time budget of {time_budget_s:g}s")
            try:
                kind, payload = worker.conn.recv()
            except (EOFError, OSError):
                self._discard(worker)
                if self._closed:
                    raise StorageError("the server is shutting down") from None
                raise QueryOverLimit(
                    "the query worker died, most likely out of memory: the query needed more than "
                    f"{self.memory_bytes >> 20} MiB"
                ) from None
            self._give_back(worker)
        finally:
            self._slots.release()
        if kind == "ok":
            result: QueryResult = payload
            return result
        if kind == "error":
            raise payload
        raise RuntimeError(f"query worker failed: {payload}")

    def _in_process(
        self,
        exc: OSError,
        db_path: str | os.PathLike[str],
        sql: str,
        args: Sequence[Any],
        max_rows: int,
        remaining: float,
    ) -> QueryResult:
        """Run a query here when no worker can start: SQLite's limits and the budget still hold."""
        if not self._degraded:
            self._degraded = True
            _log.warning(
                "cannot start a query worker (%s); queries run in the server process, without the kill bound",
                exc.strerror or exc,
            )
        return run_query(
            db_path, sql, args, max_rows=max_rows, time_budget_s=max(0.0, remaining), max_bytes=self.max_bytes
        )

    def close(self) -> None:
        """Stop every worker; running queries end with an error, later ones are refused."""
        with self._lock:
            self._closed = True
            workers = [*self._idle, *self._busy]
            self._idle.clear()
        for worker in workers:
            worker.kill()

    @property
    def running(self) -> int:
        """Queries running in a worker now."""
        with self._lock:
            return len(self._busy)

    @property
    def processes(self) -> list[int]:
        """Process ids of the live workers (for tests and diagnostics)."""
        with self._lock:
            return [w.process.pid for w in (*self._idle, *self._busy)]


# ---- the worker process ----


def _serve(conn: Connection) -> None:
    while True:
        try:
            db_path, sql, args, max_rows, budget, max_bytes = conn.recv()
        except EOFError:
            return
        reply: tuple[str, Any]
        try:
            result = run_query(
                db_path, sql, args, max_rows=max_rows, time_budget_s=budget, max_bytes=max_bytes
            )
            reply = ("ok", result)
        except OplogError as exc:
            reply = ("error", exc)
        except MemoryError:
            reply = ("error", QueryOverLimit("the query needed more memory than queries may use"))
        except Exception as exc:  # a bug: reported, and this worker keeps serving
            reply = ("bug", f"{type(exc).__name__}: {exc}")
        conn.send(reply)


def main(argv: Sequence[str]) -> int:
    """Worker entry point: ``python -m oplog.server.querypool FD MEMORY_BYTES``."""
    # Ctrl-C in a terminal reaches the whole process group: the server decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fd, memory = int(argv[0]), int(argv[1])
    limit = memory + _ADDRESS_SPACE_BASE
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    set_heap_limit(memory)
    conn = Connection(fd)
    try:
        _serve(conn)
    except OSError:
        pass  # the server went away
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
