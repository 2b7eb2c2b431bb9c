"""``oplog verify`` and ``oplog diff`` on real multi-device data directories built by real stores and syncs."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oplog.clock import FakeClock, RandomIds
from oplog.datadir import open_logs_readonly
from oplog.merge import order_key
from oplog.remote import LocalDirRemote
from oplog.replay import replay
from oplog.segment import SEGMENT_HEADER_SIZE
from oplog.store import Store, StoreOptions
from oplog.syncrunner import run_sync
from oplog.tools.cli import main
from oplog.tree import Workspace, iter_blocks
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import request_from_json
from tests.cli_helpers import run_cli

REPO = Path(__file__).resolve().parents[1]
T0 = 1_721_527_400_000
BOX = "20240101000000-notebk1"
DOC_A = "20240101000000-docaaaa"
DOC_B = "20240101000000-docbbbb"
#: Small segments, so every log has several sealed ones; frequent checkpoints.
OPTIONS = StoreOptions(segment_bytes=2048, checkpoint_every=6)


def bid(n: int) -> str:
    """A valid block id numbered ``n``."""
    return f"20240101000000-{n:07d}"


def _open(path: Path, seed: int) -> Store:
    warnings.simplefilter("ignore")
    return Store.open(path, options=OPTIONS, clock=FakeClock(T0 + seed, step_ms=7), ids=RandomIds(seed))


def _apply(store: Store, *ops: dict[str, Any]) -> pb.LogPosition:
    """Apply one transaction; return the log position of its event."""
    body = {"reqId": 1, "app": "t", "session": "s", "transactions": [{"doOperations": list(ops)}]}
    return store.apply(request_from_json(body)).positions[-1]


def _doc(doc: str, title: str) -> dict[str, Any]:
    return {"action": "createDoc", "id": doc, "data": {"box": BOX, "title": title}}


def _para(parent: str, n: int, text: str) -> dict[str, Any]:
    return {"action": "appendBlock", "parentID": parent, "id": bid(n), "dataType": "markdown", "data": text}


def _update(n: int, text: str) -> dict[str, Any]:
    return {"action": "updateBlock", "id": bid(n), "dataType": "markdown", "data": text}


@dataclass
class World:
    """Two devices that synced through a remote folder, then each made edits the other has not pulled."""

    a: Path
    b: Path
    remote: Path
    #: positions of the events each side applied after the last common sync
    a_unsynced: list[pb.LogPosition]
    b_unsynced: list[pb.LogPosition]
    a_device: str
    b_device: str


def _build(tmp_path: Path) -> World:
    remote = LocalDirRemote(tmp_path / "remote")
    a, b = _open(tmp_path / "a", 1), _open(tmp_path / "b", 2)
    try:
        _apply(a, _doc(DOC_A, "Alpha"))
        for n in range(1, 9):
            _apply(a, _para(DOC_A, n, f"alpha paragraph {n} " + "x" * 40))
        _apply(b, _doc(DOC_B, "Beta"))
        for n in range(21, 27):
            _apply(b, _para(DOC_B, n, f"beta paragraph {n} " + "y" * 40))
        for store in (a, b, a):
            run_sync(store, remote, store.clock)
        _apply(b, _update(3, "alpha three, edited on b"))
        _apply(a, _update(22, "beta two, edited on a"))
        for store in (a, b, a):
            run_sync(store, remote, store.clock)
        # Diverge: each side applies edits the other never pulls.
        a_unsynced = [
            _apply(a, _update(5, "alpha five, only on a")),
            _apply(a, {"action": "setBlockAttrs", "id": bid(6), "data": {"custom-flag": "a"}}),
            _apply(a, _para(DOC_A, 9, "alpha nine, only on a")),
        ]
        b_unsynced = [
            _apply(b, {"action": "deleteBlock", "id": bid(24)}),
            _apply(b, _update(1, "alpha one, only on b")),
        ]
        return World(
            tmp_path / "a",
            tmp_path / "b",
            tmp_path / "remote",
            a_unsynced,
            b_unsynced,
            a.device_id,
            b.device_id,
        )
    finally:
        a.close()
        b.close()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return _build(tmp_path)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.seg"))


# ---------------------------------------------------------------- verify


def test_a_sound_directory_and_remote_verify_clean(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "verify", "--data", str(world.a), "--remote", str(world.remote), "--json")
    report = json.loads(out)
    assert code == 0 and report["sound"] is True and report["damage"] == 0, report["findings"]
    checked = report["checked"]
    assert checked["devices"] == 2
    # Several sealed segments per device (segment_bytes is small), every one of them walked.
    local_segments = sum(len(_segments(d)) for d in (world.a / "devices").iterdir())
    assert checked["segments"] == local_segments >= 6
    assert checked["events"] == sum(1 for _ in _all_events(world.a))
    assert checked["checkpoints"] >= 1
    assert checked["remote_manifests"] == 2 and checked["remote_segments"] >= 4
    code, out, _ = _run(capsys, "verify", "--data", str(world.b))
    assert code == 0 and "sound" in out.splitlines()[-1]


def test_a_flipped_byte_in_a_sealed_segment_is_damage(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # A pulled (foreign) segment in a's data directory: sealed, never rewritten.
    folder = world.a / "devices" / world.b_device
    victim = _segments(folder)[1]
    data = bytearray(victim.read_bytes())
    where = SEGMENT_HEADER_SIZE + 30
    data[where] ^= 0x40
    victim.write_bytes(bytes(data))
    code, out, _ = _run(capsys, "verify", "--data", str(world.a))
    assert code == 1
    damage = [line for line in out.splitlines() if line.startswith("damage:")]
    assert len(damage) == 1 and str(victim) in damage[0] and "checksum" in damage[0]
    assert "DAMAGED: 1 problem" in out.splitlines()[-1]
    code, out, _ = _run(capsys, "verify", "--data", str(world.a), "--json")
    report = json.loads(out)
    assert code == 1 and report["sound"] is False
    (finding,) = [f for f in report["findings"] if f["severity"] == "damage"]
    # The frame holding the flipped byte starts at the header's end.
    assert finding["path"] == str(victim) and finding["offset"] == SEGMENT_HEADER_SIZE


def test_a_truncated_remote_segment_is_damage(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    folder = world.remote / "main" / "devices" / world.a_device
    victim = _segments(folder)[0]
    victim.write_bytes(victim.read_bytes()[:-25])
    code, out, _ = _run(capsys, "verify", "--data", str(world.b), "--remote", str(world.remote))
    assert code == 1
    damage = [line for line in out.splitlines() if line.startswith("damage:")]
    assert len(damage) == 1 and victim.name in damage[0] and "does not match its manifest" in damage[0]
    assert str(folder) in damage[0]
    # The local copies are intact: without --remote the directory is sound.
    assert _run(capsys, "verify", "--data", str(world.b))[0] == 0


def test_a_damaged_remote_manifest_and_epoch(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    (world.remote / "main" / "devices" / world.b_device / "MANIFEST").write_text('{"epoch": "0"')
    (world.remote / "main" / "EPOCH").write_text("[]")
    code, out, _ = _run(capsys, "verify", "--data", str(world.a), "--remote", str(world.remote), "--json")
    report = json.loads(out)
    assert code == 1
    paths = {f["path"].rsplit("/", 1)[-1] for f in report["findings"] if f["severity"] == "damage"}
    assert paths == {"MANIFEST", "EPOCH"}


def _checkpoint_rows(data: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(data / "checkpoints.db") as conn:
        return list(conn.execute("SELECT id, position FROM checkpoints ORDER BY id"))


def test_a_flipped_byte_in_a_checkpoint_blob_is_damage(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    (ckpt_id, position), *_ = _checkpoint_rows(world.a)
    with sqlite3.connect(world.a / "checkpoints.db") as conn:
        (chunk,) = conn.execute(
            "SELECT data FROM checkpoint_chunks WHERE checkpoint_id = ?", (ckpt_id,)
        ).fetchone()
        flipped = bytearray(chunk)
        flipped[len(flipped) // 2] ^= 0x01
        conn.execute(
            "UPDATE checkpoint_chunks SET data = ? WHERE checkpoint_id = ?", (bytes(flipped), ckpt_id)
        )
    code, out, _ = _run(capsys, "verify", "--data", str(world.a))
    assert code == 1
    (line,) = [line for line in out.splitlines() if line.startswith("damage:")]
    assert str(world.a / "checkpoints.db") in line and f"checkpoint {ckpt_id} (position {position})" in line
    assert "digest" in line


def test_a_checkpoint_with_the_wrong_state_hash_is_damage(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _checkpoint_rows(world.b)
    ckpt_id = rows[-1][0]
    with sqlite3.connect(world.b / "checkpoints.db") as conn:
        conn.execute("UPDATE checkpoints SET state_hash = ? WHERE id = ?", ("ab" * 32, ckpt_id))
    code, out, _ = _run(capsys, "verify", "--data", str(world.b), "--json")
    report = json.loads(out)
    assert code == 1
    (finding,) = [f for f in report["findings"] if f["severity"] == "damage"]
    assert finding["area"] == "checkpoint" and f"checkpoint {ckpt_id} " in finding["path"]
    assert finding["path"].startswith(str(world.b / "checkpoints.db"))


def test_a_checkpoint_whose_blob_lies_consistently_is_caught_by_the_full_rehash(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A blob re-encoded with a changed block (and a matching chunk digest) passes load's sampled check."""
    import marshal

    from oplog.checkpoint import _digest

    ckpt_id = _checkpoint_rows(world.a)[-1][0]
    with sqlite3.connect(world.a / "checkpoints.db") as conn:
        (chunk,) = conn.execute(
            "SELECT data FROM checkpoint_chunks WHERE checkpoint_id = ?", (ckpt_id,)
        ).fetchone()
        docs, avs = marshal.loads(chunk)
        box, path, flat, digests = docs[0]
        flat = list(flat)
        flat[6 + 3] = "tampered markdown"  # the second block of the first document (load re-hashes the first)
        blob = marshal.dumps(([(box, path, flat, digests), *docs[1:]], avs))
        conn.execute("UPDATE checkpoint_chunks SET data = ? WHERE checkpoint_id = ?", (blob, ckpt_id))
        conn.execute(
            "UPDATE checkpoints SET size = ?, blob_hash = ? WHERE id = ?",
            (len(blob), _digest([blob]), ckpt_id),
        )
    code, out, _ = _run(capsys, "verify", "--data", str(world.a))
    assert code == 1
    (line,) = [line for line in out.splitlines() if line.startswith("damage:")]
    assert f"checkpoint {ckpt_id} " in line and "hashes to" in line


