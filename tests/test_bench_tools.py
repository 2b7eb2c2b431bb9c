"""``bench/tools.py --quick``: the inspection-tools benchmark runs end to end (timings are not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench_helpers import run_bench
from tests.workload import open_logs


def _naming(data: Path, block: str, limit: int | None = None) -> int:
    """How many events (of the first ``limit`` in merged order) name ``block`` — brute force."""
    logs = open_logs(data)
    try:
        events = sorted(
            (e for log in logs.values() for e in log.read()), key=lambda e: (e.hlc, e.device_id, e.device_seq)
        )
    finally:
        for log in logs.values():
            log.close()
    count = 0
    for event in events[:limit]:
        for op in event.transaction.do_operations:
            if block in (op.id, op.parent_id, op.previous_id, op.next_id) or any(
                spec.id == block for spec in op.blocks
            ):
                count += 1
                break
    return count


def test_quick_run_reports_every_step(tmp_path: Path) -> None:
    data = tmp_path / "history"
    report = json.loads(run_bench("tools.py", "--quick", "--dir", str(data), timeout=900))
    meta = report["history"]
    events = meta["events"]
    assert events == 20_000 and (data / "bench-meta.json").is_file()
    steps = {(row["step"], row["to"]): row for row in report["steps"]}
    small = events // 10
    assert set(steps) == {
        ("bare", None),
        ("scan", None),
        ("fields", None),
        *((s, t) for s in ("dump", "dump-human", "dump-block", "history") for t in (small, None)),
    }
    assert steps[("bare", None)]["lines"] == steps[("scan", None)]["lines"] == events
    assert steps[("fields", None)]["lines"] == events
    assert steps[("dump", None)]["lines"] == events and steps[("dump-human", None)]["lines"] == events
    assert steps[("dump", small)]["lines"] == small
    hot, early = meta["hot_block"], meta["early_block"]
    assert steps[("dump-block", None)]["lines"] == _naming(data, hot) >= meta["hot_block_edits"]
    assert steps[("dump-block", small)]["lines"] == _naming(data, early, small) > 0
    # The synthetic history never removes a block with an ancestor: history lists exactly the naming events.
    assert steps[("history", None)]["lines"] == steps[("dump-block", None)]["lines"]
    for row in report["steps"]:
        assert row["seconds"] > 0 and row["peak_rss_mb"] > 0
        if row["to"] is None and row["step"] != "bare":
            assert row["ratio_to_bare"] > 0
    # A second run reuses the history it built.
    again = run_bench("tools.py", "--quick", "--dir", str(data), timeout=900)
    assert json.loads(again)["history"] == meta
