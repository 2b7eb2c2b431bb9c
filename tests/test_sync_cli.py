"""``oplog sync`` and a real process killed mid-sync."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from oplog.store import Store
from oplog.tools.cli import main
from oplog.tree import snapshot
from oplog.wire import request_from_json

BOX = "20240101000000-notebk1"
REPO = Path(__file__).resolve().parents[1]


def _docs(data: Path, first: int, n: int) -> None:
    warnings.simplefilter("ignore")
    with Store.open(data) as s:
        for i in range(first, first + n):
            s.apply(
                request_from_json(
                    {
                        "reqId": i,
                        "app": "t",
                        "transactions": [
                            {
                                "doOperations": [
                                    {
                                        "action": "createDoc",
                                        "id": f"20240101000000-{i:07d}",
                                        "data": {"box": BOX, "title": f"T{i}"},
                                    }
                                ]
                            }
                        ],
                    }
                )
            )
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
