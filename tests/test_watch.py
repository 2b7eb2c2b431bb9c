"""``oplog watch`` as real processes: two daemons on one remote, a daemon killed mid-sync, beside a server.

Also what ends a daemon: a permanent error (a token the server refuses), a second
daemon on the same data directory, bad flags. The daemon's logic itself (what is
news, what is its own write, retries) is tested in process in tests/test_watcher.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from oplog.errors import OplogError
from oplog.server.client import Client
from oplog.tools.cli import main
from oplog.tools.stats import collect
from oplog.v1 import oplog_pb2 as pb
from tests.engine_helpers import numbered_doc_body
from tests.fixtures import request_files
from tests.serve_helpers import ServeProcess

REPO = Path(__file__).resolve().parents[1]
#: Process tests poll with a generous bound: the machine is shared and slow at times.
TIMEOUT_S = 90.0


class WatchProcess:
    """A running ``oplog watch --json -v`` child; its JSON lines and stderr collected as they come."""

    def __init__(self, data: Path, remote: Path, *extra: str) -> None:
        self.data = data
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "oplog.tools.cli",
                "watch",
                "--data",
                str(data),
                "--remote",
                str(remote),
                "--debounce",
                "0.2",
                "--interval",
                "600",
                "--json",
                "--verbose",
                *extra,
            ],
            cwd=data.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.records: list[dict[str, Any]] = []
        self.err: list[str] = []
        self._cv = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, is_stdout: bool) -> None:
        for line in stream:
            with self._cv:
                if is_stdout:
                    self.records.append(json.loads(line))
                else:
                    self.err.append(line.rstrip("\n"))
                self._cv.notify_all()

    def _wait(self, found: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + TIMEOUT_S
        with self._cv:
            while True:
                value = found()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not found()):
                    pytest.fail(
                        f"oplog watch on {self.data}: no {what}; stdout {self.records} stderr {self.err}"
                    )
                self._cv.wait(min(left, 0.5))

    def wait_ready(self) -> None:
        """Wait for the "watching" status line."""
        self._wait(lambda: any("watching" in line for line in self.err), "'watching' line")

    def wait_record(
        self, pred: Callable[[dict[str, Any]], bool], start: int = 0
    ) -> tuple[int, dict[str, Any]]:
        """The first record from index ``start`` on that satisfies ``pred``, and its index."""

        def find() -> tuple[int, dict[str, Any]] | None:
            for i in range(start, len(self.records)):
                if pred(self.records[i]):
                    return i, self.records[i]
            return None

        return self._wait(find, "matching log line")  # type: ignore[no-any-return]

    def syncs(self) -> list[dict[str, Any]]:
        """The sync lines logged so far."""
        with self._cv:
            return [r for r in self.records if r["event"] == "sync"]

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Send ``sig`` and wait; the exit code and stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=120)
        for reader in self._readers:  # the pipes end with the process: every line is read
            reader.join(timeout=60)
        with self._cv:
            return self.proc.returncode, "\n".join(self.err)


@pytest.fixture
def started() -> Iterator[list[Any]]:
    """Children (watch and serve) killed at the end if a test left them running."""
    children: list[Any] = []
    yield children
    for child in children:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait(timeout=60)


def _watch(started: list[Any], data: Path, remote: Path, *extra: str) -> WatchProcess:
    child = WatchProcess(data, remote, *extra)
    started.append(child)
    child.wait_ready()
    return child


def _apply(data: Path, body: Path) -> dict[str, Any]:
    """``oplog apply`` in its own process; it must succeed while a daemon watches the directory."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "oplog.tools.cli",
            "apply",
            "--data",
            str(data),
            "--lock-wait",
            "60",
            str(body),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _stats(data: Path) -> dict[str, Any] | None:
    """``oplog stats`` of a directory (read-only, beside the daemon); None if caught mid-write."""
    try:
        return collect(data)
    except (OplogError, OSError):
        return None