def test_damaged_journal_and_sync_state(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    (world.a / "journal.json").write_text('{"runs": [["x", 1')
    (world.a / "sync.json").write_text("not json")
    code, out, _ = _run(capsys, "verify", "--data", str(world.a), "--json")
    report = json.loads(out)
    assert code == 1
    assert {f["area"] for f in report["findings"] if f["severity"] == "damage"} == {"journal", "sync-state"}


def test_open_segment_tails(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """Half a frame at the end (a write in flight) is nothing; garbage after the last batch is a warning."""
    local = _segments(world.a / "devices" / world.a_device)[-1]
    original = local.read_bytes()
    frame = bytes([0xB1, 0x00, 0x40, 0, 0, 0, 1, 2, 3, 4]) + b"partial payload"
    local.write_bytes(original + frame)
    code, out, _ = _run(capsys, "verify", "--data", str(world.a), "--json")
    assert code == 0 and _segment_findings(out) == []
    local.write_bytes(original + b"\x00" * 40)
    code, out, _ = _run(capsys, "verify", "--data", str(world.a), "--json")
    (finding,) = _segment_findings(out)
    assert code == 0 and finding["severity"] == "warning" and finding["offset"] == len(original)
    assert finding["path"] == str(local) and "torn" in finding["problem"]


def _segment_findings(out: str) -> list[dict[str, Any]]:
    return [f for f in json.loads(out)["findings"] if f["area"] in ("segment", "log")]


def test_a_missing_segment_breaks_density(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    victim = _segments(world.a / "devices" / world.b_device)[1]
    victim.unlink()
    code, out, _ = _run(capsys, "verify", "--data", str(world.a))
    assert code == 1 and "not dense" in out


def test_verify_shows_a_progress_bar_on_a_terminal(world: World) -> None:
    """With stderr on a terminal, a tqdm bar over the bytes checked; none when stderr is a pipe."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    # A new pty is 0 columns wide, and tqdm draws nothing in no columns.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    shown = b""
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "oplog.tools.cli", "verify", "--data", str(world.a)],
            stdout=subprocess.DEVNULL,
            stderr=follower,
            env=env,
        )
        os.close(follower)
        # Read while the child runs: a pty drops what nobody read once its last writer closes.
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        child.wait(timeout=120)
    finally:
        os.close(leader)
    assert child.returncode == 0
    assert b"verify" in shown and b"B/s" in shown
    piped = run_cli("verify", "--data", str(world.a))
    assert piped.returncode == 0 and piped.stderr == ""


def test_verify_usage_errors(world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["verify", "--data", str(tmp_path / "nowhere")],
        ["verify", "--data", str(world.a), "--remote", str(tmp_path / "nowhere")],
        ["verify", "--data", str(world.a), "--remote", str(world.remote), "--cloud-name", "a/b"],
        ["verify", "--data", str(world.a), "--remote", str(world.remote), "--cloud-name", "other"],
        ["verify", "--data", str(world.a), "--cloud-name", "main"],
    ):
        code, out, err = _run(capsys, *argv)
        assert (
            code == 2 and not out and len(err.strip().splitlines()) == 1 and err.startswith("oplog: error:")
        )


# ---------------------------------------------------------------- diff --other


def _all_events(data: Path) -> Iterator[pb.Event]:
    logs = open_logs_readonly(data)
    try:
        for log in logs.values():
            yield from log.read()
    finally:
        for log in logs.values():
            log.close()


def _merged(data: Path) -> list[pb.Event]:
    return sorted(_all_events(data), key=order_key)


def test_diff_other_names_the_first_missing_event(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "diff", "--data", str(world.a), "--other", str(world.b), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["identical"] is False and report["same_events"] is False
    merged_a, merged_b = _merged(world.a), _merged(world.b)
    first_a, first_b = world.a_unsynced[0], world.b_unsynced[0]
    ours = report["first_ours_only"]
    assert (ours["device_id"], ours["seq"], ours["hlc"]) == (
        first_a.device_id,
        first_a.device_seq,
        first_a.hlc,
    )
    assert ours["actions"] == ["updateBlock"]
    keys_a = [order_key(e) for e in merged_a]
    assert ours["position"] == keys_a.index((first_a.hlc, first_a.device_id, first_a.device_seq)) + 1
    assert ours["other_before"] == sum(
        1 for e in merged_b if order_key(e) < (first_a.hlc, first_a.device_id, first_a.device_seq)
    )
    event = merged_a[ours["position"] - 1]
    assert ours["time_ms"] == event.time_ms and event.transaction.do_operations[0].id == bid(5)
    theirs = report["first_theirs_only"]
    assert (theirs["device_id"], theirs["seq"], theirs["hlc"]) == (
        first_b.device_id,
        first_b.device_seq,
        first_b.hlc,
    )
    assert theirs["actions"] == ["deleteBlock"]
    devices = {d["device_id"]: d for d in report["devices"]}
    assert devices[world.a_device]["ours_only"] == 3 and devices[world.a_device]["theirs_only"] == 0
    assert devices[world.b_device]["theirs_only"] == 2 and devices[world.b_device]["ours_only"] == 0
    assert devices[world.a_device]["first_difference"] is None
    # Block differences from a's state to b's: a's three edits undone, b's two applied.
    blocks = report["blocks"]
    assert {b["id"] for b in blocks["added"]} == set()
    assert {b["id"] for b in blocks["removed"]} == {bid(9), bid(24)}
    changed = {c["id"]: c for c in blocks["changed"]}
    assert changed[bid(5)]["changes"]["content"]["before"].startswith("alpha five, only on a")
    assert "custom-flag" in changed[bid(6)]["changes"]["attrs"]["removed"]
    assert changed[bid(1)]["changes"]["content"]["after"].startswith("alpha one, only on b")
    assert changed[bid(25)]["changes"]["previous"] == {"before": bid(24), "after": bid(23)}
    code, text, _ = _run(capsys, "diff", "--data", str(world.a), "--other", str(world.b))
    assert f"first event ours has and theirs lacks: {first_a.device_id}#{first_a.device_seq}" in text
    assert f"first event theirs has and ours lacks: {first_b.device_id}#{first_b.device_seq}" in text


def test_diff_other_identical_after_a_full_sync(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    remote = LocalDirRemote(world.remote)
    a, b = _open(world.a, 1), _open(world.b, 2)
    try:
        for store in (a, b, a):
            run_sync(store, remote, store.clock)
    finally:
        a.close()
        b.close()
    code, out, _ = _run(capsys, "diff", "--data", str(world.a), "--other", str(world.b), "--json")
    report = json.loads(out)
    assert code == 0 and report["identical"] is True
    assert report["ours_state_hash"] == report["theirs_state_hash"]
    assert report["blocks"]["summary"] == {
        "added": 0,
        "removed": 0,
        "changed": 0,
        "attribute_views": 0,
        "notebooks": 0,
    }
    code, out, _ = _run(capsys, "diff", "--data", str(world.a), "--other", str(world.b))
    assert "identical" in out


def test_diff_other_finds_a_rewritten_event(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two copies of one device's log that differ at one seq: the first difference is that seq."""
    copy = tmp_path / "copy"
    shutil.copytree(world.a, copy)
    folder = copy / "devices" / world.b_device
    # Replace b's last sealed segment in the copy with one whose last event carries another stamp.
    from oplog.eventlog import EventLog

    logs = open_logs_readonly(world.a)
    try:
        events = list(logs[world.b_device].read())
    finally:
        for log in logs.values():
            log.close()
    shutil.rmtree(folder)
    log = EventLog.open(folder, world.b_device, segment_bytes=OPTIONS.segment_bytes)
    changed_seq = len(events) - 1
    for event in events:
        if event.device_seq == changed_seq:
            event.app = "rewritten"
        log.append_durable([event])
    log.close()
    code, out, _ = _run(capsys, "diff", "--data", str(world.a), "--other", str(copy), "--json")
    report = json.loads(out)
    devices = {d["device_id"]: d for d in report["devices"]}
    assert devices[world.b_device]["first_difference"] == changed_seq
    assert devices[world.b_device]["common_prefix"] == changed_seq - 1
    assert devices[world.b_device]["ours_only"] == 2 and devices[world.b_device]["theirs_only"] == 2
    assert report["first_ours_only"]["seq"] == changed_seq
    assert report["first_theirs_only"]["app"] == "rewritten"


# ---------------------------------------------------------------- diff --from/--to


def _expected_blocks(ws: Workspace) -> dict[str, tuple[Any, ...]]:
    """Brute force, independent of statediff: every block's compared fields."""
    out: dict[str, tuple[Any, ...]] = {}
    for doc in ws.docs.values():
        for node in iter_blocks(doc):
            parent = node.parent
            index = parent.children.index(node) if parent is not None else 0
            prev = parent.children[index - 1].id if parent is not None and index else ""
            out[node.id] = (
                node.type,
                node.subtype,
                node.markdown,
                dict(node.attrs),
                parent.id if parent else "",
                prev,
                doc.id,
                doc.box if node is doc else "",
                doc.path if node is doc else "",
            )
    return out


def _replay_to(data: Path, position: int) -> Workspace:
    logs = open_logs_readonly(data)
    try:
        return replay(logs, until_position=position).ws
    finally:
        for log in logs.values():
            log.close()


def _check_against_brute_force(data: Path, start: int, end: int, report: dict[str, Any]) -> None:
    before, after = _expected_blocks(_replay_to(data, start)), _expected_blocks(_replay_to(data, end))
    assert {b["id"] for b in report["added"]} == set(after) - set(before)
    assert {b["id"] for b in report["removed"]} == set(before) - set(after)
    assert {c["id"] for c in report["changed"]} == {
        k for k in set(before) & set(after) if before[k] != after[k]
    }


def test_diff_positions_with_known_edits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Known edits between two positions show up exactly, field by field."""
    data = tmp_path / "one"
    store = _open(data, 5)
    try:
        _apply(store, _doc(DOC_A, "Alpha"))
        for n in range(1, 7):
            _apply(store, _para(DOC_A, n, f"paragraph {n}"))
        start = store.position
        _apply(store, _update(2, "paragraph two, rewritten"))
        _apply(store, {"action": "setBlockAttrs", "id": bid(3), "data": {"custom-k": "v"}})
        _apply(store, {"action": "moveBlock", "id": bid(6), "previousID": bid(1)})
        _apply(store, {"action": "deleteBlock", "id": bid(4)})
        _apply(store, _para(DOC_A, 7, "paragraph seven"))
        end = store.position
        _apply(store, _update(1, "after the range"))
    finally:
        store.close()
    code, out, _ = _run(capsys, "diff", "--data", str(data), "--from", str(start), "--to", str(end), "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["from"], report["to"], report["end"]) == (start, end, end + 1)
    assert [b["id"] for b in report["added"]] == [bid(7)]
    assert [b["id"] for b in report["removed"]] == [bid(4)]
    changed = {c["id"]: c for c in report["changed"]}
    assert changed[bid(2)]["changes"]["content"] == {
        "before": "paragraph 2",
        "after": "paragraph two, rewritten",
    }
    assert changed[bid(3)]["changes"]["attrs"]["added"] == {"custom-k": "v"}
    assert set(changed[bid(6)]["fields"]) == {"previous"}
    assert changed[bid(6)]["changes"]["previous"] == {"before": bid(5), "after": bid(1)}
    # Neighbours whose previous sibling changed: 2 (now after 6), 5 (was after 4), 7 is new.
    assert changed[bid(2)]["changes"]["previous"] == {"before": bid(1), "after": bid(6)}
    assert changed[bid(5)]["changes"]["previous"] == {"before": bid(4), "after": bid(3)}
    assert bid(1) not in changed  # its edit lies after --to
    _check_against_brute_force(data, start, end, report)
    # Defaults: --from 0, --to the end: everything is added.
    code, out, _ = _run(capsys, "diff", "--data", str(data), "--json")
    report = json.loads(out)
    assert report["from"] == 0 and report["to"] == end + 1 and not report["removed"] and not report["changed"]
    assert len(report["added"]) == len(_expected_blocks(_replay_to(data, end + 1)))


@pytest.mark.parametrize(("start", "end"), [(0, 7), (5, 19), (13, 13), (17, None), (None, 11)])
def test_diff_positions_on_merged_devices_match_brute_force(
    world: World, capsys: pytest.CaptureFixture[str], start: int | None, end: int | None
) -> None:
    argv = ["diff", "--data", str(world.a), "--json"]
    argv += ["--from", str(start)] if start is not None else []
    argv += ["--to", str(end)] if end is not None else []
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    report = json.loads(out)
    total = len(_merged(world.a))
    assert report["end"] == total
    _check_against_brute_force(world.a, report["from"], report["to"], report)
    if report["to"] == total:
        assert (
            report["to_state_hash"]
            == json.loads(_run(capsys, "replay", "--data", str(world.a), "--json")[1])["state_hash"]
        )


def test_diff_uses_checkpoints(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """Replay starts at the checkpoint nearest each position; the result equals a cold replay's."""
    from oplog.checkpoint import CheckpointStore, capture_base

    (world.a / "checkpoints.db").unlink()
    logs = open_logs_readonly(world.a)
    try:
        with CheckpointStore(world.a / "checkpoints.db") as store:
            for position in (6, 15):
                store.save(capture_base(replay(logs, until_position=position)))
    finally:
        for log in logs.values():
            log.close()

    def diff(*argv: str) -> dict[str, Any]:
        code, out, _ = _run(capsys, "diff", "--data", str(world.a), "--json", *argv)
        assert code == 0
        return json.loads(out)

    # 6 -> 8 from the first checkpoint, then 8 -> 12 continuing from the first state.
    near = diff("--from", "8", "--to", "12")
    assert near["checkpoints_used"] == [6] and near["events_replayed"] == 2 + 4
    _check_against_brute_force(world.a, 8, 12, near)
    # A checkpoint between the two positions: the second state starts there (15 -> 20).
    far = diff("--from", "8", "--to", "20")
    assert far["checkpoints_used"] == [6, 15] and far["events_replayed"] == 2 + 5
    _check_against_brute_force(world.a, 8, 20, far)
    cold = diff("--from", "8", "--to", "20", "--full")
    assert cold["checkpoints_used"] == [] and cold["events_replayed"] == 20
    assert {k: cold[k] for k in ("added", "removed", "changed", "to_state_hash")} == {
        k: far[k] for k in ("added", "removed", "changed", "to_state_hash")
    }


def test_diff_bad_positions(world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    total = len(_merged(world.a))
    for argv, words in (
        (["--from", "-1"], "not negative"),
        (["--to", str(total + 1)], "past the end"),
        (["--from", "9", "--to", "3"], "after --to"),
        (["--other", str(world.b), "--from", "1"], "does not take"),
        (["--other", str(tmp_path / "nowhere")], "not an oplog data directory"),
    ):
        code, out, err = _run(capsys, "diff", "--data", str(world.a), *argv)
        assert code == 2 and not out and words in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "diff", "--data", str(tmp_path / "nowhere"))
    assert code == 2 and "not an oplog data directory" in err


# ---------------------------------------------------------------- beside a running writer

_WRITER = """
import sys, warnings
warnings.simplefilter("ignore")
from oplog.store import Store, StoreOptions
from oplog.wire import request_from_json
store = Store.open(sys.argv[1], options=StoreOptions(segment_bytes=2048))
print("ready", flush=True)
n = 0
while sys.stdin.readline():
    for _ in range(20):
        n += 1
        op = {"action": "appendBlock", "parentID": sys.argv[2], "dataType": "markdown", "data": f"live {n}"}
        store.apply(request_from_json({"reqId": n, "app": "w", "transactions": [{"doOperations": [op]}]}))
    print("wrote", n, flush=True)
store.close()
"""


def test_verify_and_diff_run_beside_a_writer_that_holds_the_lock(world: World) -> None:
    """A real writer process holds the writer's lock and appends; verify and diff read beside it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(world.a), DOC_A],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert writer.stdin is not None and writer.stdout is not None
    try:
        assert writer.stdout.readline().strip() == "ready"
        from oplog.errors import DataDirLocked
        from oplog.lockfile import DataDirLock

        with pytest.raises(DataDirLocked):
            DataDirLock(world.a).acquire()
        for _ in range(3):
            writer.stdin.write("go\n")
            writer.stdin.flush()
            verify = run_cli("verify", "--data", str(world.a), "--json")
            assert verify.returncode == 0, verify.stdout + verify.stderr
            assert json.loads(verify.stdout)["damage"] == 0
            assert writer.stdout.readline().startswith("wrote")
        diff = run_cli("diff", "--data", str(world.a), "--other", str(world.b), "--json")
        assert diff.returncode == 0, diff.stderr
        report = json.loads(diff.stdout)
        assert report["first_theirs_only"]["seq"] == world.b_unsynced[0].device_seq
        assert {d["device_id"]: d for d in report["devices"]}[world.a_device]["ours_only"] == 3 + 60
    finally:
        writer.stdin.close()
        writer.wait(timeout=60)
    assert writer.returncode == 0
    final = run_cli("verify", "--data", str(world.a))
    assert final.returncode == 0, final.stdout
