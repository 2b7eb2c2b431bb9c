"""Real crashes: SIGKILL a child that appends from several threads, then check the log.

Every batch acknowledged on the child's stdout (after append_durable returned)
must be there after reopening; no batch may be partly there; seqs are dense.
Default 25 kills; OPLOG_SOAK=1 runs 1,000. Seeded (OPLOG_SEED); the seed is printed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

from oplog.devicelog import DeviceLog
from tests.conftest import soak_scale

CHILD = Path(__file__).with_name("crash_child.py")
REPO = Path(__file__).resolve().parents[1]
DEVICE = "c0ffee0000000001"
KILLS = soak_scale(25, 1000)
SEED = int(os.environ.get("OPLOG_SEED", str(random.SystemRandom().randrange(1 << 32))))


def _run_child(folder: str, delay: float) -> list[tuple[str, int, int]]:
    """Start the child, SIGKILL it after ``delay`` seconds, return its acknowledged batches."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), folder, "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    lines: list[bytes] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout))  # type: ignore[union-attr]
    reader.start()
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join()
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert proc.returncode == -signal.SIGKILL, err
    acks = []
    for raw in lines:
        parts = raw.decode().split()
        if len(parts) == 6 and parts[0] == "ack" and raw.endswith(b"\n"):
            _, pid, t, c, seq, k = parts
            acks.append((f"{pid}:{t}:{c}", int(seq), int(k)))
    return acks


def _check(folder: str, from_seq: int, acked: dict[str, tuple[int, int]]) -> int:
    """Reopen (recovering), check records from ``from_seq`` on, return the last seq."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = DeviceLog.open(folder, DEVICE)
    try:
        expect = max(from_seq, 1)
        open_batch: tuple[str, int, int] | None = None  # (id, next index, size)
        seen: dict[str, int] = {}
        leading = True  # records of a batch that began before from_seq
        for seq, data in log.read(from_seq):
            assert seq == expect, f"seqs not dense at {seq}"
            expect += 1
            pid, t, c, i, k, _ = data.split(b":", 5)
            bid, index, size = f"{pid.decode()}:{t.decode()}:{c.decode()}", int(i), int(k)
            if open_batch is None:
                if index != 0:
                    assert leading, f"batch {bid} starts mid-way at seq {seq}"
                    continue
                leading = False
                open_batch = (bid, 0, size)
            assert open_batch[0] == bid and open_batch[1] == index, (
                f"batch {open_batch[0]} interleaved at {seq}"
            )
            if index + 1 == size:
                seen[bid] = seq
                open_batch = None
            else:
                open_batch = (bid, index + 1, size)
        assert open_batch is None, f"batch {open_batch} only partly present"
        last = log.last_seq
        for bid, (seq, _k) in acked.items():
            if seq >= from_seq + 10:
                assert seen.get(bid) == seq, f"acknowledged batch {bid} (seq {seq}) missing"
            assert seq <= last, f"acknowledged batch {bid} (seq {seq}) beyond the log's end {last}"
        return last
    finally:
        log.close()


def test_sigkill_during_concurrent_appends(tmp_path: Path) -> None:
    print(f"seed {SEED}, {KILLS} kills")
    rng = random.Random(SEED)
    folder = str(tmp_path / "devices" / DEVICE)
    last = 0
    total_acks = 0
    for kill in range(KILLS):
        acks = _run_child(folder, rng.uniform(0.05, 0.6))
        total_acks += len(acks)
        acked = {bid: (seq, k) for bid, seq, k in acks}
        # Re-check a little before the previous end: it must not have changed.
        new_last = _check(folder, max(last - 20, 1), acked)
        assert new_last >= last, f"kill {kill}: log shrank from {last} to {new_last}"
        last = new_last
    print(f"{total_acks} acknowledged batches, {last} records")
    assert total_acks > KILLS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert DeviceLog.open(folder, DEVICE, writable=False).verify() == last
