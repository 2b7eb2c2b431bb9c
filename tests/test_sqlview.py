"""The blocks view: SiYuan's columns and meanings, incremental == rebuild, meta, conflicts, concurrent readers,
deferred writes (batched per group commit, in the file before Apply returns)."""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oplog import sqlview
from oplog.checkpoint import ConflictRecord
from oplog.clock import FakeClock, RandomIds
from oplog.engine import Engine, apply_event
from oplog.kramdown import plain_text
from oplog.merge import merge_events
from oplog.sqlview import BLOCK_COLUMNS, BlocksView, _leaf_text, sort_weight
from oplog.store import Store
from oplog.tree import Workspace
from oplog.wire import request_from_json
from tests import fixtures
from tests.workload import simulate

ROOT = fixtures.ROOT
BOX = fixtures.BOX
A, H, M, Q, L = fixtures.A, fixtures.H, fixtures.M, fixtures.Q, fixtures.L


def _rows(view: BlocksView) -> dict[str, dict[str, Any]]:
    cur = view.db.conn.execute(f"SELECT {', '.join(BLOCK_COLUMNS)} FROM blocks")
    return {row[0]: dict(zip(BLOCK_COLUMNS, row, strict=True)) for row in cur}


def _example_engine(examples_dir: Path, upto: str) -> Engine:
    return fixtures.fixture_engine(upto, examples_dir)


def test_examples_columns(examples_dir: Path, tmp_path: Path) -> None:
    engine = _example_engine(examples_dir, "04")
    with BlocksView(tmp_path / "blocks.db") as view:
        view.rebuild(engine.ws, position=7, state_hash="abc")
        rows = _rows(view)
        doc = rows[ROOT]
        assert doc["type"] == "d" and doc["parent_id"] == "" and doc["sort"] == 0
        assert doc["content"] == doc["fcontent"] == "Field notes" and doc["markdown"] == ""
        assert doc["hpath"] == "/Field notes" and doc["path"] == f"/{ROOT}.sy" and doc["box"] == BOX
        # Blocks in a heading's section have that heading as SQL parent.
        assert rows[A]["parent_id"] == ROOT
        assert rows[H]["parent_id"] == ROOT and rows[H]["subtype"] == "h2" and rows[H]["sort"] == 5
        for block_id in (M, Q, L):
            assert rows[block_id]["parent_id"] == H
        assert rows[A]["content"] == "Saw two herons" and rows[A]["length"] == 14 and rows[A]["sort"] == 10
        assert rows[A]["created"] == "20250301081000"
        assert rows[A]["updated"] == fixtures.ENTER_STAMP
        assert rows[A]["ial"] == f'{{: id="{A}" updated="{fixtures.ENTER_STAMP}"}}'
        assert rows[M]["ial"].startswith(f'{{: id="{M}" fold="1" heading-fold="1"')
        quote = rows[L]
        assert quote["type"] == "b" and quote["sort"] == 20 and quote["markdown"] == "> keep quiet"
        assert (
            quote["fcontent"] == "keep quiet" and quote["content"] == "keep quiet" and quote["length"] == 10
        )
        (child,) = [r for r in rows.values() if r["parent_id"] == L]
        assert child["type"] == "p" and child["content"] == "keep quiet"
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


@pytest.mark.parametrize("seed", [51, 52, 53])
def test_deferred_flushes_equal_rebuild(seed: int, tmp_path: Path) -> None:
    # Changes collected over several events and written in one flush give the rows a rebuild gives.
    print(f"seed={seed}")
    rng = random.Random(seed)
    streams = simulate(seed, devices=3, rounds=5, per_round=12)
    ws = Workspace()
    with BlocksView(tmp_path / "inc.db") as inc, BlocksView(tmp_path / "full.db") as full:
        tickets = []
        for event in merge_events(streams.values()):
            result = apply_event(ws, event)
            tickets.append(inc.defer(result.touched, result.removed))
            if rng.random() < 0.2:
                assert inc.flush(ws, position=len(tickets), state_hash="h")
                assert all(inc.written(t) for t in tickets) and not inc.pending
        inc.flush(ws, position=len(tickets), state_hash="h")
        assert not inc.flush(ws)  # nothing left to write
        full.rebuild(ws)
        for table, order in (("blocks", "id"), ("attributes", "id")):
            q = f"SELECT * FROM {table} ORDER BY {order}"
            assert inc.db.conn.execute(q).fetchall() == full.db.conn.execute(q).fetchall(), (
                f"seed {seed}: {table}"
            )
        assert inc.meta()["position"] == str(len(tickets))


