"""The data-directory library (``oplog.datadir``): the one rule, read-only opening, replay, query, stats.

Also every read command, and ``oplog serve --readonly``, on a read-only data
directory (a backup on read-only media): after ``chmod -R a-w`` (as root, the
commands run as ``nobody`` through setpriv, since chmod does not stop root),
and on a read-only bind mount (root only); skipped where neither can be made.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from oplog import datadir
from oplog.clock import FakeClock, RandomIds
from oplog.errors import InvalidArgument, NotADataDir, StorageError
from oplog.sqlite_readonly import connect_readonly
from oplog.store import Store
from oplog.wire import request_from_json
from tests.cli_helpers import REPO, run_cli
from tests.engine_helpers import T0, numbered_doc_body

DOCS = 6


def _write(path: Path, docs: int = DOCS) -> str:
    """A data directory written by a real store (closed cleanly); returns its state hash."""
    with Store.open(path, clock=FakeClock(T0), ids=RandomIds(5)) as store:
        for n in range(1, docs + 1):
            store.apply(request_from_json(numbered_doc_body(n)))
        store.checkpoint()
        return str(store.state().state_hash)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    _write(path)
    return path


# ---------------------------------------------------------------- the rule and the layout


def test_one_rule_for_a_data_directory(tmp_path: Path, data: Path) -> None:
    assert datadir.check_data_dir(data) == data
    logs_only = tmp_path / "logs-only"
    (logs_only / datadir.DEVICES_DIR).mkdir(parents=True)
    plain_file = tmp_path / "file"
    plain_file.write_text("x")
    for path, why in (
        (tmp_path / "missing", "no such directory"),
        (plain_file, "not a directory"),
        (logs_only, "no DEVICE file"),
    ):
        with pytest.raises(NotADataDir, match=why):
            datadir.check_data_dir(path)
    # Store.open without create applies the same rule, with the same words.
    with pytest.raises(NotADataDir, match="no DEVICE file"):
        Store.open(logs_only, create=False)
    proc = run_cli("replay", "--data", str(logs_only))
    assert proc.returncode == 1 and "no DEVICE file" in proc.stderr


def test_layout_names_the_files_a_store_writes(data: Path) -> None:
    layout = datadir.Layout(data)
    for path in (layout.device_file, layout.devices, layout.checkpoints, layout.view):
        assert path.exists(), path
    assert layout.journal.name == "journal.json"  # written once sync has pulled something
    assert layout.lock.name == "LOCK" and layout.server.name == "SERVER"
    assert layout.sync_state.name == "sync.json" and layout.archive.name == "archive"
    assert datadir.local_device_id(data) == layout.device_file.read_text().strip()


# ---------------------------------------------------------------- replay, view, query, stats


class _Recorder:
    def __init__(self) -> None:
        self.total = -1
        self.done: list[int] = []

    def set_total(self, total: int) -> None:
        self.total = total

    def update_to(self, done: int) -> None:
        self.done.append(done)


def test_replay_matches_the_store_and_reports_progress(tmp_path: Path) -> None:
    path = tmp_path / "d"
    expected = _write(path)
    progress = _Recorder()
    result = datadir.replay_data_dir(path, full=True, progress=progress)
    assert result.state_hash.hexdigest() == expected and result.position == DOCS
    assert progress.total == DOCS
    assert datadir.replay_data_dir(path).state_hash.hexdigest() == expected
    assert datadir.replay_data_dir(path, until=2).position == 2


def test_replay_until_past_the_end_names_the_end(data: Path) -> None:
    with pytest.raises(
        InvalidArgument, match=f"--until {DOCS + 1} is past the end of the history \\({DOCS} events\\)"
    ):
        datadir.replay_data_dir(data, until=DOCS + 1)
    with pytest.raises(InvalidArgument, match="not negative"):
        datadir.replay_data_dir(data, until=-1)
    assert datadir.replay_data_dir(data, until=DOCS).position == DOCS


def test_write_view_refusals_and_result(data: Path, tmp_path: Path) -> None:
    result = datadir.replay_data_dir(data)
    with pytest.raises(InvalidArgument, match="own blocks.db"):
        datadir.write_view(result, data / "blocks.db", data_dir=data)
    with pytest.raises(InvalidArgument, match="is a directory"):
        datadir.write_view(result, tmp_path, data_dir=data)
    with pytest.raises(InvalidArgument, match="no such directory"):
        datadir.write_view(result, tmp_path / "nowhere" / "v.db", data_dir=data)
    out = datadir.write_view(result, tmp_path / "v.db", data_dir=data)
    with sqlite3.connect(out) as conn:
        assert conn.execute("SELECT count(*) FROM blocks").fetchone()[0] == len(result.ws.blocks)


def test_query_uses_the_view_or_a_temporary_one(data: Path) -> None:
    sql = "SELECT count(*) FROM blocks WHERE type = 'd'"
    assert datadir.query_data_dir(data, sql, [], max_rows=10, time_budget_s=5).rows == [(DOCS,)]
    for suffix in ("", "-wal", "-shm"):
        Path(str(data / "blocks.db") + suffix).unlink(missing_ok=True)
    assert datadir.query_data_dir(data, sql, [], max_rows=10, time_budget_s=5).rows == [(DOCS,)]
    assert not (data / "blocks.db").exists()


def test_collect_stats(data: Path) -> None:
    stats = datadir.collect_stats(data)
    assert stats["events"] == DOCS and stats["position"] == DOCS and stats["documents"] == DOCS
    assert stats["device_id"] == datadir.local_device_id(data)
    assert [d["local"] for d in stats["devices"].values()] == [True]
    assert stats["checkpoints"] and stats["view_bytes"] > 0
    assert "state_hash" not in datadir.collect_stats(data, with_hash=False)


# ---------------------------------------------------------------- read-only SQLite


def test_connect_readonly_without_a_wal_index(data: Path, tmp_path: Path) -> None:
    """A WAL database whose -shm cannot be made opens immutable; a pending WAL is refused, not ignored."""
    view = data / "blocks.db"
    assert not Path(str(view) + "-shm").exists()  # closed cleanly
    conn = connect_readonly(view)
    assert conn.execute("SELECT count(*) FROM blocks WHERE type = 'd'").fetchone()[0] == DOCS
    conn.close()


# ---------------------------------------------------------------- read-only media

READ_COMMANDS: list[tuple[str, ...]] = [
    ("stats",),
    ("replay",),
    ("verify",),
    ("query", "SELECT count(*) AS n FROM blocks WHERE type = 'd'"),
    ("conflicts",),
    ("dump",),
    ("history", "20240101000000-0000001"),
    ("diff",),
    ("archive", "list"),
]


def _can_bind_mount(tmp: Path) -> bool:
    probe_src, probe_dst = tmp / "probe-src", tmp / "probe-dst"
    probe_src.mkdir()
    probe_dst.mkdir()
    ok = (
        subprocess.run(["mount", "--bind", str(probe_src), str(probe_dst)], capture_output=True).returncode
        == 0
    )
    if ok:
        subprocess.run(["umount", str(probe_dst)], check=False)
    return ok


@dataclass(frozen=True)
class ReadOnlyDir:
    """A data directory the commands cannot write, and the prefix that runs them as a user who cannot."""

    path: Path
    as_user: tuple[str, ...] = ()

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """``oplog ARGV --data PATH`` in a real process, as that user."""
        return subprocess.run(
            [*self.as_user, sys.executable, "-m", "oplog.tools.cli", *argv, "--data", str(self.path)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=120,
            check=False,
        )


def _unprivileged() -> tuple[str, ...]:
    """How root runs a command as ``nobody`` (chmod does not stop root); skips where it cannot."""
    if os.geteuid() != 0:
        return ()
    prefix = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")
    if shutil.which("setpriv") is None:
        pytest.skip("root needs setpriv to run the commands as a user chmod stops")
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import oplog"],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip("nobody cannot run this interpreter")
    return prefix


@pytest.fixture(params=["chmod", "ro-mount"])
def readonly_data(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadOnlyDir]:
    """A data directory nobody can write: chmod -R a-w (run as nobody when root), or a read-only bind mount (root)."""
    if request.param == "chmod":
        as_user = _unprivileged()
        # Under /tmp itself: pytest's own tmp folders are private to root, where nobody cannot even look.
        parent = Path(tempfile.mkdtemp(prefix="oplog-ro-", dir="/tmp"))
        os.chmod(parent, 0o755)
        source = parent / "data"
        _write(source)
        for root, dirs, files in os.walk(source):
            for name in dirs:
                os.chmod(Path(root) / name, 0o555)
            for name in files:
                os.chmod(Path(root) / name, 0o444)
        os.chmod(source, 0o555)
        try:
            yield ReadOnlyDir(source, as_user)
        finally:
            for root, dirs, _files in os.walk(source):
                os.chmod(root, 0o755)
                for name in dirs:
                    os.chmod(Path(root) / name, 0o755)
            shutil.rmtree(parent)
        return
    if os.geteuid() != 0 or not _can_bind_mount(tmp_path):
        pytest.skip("a read-only bind mount needs root and mount(8)")
    source = tmp_path / "data"
    _write(source)
    target = tmp_path / "ro"
    target.mkdir()
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], check=True)
        yield ReadOnlyDir(target)
    finally:
        subprocess.run(["umount", str(target)], check=False)


def test_every_read_command_works_on_a_read_only_data_directory(readonly_data: ReadOnlyDir) -> None:
    probe = subprocess.run(
        [*readonly_data.as_user, "touch", str(readonly_data.path / "probe")], capture_output=True, check=False
    )
    assert probe.returncode != 0  # the directory really cannot be written by whoever runs the commands
    for argv in READ_COMMANDS:
        proc = readonly_data.run(*argv)
        assert proc.returncode == 0, (argv, proc.stderr)
        assert proc.stderr == "", (argv, proc.stderr)  # no warning, no false damage
    report = json.loads(readonly_data.run("verify", "--json").stdout)
    assert report["sound"] and report["damage"] == 0 and report["checked"]["checkpoints"] >= 1
    query = readonly_data.run("query", "--json", "SELECT count(*) FROM blocks WHERE type = 'd'")
    assert json.loads(query.stdout)["rows"] == [[DOCS]]
    stats = json.loads(readonly_data.run("stats", "--json").stdout)
    assert stats["checkpoints"] and stats["position"] == DOCS
    assert not list(readonly_data.path.glob("*-shm"))


def test_readonly_open_errors_are_storage_errors(tmp_path: Path) -> None:
    broken = tmp_path / "d"
    _write(broken)
    (broken / "blocks.db").write_bytes(b"not a database" * 100)
    with pytest.raises((StorageError, sqlite3.DatabaseError)):
        datadir.query_data_dir(broken, "SELECT 1", [], max_rows=1, time_budget_s=1)


# ---------------------------------------------------------------- oplog serve --readonly


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _serve_readonly(
    data: Path, remote: Path, as_user: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[str], str]:
    """``oplog serve --readonly`` as a real process; the process and the address it printed."""
    proc = subprocess.Popen(
        [
            *as_user,
            sys.executable,
            "-m",
            "oplog.tools.cli",
            "serve",
            "--readonly",
            "--lock-wait",
            "0",
            "--listen",
            "127.0.0.1:0",
            "--remote",
            str(remote),
            "--json",
            "--data",
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    first = proc.stdout.readline() if proc.stdout is not None else ""
    if not first.startswith("{"):
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"oplog serve --readonly did not start: {first!r} {err}")
    return proc, json.loads(first)["listening"]


def _check_readonly_server(
    data: Path, remote: Path, expected_hash: str, as_user: tuple[str, ...] = ()
) -> None:
    import grpc

    from oplog.server.client import Client
    from oplog.v1 import oplog_pb2 as pb

    proc, address = _serve_readonly(data, remote, as_user)
    try:
        with Client(address) as client:
            client.wait_ready(30)
            assert client.stub.GetState(pb.GetStateRequest(), timeout=30).state_hash == expected_hash
            reply = client.stub.Query(
                pb.QueryRequest(sql="SELECT count(*) FROM blocks WHERE type = 'd'"), timeout=30
            )
            assert reply.rows[0].values[0].number_value == DOCS
            with pytest.raises(grpc.RpcError) as refused:
                client.stub.Apply(request_from_json(numbered_doc_body(99)), timeout=30)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_serve_readonly_beside_the_writer_takes_no_lock_and_writes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    expected = _write(data)
    with Store.open(data, clock=FakeClock(T0), ids=RandomIds(6)):  # the writer holds the lock throughout
        before = _files(data)
        _check_readonly_server(data, tmp_path / "remote", expected)
        assert _files(data) == before
    assert not (tmp_path / "remote").exists()


def test_serve_readonly_on_read_only_media(readonly_data: ReadOnlyDir, tmp_path: Path) -> None:
    expected = datadir.replay_data_dir(readonly_data.path).state_hash.hexdigest()
    _check_readonly_server(readonly_data.path, tmp_path / "remote", expected, readonly_data.as_user)


# ---------------------------------------------------------------- conflicts, diff, compare


def test_conflicts_are_placed_in_merged_order(tmp_path: Path) -> None:
    from tests.workload import simulate, write_logs

    path = tmp_path / "sim"
    write_logs(path, simulate(51, devices=3, rounds=5, per_round=12))
    replayed = datadir.replay_data_dir(path, full=True)
    scan_progress = _Recorder()
    found = datadir.conflicts_data_dir(path, scan_progress=scan_progress)
    assert found.position == replayed.position
    assert [p.conflict for p in found.conflicts] == list(replayed.conflicts)
    positions = [p.position for p in found.conflicts]
    assert found.conflicts and None not in positions and positions == sorted(positions)  # seed 51 has 11
    assert scan_progress.total == replayed.position


def test_diff_and_compare(data: Path, tmp_path: Path) -> None:
    whole = datadir.diff_data_dir(data)
    assert whole.end == DOCS and len(whole.result.diff.added) == DOCS
    assert not datadir.diff_data_dir(data, 2, 2).result.diff.added
    assert len(datadir.diff_data_dir(data, 2, full=True).result.diff.added) == DOCS - 2
    with pytest.raises(InvalidArgument, match="past the end of the history"):
        datadir.diff_data_dir(data, 0, DOCS + 1)
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    assert datadir.compare_data_dirs(data, copy).identical
    with Store.open(copy, clock=FakeClock(T0 + 10_000), ids=RandomIds(8)) as store:
        store.apply(request_from_json(numbered_doc_body(50)))
    progress = _Recorder()
    cmp = datadir.compare_data_dirs(data, copy, progress=progress)
    assert not cmp.identical and cmp.logs.first_theirs_only is not None and cmp.logs.first_ours_only is None
    assert [b.id for b in cmp.blocks.added] == ["20240101000000-0000050"]
    assert progress.total == 2 * DOCS + 1 and progress.done[-1] <= progress.total
    with pytest.raises(InvalidArgument, match="same data directory"):
        datadir.compare_data_dirs(data, data)
    with pytest.raises(NotADataDir, match="--other"):
        datadir.compare_data_dirs(data, tmp_path / "nowhere")


def test_the_progress_adapter_takes_every_shape(capsys: pytest.CaptureFixture[str]) -> None:
    from oplog.tools.progress import ProgressBar, progress_bar

    bar = ProgressBar(desc="shapes", min_total=0)
    bar.set_total(10)
    bar.update_to(4)
    bar.update_to(99)  # never past the total
    bar.add_total(5)
    bar.advance(2)
    bar.step(3, 5, "pulling")
    bar.write("retrying: x")
    bar.close()
    small = ProgressBar(min_total=1000)
    small.set_total(10)  # under min_total: no bar, every call a no-op
    small.update_to(5)
    small.close()
    with progress_bar(False) as nothing:
        assert nothing is None
    err = capsys.readouterr().err
    assert "shapes" in err and "retrying: x" in err
