"""``oplog dump``, ``oplog history``, ``oplog conflicts`` on real multi-device data, checked by brute force."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from oplog.clock import FakeClock, RandomIds
from oplog.hlc import COUNTER_BITS
from oplog.isotime import iso_time
from oplog.remote import LocalDirRemote
from oplog.replay import replay
from oplog.resolve import seed_action
from oplog.store import Store
from oplog.syncrunner import run_sync
from oplog.tools.cli import main
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import request_from_json
from tests.cli_helpers import run_cli
from tests.workload import open_logs, simulate, write_logs

T0 = 1_721_527_400_000
BOX = "20240101000000-notebk1"
DOC = "20240101000000-doc0001"
PARA = "20240101000000-para001"
OTHER = "20240101000000-para002"


# ---------------------------------------------------------------- helpers


def _all_events(data: Path) -> list[pb.Event]:
    """Every event of every device, sorted by (hlc, device, seq) — the merged order, brute force."""
    logs = open_logs(data)
    try:
        events = [e for log in logs.values() for e in log.read()]
    finally:
        for log in logs.values():
            log.close()
    return sorted(events, key=lambda e: (e.hlc, e.device_id, e.device_seq))


def _spec_ids(spec: pb.BlockSpec) -> set[str]:
    out = {spec.id}
    for child in spec.children:
        out |= _spec_ids(child)
    return out


def _names(event: pb.Event, block_id: str) -> bool:
    for op in event.transaction.do_operations:
        ids = {op.id, op.parent_id, op.previous_id, op.next_id, op.parent_doc}
        for spec in op.blocks:
            ids |= _spec_ids(spec)
        if block_id in ids:
            return True
    return False


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line]


@pytest.fixture(scope="module")
def sim_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three simulated devices editing and syncing: real engine events (computed undo, conflicts) in real logs."""
    path = tmp_path_factory.mktemp("inspect") / "data"
    write_logs(path, simulate(73, devices=3, rounds=6, per_round=14))
    return path


# ---------------------------------------------------------------- dump


