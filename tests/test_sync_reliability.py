"""Sync reliability (issue 15 items 1, 2, 7, 8): remote switches, the server's cloud name, bad cloud names, repair.

Real processes (``oplog`` through ``run_cli``, ``oplog serve``) where the issue
reproduced the defect with them; real files and real remotes folders throughout.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import grpc
import pytest

from oplog.errors import InvalidSyncArgument
from oplog.store import Store
from oplog.sync import parse_sync_params
from oplog.syncformat import MAX_CLOUD_NAME_BYTES, check_cloud_name
from oplog.tree import snapshot
from tests.cli_helpers import run_cli
from tests.engine_helpers import numbered_doc_body

BAD_CLOUD_NAMES = [
    ".",
    "a" * (MAX_CLOUD_NAME_BYTES + 1),
    "é" * 128,
    "wo\nrk",
    "wo\trk",
    "wo\x7frk",
    "wo\x1brk",
]


def _body(tmp: Path, n: int) -> str:
    path = tmp / f"doc{n}.json"
    path.write_text(json.dumps(numbered_doc_body(n)))
    return str(path)


def _ok(*argv: str) -> str:
    proc = run_cli(*argv)
    assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
    return proc.stdout


def _docs(data: Path) -> list[str]:
    warnings.simplefilter("ignore")
    with Store.open(data) as s:
        return sorted(s.ws.docs)


# ---- 15.1: an unpushed edit survives a remote switch and a new epoch ----


def test_unpushed_edit_survives_remote_switch_and_new_epoch(tmp_path: Path) -> None:
    """The issue's repro, as processes: X's edit pushed only to R2 is rebased onto R's new epoch and reaches Y."""
    x, y, r, r2 = (str(tmp_path / n) for n in ("X", "Y", "R", "R2"))
    _ok("apply", "--data", x, _body(tmp_path, 1))
    _ok("sync", "--data", x, "--remote", r)
    _ok("sync", "--data", y, "--remote", r)
    _ok("sync", "--data", y, "--remote", r, "--push-mode", "force-push")
    _ok("apply", "--data", x, _body(tmp_path, 2))
    _ok("sync", "--data", x, "--remote", r2)
    back = json.loads(_ok("sync", "--data", x, "--remote", r, "--json"))
    assert back["archived_segments"] == 0, back
    edit = "20240101000000-0000002"
    assert edit in _docs(Path(x))
    _ok("sync", "--data", y, "--remote", r)
    assert edit in _docs(Path(y))
    with Store.open(x) as sx, Store.open(y) as sy:
        assert snapshot(sx.ws) == snapshot(sy.ws)


def test_unpushed_edit_survives_a_boot_sync_elsewhere(tmp_path: Path) -> None:
    """The same when the other remote was a bare oplog serve's boot sync (its own --remote), not oplog sync."""
    import time

    from oplog.server.client import Client
    from oplog.v1 import oplog_pb2 as pb
    from tests.serve_helpers import ServeProcess

    x, y, r = tmp_path / "X", tmp_path / "Y", str(tmp_path / "R")
    _ok("apply", "--data", str(x), _body(tmp_path, 1))
    _ok("sync", "--data", str(x), "--remote", r)
    _ok("sync", "--data", str(y), "--remote", r)
    _ok("sync", "--data", str(y), "--remote", r, "--push-mode", "force-push")
    _ok("apply", "--data", str(x), _body(tmp_path, 2))
    server = ServeProcess(x, "--remote", str(tmp_path / "boot-remote"))
    try:
        with Client(server.address) as c:
            deadline = time.monotonic() + 60  # a bound on waiting, not an assertion on time
            while True:
                info = c.stub.GetSyncInfo(pb.GetSyncInfoRequest(), timeout=30)
                if info.last_sync_time and not info.in_progress:
                    break
                assert time.monotonic() < deadline, "the boot sync did not finish"
                time.sleep(0.05)
            assert info.pending_local_events == 0  # the boot sync pushed the edit to boot-remote
    finally:
        assert server.stop()[0] == 0
    back = json.loads(_ok("sync", "--data", str(x), "--remote", r, "--json"))
    assert back["archived_segments"] == 0, back
    _ok("sync", "--data", str(y), "--remote", r)
    assert "20240101000000-0000002" in _docs(y)


