"""The blocks view: SiYuan's columns and meanings, incremental == rebuild, meta, conflicts, concurrent readers."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oplog.checkpoint import ConflictRecord
from oplog.clock import FakeClock, RandomIds
from oplog.engine import Engine, apply_event
from oplog.kramdown import plain_text
from oplog.merge import merge_events
from oplog.sqlview import BLOCK_COLUMNS, BlocksView, _leaf_text, sort_weight
from oplog.tree import Workspace
from oplog.wire import request_from_json
from tests.workload import simulate

ROOT = "20240720090000-rootdoc"
A, H, M, Q, L = (
    "20240721100000-a1b2c3d",
    "20240721101100-h2h2h2h",
    "20240720093000-m1n2b3v",
    "20240721100512-q7w8e9r",
    "20240721101000-l1i2t3m",
)


def _rows(view: BlocksView) -> dict[str, dict[str, Any]]:
    cur = view.db.conn.execute(f"SELECT {', '.join(BLOCK_COLUMNS)} FROM blocks")
    return {row[0]: dict(zip(BLOCK_COLUMNS, row, strict=True)) for row in cur}


def _example_engine(examples_dir: Path, upto: str) -> Engine:
    engine = Engine(Workspace(), FakeClock(), RandomIds(1))
    for path in sorted(examples_dir.glob("0*.json")):
        req = request_from_json(json.loads(path.read_text()))
        engine.clock.ms = req.req_id  # type: ignore[attr-defined]
        engine.apply_request(req)
        if path.name.startswith(upto):
            break
    return engine


def test_examples_columns(examples_dir: Path, tmp_path: Path) -> None:
    engine = _example_engine(examples_dir, "04")
    with BlocksView(tmp_path / "blocks.db") as view:
        view.rebuild(engine.ws, position=7, state_hash="abc")
        rows = _rows(view)
        doc = rows[ROOT]
        assert doc["type"] == "d" and doc["parent_id"] == "" and doc["sort"] == 0
        assert doc["content"] == doc["fcontent"] == "Example" and doc["markdown"] == ""
        assert (
            doc["hpath"] == "/Example"
            and doc["path"] == f"/{ROOT}.sy"
            and doc["box"] == "20240720085959-notebk1"
        )
        # Blocks in a heading's section have that heading as SQL parent.
        assert rows[A]["parent_id"] == ROOT
        assert rows[H]["parent_id"] == ROOT and rows[H]["subtype"] == "h2" and rows[H]["sort"] == 5
        for block_id in (M, Q, L):
            assert rows[block_id]["parent_id"] == H
        assert rows[A]["content"] == "Hello world" and rows[A]["length"] == 11 and rows[A]["sort"] == 10
        assert rows[A]["created"] == "20240721100000"
        assert rows[A]["updated"] == "20240721100512"
        assert rows[A]["ial"] == f'{{: id="{A}" updated="20240721100512"}}'
        assert rows[M]["ial"].startswith(f'{{: id="{M}" fold="1" heading-fold="1"')
        quote = rows[L]
        assert quote["type"] == "b" and quote["sort"] == 20 and quote["markdown"] == "> a quote"
        assert quote["fcontent"] == "a quote" and quote["content"] == "a quote" and quote["length"] == 7
        (child,) = [r for r in rows.values() if r["parent_id"] == L]
        assert child["type"] == "p" and child["content"] == "a quote"
        assert all(len(r["hash"]) == 7 for r in rows.values())
        attrs = view.db.conn.execute(
            "SELECT block_id, name, value FROM attributes WHERE block_id = ?", (M,)
        ).fetchall()
        assert sorted(attrs) == [(M, "fold", "1"), (M, "heading-fold", "1")]
        assert view.is_current(7, "abc") and not view.is_current(8, "abc")


def test_sort_weights() -> None:
    assert [sort_weight(t) for t in ("d", "h", "p", "c", "m", "t", "html", "l", "i", "b", "s", "av", "tb")] == [
        0, 5, 10, 10, 10, 10, 10, 20, 20, 20, 30, 100, 100,
    ]  # fmt: skip


@pytest.mark.parametrize("seed", [41, 42, 43, 44, 45])
def test_incremental_equals_rebuild(seed: int, tmp_path: Path) -> None:
    print(f"seed={seed}")
    streams = simulate(seed, devices=3, rounds=5, per_round=12)
    ws = Workspace()
    with BlocksView(tmp_path / "inc.db") as inc, BlocksView(tmp_path / "full.db") as full:
        for event in merge_events(streams.values()):
            result = apply_event(ws, event)
            inc.apply(ws, result.touched, result.removed)
        full.rebuild(ws)
        for table, order in (("blocks", "id"), ("attributes", "id")):
            q = f"SELECT * FROM {table} ORDER BY {order}"
            assert inc.db.conn.execute(q).fetchall() == full.db.conn.execute(q).fetchall(), (
                f"seed {seed}: {table}"
            )


def test_conflicts_and_meta(tmp_path: Path) -> None:
    record = ConflictRecord(
        "0000000000000001", 3, 0, "updateBlock", "20240101000000-aaaaaaa", "block not found"
    )
    with BlocksView(tmp_path / "blocks.db") as view:
        view.rebuild(Workspace(), conflicts=[record], position=3, state_hash="h")
        view.record_conflicts([record])  # recording twice keeps one row
        view.apply(
            Workspace(), [], [], conflicts=[record._replace(device_seq=4)], position=4, state_hash="h2"
        )
        rows = view.db.conn.execute("SELECT * FROM conflicts ORDER BY device_seq").fetchall()
        assert rows == [tuple(record), tuple(record._replace(device_seq=4))]
        assert view.meta() == {"position": "4", "state_hash": "h2"}


def test_readers_see_the_view_while_it_is_open(tmp_path: Path, examples_dir: Path) -> None:
    engine = _example_engine(examples_dir, "00")
    with BlocksView(tmp_path / "blocks.db") as view:
        view.rebuild(engine.ws)
        reader = sqlite3.connect(f"{(tmp_path / 'blocks.db').as_uri()}?mode=ro", uri=True)
        assert reader.execute("SELECT count(*) FROM blocks").fetchone()[0] == len(engine.ws.blocks)
        assert view.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        reader.close()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("abcXYZé漢 ,;'\"?123\t"), max_size=30))
def test_plain_text_fast_path_matches(text: str) -> None:
    assert _leaf_text(text) == plain_text(text)
