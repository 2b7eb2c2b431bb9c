"""mypy runs clean over oplog, oplog.server and oplog.tools, with the configuration in pyproject.toml.

The configuration has to make mypy see ``server/`` and ``tools/`` as the
``oplog.server`` and ``oplog.tools`` they are installed as (the package-dir
remap); the file count below proves it checked them, not only ``oplog/``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _python_files(folder: str) -> int:
    return sum(1 for path in (REPO / folder).rglob("*.py") if "v1" not in path.parts)


def test_mypy_is_clean_over_the_three_packages(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    # A fresh cache: the run checks every file, as CI does (about 2 s here).
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    checked = re.search(r"no issues found in (\d+) source files", run.stdout)
    assert checked is not None, run.stdout
    expected = _python_files("oplog") + _python_files("server") + _python_files("tools")
    assert int(checked.group(1)) >= expected, run.stdout
