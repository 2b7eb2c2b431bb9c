"""``bench/apply.py`` runs end to end on a small workspace (timings are not asserted).

The script itself checks that its three paths through the engine (the fold, ``apply_event`` and the
reader path) reach the same state hash, and ``--check`` checks the tree invariants after them.
"""

from __future__ import annotations

import re

from tests.bench_helpers import run_bench


def test_small_run_reports_every_path() -> None:
    out = run_bench("apply.py", "--blocks", "3000", "--per-doc", "100", "--ops", "5000", "--check")
    assert "workspace: 3,000 blocks in 30 documents" in out
    assert "workload: 5,000 events" in out
    for label in ("fold", "apply_event", "reader path", "dict baseline", "proto read floor", "ceiling"):
        assert re.search(rf"^{re.escape(label)}\b.*[0-9,]+ ops/s", out, re.MULTILINE), out
    assert "conflicts: 0" in out
    assert re.search(r"-> \d+ B/block", out), out