def test_edit_pushed_to_r_dropped_by_force_push_edit_only_on_r2_rebased(tmp_path: Path) -> None:
    """R held X's edit 2 and a force-push dropped it (archived, by design); edit 3 only reached R2: rebased, not lost."""
    x, y, r, r2 = (str(tmp_path / n) for n in ("X", "Y", "R", "R2"))
    _ok("apply", "--data", x, _body(tmp_path, 1))
    _ok("sync", "--data", x, "--remote", r)
    _ok("sync", "--data", y, "--remote", r)
    _ok("apply", "--data", x, _body(tmp_path, 2))
    _ok("sync", "--data", x, "--remote", r)
    _ok("sync", "--data", y, "--remote", r, "--push-mode", "force-push")
    _ok("apply", "--data", x, _body(tmp_path, 3))
    _ok("sync", "--data", x, "--remote", r2)
    out = json.loads(_ok("sync", "--data", x, "--remote", r, "--json"))
    assert out["rebased_events"] == 1, out
    _ok("sync", "--data", y, "--remote", r)
    assert "20240101000000-0000003" in _docs(Path(y))
    assert "20240101000000-0000002" not in _docs(Path(x))
    archived = json.loads(_ok("archive", "list", "--data", x, "--json"))
    assert archived, "the dropped edit is kept in the archive"


def test_cloud_switch_and_back_keeps_unpushed_edit(tmp_path: Path) -> None:
    """The same with a cloud switch (--cloud-name work, then back to main) on one remote."""
    x, y, r = (str(tmp_path / n) for n in ("X", "Y", "R"))
    _ok("apply", "--data", x, _body(tmp_path, 1))
    _ok("sync", "--data", x, "--remote", r)
    _ok("sync", "--data", y, "--remote", r)
    _ok("sync", "--data", y, "--remote", r, "--push-mode", "force-push")
    _ok("apply", "--data", x, _body(tmp_path, 2))
    _ok("sync", "--data", x, "--remote", r, "--cloud-name", "work")
    back = json.loads(_ok("sync", "--data", x, "--remote", r, "--cloud-name", "main", "--json"))
    assert back["archived_segments"] == 0, back
    _ok("sync", "--data", y, "--remote", r)
    assert "20240101000000-0000002" in _docs(Path(y))


# ---- 15.7: bad cloud names are refused before a sync starts, everywhere ----


@pytest.mark.parametrize("name", BAD_CLOUD_NAMES)
def test_bad_cloud_names_are_invalid(name: str) -> None:
    """One core check refuses '.', more than 255 bytes, control characters."""
    with pytest.raises(InvalidSyncArgument):
        check_cloud_name(name)
    with pytest.raises(InvalidSyncArgument):
        parse_sync_params("app", cloud_name=name)


def test_good_cloud_names_pass() -> None:
    """Ordinary names, names of exactly 255 bytes and non-ASCII names are fine."""
    for name in ("main", "work-2", "笔记", "a" * MAX_CLOUD_NAME_BYTES, "é" * 127, ".hidden", "a.b"):
        assert check_cloud_name(name) == name


