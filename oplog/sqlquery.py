"""Read-only SQL over the ``blocks`` view, sandboxed.

The file is opened with a ``mode=ro`` URI and ``PRAGMA query_only``; an
authorizer allows reading only (SELECT, reads, functions, recursive CTEs and a
few introspection pragmas) and refuses writes, ``ATTACH``/``DETACH``,
transactions and every other pragma; only one statement is accepted. A
progress handler interrupts the query past its time budget (``QueryTimeout``),
and results are cut at ``max_rows`` rows or ``max_bytes`` bytes
(``truncated``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oplog.errors import QueryRefused, QueryTimeout, StorageError
from oplog.sqlite_readonly import connect_readonly

__all__ = ["QueryResult", "run_query", "READ_PRAGMAS"]

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


def run_query(
    db_path: str | os.PathLike[str],
    sql: str,
    args: Sequence[Any] = (),
    *,
    max_rows: int = 1000,
    time_budget_s: float = 5.0,
    max_bytes: int = 16 << 20,
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
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_authorizer(refusals))
        conn.set_progress_handler(progress, _STEPS)
        try:
            cursor = conn.execute(sql, tuple(args))
            columns = [d[0] for d in cursor.description or ()]
            rows: list[tuple[Any, ...]] = []
            size = 0
            truncated = False
            while True:
                batch = cursor.fetchmany(256)
                if not batch:
                    break
                for row in batch:
                    if len(rows) >= max_rows:
                        truncated = True
                        break
                    converted = tuple(_convert(v) for v in row)
                    size += sum(_size(v) for v in converted)
                    if size > max_bytes:
                        truncated = True
                        break
                    rows.append(converted)
                if truncated:
                    break
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
