"""Running ``oplog`` as a real process from a test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(
    *argv: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m oplog.tools.cli ARGV`` in a fresh process, the repository importable, output captured as text.

    ``env`` replaces the inherited environment (``PYTHONPATH`` is still set); the exit status is the caller's to check.
    """
    base = os.environ if env is None else env
    return subprocess.run(
        [sys.executable, "-m", "oplog.tools.cli", *argv],
        capture_output=True,
        text=True,
        env={**base, "PYTHONPATH": str(REPO)},
        timeout=timeout,
        check=False,
    )
