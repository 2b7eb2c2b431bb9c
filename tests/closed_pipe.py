"""Running ``oplog`` into a pipe its reader has already closed (``oplog dump | head`` after head quit).

The read end is closed before the command starts, so its first write meets
EPIPE every time: no race with how fast the command prints.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.cli_helpers import REPO

__all__ = ["run_into_closed_pipe"]


def run_into_closed_pipe(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m oplog.tools.cli ARGV`` with stdout a pipe whose read end is closed; stderr captured."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "oplog.tools.cli", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=timeout,
            check=False,
        )
    finally:
        os.close(write_end)