def test_bad_cloud_names_refused_by_every_entry_point(tmp_path: Path) -> None:
    """oplog sync, oplog serve --cloud-name, oplog watch and PerformSync: one line / INVALID_ARGUMENT, nothing synced."""
    from oplog.server.client import Client
    from oplog.v1 import oplog_pb2 as pb
    from tests.serve_helpers import ServeProcess

    data, remote = tmp_path / "d", tmp_path / "r"
    _ok("apply", "--data", str(data), _body(tmp_path, 1))
    for name in (".", "a" * 300, "wo\nrk"):
        for argv in (
            ("sync", "--data", str(data), "--remote", str(remote), "--cloud-name", name),
            (
                "serve",
                "--data",
                str(data),
                "--remote",
                str(remote),
                "--listen",
                "127.0.0.1:0",
                "--cloud-name",
                name,
            ),
            ("watch", "--data", str(data), "--remote", str(remote), "--cloud-name", name),
        ):
            proc = run_cli(*argv, timeout=60)
            err = proc.stderr.strip().splitlines()
            assert proc.returncode != 0 and len(err) == 1 and "cloudName" in err[0], (argv[0], proc.stderr)
    assert not remote.exists() or not any(remote.rglob("*.seg"))
    server = ServeProcess(data, "--remote", str(remote), "--no-boot-sync")
    try:
        with Client(server.address) as c:
            for name in BAD_CLOUD_NAMES:
                with pytest.raises(grpc.RpcError) as info:
                    c.stub.PerformSync(pb.PerformSyncRequest(app="t", cloud_name=name), timeout=30)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
            assert not c.stub.GetSyncInfo(pb.GetSyncInfoRequest(), timeout=30).in_progress
    finally:
        assert server.stop()[0] == 0
    assert not any(remote.rglob("*.seg"))


# ---- 15.2: oplog sync through a server honours the directory's cloud name ----


def test_sync_through_server_uses_the_directory_cloud(tmp_path: Path) -> None:
    """After --cloud-name work, a bare oplog serve and oplog sync both use work; a server told main is refused."""
    from tests.serve_helpers import ServeProcess

    a, remote = tmp_path / "A", tmp_path / "r"
    _ok("apply", "--data", str(a), _body(tmp_path, 1))
    _ok("sync", "--data", str(a), "--remote", str(remote), "--cloud-name", "work")
    server = ServeProcess(a, "--remote", str(remote), "--no-boot-sync")
    try:
        out = json.loads(_ok("sync", "--data", str(a), "--json"))
        assert out["server"] == server.address and out["cloud_name"] == "work", out
        assert out["archived_segments"] == 0
    finally:
        assert server.stop()[0] == 0
    assert not (remote / "main").exists()
    server = ServeProcess(a, "--remote", str(remote), "--no-boot-sync", "--cloud-name", "main")
    try:
        proc = run_cli("sync", "--data", str(a))
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(err) == 1, proc.stderr
        assert "'main'" in err[0] and "'work'" in err[0] and "--cloud-name" in err[0]
        # Naming the cloud settles it: the server syncs the one asked for.
        out = json.loads(_ok("sync", "--data", str(a), "--cloud-name", "work", "--json"))
        assert out["cloud_name"] == "work" and out["archived_segments"] == 0
    finally:
        assert server.stop()[0] == 0
    assert not (remote / "main").exists()


# ---- 15.8: damage is repairable from a good copy ----


def _pulled_copy(b: Path, a_id: str) -> Path:
    return next((b / "devices" / a_id).glob("*.seg"))


def test_damaged_pulled_copy_is_refetched_by_sync(tmp_path: Path) -> None:
    """B's copy of A's segment is damaged: stats fails, oplog sync re-fetches it, everything works again."""
    a, b, remote = tmp_path / "A", tmp_path / "B", tmp_path / "r"
    _ok("apply", "--data", str(a), _body(tmp_path, 1))
    _ok("sync", "--data", str(a), "--remote", str(remote))
    _ok("sync", "--data", str(b), "--remote", str(remote))
    a_id = (a / "DEVICE").read_text().strip()
    copy = _pulled_copy(b, a_id)
    good = copy.read_bytes()
    copy.write_bytes(good[:100] + bytes([good[100] ^ 0x55]) + good[101:])
    assert run_cli("stats", "--data", str(b)).returncode != 0
    proc = run_cli("sync", "--data", str(b), "--remote", str(remote), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["repaired"]) == 1 and a_id in out["repaired"][0] and "re-fetched" in out["repaired"][0]
    assert copy.read_bytes() == good
    assert run_cli("verify", "--data", str(b)).returncode == 0
    assert _docs(b) == ["20240101000000-0000001"]