def test_dump_json_is_the_merged_order(sim_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = _all_events(sim_data)
    code, out, err = _run(capsys, "dump", "--data", str(sim_data), "--json", "--undo")
    assert code == 0 and err == ""
    records = _json_lines(out)
    assert [r["position"] for r in records] == list(range(1, len(events) + 1))
    for record, event in zip(records, events, strict=True):
        assert (record["device"], record["seq"], record["hlc"]) == (
            event.device_id,
            event.device_seq,
            event.hlc,
        )
        assert record["time"] == iso_time(event.time_ms) and record["req_id"] == event.req_id
        assert [op["action"] for op in record["operations"]] == [
            op.action for op in event.transaction.do_operations
        ]
        assert len(record["undo_operations"]) == len(event.transaction.undo_operations)
    code, out, _ = _run(capsys, "dump", "--data", str(sim_data))
    lines = out.splitlines()
    assert code == 0 and len(lines) == len(events)
    assert lines[0].split()[0] == "1" and f"{events[-1].device_id}#{events[-1].device_seq}" in lines[-1]


def _expected_spec(spec: dict[str, Any]) -> dict[str, Any]:
    out = {"id": spec["id"], "type": spec["type"]}
    for key in ("subtype", "markdown"):
        if key in spec:
            out[key] = spec[key]
    if "attrs" in spec:
        out["attrs"] = {a["name"]: a.get("value", "") for a in spec["attrs"]}
    if "children" in spec:
        out["children"] = [_expected_spec(child) for child in spec["children"]]
    return out


def _expected_op(op: pb.Operation) -> dict[str, Any]:
    """An operation as dump prints it, built from protobuf's own JSON mapping (an independent oracle)."""
    fields = json_format.MessageToDict(op, preserving_proto_field_name=True)
    out = {"action": fields.pop("action")}
    for key, name in (
        ("id", "id"),
        ("parentID", "parent_id"),
        ("previousID", "previous_id"),
        ("nextID", "next_id"),
        ("dataType", "data_type"),
        ("data", "data"),
    ):
        if name in fields:
            out[key] = fields.pop(name)
    if fields.pop("is_detached", False):
        out["isDetached"] = True
    out["retData"] = fields.pop("ret_data", None)
    fields.pop("resolved", None)
    if "blocks" in fields:
        out["blocks"] = [_expected_spec(spec) for spec in fields.pop("blocks")]
    if "attrs" in fields:
        out["attrs"] = {a["name"]: a.get("value", "") for a in fields.pop("attrs")}
    return {**out, **fields}  # updated, text, box, parent_doc: in field order


def test_dump_json_carries_every_field(sim_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = _all_events(sim_data)
    code, out, _ = _run(capsys, "dump", "--data", str(sim_data), "--json", "--undo")
    assert code == 0
    records = _json_lines(out)
    keys = ["position", "device", "seq", "hlc", "time", "time_ms", "req_id", "app", "session"]
    keys += ["tx_index", "tx_count", "operations", "undo_operations"]
    shapes: set[tuple[str, ...]] = set()
    for position, (record, event) in enumerate(zip(records, events, strict=True), start=1):
        assert list(record) == keys
        assert record == {
            "position": position,
            "device": event.device_id,
            "seq": event.device_seq,
            "hlc": event.hlc,
            "time": iso_time(event.time_ms),
            "time_ms": event.time_ms,
            "req_id": event.req_id,
            "app": event.app,
            "session": event.session,
            "tx_index": event.tx_index,
            "tx_count": event.tx_count,
            "operations": [_expected_op(op) for op in event.transaction.do_operations],
            "undo_operations": [_expected_op(op) for op in event.transaction.undo_operations],
        }
        for got, op in zip(record["operations"], event.transaction.do_operations, strict=True):
            assert list(got) == list(_expected_op(op))  # SiYuan's key order, then the resolved fields
            shapes.add(tuple(got))
    # The workload exercises the optional fields, so the comparison above covers them.
    seen = {key for shape in shapes for key in shape}
    assert {"parentID", "previousID", "data", "blocks", "attrs", "updated"} <= seen


def test_iso_time_is_exact() -> None:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    for ms in (0, 1, 999, 1000, -1, -1001, T0 + 166, 4_102_444_799_999, 202_021_373_708_201):
        exact = (epoch + dt.timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")
        assert iso_time(ms) == exact.replace("+00:00", "Z")


def _some_block(events: list[pb.Event], rank: int = 0) -> str:
    counts: dict[str, int] = {}
    for event in events:
        for op in event.transaction.do_operations:
            if op.id and seed_action(op.action) != "createDoc":
                counts[op.id] = counts.get(op.id, 0) + 1
    return sorted(counts, key=lambda b: (-counts[b], b))[rank]


def test_dump_filters_match_brute_force(sim_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = _all_events(sim_data)
    indexed = list(enumerate(events, start=1))
    device = events[len(events) // 2].device_id
    block = _some_block(events)
    mid_ms = events[len(events) // 3].hlc >> COUNTER_BITS
    late_ms = events[2 * len(events) // 3].hlc >> COUNTER_BITS
    since, until = iso_time(mid_ms), iso_time(late_ms)
    cases: list[tuple[list[str], list[int]]] = [
        (["--device", device], [p for p, e in indexed if e.device_id == device]),
        (["--from", "7", "--to", "30"], [p for p, _ in indexed if 7 < p <= 30]),
        (["--block", block], [p for p, e in indexed if _names(e, block)]),
        (
            ["--action", "update", "--action", "deleteBlock"],
            [
                p
                for p, e in indexed
                if any(
                    seed_action(op.action) in ("updateBlock", "deleteBlock")
                    for op in e.transaction.do_operations
                )
            ],
        ),
        (
            ["--since", since, "--until", until],
            [p for p, e in indexed if mid_ms <= e.hlc >> COUNTER_BITS <= late_ms],
        ),
        (
            ["--device", device, "--block", block, "--from", "3"],
            [p for p, e in indexed if p > 3 and e.device_id == device and _names(e, block)],
        ),
    ]
    for argv, expected in cases:
        code, out, err = _run(capsys, "dump", "--data", str(sim_data), "--json", *argv)
        assert code == 0, err
        got = [r["position"] for r in _json_lines(out)]
        assert got == expected, argv
        assert expected, f"filter {argv} selects nothing: the test would prove little"


# ---------------------------------------------------------------- history


def _history(capsys: pytest.CaptureFixture[str], data: Path, block: str, *extra: str) -> list[dict[str, Any]]:
    code, out, err = _run(capsys, "history", "--data", str(data), block, "--json", *extra)
    assert code == 0, err
    return _json_lines(out)


def _state_at(data: Path, position: int, block: str) -> dict[str, Any] | None:
    logs = open_logs(data)
    try:
        node = replay(logs, until_position=position).ws.blocks.get(block)
    finally:
        for log in logs.values():
            log.close()
    if node is None:
        return None
    attrs = {k: v for k, v in sorted(node.attrs.items()) if k != "id"}
    return {"type": node.type, "subtype": node.subtype, "markdown": node.markdown, "attrs": attrs}


def test_history_exact_mode_is_the_replayed_state(sim_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = _all_events(sim_data)
    block = _some_block(events)
    entries = _history(capsys, sim_data, block, "--exact")
    named = [p for p, e in enumerate(events, start=1) if _names(e, block)]
    assert set(named) <= {e["position"] for e in entries}
    for entry in entries:
        assert entry["after"] == _state_at(sim_data, entry["position"], block)
        assert entry["before"] == _state_at(sim_data, entry["position"] - 1, block)


def test_history_fast_mode_agrees_with_the_engine(sim_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = _all_events(sim_data)
    checked = 0
    for rank in range(4):
        block = _some_block(events, rank)
        fast = _history(capsys, sim_data, block)
        exact = {e["position"]: e for e in _history(capsys, sim_data, block, "--exact")}
        named = [p for p, e in enumerate(events, start=1) if _names(e, block)]
        # Every event naming the block is listed; the others listed re-created it in their undo list.
        assert set(named) <= {e["position"] for e in fast} <= set(exact)
        for entry in fast:
            truth = exact[entry["position"]]
            if entry["exact"] and entry["before"] == truth["before"]:
                assert entry["after"] == truth["after"], (block, entry, truth)
                checked += 1
    assert checked >= 10


def test_history_from_a_position_starts_from_the_replayed_state(
    sim_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = _all_events(sim_data)
    block = _some_block(events)
    full = _history(capsys, sim_data, block)
    middle = full[len(full) // 2]["position"]
    tail = _history(capsys, sim_data, block, "--from", str(middle - 1))
    assert [e["position"] for e in tail] == [e["position"] for e in full if e["position"] >= middle]
    assert tail[0]["before"] == _state_at(sim_data, middle - 1, block)
    upto = _history(capsys, sim_data, block, "--to", str(middle))
    assert [e["position"] for e in upto] == [e["position"] for e in full if e["position"] <= middle]


# ---------------------------------------------------------------- real stores, real sync


def _store(root: Path, name: str, seed: int) -> Store:
    warnings.simplefilter("ignore")
    return Store.open(root / name, clock=FakeClock(T0 + seed, step_ms=11), ids=RandomIds(seed))


def _apply(store: Store, *ops: dict[str, Any]) -> None:
    store.apply(request_from_json({"reqId": 1, "app": "t", "transactions": [{"doOperations": list(ops)}]}))


@pytest.fixture
def synced(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two stores that share a document through a local remote; b's update of PARA races a's delete."""
    a, b = _store(tmp_path, "a", 1), _store(tmp_path, "b", 2)
    remote = LocalDirRemote(tmp_path / "remote")
    try:
        _apply(a, {"action": "createDoc", "id": DOC, "data": {"box": BOX, "title": "Notes"}})
        _apply(
            a,
            {
                "action": "appendBlock",
                "parentID": DOC,
                "data": f'first\n{{: id="{PARA}"}}',
                "dataType": "markdown",
            },
        )
        _apply(
            a,
            {
                "action": "appendBlock",
                "parentID": DOC,
                "data": f'second\n{{: id="{OTHER}"}}',
                "dataType": "markdown",
            },
        )
        run_sync(a, remote, a.clock)
        run_sync(b, remote, b.clock)
        _apply(b, {"action": "updateBlock", "id": PARA, "data": "first, edited", "dataType": "markdown"})
        _apply(b, {"action": "setBlockAttrs", "id": PARA, "data": {"custom-k": "v"}})
        _apply(b, {"action": "moveBlock", "id": OTHER, "previousID": PARA})
        run_sync(b, remote, b.clock)
        run_sync(a, remote, a.clock)
        _apply(b, {"action": "updateBlock", "id": OTHER, "data": "second, edited", "dataType": "markdown"})
        _apply(a, {"action": "deleteBlock", "id": OTHER})
        run_sync(a, remote, a.clock)
        run_sync(b, remote, b.clock)
        run_sync(a, remote, a.clock)
        yield a, b
    finally:
        a.close()
        b.close()


def test_history_and_conflicts_after_a_real_sync(
    synced: tuple[Store, Store], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = synced
    data = a.data_dir
    a.close()  # also works with the lock held: see the subprocess test
    entries = _history(capsys, data, PARA)
    # created; OTHER appended after it (the reply rewrite names it previousID); edited; attributes;
    # OTHER moved after it.
    roles = [["created"], ["anchor"], ["updated"], ["attributes"], ["anchor"]]
    assert [e["roles"] for e in entries] == roles
    assert entries[0]["before"] is None and entries[0]["after"]["markdown"] == "first"
    assert entries[2]["before"]["markdown"] == "first" and entries[2]["after"]["markdown"] == "first, edited"
    assert entries[3]["after"]["attrs"]["custom-k"] == "v"
    assert entries[4]["before"] == entries[4]["after"] and all(e["exact"] for e in entries)
    assert {e["device"] for e in entries} == {a.device_id, b.device_id}
    for entry in entries:
        assert entry["after"] == _state_at(data, entry["position"], PARA)
    other = _history(capsys, data, OTHER)
    assert other[-1]["after"] is None or other[-2]["after"] is None
    code, out, _ = _run(capsys, "conflicts", "--data", str(data), "--json")
    report = json.loads(out)
    assert code == 0 and report["position"] == len(_all_events(data))
    (conflict,) = report["conflicts"]
    assert conflict["block_id"] == OTHER and conflict["action"] in ("updateBlock", "update")
    assert conflict["device"] == b.device_id
    events = _all_events(data)
    hit = events[conflict["position"] - 1]
    assert (hit.device_id, hit.device_seq) == (conflict["device"], conflict["seq"])
    code, out, _ = _run(capsys, "conflicts", "--data", str(data))
    assert code == 0 and OTHER in out and "1 conflicts" in out


def test_tools_run_while_the_writer_holds_the_lock(
    synced: tuple[Store, Store], capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = synced  # a is open: this process holds a's writer lock
    for argv in (["dump", "--json", "--block", PARA], ["history", PARA, "--json"], ["conflicts", "--json"]):
        proc = run_cli(*argv, "--data", str(a.data_dir))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip()
    _apply(a, {"action": "setBlockAttrs", "id": PARA, "data": {"custom-after": "1"}})  # still the writer


# ---------------------------------------------------------------- errors


def test_bad_input_is_one_line_and_exit_1(
    sim_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    total = len(_all_events(sim_data))
    data = str(sim_data)
    cases = [
        (["history", "--data", data, "20991231000000-nothere"], "not found"),
        (["dump", "--data", data, "--from", "9", "--to", "3"], "--from 9 is after --to 3"),
        (["dump", "--data", data, "--to", str(total + 1)], "past the end of the history"),
        (["history", "--data", data, "x", "--from", str(total + 5)], "past the end of the history"),
        (["dump", "--data", data, "--from", "-1"], "negative"),
        (["dump", "--data", data, "--since", "last tuesday"], "--since: not an ISO 8601 time"),
        (["dump", "--data", data, "--device", "ffffffffffffffff"], "no device"),
        (["dump", "--data", str(tmp_path / "nowhere")], "not an oplog data directory"),
        (["history", "--data", str(tmp_path), "x"], "not an oplog data directory"),
        (["conflicts", "--data", str(tmp_path / "nowhere")], "not an oplog data directory"),
    ]
    for argv, message in cases:
        code, out, err = _run(capsys, *argv)
        assert code == 1, argv
        assert err.count("\n") == 1 and err.startswith("oplog: error:") and message in err, (argv, err)
        assert "Traceback" not in err
    proc = run_cli("history", "--data", data, "20991231000000-nothere")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