def _eventually(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _same_state(
    a: Path, b: Path, *, events: int
) -> Callable[[], tuple[dict[str, Any], dict[str, Any]] | None]:
    """A check: both directories hold ``events`` events and the same state hash."""

    def check() -> tuple[dict[str, Any], dict[str, Any]] | None:
        sa, sb = _stats(a), _stats(b)
        if sa is None or sb is None:
            return None
        if sa["events"] == sb["events"] == events and sa["state_hash"] == sb["state_hash"]:
            return sa, sb
        return None

    return check


def _examples() -> list[Path]:
    return request_files()


def _doc_body(folder: Path, i: int) -> Path:
    body = numbered_doc_body(i, req_id=1000 + i, app="test")
    path = folder / f"doc-{i}.json"
    path.write_text(json.dumps(body))
    return path


def _check_remote_whole(cloud: Path) -> None:
    """Every device folder on the remote holds exactly its manifest's segments, sizes and CRCs matching."""
    import google_crc32c

    from oplog.sync import Manifest

    manifests = list(cloud.glob("devices/*/MANIFEST"))
    assert manifests
    for path in manifests:
        manifest = Manifest.decode(path.read_bytes())
        folder = path.parent
        # A killed upload may leave a ``.tmp-`` file behind; never a partial file under a final name.
        finals = {p.name for p in folder.iterdir() if ".tmp-" not in p.name} - {"MANIFEST"}
        assert finals == {e.name for e in manifest.segments}
        for entry in manifest.segments:
            data = (folder / entry.name).read_bytes()
            assert len(data) == entry.size and f"{google_crc32c.value(data):08x}" == entry.crc


def test_two_daemons_converge_without_a_manual_sync(tmp_path: Path, started: list[Any]) -> None:
    """An edit applied on A shows up on B and back, by the daemons alone; both reach the same hash."""
    a, b, remote = tmp_path / "a", tmp_path / "b", tmp_path / "remote"
    files = _examples()
    wa = _watch(started, a, remote)
    wb = _watch(started, b, remote)
    # The daemons hold no lock between syncs: a person's apply goes straight in.
    _apply(a, files[0])
    _apply(a, files[1])
    sa, sb = _eventually(_same_state(a, b, events=2), "B to receive A's two transactions")
    assert sb["blocks"] > 0 and sa["device_id"] != sb["device_id"]
    # And the other way: an edit on B (on top of A's blocks) reaches A.
    _apply(b, files[2])
    sa2, sb2 = _eventually(_same_state(a, b, events=3), "A to receive B's transaction")
    assert sa2["state_hash"] != sa["state_hash"]
    assert any(r["pushed_segments"] > 0 and r["via"] == "local" for r in wa.syncs())
    assert any(r["pulled_segments"] > 0 for r in wb.syncs())
    assert all(r["result"] == "ok" for r in wa.syncs() + wb.syncs())
    _check_remote_whole(remote / "main")
    # That no sync feeds another (a daemon's own pushes and seals are not news) is checked in
    # process, batch by batch, in tests/test_watcher.py: here it could only be a sleep.
    for child in (wa, wb):
        code, err = child.stop(signal.SIGTERM)
        assert code == 0, err
        assert "stopped on SIGTERM" in err and "Traceback" not in err


def test_daemon_killed_mid_sync_loses_nothing(tmp_path: Path, started: list[Any]) -> None:
    """SIGKILL right after a sync starts, several times; restarted, the daemons converge on every event."""
    a, b, remote = tmp_path / "a", tmp_path / "b", tmp_path / "remote"
    bodies = tmp_path / "bodies"
    bodies.mkdir()
    wa = _watch(started, a, remote)
    _watch(started, b, remote)
    killed_mid_sync = 0
    delays = (0.0, 0.0, 0.002, 0.005, 0.01, 0.03)
    # Whether a kill lands inside a sync depends on timing (printed, not asserted): a kill at a chosen
    # point of an upload is tests/test_remote_contract.py's test_a_sync_killed_mid_upload_loses_nothing
    # and tests/test_sync_cli.py's test_process_killed_mid_sync_recovers; this one shows the daemon, killed at any point, loses nothing.
    rounds = len(delays)
    for i, delay in enumerate(delays):
        first = len(wa.records)
        _apply(a, _doc_body(bodies, i))
        # The daemon's reaction: a sync starting, or (when a sync already running, e.g. for B's news,
        # took the commit along) that sync ending with something pushed.
        index, seen = wa.wait_record(
            lambda r: r["event"] == "start" or (r["event"] == "sync" and r.get("pushed_segments", 0) > 0),
            first,
        )
        if delay:
            time.sleep(delay)
        wa.proc.kill()
        wa.stop()  # reaps it and reads every line it wrote
        if seen["event"] == "start" and not any(r["event"] == "sync" for r in wa.records[index + 1 :]):
            killed_mid_sync += 1
        wa = _watch(started, a, remote)
    _, sb = _eventually(_same_state(a, b, events=rounds), "B to hold all of A's events")
    assert sb["documents"] == rounds
    print(f"{killed_mid_sync} of {rounds} kills landed inside a sync")
    # Nothing half-written under a final name: every segment is the one its manifest lists.
    _check_remote_whole(remote / "main")
    for child in started:
        if child.proc.poll() is None:
            assert child.stop(signal.SIGINT)[0] == 0


def test_watch_beside_a_server_syncs_through_perform_sync(tmp_path: Path, started: list[Any]) -> None:
    """With ``oplog serve`` on A the daemon asks the server to sync; a plain daemon on B meets it."""
    a, b, remote = tmp_path / "a", tmp_path / "b", tmp_path / "remote"
    files = _examples()
    server = ServeProcess(a, "--remote", str(remote))
    started.append(server)
    wa = _watch(started, a, remote)
    _watch(started, b, remote)
    _apply(a, files[0])  # through the server (it holds the directory)

    def server_state() -> pb.GetStateResponse:
        with Client(server.address) as c:
            return c.stub.GetState(pb.GetStateRequest(), timeout=30)

    def b_matches() -> bool:
        sb = _stats(b)
        return sb is not None and sb["events"] == 1 and sb["state_hash"] == server_state().state_hash

    _eventually(b_matches, "B to receive the served directory's transaction")
    # B can hold the event before A's daemon has printed the line of the sync that pushed it: wait for it.
    wa.wait_record(
        lambda r: r["event"] == "sync" and r["via"] == f"server {server.address}" and r["pushed_segments"] > 0
    )
    assert all(r["via"].startswith("server ") for r in wa.syncs())
    _apply(b, files[1])

    def a_matches() -> bool:
        sb = _stats(b)
        return sb is not None and sb["events"] == 2 and server_state().state_hash == sb["state_hash"]

    _eventually(a_matches, "the server to pull B's transaction")
    code, err = wa.stop(signal.SIGTERM)
    assert code == 0, err
    assert server.stop(signal.SIGTERM)[0] == 0


def test_bad_flags_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad timings or cloud names: exit 1, one line, nothing created."""
    data = tmp_path / "d"
    for flags in (["--debounce", "-1"], ["--cloud-name", "../x"], ["--max-backoff", "0.1", "--backoff", "5"]):
        assert main(["watch", "--data", str(data), "--remote", str(tmp_path / "r"), *flags]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("oplog: error:"), err
    assert not data.exists()


def test_watch_of_a_file_is_refused(tmp_path: Path) -> None:
    """A data path or a remote path that is a file: one line, exit 1, no traceback (a real process)."""
    path = tmp_path / "f"
    path.write_text("x")
    for data, remote in ((path, tmp_path / "r"), (tmp_path / "d", path / "r")):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "oplog.tools.cli",
                "watch",
                "--data",
                str(data),
                "--remote",
                str(remote),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={**os.environ},
        )
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("oplog: error:") and "Traceback" not in proc.stderr
        assert "Not a directory" in lines[0] or "not a directory" in lines[0], lines


def test_sigterm_with_a_sync_stuck_waiting_is_bounded(tmp_path: Path, started: list[Any]) -> None:
    """A sync waiting for the writer's lock when SIGTERM comes: abandoned after --stop-wait, exit 0, nothing lost."""
    from oplog.store import Store, StoreOptions
    from oplog.wire import request_from_json

    a, remote = tmp_path / "a", tmp_path / "remote"
    bodies = tmp_path / "bodies"
    bodies.mkdir()
    wa = _watch(started, a, remote, "--lock-wait", "120", "--stop-wait", "1")
    wa.wait_record(lambda r: r["event"] == "sync")
    first = len(wa.records)
    with Store.open(a, options=StoreOptions(lock_timeout_s=60)) as store:
        # A commit by someone holding the lock: the daemon's sync starts and waits for the lock.
        store.apply(request_from_json(json.loads(_doc_body(bodies, 1).read_text())))
        wa.wait_record(lambda r: r["event"] == "start" and "local" in r["trigger"], first)
        code, err = wa.stop(signal.SIGTERM)
    assert code == 0, err
    assert "abandoning" in err and "stopped on SIGTERM" in err and "Traceback" not in err
    # Restarted, the daemon pushes the commit the abandoned sync never got to.
    wa = _watch(started, a, remote)
    _, record = wa.wait_record(lambda r: r["event"] == "sync" and r["pushed_segments"] > 0)
    assert record["result"] == "ok"
    assert wa.stop()[0] == 0


def _wait_exit(child: WatchProcess) -> tuple[int, list[str]]:
    """The exit code of a daemon that ends by itself, and its stderr lines."""
    code = child.proc.wait(timeout=TIMEOUT_S)
    child.stop()  # joins the output readers
    return code, child.err


def test_a_token_the_server_refuses_stops_the_daemon(tmp_path: Path, started: list[Any]) -> None:
    """A reader token (PERMISSION_DENIED) or an unknown one (UNAUTHENTICATED): one attempt, one line, exit 1."""
    a, remote = tmp_path / "a", tmp_path / "remote"
    auth = tmp_path / "auth.toml"
    auth.write_text(
        '[[token]]\nname = "admin"\ntoken = "admin-secret"\nrole = "admin"\n'
        '[[token]]\nname = "reader"\ntoken = "reader-secret"\nrole = "reader"\n',
        encoding="utf-8",
    )
    server = ServeProcess(a, "--remote", str(remote), "--auth-file", str(auth))
    started.append(server)
    for token, code_name in (("reader-secret", "PERMISSION_DENIED"), ("wrong-secret", "UNAUTHENTICATED")):
        wa = _watch(started, a, remote, "--token", token)
        code, err = _wait_exit(wa)
        assert code == 1, err
        errors = [line for line in err if line.startswith("oplog: error:")]
        assert len(errors) == 1 and code_name in errors[0], err
        assert "will not be retried" in errors[0]
        assert not any("Traceback" in line or token in line for line in err)
        syncs = wa.syncs()
        assert len(syncs) == 1 and syncs[0]["result"] == "failed" and syncs[0]["permanent"] is True
        assert "retry_in_s" not in syncs[0] and token not in json.dumps(wa.records)
    assert server.stop(signal.SIGTERM)[0] == 0


def test_a_second_daemon_on_one_data_directory_is_refused(tmp_path: Path, started: list[Any]) -> None:
    """The second ``oplog watch`` exits 1 with one line naming the first; the first keeps running."""
    a, remote = tmp_path / "a", tmp_path / "remote"
    first = _watch(started, a, remote)
    first.wait_record(lambda r: r["event"] == "sync" and r["result"] == "ok")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "oplog.tools.cli",
            "watch",
            "--data",
            str(a),
            "--remote",
            str(tmp_path / "r2"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"oplog: error: oplog watch is already running on {a} (process {first.proc.pid}); "
        "one daemon per data directory"
    ]
    assert not (tmp_path / "r2").exists()
    # The first daemon still works: a commit is pushed by it.
    mark = len(first.records)
    _apply(a, _doc_body(tmp_path, 1))
    _, record = first.wait_record(lambda r: r["event"] == "sync" and r["pushed_segments"] > 0, mark)
    assert record["result"] == "ok"
    code, err = first.stop(signal.SIGTERM)
    assert code == 0, err
