"""The query sandbox: reads only, one statement, a time budget, a row cap, size and memory limits, worker processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from oplog import wire
from oplog.errors import OplogError, QueryOverLimit, QueryRefused, QueryTimeout, StorageError
from oplog.server.client import Client
from oplog.server.querypool import QueryPool
from oplog.sqlquery import MAX_SQL_BYTES, run_query
from oplog.sqlview import BlocksView
from oplog.tree import Workspace
from oplog.v1 import oplog_pb2 as pb


@pytest.fixture
def view_path(tmp_path: Path) -> Path:
    path = tmp_path / "blocks.db"
    with BlocksView(path) as view:
        view.rebuild(Workspace(), position=0, state_hash="x")
        view.db.conn.executemany(
            "INSERT INTO blocks (id, type, content) VALUES (?, 'p', ?)",
            [(f"id{i:03d}", f"text {i}") for i in range(50)],
        )
        view.db.conn.commit()
    return path


def test_select_with_args(view_path: Path) -> None:
    result = run_query(view_path, "SELECT id, content FROM blocks WHERE id = ?", ["id007"])
    assert (
        result.columns == ["id", "content"] and result.rows == [("id007", "text 7")] and not result.truncated
    )


def test_row_cap(view_path: Path) -> None:
    result = run_query(view_path, "SELECT id FROM blocks ORDER BY id", max_rows=10)
    assert len(result.rows) == 10 and result.truncated
    assert not run_query(view_path, "SELECT id FROM blocks", max_rows=50).truncated


def test_byte_cap(view_path: Path) -> None:
    result = run_query(view_path, "SELECT content FROM blocks", max_bytes=40)
    assert result.truncated and len(result.rows) < 50


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM blocks",
        "UPDATE blocks SET content = 'x'",
        "INSERT INTO meta VALUES ('a', 'b')",
        "CREATE TABLE t (a)",
        "DROP TABLE blocks",
        "ATTACH DATABASE ':memory:' AS other",
        "DETACH DATABASE main",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA query_only = 0",
        "PRAGMA writable_schema = 1",
        "BEGIN",
        "VACUUM",
        "SELECT 1; SELECT 2",
        "SELECT 1; DELETE FROM blocks",
        "SELECT load_extension('x')",
        "SELEC nonsense",
        "",
    ],
)
def test_refused(view_path: Path, sql: str) -> None:
    with pytest.raises(QueryRefused):
        run_query(view_path, sql)
    assert run_query(view_path, "SELECT count(*) FROM blocks").rows == [(50,)]


def test_schema_pragmas_allowed(view_path: Path) -> None:
    result = run_query(view_path, "PRAGMA table_info(blocks)")
    assert "parent_id" in [row[1] for row in result.rows]


def test_timeout_interrupts(view_path: Path) -> None:
    forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    with pytest.raises(QueryTimeout):
        run_query(view_path, forever, time_budget_s=0.2)


def test_missing_view(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        run_query(tmp_path / "nope.db", "SELECT 1")


# ---- bounded whatever one step costs (issue 15 item 5) ----

# One VM step that loops 2e9 times (≈ 8 s here) even though the value limit makes its result NULL.
PRINTF_LOOP = "SELECT length(printf('%.*c', 2000000000, 'x'))"
# A CTE doubling a string each row: each step is cheap until the value limit ends it.
REPLACE_CTE = (
    "WITH RECURSIVE r(i, s) AS (SELECT 0, hex(zeroblob(1000000)) "
    "UNION ALL SELECT i + 1, replace(s, '0', '00') FROM r WHERE i < 40) SELECT max(length(s)) FROM r"
)
# Sixty 16 MB strings alive at once in one row: ≈ 1 GB unless the heap limit stops it.
MEMORY_BOMB = "SELECT max(" + ", ".join(["length(hex(zeroblob(8000000)) || 'x')"] * 60) + ")"
# trim(X, Y) compares every character of X with every character of Y: O(n·m) in one step.
TRIM_NM = "SELECT length(trim(printf('%.*c', 8000000, 'a'), printf('%.*c', 4000, 'b') || 'a'))"


def test_a_value_past_the_length_limit_is_over_limit(view_path: Path) -> None:
    assert run_query(view_path, "SELECT length(zeroblob(?))", [1 << 20], max_value_bytes=1 << 20).rows == [
        (1 << 20,)
    ]
    with pytest.raises(QueryOverLimit, match="size limit"):
        run_query(view_path, "SELECT length(zeroblob(?))", [(1 << 20) + 1], max_value_bytes=1 << 20)
    with pytest.raises(QueryOverLimit, match="size limit"):
        run_query(view_path, REPLACE_CTE)


def test_sql_past_the_length_limit_is_over_limit(view_path: Path) -> None:
    long_sql = "SELECT 1 WHERE 1 = 1" + " AND 1 = 1" * (MAX_SQL_BYTES // 10)
    with pytest.raises(QueryOverLimit):
        run_query(view_path, long_sql)


def test_a_value_limit_does_not_bound_one_steps_time_so_the_pool_kills_it(view_path: Path) -> None:
    pool = QueryPool(1)
    try:
        # Start the worker first: under load its start-up alone could use up a 0.5 s budget.
        assert pool.run(view_path, "SELECT 1", time_budget_s=60).rows == [(1,)]
        with pytest.raises(QueryTimeout):
            pool.run(view_path, PRINTF_LOOP, time_budget_s=0.5)
        assert pool.killed == 1
        # The next query gets a fresh worker.
        assert pool.run(view_path, "SELECT count(*) FROM blocks").rows == [(50,)]
    finally:
        pool.close()


def test_the_pool_refuses_a_query_past_its_memory_limit_and_goes_on(view_path: Path) -> None:
    pool = QueryPool(1, memory_bytes=64 << 20)
    try:
        with pytest.raises(QueryOverLimit, match="memory"):
            pool.run(view_path, MEMORY_BOMB, time_budget_s=30)
        (worker,) = pool.processes
        # The worker survived its query's failure, having never held much more than its heap limit.
        assert _vm_hwm_kib(worker) < (64 + 100) * 1024
        assert pool.run(view_path, "SELECT id FROM blocks WHERE id = ?", ["id001"]).rows == [("id001",)]
    finally:
        pool.close()


def test_the_pool_passes_refusals_and_arguments_through(view_path: Path) -> None:
    pool = QueryPool(2)
    try:
        with pytest.raises(QueryRefused):
            pool.run(view_path, "DELETE FROM blocks")
        result = pool.run(view_path, "SELECT ?, ?, ?, ?", [1, 2.5, "s", b"\x00b"], max_rows=5)
        assert result.columns == ["?", "?", "?", "?"] and result.rows == [(1, 2.5, "s", b"\x00b")]
        assert len(pool.run(view_path, "SELECT id FROM blocks", max_rows=7).rows) == 7
    finally:
        pool.close()


def test_a_pool_that_cannot_start_a_worker_runs_the_query_in_process(
    view_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A server whose user cannot re-run its interpreter (seen as root's venv run by nobody) still answers.
    not_runnable = tmp_path / "python"
    not_runnable.write_text("")
    not_runnable.chmod(0o644)
    monkeypatch.setattr("sys.executable", str(not_runnable))
    pool = QueryPool(1)
    try:
        assert pool.run(view_path, "SELECT 1 + 1").rows == [(2,)]
        with pytest.raises(QueryRefused):
            pool.run(view_path, "DELETE FROM blocks")
    finally:
        pool.close()
    warnings = [r.getMessage() for r in caplog.records if "cannot start a query worker" in r.getMessage()]
    assert len(warnings) == 1


def test_every_slot_busy_for_the_whole_budget_is_over_limit(view_path: Path) -> None:
    forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    pool = QueryPool(1)
    outcome: list[BaseException] = []

    def hold_the_slot() -> None:
        try:
            pool.run(view_path, forever, time_budget_s=60)
        except BaseException as exc:
            outcome.append(exc)

    holder = threading.Thread(target=hold_the_slot)
    holder.start()
    try:
        for _ in range(600):
            if pool.running:
                break
            threading.Event().wait(0.05)
        assert pool.running == 1
        with pytest.raises(QueryOverLimit, match="1 queries are running"):
            pool.run(view_path, "SELECT 1", time_budget_s=0.3)
    finally:
        pool.close()  # kills the holder's worker: its query ends now, not after 60 s
        holder.join(timeout=60)
    assert len(outcome) == 1 and isinstance(outcome[0], OplogError)


HOSTILE_ROUNDS = 20 if os.environ.get("OPLOG_SOAK") == "1" else 2


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_hostile_queries_against_a_server_process_end_in_budget_and_memory(tmp_path: Path) -> None:
    """Four hostile queries at once, twice over (OPLOG_SOAK=1: 20 times), against ``oplog serve``.

    Asserted: the status codes, a generous time bound, the server process's peak RSS.

    ``pytest -s`` prints the figures; docs/server.md's come from ``bench/query_bounds.py``.
    """
    budget = 1.0
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "oplog.tools.cli", "serve", "--data", str(data), "--listen", "127.0.0.1:0",
         "--remote", str(tmp_path / "remote"), "--query-timeout", str(budget), "--max-queries", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        address = re.search(r"listening on (\S+)", first)
        assert address is not None, first + (proc.stderr.read() if proc.stderr else "")
        # Which limit a query meets first depends on the load: the budget or a size/memory limit.
        either = {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
        expected = {
            PRINTF_LOOP: {grpc.StatusCode.DEADLINE_EXCEEDED},
            REPLACE_CTE: either,
            MEMORY_BOMB: either,
            TRIM_NM: {grpc.StatusCode.DEADLINE_EXCEEDED},
        }
        times: dict[str, list[float]] = {sql: [] for sql in expected}
        codes: dict[str, list[grpc.StatusCode]] = {sql: [] for sql in expected}
        with Client(address.group(1)) as client:
            client.wait_ready(30)

            def run(sql: str) -> None:
                started = time.monotonic()
                try:
                    client.stub.Query(pb.QueryRequest(sql=sql), timeout=60)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    code = exc.code()
                times[sql].append(time.monotonic() - started)
                codes[sql].append(code)

            for _round in range(HOSTILE_ROUNDS):
                threads = [threading.Thread(target=run, args=(sql,)) for sql in expected]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(timeout=120)
            # The server still answers, and a plain query still runs.
            reply = client.stub.Query(pb.QueryRequest(sql="SELECT count(*) FROM blocks"), timeout=30)
            assert [wire.from_value(v) for v in reply.rows[0].values] == [0]
        peak_mib = _vm_hwm_kib(proc.pid) / 1024
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    names = dict(zip(expected, ("printf loop", "replace CTE", "memory bomb", "trim n*m"), strict=True))
    for sql, allowed in expected.items():
        counts = {code.name: codes[sql].count(code) for code in set(codes[sql])}
        print(f"{names[sql]}: {counts}, slowest {max(times[sql]):.2f} s of a {budget:g} s budget")
        assert set(codes[sql]) <= allowed, (names[sql], codes[sql])
        # Generous: the bound is about 1.5x the budget; before the pool these ran 6-30 s.
        assert max(times[sql]) < budget * 1.5 + 3.0, (names[sql], times[sql])
    print(f"server peak RSS (VmHWM): {peak_mib:.0f} MiB")
    assert peak_mib < 400
