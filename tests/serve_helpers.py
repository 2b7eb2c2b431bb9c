"""``oplog serve`` as a real child process for tests: started on a free port, its printed address parsed.

It lived in ``tests/test_serve_process.py`` and four other test modules imported it from there; the
``serve_factory`` fixture that kills leftover children is in ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

LISTENING = re.compile(r"listening on (\S+)")


def spawn_serve(
    args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``oplog serve ARGS`` as a child process: it, and the first line it printed (the test fails if none in 60 s)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "oplog.tools.cli", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    stdout = proc.stdout
    assert stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return proc, lines.get(timeout=60)
    except queue.Empty:
        proc.kill()
        pytest.fail("oplog serve printed nothing within 60 s")


class ServeProcess:
    """A running ``oplog serve`` child and the address it printed."""

    def __init__(self, data: Path, *extra: str) -> None:
        if "--remote" not in extra:
            # Never the default ./oplog-remote of the current folder: boot sync would write there.
            extra = (*extra, "--remote", str(data.parent / f"{data.name}-remote"))
        self.proc, first = spawn_serve(["--data", str(data), "--listen", "127.0.0.1:0", *extra])
        if first.startswith("{"):
            first = f"listening on {json.loads(first)['listening']}"
        match = LISTENING.search(first)
        if not match:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=30)
            pytest.fail(f"oplog serve did not start: {first!r} {err}")
        self.address = match.group(1)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Send ``sig`` and wait; the exit code and stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err
