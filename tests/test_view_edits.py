"""``blocks.db`` edited by hand is noticed (issue 15 item 13): at open (rebuilt, with a warning) and by verify."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from oplog.clock import FakeClock, RandomIds
from oplog.sqlview import VIEW_FILE, edited_outside
from oplog.store import Store
from oplog.verify import verify_data_dir
from oplog.wire import request_from_json
from tests.engine_helpers import BOX, DOC, bid

T0 = 1_721_527_400_000


def _store(path: Path) -> Store:
    return Store.open(path, clock=FakeClock(T0, step_ms=1000), ids=RandomIds(3))


def _fill(path: Path) -> str:
    with _store(path) as store:
        ops = [{"action": "createDoc", "id": DOC, "data": {"box": BOX, "title": "Doc"}}]
        ops += [
            {"action": "appendBlock", "parentID": DOC, "id": bid(n), "dataType": "markdown", "data": f"p{n}"}
            for n in range(1, 4)
        ]
        store.apply(request_from_json({"reqId": 1, "app": "v", "transactions": [{"doOperations": ops}]}))
        store.apply(
            request_from_json(
                {
                    "reqId": 2,
                    "app": "v",
                    "transactions": [
                        {
                            "doOperations": [
                                {"action": "setBlockAttrs", "id": bid(1), "data": {"custom-a": "1"}}
                            ]
                        }
                    ],
                }
            )
        )
        assert store.query("SELECT count(*) FROM blocks").rows[0][0] == 4
    return str(path / VIEW_FILE)


def _rows(view: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(view)
    try:
        return (
            conn.execute("SELECT * FROM blocks ORDER BY id").fetchall()
            + conn.execute("SELECT * FROM attributes ORDER BY id").fetchall()
        )
    finally:
        conn.close()


def test_the_stores_own_writes_are_not_edits(tmp_path: Path) -> None:
    view = _fill(tmp_path / "d")
    assert edited_outside(view) is None
    assert not [f for f in verify_data_dir(tmp_path / "d").findings if f.area == "view"]


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE blocks SET content = 'hacked' WHERE id = '{id}'",
        "DELETE FROM blocks WHERE id = '{id}'",
        "INSERT INTO blocks (id, type) VALUES ('20240101000000-intrude', 'p')",
        "DELETE FROM attributes",
        "INSERT INTO conflicts VALUES ('x', 1, 0, 'a', 'b', 'c')",
    ],
)
def test_a_hand_edit_is_reported_by_verify_and_undone_at_open(
    tmp_path: Path, edit: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "d"
    view = _fill(data)
    good = _rows(view)
    conn = sqlite3.connect(view)
    with conn:
        conn.execute(edit.format(id=bid(2)))
    conn.close()
    assert edited_outside(view) is not None
    findings = [f for f in verify_data_dir(data).findings if f.area == "view"]
    assert len(findings) == 1 and "changed outside oplog" in findings[0].problem
    with caplog.at_level(logging.WARNING, logger="oplog.store"):
        with _store(data) as store:
            assert store.query("SELECT count(*) FROM blocks").rows[0][0] == 4
    assert any("changed outside oplog" in r.getMessage() for r in caplog.records)
    assert _rows(view) == good
    assert edited_outside(view) is None


def test_a_read_of_the_view_is_not_an_edit(tmp_path: Path) -> None:
    view = _fill(tmp_path / "d")
    conn = sqlite3.connect(view)
    conn.execute("SELECT * FROM blocks").fetchall()
    conn.close()
    assert edited_outside(view) is None
