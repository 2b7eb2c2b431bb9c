"""Read-only SQL over the ``blocks`` view, sandboxed.

The file is opened with a ``mode=ro`` URI and ``PRAGMA query_only``; an
authorizer allows reading only (SELECT, reads, functions, recursive CTEs and a
few introspection pragmas) and refuses writes, ``ATTACH``/``DETACH``,
transactions and every other pragma; only one statement is accepted. A
progress handler interrupts the query past its time budget (``QueryTimeout``),
and results are cut at ``max_rows`` rows or ``max_bytes`` bytes
(``truncated``), fetched one row at a time so no more than that is ever held.

SQLite's own limits bound what one statement may build: no string or blob
longer than ``max_value_bytes`` (``SQLITE_LIMIT_LENGTH``; a stored value that
is longer cannot be read either, so the default is twice the largest request),
no SQL text longer than ``MAX_SQL_BYTES``; going past one is
``QueryOverLimit``. :func:`set_heap_limit` caps SQLite's memory for a whole
process. What these cannot bound is the time of one virtual-machine step (a
``printf('%.*c', 900000000, 'x')`` loops for seconds inside one step; ``instr``,
``trim`` and ``LIKE`` are O(n·m)); the server therefore runs queries in worker
processes it can kill (``oplog.server.querypool``), with the heap limit set there.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from oplog.errors import QueryOverLimit, QueryRefused, QueryTimeout, StorageError
from oplog.sqlite_readonly import connect_readonly

__all__ = [
    "QueryResult",
    "QueryRunner",
    "run_query",
    "set_heap_limit",
    "READ_PRAGMAS",
    "MAX_VALUE_BYTES",
    "MAX_SQL_BYTES",
]

#: Longest string or blob a query may read or build (requests are at most 16 MiB).
MAX_VALUE_BYTES = 32 << 20
#: Longest SQL text a query may have.
MAX_SQL_BYTES = 1 << 20

#: Pragmas that only describe the schema; any other pragma is refused.
READ_PRAGMAS = frozenset(
    {
        "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
        "foreign_key_list", "collation_list", "function_list", "pragma_list", "database_list",
    }
)  # fmt: skip

_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_REFUSED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
# How many SQLite virtual-machine steps between clock checks.
_STEPS = 2000


@dataclass(frozen=True)
class QueryResult:
    """Column names, rows (tuples of SQLite values), and whether the rows were cut at a cap."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


class QueryRunner(Protocol):
    """What runs a statement against the view file: ``run_query`` here, a worker pool in the server."""

    def __call__(
        self,
        db_path: str | os.PathLike[str],
        sql: str,
        args: Sequence[Any] = (),
        *,
        max_rows: int = ...,
        time_budget_s: float = ...,
    ) -> QueryResult: ...


def _authorizer(refusals: list[str]) -> Callable[[int, str | None, str | None, str | None, str | None], int]:
    def check(action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
        if action in _ALLOWED:
            if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _REFUSED_FUNCTIONS:
                refusals.append(f"function {arg2} is not allowed")
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in READ_PRAGMAS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA:
            refusals.append(f"PRAGMA {arg1} is not allowed")
        elif action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            refusals.append("ATTACH, DETACH and VACUUM are not allowed")
        else:
            refusals.append("only reads are allowed (SELECT)")
        return sqlite3.SQLITE_DENY

    return check


def _convert(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


def _size(value: Any) -> int:
    if isinstance(value, str | bytes):
        return len(value)
    return 8


def set_heap_limit(limit_bytes: int) -> None:
    """Cap the heap SQLite may use in this process (hard limit; the soft limit at half frees caches first).

    Process-wide: meant for a process that only runs queries, where running
    out is that query's failure (``QueryOverLimit``), not a writer's.
    """
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"PRAGMA hard_heap_limit = {int(limit_bytes)}")
        conn.execute(f"PRAGMA soft_heap_limit = {int(limit_bytes) // 2}")
    finally:
        conn.close()


def run_query(
    db_path: str | os.PathLike[str],
    sql: str,
    args: Sequence[Any] = (),
    *,
    max_rows: int = 1000,
    time_budget_s: float = 5.0,
    max_bytes: int = 16 << 20,
    max_value_bytes: int = MAX_VALUE_BYTES,
    clock: Callable[[], float] = time.monotonic,
) -> QueryResult:
    """Run one read-only statement against the view; ``QueryRefused`` / ``QueryTimeout`` otherwise."""
    if not isinstance(sql, str) or not sql.strip():
        raise QueryRefused("empty SQL")
    if max_rows < 0:
        raise QueryRefused("max_rows must not be negative")
    path = Path(db_path)
    if not path.is_file():
        raise StorageError(f"the blocks view {path} does not exist yet")
    try:
        conn = connect_readonly(path)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the blocks view {path}: {exc}") from exc
    deadline = clock() + time_budget_s
    timed_out = [False]

    def progress() -> int:
        if clock() > deadline:
            timed_out[0] = True
            return 1
        return 0

    refusals: list[str] = []
    try:
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max_value_bytes)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_BYTES)
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_authorizer(refusals))
        conn.set_progress_handler(progress, _STEPS)
        try:
            cursor = conn.execute(sql, tuple(args))
            columns = [d[0] for d in cursor.description or ()]
            rows: list[tuple[Any, ...]] = []
            size = 0
            truncated = False
            # One row at a time: a batch of rows near the value limit would hold far more than max_bytes.
            for row in cursor:
                if len(rows) >= max_rows:
                    truncated = True
                    break
                converted = tuple(_convert(v) for v in row)
                size += sum(_size(v) for v in converted)
                if size > max_bytes:
                    truncated = True
                    break
                rows.append(converted)
        except sqlite3.DataError as exc:
            # SQLITE_TOOBIG: a string or blob past max_value_bytes, or SQL past MAX_SQL_BYTES.
            raise QueryOverLimit(
                f"the query went past a size limit ({exc}): strings and blobs at most "
                f"{max_value_bytes} bytes, SQL at most {MAX_SQL_BYTES} bytes"
            ) from exc
        except MemoryError as exc:
            # SQLITE_NOMEM under set_heap_limit, or Python out of memory converting a row.
            raise QueryOverLimit("the query needed more memory than queries may use") from exc
        except sqlite3.OperationalError as exc:
            if timed_out[0] or "interrupted" in str(exc):
                raise QueryTimeout(f"query ran past its time budget of {time_budget_s:g}s") from exc
            raise QueryRefused(refusals[0] if refusals else f"SQL error: {exc}") from exc
        except (sqlite3.ProgrammingError, sqlite3.Warning) as exc:
            if "one statement" in str(exc):
                raise QueryRefused("only one SQL statement is allowed") from exc
            raise QueryRefused(f"SQL error: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            if refusals:
                raise QueryRefused(refusals[0]) from exc
            raise QueryRefused(f"SQL error: {exc}") from exc
        except (OverflowError, ValueError) as exc:
            raise QueryRefused(f"bad query arguments: {exc}") from exc
        return QueryResult(columns, rows, truncated)
    finally:
        conn.close()