def test_a_rebuild_covers_what_was_deferred(tmp_path: Path, examples_dir: Path) -> None:
    engine = _example_engine(examples_dir, "00")
    with BlocksView(tmp_path / "blocks.db") as view:
        ticket = view.defer([ROOT])
        view.rebuild(engine.ws)
        assert view.written(ticket) and not view.pending


def _store_with_doc(data: Path) -> tuple[Store, list[str]]:
    store = Store.open(data, clock=FakeClock(step_ms=1), ids=RandomIds(7))
    ops: list[dict[str, Any]] = [{"action": "createDoc", "id": ROOT, "data": {"box": BOX, "title": "T"}}]
    ids = [f"20240721100000-para{n:03d}" for n in range(8)]
    ops += [
        {"action": "appendBlock", "parentID": ROOT, "id": i, "dataType": "markdown", "data": "x"} for i in ids
    ]
    store.apply(request_from_json({"transactions": [{"doOperations": ops}]}))
    return store, ids


def _update(block_id: str, text: str) -> Any:
    op = {"action": "updateBlock", "id": block_id, "dataType": "markdown", "data": text}
    return request_from_json({"transactions": [{"doOperations": [op]}]})


def test_an_acknowledged_write_is_in_the_file(data_dir: Path) -> None:
    # Any reader of blocks.db (sqlite3, Datasette), not only Query, sees a write once Apply returned.
    store, ids = _store_with_doc(data_dir)
    with store:
        reader = sqlite3.connect(f"{(data_dir / 'blocks.db').as_uri()}?mode=ro", uri=True)
        try:
            for n in range(5):
                store.apply(_update(ids[0], f"text{n}"))
                row = reader.execute("SELECT content FROM blocks WHERE id = ?", (ids[0],)).fetchone()
                assert row == (f"text{n}",)
                position = reader.execute("SELECT value FROM meta WHERE key = 'position'").fetchone()
                assert position == (str(store.position),)
        finally:
            reader.close()


def test_concurrent_writers_share_view_writes_and_end_current(data_dir: Path) -> None:
    store, ids = _store_with_doc(data_dir)
    with store:
        errors: list[BaseException] = []

        def writer(block_id: str) -> None:
            try:
                for n in range(25):
                    store.apply(_update(block_id, f"w{n}"))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert not store._view.pending
        rows = dict(store.query("SELECT id, content FROM blocks WHERE type = 'p'", []).rows)
        assert rows == dict.fromkeys(ids, "w24")
        with BlocksView(data_dir / "full.db") as full:
            full.rebuild(store.ws)
            q = "SELECT * FROM blocks ORDER BY id"
            assert store._view.db.conn.execute(q).fetchall() == full.db.conn.execute(q).fetchall()
        assert store._view.is_current(store.position, store.state().state_hash)


