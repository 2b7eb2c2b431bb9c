"""``oplog serve`` as a real process: start, SIGTERM (clean stop), SIGKILL under load (no acknowledged loss)."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import grpc
import pytest

from oplog.server.client import Client
from oplog.v1 import oplog_pb2 as pb
from tests.cli_helpers import run_cli
from tests.fixtures import request_path
from tests.serve_helpers import ServeProcess
from tests.server_helpers import append_request, block_id, open_store, setup_request


def _start(started: list[ServeProcess], data: Path, *extra: str) -> ServeProcess:
    child = ServeProcess(data, *extra)
    started.append(child)
    return child


def test_sigterm_stops_cleanly_with_exit_zero(tmp_path: Path, serve_factory: list[ServeProcess]) -> None:
    data = tmp_path / "data"
    child = _start(serve_factory, data)
    with Client(child.address) as c:
        assert c.serving("oplog.v1.OpLog")
        c.stub.Apply(setup_request(), timeout=30)
        stream = c.stub.Subscribe(pb.SubscribeRequest(), timeout=60)
        assert next(stream).position == 1
        state = c.stub.GetState(pb.GetStateRequest(), timeout=10)
        code, err = child.stop(signal.SIGTERM)
        # The open subscription was ended, telling the reader where to resume.
        with pytest.raises(grpc.RpcError) as info:
            next(stream)
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    assert code == 0, err
    assert "stopped on SIGTERM" in err
    assert "Traceback" not in err
    # The lock is released and the state is whole.
    store = open_store(data)
    try:
        assert store.state().state_hash == state.state_hash
    finally:
        store.close()


def test_sigint_also_stops_cleanly(tmp_path: Path, serve_factory: list[ServeProcess]) -> None:
    child = _start(serve_factory, tmp_path / "data", "--token", "tk", "--json")
    with Client(child.address, "tk") as c:
        assert c.stub.GetState(pb.GetStateRequest(), timeout=10).position == 0
    code, err = child.stop(signal.SIGINT)
    assert code == 0, err


def test_sigkill_under_load_loses_no_acknowledged_transaction(
    tmp_path: Path, serve_factory: list[ServeProcess]
) -> None:
    data = tmp_path / "data"
    child = _start(serve_factory, data)
    with Client(child.address) as c:
        c.stub.Apply(setup_request(), timeout=30)
    acked: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()
    stop = threading.Event()

    def writer(t: int) -> None:
        with Client(child.address) as c:
            for i in range(100_000):
                if stop.is_set():
                    return
                bid = block_id(t * 1_000_000 + i)
                try:
                    c.stub.Apply(append_request(bid, f"k{t}.{i}"), timeout=30)
                except grpc.RpcError:
                    return  # the server died mid-call: not acknowledged
                with lock:
                    acked.append(bid)
                    if len(acked) >= 300:
                        enough.set()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    reached = enough.wait(timeout=300)
    child.proc.kill()  # SIGKILL while the writers are mid-flight
    child.proc.communicate(timeout=30)
    stop.set()
    for th in threads:
        th.join(timeout=60)
    assert reached, "the load never reached 300 acknowledged transactions"

    restarted = _start(serve_factory, data)
    with Client(restarted.address) as c:
        state = c.stub.GetState(pb.GetStateRequest(), timeout=30)
        assert state.position >= 1 + len(acked)
        found = c.stub.Query(pb.QueryRequest(sql="SELECT id FROM blocks WHERE type = 'p'"), timeout=30)
        present = {row.values[0].string_value for row in found.rows}
        missing = [bid for bid in acked if bid not in present]
        assert not missing, f"{len(missing)} acknowledged transactions lost, e.g. {missing[:3]}"
        # The restarted server takes writes again.
        c.stub.Apply(append_request(block_id(99_999_999), "after restart"), timeout=30)
        final = c.stub.GetState(pb.GetStateRequest(), timeout=30)
    code, err = restarted.stop()
    assert code == 0, err
    from oplog.tools.replay import replay_data_dir

    replayed = replay_data_dir(data, full=True)
    assert (replayed.position, replayed.state_hash.hexdigest()) == (final.position, final.state_hash)


def test_public_address_without_token_is_refused_in_one_line(tmp_path: Path) -> None:
    done = run_cli(
        "serve",
        "--data",
        str(tmp_path / "d"),
        "--listen",
        "0.0.0.0:0",
        env={k: v for k, v in os.environ.items() if k != "OPLOG_TOKEN"},
        timeout=60,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "without authentication" in done.stderr
    assert not (tmp_path / "d").exists(), "the data directory was touched before the address was checked"


def test_bad_auth_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "auth.toml"
    bad.write_text('[[token]]\ntoken = "x"\nrole = "owner"\n', encoding="utf-8")
    done = run_cli("serve", "--data", str(tmp_path / "d"), "--auth-file", str(bad), timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "role must be one of" in done.stderr


def test_help_explains_boot_sync() -> None:
    done = run_cli("serve", "--help", timeout=60)
    assert done.returncode == 0
    assert "--boot-sync" in done.stdout and "--no-boot-sync" in done.stdout and "PerformSync" in done.stdout


def test_oplog_apply_through_the_server(tmp_path: Path, serve_factory: list[ServeProcess]) -> None:
    child = _start(serve_factory, tmp_path / "data", "--token", "cli-token")
    body = request_path("00")
    base = ["apply", str(body), "--server", child.address]
    ok = run_cli(*base, "--token", "cli-token", "--json", timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert '"deviceSeq": 1' in ok.stdout
    denied = run_cli(*base, "--token", "nope", timeout=60)
    assert denied.returncode != 0
    assert "UNAUTHENTICATED" in denied.stderr and "Traceback" not in denied.stderr
    assert len(denied.stderr.strip().splitlines()) == 1


def test_apply_finds_the_running_server_through_the_server_file(
    tmp_path: Path, serve_factory: list[ServeProcess]
) -> None:
    """``oplog apply --data DIR`` while a server holds DIR goes through that server, not the lock."""
    data = tmp_path / "data"
    child = _start(serve_factory, data)
    assert json.loads((data / "SERVER").read_text())["address"] == child.address
    body = request_path("00")
    ok = run_cli("apply", str(body), "--data", str(data), "--lock-wait", "0", "--json", timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert '"deviceSeq": 1' in ok.stdout
    code, err = child.stop()
    assert code == 0, err
    assert not (data / "SERVER").exists()


def test_two_servers_sharing_a_remote_converge(tmp_path: Path, serve_factory: list[ServeProcess]) -> None:
    """Two real ``oplog serve`` processes, one remote folder: PerformSync on both, then the same state."""
    import time

    remote = tmp_path / "shared-remote"
    first = ServeProcess(tmp_path / "one", "--remote", str(remote))
    serve_factory.append(first)
    second = ServeProcess(tmp_path / "two", "--remote", str(remote))
    serve_factory.append(second)
    with Client(first.address) as a, Client(second.address) as b:
        a.stub.Apply(setup_request())

        def settle(client: Client) -> pb.SyncInfo:
            # Boot syncs and earlier syncs run in the background; poll GetSyncInfo until idle.
            for _ in range(600):
                info = client.stub.GetSyncInfo(pb.GetSyncInfoRequest())
                if not info.in_progress:
                    return info
                time.sleep(0.05)
            pytest.fail("sync did not finish")

        def sync(client: Client) -> None:
            settle(client)
            for _ in range(100):
                try:
                    client.stub.PerformSync(pb.PerformSyncRequest(app="test"))
                    break
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.ABORTED, exc.details()
                    time.sleep(0.05)
            info = settle(client)
            assert not info.last_error, info.last_error

        sync(a)
        sync(b)
        b.stub.Apply(append_request("20240722000000-second1", "written on the second device", req_id=77))
        sync(b)
        sync(a)
        state_a = a.stub.GetState(pb.GetStateRequest())
        state_b = b.stub.GetState(pb.GetStateRequest())
        assert state_a.state_hash == state_b.state_hash
        assert state_a.block_count == state_b.block_count > 1
        assert set(state_a.device_heads) == set(state_b.device_heads) and len(state_a.device_heads) == 2
    assert first.stop()[0] == 0
    assert second.stop()[0] == 0
