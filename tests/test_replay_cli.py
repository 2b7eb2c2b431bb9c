"""``oplog replay``, ``oplog query``, ``oplog stats`` on a data directory written by simulated devices."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from oplog.checkpoint import CheckpointStore, capture
from oplog.replay import replay
from oplog.tools.cli import main
from tests.workload import open_logs, simulate, write_logs


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    write_logs(path, simulate(51, devices=3, rounds=5, per_round=12))
    return path


def _expected(data: Path, until: int | None = None):  # type: ignore[no-untyped-def]
    logs = open_logs(data)
    try:
        return replay(logs, until_position=until)
    finally:
        for log in logs.values():
            log.close()


def test_replay_prints_the_state_hash(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--data", str(data)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == _expected(data).state_hash.hexdigest()


def test_replay_until_and_out(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = _expected(data, 17)
    out_file = tmp_path / "view.db"
    assert main(["replay", "--data", str(data), "--until", "17", "--out", str(out_file), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["position"] == 17 and info["state_hash"] == expected.state_hash.hexdigest()
    assert info["blocks"] == len(expected.ws.blocks)
    conn = sqlite3.connect(out_file)
    assert conn.execute("SELECT count(*) FROM blocks").fetchone()[0] == len(expected.ws.blocks)
    assert dict(conn.execute("SELECT key, value FROM meta"))["position"] == "17"
    conn.close()


def test_replay_uses_a_checkpoint(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = _expected(data, 30)
    with CheckpointStore(data / "checkpoints.db") as store:
        store.save(
            capture(
                r.ws,
                r.state_hash,
                position=r.position,
                heads=r.heads,
                head_hlcs=r.head_hlcs,
                last_key=r.last_key,
            )
        )
    assert main(["replay", "--data", str(data), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["from_checkpoint"] == 30 and info["state_hash"] == _expected(data).state_hash.hexdigest()
    assert main(["replay", "--data", str(data), "--json", "--full"]) == 0
    assert json.loads(capsys.readouterr().out)["from_checkpoint"] is None


def test_until_time(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--data", str(data), "--until-time", "2000-01-01T00:00:00", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["position"] == 0
    assert main(["replay", "--data", str(data), "--until-time", "yesterday"]) == 1
    assert "ISO 8601" in capsys.readouterr().err


def test_not_a_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["replay"], ["stats"], ["query", "SELECT 1"]):
        assert main([*command, "--data", str(tmp_path)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("oplog: error:") and "not an oplog data directory" in err and "\n" not in err


def test_query_builds_a_temporary_view(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "--data", str(data), "SELECT count(*) AS n FROM blocks", "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["columns"] == ["n"] and reply["rows"] == [[len(_expected(data).ws.blocks)]]
    assert not (data / "blocks.db").exists()
    assert main(["query", "--data", str(data), "DELETE FROM blocks"]) == 1
    assert "only reads" in capsys.readouterr().err


def test_stats(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--data", str(data), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    expected = _expected(data)
    assert stats["events"] == expected.position and stats["state_hash"] == expected.state_hash.hexdigest()
    assert set(stats["devices"]) == set(expected.heads) and stats["conflicts"] == len(expected.conflicts)
    assert main(["stats", "--data", str(data)]) == 0
    assert "state hash" in capsys.readouterr().out
