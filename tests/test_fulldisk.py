"""A full disk (issue 15 item 4) on a real tmpfs with a real ``oplog serve`` process.

The test mounts a small tmpfs (so it needs root: CI runs as root; skipped
otherwise), serves a data directory on it, fills the rest of the tmpfs with a
file until ENOSPC and keeps writing. A request that failed is never visible,
health reports NOT_SERVING and writes get UNAVAILABLE while the log cannot be
written; when the file is removed the server recovers by itself; nothing
acknowledged is lost across a restart; ``oplog apply`` and ``oplog serve`` on
the full disk print one line and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from oplog.server.client import Client
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import transaction_to_json
from tests.cli_helpers import run_cli
from tests.store_procs import DOC, Served, append_request, create_doc_request

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for this test (unmounted after)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path) -> None:
    """Write ``path`` until the disk is full."""
    with open(path, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        # Then the last few bytes: nothing is left for the log.
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass


def _status(client: Client) -> bool:
    return client.serving()


def _body_file(folder: Path, request: pb.ApplyRequest) -> Path:
    body = {
        "reqId": request.req_id,
        "app": request.app,
        "session": request.session,
        "transactions": [transaction_to_json(tx) for tx in request.transactions],
    }
    path = folder / f"req-{request.session}-{request.req_id}.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def test_full_disk_fails_requests_invisibly_then_recovers(small_disk: Path, tmp_path: Path) -> None:
    data = small_disk / "data"
    served = Served(data)
    acked: list[str] = []
    failed: pb.ApplyRequest | None = None
    try:
        with Client(served.address) as client:
            client.stub.Apply(create_doc_request(), timeout=30)
            for n in range(5):
                request = append_request(0, n)
                client.stub.Apply(request, timeout=30)
                acked.append(request.transactions[0].do_operations[0].id)
            _fill(small_disk / "filler")
            # Requests of growing size until one cannot be written (the open segment's last page may hold a few).
            for n in range(5, 200):
                request = append_request(0, n, size=200 * (n - 4))
                try:
                    client.stub.Apply(request, timeout=30)
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
                    assert "No space left" in (exc.details() or "")
                    failed = request
                    break
                acked.append(request.transactions[0].do_operations[0].id)
            assert failed is not None, "the disk never filled"
            failed_id = failed.transactions[0].do_operations[0].id
            assert not _status(client), "health still SERVING on a full disk"
            # The failed request is nowhere: not in the state, not in its counts.
            with pytest.raises(grpc.RpcError) as missing:
                client.stub.GetBlock(pb.GetBlockRequest(id=failed_id), timeout=30)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            state = client.stub.GetState(pb.GetStateRequest(), timeout=30)
            assert state.position == 1 + len(acked)
            # Still full: the next write is refused the same way (the server tried again).
            with pytest.raises(grpc.RpcError) as again:
                client.stub.Apply(failed, timeout=30)
            assert again.value.code() == grpc.StatusCode.UNAVAILABLE

            # `oplog apply` on the full disk, while the server holds it, goes through the server: one line.
            cli = run_cli(
                "apply", "--data", str(data), "--server", served.address, str(_body_file(tmp_path, failed))
            )
            assert cli.returncode != 0
            assert "Traceback" not in cli.stderr and len(cli.stderr.strip().splitlines()) == 1, cli.stderr

            (small_disk / "filler").unlink()
            deadline = time.monotonic() + 60  # a generous bound on a 1 s probe, not a timing assertion
            while not _status(client) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _status(client), "health did not return to SERVING once the disk had room"
            reply = client.stub.Apply(failed, timeout=30)
            acked.append(failed_id)
            assert client.stub.GetBlock(pb.GetBlockRequest(id=failed_id), timeout=30).id == failed_id
            final = client.stub.GetState(pb.GetStateRequest(), timeout=30)
            assert final.position == 1 + len(acked) == reply.positions[0].device_seq
            print(
                f"full disk: {len(acked) - 1} acknowledged before the refusal ({len(acked) - 6} after the fill); "
                f"refused while full: 2 Apply (UNAVAILABLE) + 1 oplog apply (one line); "
                f"health back to SERVING; the refused request then applied"
            )
        code, err = served.stop()
        assert code == 0, err
        assert "Traceback" not in err, err
    finally:
        if served.proc.poll() is None:
            served.kill()

    restarted = Served(data)
    try:
        with Client(restarted.address) as client:
            again_state = client.stub.GetState(pb.GetStateRequest(), timeout=30)
            assert (again_state.position, again_state.state_hash) == (final.position, final.state_hash)
            present = {
                b.id for b in client.stub.GetDocument(pb.GetDocumentRequest(id=DOC), timeout=30).blocks
            }
            assert not [bid for bid in acked if bid not in present]
        code, err = restarted.stop()
        assert code == 0, err
    finally:
        if restarted.proc.poll() is None:
            restarted.kill()


def test_cli_on_a_full_disk_prints_one_line(small_disk: Path, tmp_path: Path) -> None:
    data = small_disk / "data"
    setup = run_cli("apply", "--data", str(data), str(_body_file(tmp_path, create_doc_request())))
    assert setup.returncode == 0, setup.stderr
    _fill(small_disk / "filler")
    body = _body_file(tmp_path, append_request(0, 1, size=20_000))
    for argv in (
        ("apply", "--data", str(data), str(body)),
        (
            "serve",
            "--data",
            str(data),
            "--listen",
            "127.0.0.1:0",
            "--no-boot-sync",
            "--remote",
            str(tmp_path / "r"),
        ),
    ):
        done = run_cli(*argv, timeout=60)
        assert done.returncode != 0, (argv, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert "Traceback" not in done.stderr and len(lines) == 1, (argv, done.stderr)
        assert "full" in lines[0] or "No space" in lines[0], lines[0]
    # Nothing was lost or half-written: with room again, the directory opens and holds the first request.
    (small_disk / "filler").unlink()
    replay = run_cli("apply", "--data", str(data), str(body))
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["positions"][0]["deviceSeq"] == 2
