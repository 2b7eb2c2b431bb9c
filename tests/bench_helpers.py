"""Running a ``bench/`` script end to end from a test (its figures are never asserted on time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_bench(script: str, *args: str, timeout: float = 600) -> str:
    """Run ``bench/<script>`` with ``args`` in a fresh interpreter; its stdout (a failed run fails the test)."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
