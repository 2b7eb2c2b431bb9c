"""``oplog sync`` and a real process killed mid-sync."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from oplog.store import Store
from oplog.tools.cli import main
from oplog.tree import snapshot
from oplog.wire import request_from_json
from tests.engine_helpers import numbered_doc_body

REPO = Path(__file__).resolve().parents[1]


def _docs(data: Path, first: int, n: int) -> None:
    warnings.simplefilter("ignore")
    with Store.open(data) as s:
        for i in range(first, first + n):
            s.apply(request_from_json(numbered_doc_body(i)))
            s.seal_local()


def test_cli_sync_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two data dirs converge through ``oplog sync --json``."""
    a, b, remote = tmp_path / "a", tmp_path / "b", tmp_path / "r"
    _docs(a, 1, 2)
    _docs(b, 10, 1)
    for d in (a, b, a):
        assert main(["sync", "--data", str(d), "--remote", str(remote), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["pulled_events"] == 1 and out["cloud_name"] == "main"
    with Store.open(a) as sa, Store.open(b) as sb:
        assert snapshot(sa.ws) == snapshot(sb.ws)


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad parameters: exit 1, one line, no traceback."""
    assert main(["sync", "--data", str(tmp_path / "a"), "--remote", str(tmp_path), "--push-mode", "x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pushMode" in err[0]
    assert (
        main(["sync", "--data", str(tmp_path / "a"), "--remote", str(tmp_path), "--cloud-name", "../x"]) == 1
    )


def test_cli_waits_for_the_lock_then_says_busy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A held writer lock gives a clear message after the bounded wait."""
    a = tmp_path / "a"
    _docs(a, 1, 1)
    with Store.open(a):
        code = main(["sync", "--data", str(a), "--remote", str(tmp_path / "r"), "--lock-timeout", "0.2"])
    assert code == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("writes", [1, 2, 3, 4])
def test_process_killed_mid_sync_recovers(tmp_path: Path, writes: int) -> None:
    """SIGKILL during a sync; the next syncs converge and the remote holds no partial file."""
    a, b, remote = tmp_path / "a", tmp_path / "b", tmp_path / "r"
    _docs(a, 1, 3)
    _docs(b, 10, 2)
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests/sync_kill_child.py"), str(a), str(remote), str(writes)],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL
    for d in (b, a, b):
        assert main(["sync", "--data", str(d), "--remote", str(remote)]) == 0
    assert not [p for p in remote.rglob("*") if ".tmp-" in p.name]
    with Store.open(a) as sa, Store.open(b) as sb:
        assert snapshot(sa.ws) == snapshot(sb.ws) and len(sa.ws.docs) == 5


@pytest.mark.parametrize("writes", [2, 3, 4, 5])
def test_temporary_a_killed_upload_left_is_swept(
    tmp_path: Path, writes: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL once an upload's temporary is written (a segment or the manifest): the next sync removes it."""
    a, remote = tmp_path / "a", tmp_path / "r"
    _docs(a, 1, 3)
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests/sync_kill_child.py"), str(a), str(remote), str(writes)]
        + ["after-temporary"],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL
    left = [p for p in remote.rglob("*") if ".tmp-" in p.name]
    assert len(left) == 1 and left[0].parent.parent.name == "devices", left  # in the device's own folder
    capsys.readouterr()
    assert main(["sync", "--data", str(a), "--remote", str(remote), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["swept_temporaries"] == 1
    assert not [p for p in remote.rglob("*") if ".tmp-" in p.name]
    assert main(["sync", "--data", str(a), "--remote", str(remote), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["swept_temporaries"] == 0


def _create_doc_request(i: int) -> Any:
    return request_from_json(numbered_doc_body(i))


def test_cli_sync_goes_through_a_running_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With ``oplog serve`` holding the directory, ``oplog sync`` asks it (PerformSync) and reports the same way."""
    from oplog.server.client import Client
    from oplog.v1 import oplog_pb2 as pb
    from tests.serve_helpers import ServeProcess

    a, b, remote = tmp_path / "a", tmp_path / "b", tmp_path / "r"
    _docs(b, 10, 1)
    assert main(["sync", "--data", str(b), "--remote", str(remote)]) == 0
    server = ServeProcess(a, "--remote", str(remote), "--no-boot-sync")
    try:
        with Client(server.address) as c:
            c.stub.Apply(_create_doc_request(1), timeout=30)
        capsys.readouterr()
        # No --remote: the server syncs with its own; the writer lock it holds is no obstacle.
        assert main(["sync", "--data", str(a), "--json", "--lock-timeout", "0"]) == 0
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert out["server"] == server.address and out["cloud_name"] == "main"
        assert out["pushed_segments"] == 1 and out["pulled_segments"] == 1 and out["refused"] == []
        # The syncEnd message carries the event count; the sweep count is not in the server's events.
        assert out["pulled_events"] == 1 and out["swept_temporaries"] is None
        assert out["last_sync_time"] > 0
        with Client(server.address) as c:
            state = c.stub.GetState(pb.GetStateRequest(), timeout=30)
        assert state.position == 2
        device_a = (a / "DEVICE").read_text().strip()
        assert (remote / "main" / "devices" / device_a / "MANIFEST").is_file()
        # Text output names the server.
        assert main(["sync", "--data", str(a)]) == 0
        assert f"through server {server.address}" in capsys.readouterr().out
        # The server's own remote given explicitly is fine; another one is refused in one line.
        assert main(["sync", "--data", str(a), "--remote", str(remote)]) == 0
        capsys.readouterr()
        assert main(["sync", "--data", str(a), "--remote", str(tmp_path / "elsewhere")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(remote.resolve()) in err[0] and "elsewhere" in err[0], err
        assert not (tmp_path / "elsewhere").exists()
    finally:
        code, err = server.stop()
    assert code == 0, err
    # B pulls what the server pushed: the two directories agree.
    assert main(["sync", "--data", str(b), "--remote", str(remote)]) == 0
    with Store.open(a) as sa, Store.open(b) as sb:
        assert snapshot(sa.ws) == snapshot(sb.ws) and len(sa.ws.docs) == 2


def test_cli_sync_through_a_server_sends_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server with a token: without it one error line and exit 1; with ``--token`` the sync runs."""
    from tests.serve_helpers import ServeProcess

    monkeypatch.delenv("OPLOG_TOKEN", raising=False)
    a = tmp_path / "a"
    server = ServeProcess(a, "--remote", str(tmp_path / "r"), "--token", "tk", "--no-boot-sync")
    try:
        capsys.readouterr()
        assert main(["sync", "--data", str(a)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "UNAUTHENTICATED" in err[0], err
        assert main(["sync", "--data", str(a), "--token", "tk", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["server"] == server.address
    finally:
        assert server.stop()[0] == 0


def test_sync_through_a_busy_server_waits_then_runs_its_own(tmp_path: Path) -> None:
    """A sync already running in the server (held mid-way): ours waits for it, then runs as a sync of its own."""
    import threading

    from oplog.clock import SystemClock
    from oplog.remote import LocalDirRemote
    from oplog.server.app import start_server
    from oplog.syncrunner import SyncRunner
    from oplog.syncsummary import SyncSummary
    from oplog.tools.server_sync import sync_through_server

    remote = tmp_path / "r"
    gate, entered = threading.Event(), threading.Event()

    class GatedRemote(LocalDirRemote):
        """The real folder remote; its first read waits at a gate, holding that sync in flight."""

        def read(self, path: str) -> bytes | None:
            entered.set()
            gate.wait(60)
            return super().read(path)

    remotes: list[LocalDirRemote] = [GatedRemote(remote)]
    store = Store.open(tmp_path / "a")
    runner = SyncRunner(
        store, lambda: remotes.pop() if remotes else LocalDirRemote(remote), SystemClock(), cloud_name="main"
    )
    ends: list[str] = []
    runner.add_listener(lambda e: ends.append(e["message"]) if e["cmd"] == "syncEnd" else None)
    running = start_server(store, listen="127.0.0.1:0", sync=runner)
    try:
        store.apply(_create_doc_request(1))
        runner.perform("another-client")
        assert entered.wait(30)
        results: list[SyncSummary] = []
        ours = threading.Thread(target=lambda: results.append(sync_through_server(running.address, app="t")))
        ours.start()
        ours.join(1.0)
        assert ours.is_alive()  # the gate is shut: the first sync cannot end, so ours cannot start
        gate.set()
        ours.join(60)
        assert not ours.is_alive()
    finally:
        gate.set()
        running.stop(grace=1)
        runner.close()
        store.close()
    # The first sync pushed the segment; ours ran after it and found nothing new.
    assert len(ends) == 2 and ends[0].startswith("pushed 1")
    assert results[0].pushed_segments == 0 and results[0].message == ends[1]
    assert results[0].cloud_name == "main" and results[0].last_sync_time > 0