def test_damaged_pulled_copy_with_damaged_remote_says_so(tmp_path: Path) -> None:
    """When the remote copy is damaged too, oplog sync prints one line naming the device; nothing is replaced."""
    a, b, remote = tmp_path / "A", tmp_path / "B", tmp_path / "r"
    _ok("apply", "--data", str(a), _body(tmp_path, 1))
    _ok("sync", "--data", str(a), "--remote", str(remote))
    _ok("sync", "--data", str(b), "--remote", str(remote))
    a_id = (a / "DEVICE").read_text().strip()
    copy = _pulled_copy(b, a_id)
    damaged = bytearray(copy.read_bytes())
    damaged[100] ^= 0x55
    copy.write_bytes(bytes(damaged))
    (remote / "main" / "devices" / a_id / copy.name).write_bytes(bytes(damaged))
    proc = run_cli("sync", "--data", str(b), "--remote", str(remote))
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1 and a_id in err[0], proc.stderr
    assert copy.read_bytes() == bytes(damaged)


def test_damaged_own_remote_copy_is_reuploaded_and_named(tmp_path: Path) -> None:
    """A flipped byte in A's remote folder: B refuses it naming A and the fix; A's next plain sync re-uploads it."""
    a, b, remote = tmp_path / "A", tmp_path / "B", tmp_path / "r"
    _ok("apply", "--data", str(a), _body(tmp_path, 1))
    _ok("sync", "--data", str(a), "--remote", str(remote))
    a_id = (a / "DEVICE").read_text().strip()
    seg = next((remote / "main" / "devices" / a_id).glob("*.seg"))
    good = seg.read_bytes()
    seg.write_bytes(good[:100] + bytes([good[100] ^ 0x55]) + good[101:])
    proc = run_cli("sync", "--data", str(b), "--remote", str(remote))
    assert proc.returncode == 3
    assert f"device {a_id} re-uploads it on its next sync" in proc.stderr
    out = json.loads(_ok("sync", "--data", str(a), "--remote", str(remote), "--json"))
    assert out["pushed_segments"] == 1 and len(out["repaired"]) == 1, out
    assert seg.read_bytes() == good
    _ok("sync", "--data", str(b), "--remote", str(remote))
    assert _docs(b) == ["20240101000000-0000001"]


# ---- the parts: formats and the summary ----


def test_manifest_damage_reports_round_trip_and_keep_old_bytes() -> None:
    """A manifest without reports encodes as before; with reports it round-trips."""
    from oplog.syncformat import Manifest, SegEntry

    entry = SegEntry("0000000000000001.seg", 1, 2, 100, "0badcafe")
    plain = Manifest("0", "dev-a", [entry])
    assert b"damaged" not in plain.encode()
    assert Manifest.decode(plain.encode()) == plain
    reported = Manifest("0", "dev-a", [entry], [("dev-b", "0000000000000003.seg")])
    assert Manifest.decode(reported.encode()) == reported


def test_remote_change_kind() -> None:
    """EPOCH and other devices' manifests are news; segments and the device's own folder are not."""
    from oplog.syncformat import remote_change_kind

    assert remote_change_kind(["EPOCH"], "me") == "epoch"
    assert remote_change_kind(["devices", "other", "MANIFEST"], "me") == "manifest"
    assert remote_change_kind(["devices", "me", "MANIFEST"], "me") is None
    assert remote_change_kind(["devices", "other", "0000000000000001.seg"], "me") is None


