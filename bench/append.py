"""Append throughput of oplog's DeviceLog against a raw write+fdatasync baseline.

Usage: python bench/append.py [--quick] [--dir DIR] [--seconds S]

Prints, from one run: the raw baseline (os.write + os.fdatasync of the same
~200-byte framed record, one at a time), serial durable appends, 8 concurrent
durable appenders (group commit), and ``interval`` mode, with ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

from oplog import framing
from oplog.devicelog import DeviceLog

PAYLOAD = b"e" * 190  # ~200 bytes framed


def _timed(seconds: float, step, batch: int = 1) -> float:
    """Run ``step`` repeatedly for about ``seconds``; return calls per second."""
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            step()
        n += batch
        if time.perf_counter() >= deadline:
            break
    return n / (time.perf_counter() - start)


def raw_baseline(folder: str, seconds: float) -> float:
    """os.write + os.fdatasync of one framed record at a time."""
    data = framing.encode_batch([PAYLOAD])
    path = os.path.join(folder, "raw.dat")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:

        def step() -> None:
            os.write(fd, data)
            os.fdatasync(fd)

        return _timed(seconds, step)
    finally:
        os.close(fd)


def serial_durable(folder: str, seconds: float) -> float:
    """One single-event batch at a time, each waited durable."""
    log = DeviceLog.open(os.path.join(folder, "serial"), "bench")
    try:
        batch = [PAYLOAD]
        return _timed(seconds, lambda: log.append_durable(batch))
    finally:
        log.close()


def concurrent_durable(folder: str, seconds: float, threads: int = 8) -> float:
    """``threads`` appenders, each appending single-event batches and waiting durable."""
    log = DeviceLog.open(os.path.join(folder, "group"), "bench")
    stop = threading.Event()
    counts = [0] * threads
    batch = [PAYLOAD]

    def worker(i: int) -> None:
        n = 0
        append_durable = log.append_durable
        while not stop.is_set():
            append_durable(batch)
            n += 1
        counts[i] = n

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    syncs_note = f"(last seq {log.last_seq})"
    log.close()
    print(f"    {threads} threads appended {sum(counts)} events {syncs_note}")
    return sum(counts) / elapsed


def interval_mode(folder: str, seconds: float) -> float:
    """Single-event batches in ``interval`` mode (fdatasync every 50 ms in the background)."""
    log = DeviceLog.open(os.path.join(folder, "interval"), "bench", durability="interval", interval_ms=50)
    try:
        batch = [PAYLOAD]
        append_durable = log.append_durable
        return _timed(seconds, lambda: append_durable(batch), batch=200)
    finally:
        log.close()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="about one second per figure")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per figure (default 5, quick 1)")
    parser.add_argument("--dir", default=None, help="folder on the disk to measure (default: a temp dir)")
    args = parser.parse_args(argv)
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    folder = tempfile.mkdtemp(prefix="oplog-bench-", dir=args.dir)
    try:
        print(f"python {sys.version.split()[0]}, folder {folder}, {seconds:g} s per figure")
        # Alternate the baseline and the serial run in short rounds: the disk's speed drifts.
        rounds = 4
        raws, serials = [], []
        for _ in range(rounds):
            raws.append(raw_baseline(folder, seconds / rounds))
            serials.append(serial_durable(folder, seconds / rounds))
        raw = sum(raws) / rounds
        serial = sum(serials) / rounds
        print(f"raw os.write+os.fdatasync ({len(framing.encode_batch([PAYLOAD]))} B): {raw:10,.0f} /s")
        print(
            f"serial durable appends:             {serial:10,.0f} events/s  = {serial / raw:.2f}x raw  (target >= 0.8x)"
        )
        group = concurrent_durable(folder, seconds)
        print(
            f"8 threads durable (group commit):   {group:10,.0f} events/s  = {group / raw:.2f}x raw  (target >= 50,000/s)"
        )
        interval = interval_mode(folder, seconds)
        print(
            f"interval mode (50 ms), 1 thread:    {interval:10,.0f} events/s  = {interval / raw:.1f}x raw  (target >= 300,000/s)"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
