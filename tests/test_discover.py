"""Finding the server that holds a data directory from its SERVER file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from oplog.lockfile import DataDirLock
from oplog.tools.discover import SERVER_FILE, find_server, remove_server_file, write_server_file


def test_a_server_counts_only_while_it_holds_the_lock(tmp_path: Path) -> None:
    data, remote = tmp_path / "data", tmp_path / "remote"
    data.mkdir()
    assert find_server(data) is None
    write_server_file(data, "127.0.0.1:7001", remote)
    assert find_server(data) is None  # nobody holds the writer's lock
    lock = DataDirLock(data)
    lock.acquire()
    try:
        found = find_server(data)
        assert found is not None and found.address == "127.0.0.1:7001"
        assert found.remote == str(remote.resolve())
        assert not found.other_remote(remote) and found.other_remote(tmp_path / "elsewhere")
    finally:
        lock.release()
    remove_server_file(data)
    assert not (data / SERVER_FILE).exists()


def test_a_file_left_by_a_dead_process_is_ignored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = int(child.stdout)
    (data / SERVER_FILE).write_text(json.dumps({"address": "127.0.0.1:7002", "pid": dead, "remote": ""}))
    (data / "LOCK").write_text(f"{dead}\n")
    assert find_server(data) is None
    remove_server_file(data)  # not this process's record: left alone
    assert (data / SERVER_FILE).exists()
    (data / SERVER_FILE).write_text("not json")
    assert find_server(data) is None