def test_summary_end_message_round_trip() -> None:
    """What a server's syncEnd says is what the client's summary reads back."""
    from oplog.syncsummary import SyncSummary

    done = SyncSummary(
        pushed_segments=2,
        pulled_segments=3,
        pulled_events=40,
        archived_segments=1,
        rebased_events=5,
        repaired=["x"],
        refused=["y", "z"],
    )
    back = SyncSummary.from_end_message(done.end_message(), server="h:1")
    assert (back.pushed_segments, back.pulled_segments, back.pulled_events) == (2, 3, 40)
    assert (back.archived_segments, back.rebased_events, back.server) == (1, 5, "h:1")
    # An older server's message has no event count: unknown, not zero.
    old = SyncSummary.from_end_message("pushed 1, pulled 0 segment(s)", server="h:1")
    assert old.pulled_events is None and old.rebased_events is None


def test_rebased_event_at_an_old_seq_is_still_unpushed_to_the_other_remote(tmp_path: Path) -> None:
    """A rebase on T2 moves unpushed e3 to seq 2, which T1 held (as e2): T1's position drops, e3 is not archived there."""
    from oplog.clock import FakeClock, RandomIds
    from oplog.remote import FakeRemote
    from oplog.syncrunner import run_sync
    from oplog.wire import request_from_json

    warnings.simplefilter("ignore")
    t1, t2 = FakeRemote(1, name="t1"), FakeRemote(2, name="t2")
    x, y, z = (
        Store.open(tmp_path / n, clock=FakeClock(1_721_527_400_000 + i, step_ms=11), ids=RandomIds(i))
        for i, n in enumerate(("x", "y", "z"), 1)
    )
    try:

        def sync(s: Store, remote: FakeRemote, **kw: str) -> None:
            run_sync(s, remote, s.clock, **kw)

        x.apply(request_from_json(numbered_doc_body(1)))
        for s, remote in ((x, t1), (x, t2), (y, t2), (z, t1)):
            sync(s, remote)
        x.apply(request_from_json(numbered_doc_body(2)))
        sync(x, t1)
        sync(x, t2)
        sync(y, t2, push_mode="force-push")  # T2's new epoch lacks e2
        x.apply(request_from_json(numbered_doc_body(3)))
        sync(x, t2)  # adopt: e2 archived (T2 held it), e3 rebased to seq 2
        sync(z, t1, push_mode="force-push")  # T1's new epoch lacks X's seq 2 (e2 there)
        sync(x, t1)
        sync(z, t1)
        assert "20240101000000-0000003" in z.ws.docs
        assert "20240101000000-0000003" in x.ws.docs
    finally:
        for s in (x, y, z):
            s.close()


def test_force_refetches_a_pulled_copy_damaged_while_open(tmp_path: Path) -> None:
    """Damage to a pulled copy after the store opened (a server running): sync --force re-fetches it."""
    from oplog.remote import LocalDirRemote
    from oplog.syncrunner import run_sync
    from oplog.wire import request_from_json

    warnings.simplefilter("ignore")
    remote = LocalDirRemote(tmp_path / "r")
    with Store.open(tmp_path / "a") as a:
        a.apply(request_from_json(numbered_doc_body(1)))
        run_sync(a, remote, a.clock)
        a_id = a.device_id
    with Store.open(tmp_path / "b") as b:
        run_sync(b, remote, b.clock)
        copy = _pulled_copy(tmp_path / "b", a_id)
        good = copy.read_bytes()
        copy.write_bytes(good[:100] + bytes([good[100] ^ 0x55]) + good[101:])
        assert not run_sync(b, remote, b.clock).repaired  # a plain sync trusts its checksum cache
        result = run_sync(b, remote, b.clock, force=True)
        assert len(result.repaired) == 1 and a_id in result.repaired[0] and not result.archived_segments
        assert copy.read_bytes() == good
    assert run_cli("verify", "--data", str(tmp_path / "b")).returncode == 0
