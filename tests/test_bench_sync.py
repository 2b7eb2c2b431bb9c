"""bench/sync.py runs end to end in its quick mode and reports every figure (never timed here)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench_helpers import run_bench


def test_quick_run_prints_and_writes_its_figures(tmp_path: Path) -> None:
    """The quick run measures both sizes, push and pull, the ratios and the initial pull next to cp."""
    out = tmp_path / "figures.json"
    stdout = run_bench("sync.py", "--quick", "--dir", str(tmp_path / "w"), "--json", str(out), timeout=300)
    assert "worst ratio" in stdout and "cp -r:" in stdout and "of cp" in stdout
    figures = json.loads(out.read_text())
    rows = figures["incremental"]
    assert [r["events"] for r in rows] == [100, 1000]
    for row in rows:
        for side in ("push", "pull"):
            cost = row[side]
            assert cost["ms"] > 0 and cost["remote_files"] > 0 and cost["remote_bytes"] > 0
        # One new event moves one small segment plus the manifest: far less than the history.
        assert row["push"]["remote_bytes"] < 10_000 and row["pull"]["remote_bytes"] < 10_000
    assert set(figures["ratios"]) == {"push", "pull"}
    pull = figures["initial_pull"]
    assert pull["pulled_events"] == pull["events"] > 0
    assert pull["mb"] > 1 and pull["cp_mb_s"] > 0 and pull["pull_mb_s"] > 0 and pull["after_pull_calls"] == 1


def test_quick_s3_run_prints_request_counts_and_the_pull_next_to_bare_get(tmp_path: Path) -> None:
    """bench/sync.py --s3-only --quick: moto in a child process; flat request counts, pull vs bare GET vs folder."""
    out = tmp_path / "figures.json"
    stdout = run_bench(
        "sync.py", "--quick", "--s3-only", "--dir", str(tmp_path / "w"), "--json", str(out), timeout=300
    )
    assert "over the S3 remote" in stdout and "bare boto3 get_object" in stdout and "as a folder" in stdout
    figures = json.loads(out.read_text())
    rows = figures["s3_incremental"]
    assert [r["events"] for r in rows] == [100, 1000]
    for side in ("push_calls", "pull_calls"):
        calls = [{k: r[side][k] for k in ("lists", "reads", "writes", "deletes")} for r in rows]
        assert calls[0] == calls[1]  # the request counts do not grow with the history
    pull = figures["s3_initial_pull"]
    assert (
        pull["pulled_events"] == pull["events"] > 0
        and pull["bare_get_mb_s"] > 0
        and pull["download_mb_s"] > 0
    )


def test_quick_join_run_starts_from_the_snapshot_and_reports_both_joins(tmp_path: Path) -> None:
    """bench/join.py --quick: the joiner starts from the snapshot, checks it, and every hash agrees."""
    out = tmp_path / "figures.json"
    stdout = run_bench("join.py", "--quick", "--dir", str(tmp_path / "w"), "--json", str(out), timeout=300)
    assert "state hashes equal: True" in stdout and "oplog replay" in stdout
    figures = json.loads(out.read_text())
    snap, full = figures["join_snapshot"], figures["join_full"]
    assert snap["snapshot"] and snap["check"] == "verified" and not full["snapshot"]
    assert snap["pulled_events"] == full["pulled_events"] == figures["build"]["events"] == 20_000
    assert figures["ratio_usable"] > 0 and snap["usable_s"] <= snap["history_complete_s"]


def test_latency_run_measures_applies_during_a_pull() -> None:
    """bench/sync_latency.py on a small history: both phases measured, nothing refused, nothing lost."""
    stdout = run_bench("sync_latency.py", "--events", "3000", "--seconds", "0.5", timeout=300)
    assert "no sync:" in stdout and "during the pull:" in stdout
    assert "errors 0" in stdout and "history complete: True" in stdout
