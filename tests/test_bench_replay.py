"""``bench/replay.py`` runs end to end on a small history (timings are not asserted)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.bench_helpers import run_bench


def test_small_run_reports_every_step(tmp_path: Path) -> None:
    out = run_bench(
        "replay.py",
        "--events",
        "4000",
        "--tail",
        "500",
        "--no-peer",
        "--no-view",
        "--dir",
        str(tmp_path / "work"),
    )
    assert "history: 4,000 events on 4 devices" in out
    # Every step printed a rate, and start-up reached the full replay's state (the script checks the hash).
    for label in ("full replay:", "read floor:", "checkpoint:", "start-up:"):
        assert re.search(rf"^{label}\s", out, re.MULTILINE), out
    assert "tail 500 events" in out
    assert "peer:          skipped" in out