def test_a_failed_view_write_does_not_fail_the_request(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The request is durable and applied; the view catches up on the next write or query.
    store, ids = _store_with_doc(data_dir)
    with store:
        real = BlocksView.apply
        calls = {"n": 0}

        def failing_once(self: BlocksView, *args: Any, **kwargs: Any) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise sqlite3.OperationalError("disk I/O error")
            real(self, *args, **kwargs)

        monkeypatch.setattr(BlocksView, "apply", failing_once)
        store.apply(_update(ids[1], "after"))
        assert "blocks view could not be updated" in caplog.text
        assert store._view.pending
        assert store.query("SELECT content FROM blocks WHERE id = ?", [ids[1]]).rows == [("after",)]
        assert not store._view.pending


def test_a_heading_arriving_in_a_long_document_regroups_its_section(data_dir: Path) -> None:
    # The view remembers which blocks have no heading child; a heading coming or going resets that.
    store, ids = _store_with_doc(data_dir)
    with store:
        heading = "20240721100000-headng1"
        ops: list[dict[str, Any]] = [
            {
                "action": "insertBlock",
                "previousID": ids[3],
                "id": heading,
                "dataType": "markdown",
                "data": "## H",
            }
        ]
        store.apply(request_from_json({"transactions": [{"doOperations": ops}]}))
        store.apply(_update(ids[7], "after the heading"))
        parents = dict(store.query("SELECT id, parent_id FROM blocks WHERE type = 'p'", []).rows)
        assert parents == {i: ROOT if n <= 3 else heading for n, i in enumerate(ids)}
        delete = [{"action": "deleteBlock", "id": heading}]
        store.apply(request_from_json({"transactions": [{"doOperations": delete}]}))
        store.apply(_update(ids[6], "no heading now"))
        parents = dict(store.query("SELECT id, parent_id FROM blocks WHERE type = 'p'", []).rows)
        assert parents == dict.fromkeys(ids, ROOT)
        with BlocksView(data_dir / "full.db") as full:
            full.rebuild(store.ws)
            q = "SELECT * FROM blocks ORDER BY id"
            assert store._view.db.conn.execute(q).fetchall() == full.db.conn.execute(q).fetchall()


def _same_tables(view: BlocksView, ws: Workspace, folder: Path) -> None:
    with BlocksView(folder / "full.db") as full:
        full.rebuild(ws)
        for table in ("blocks", "attributes"):
            q = f"SELECT * FROM {table} ORDER BY id"
            assert view.db.conn.execute(q).fetchall() == full.db.conn.execute(q).fetchall(), table


@pytest.mark.parametrize("seed", [61, 62])
def test_incremental_equals_rebuild_when_few_rows_are_remembered(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The view remembers where the rows it wrote stand; forgetting the oldest of them (a small
    # bound here) only means reading those back from the file.
    monkeypatch.setattr(sqlview, "_KNOWN_MAX", 8)
    ws = Workspace()
    with BlocksView(tmp_path / "inc.db") as inc:
        for event in merge_events(simulate(seed, devices=3, rounds=5, per_round=12).values()):
            result = apply_event(ws, event)
            inc.apply(ws, result.touched, result.removed)
            assert len(inc._known) <= 8
        _same_tables(inc, ws, tmp_path)


def test_a_rolled_back_write_forgets_what_it_remembered(tmp_path: Path) -> None:
    # A write that fails inside its transaction leaves the file as it was; what the view had
    # remembered of the rows it was writing must go too, or the retry would skip them.
    engine = Engine(Workspace(), FakeClock(), RandomIds(3))
    create = {"action": "createDoc", "id": ROOT, "data": {"box": BOX, "title": "T"}}
    append = {"action": "appendBlock", "parentID": ROOT, "id": A, "dataType": "markdown", "data": "x"}
    engine.apply_request(request_from_json({"transactions": [{"doOperations": [create, append]}]}))
    attrs = {"action": "setBlockAttrs", "id": A, "data": {"custom-k": "v"}}
    with BlocksView(tmp_path / "blocks.db") as view:
        view.rebuild(engine.ws)
        view.apply(engine.ws, [A])
        applied = engine.apply_request(request_from_json({"transactions": [{"doOperations": [attrs]}]}))
        unbindable = ConflictRecord("0000000000000001", 1, 0, "updateBlock", A, object())  # type: ignore[arg-type]
        with pytest.raises(sqlite3.Error):
            view.apply(engine.ws, applied.touched, conflicts=[unbindable])
        assert view.db.conn.execute("SELECT count(*) FROM attributes").fetchone() == (0,)
        view.apply(engine.ws, applied.touched)
        _same_tables(view, engine.ws, tmp_path)
        assert view.db.conn.execute("SELECT name, value FROM attributes").fetchall() == [("custom-k", "v")]
