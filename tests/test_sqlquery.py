"""The query sandbox: reads only, one statement, a time budget, a row cap."""

from __future__ import annotations

from pathlib import Path

import pytest

from oplog.errors import QueryRefused, QueryTimeout, StorageError
from oplog.sqlquery import run_query
from oplog.sqlview import BlocksView
from oplog.tree import Workspace


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
