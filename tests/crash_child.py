"""Child program for tests/test_crash.py: append batches from several threads until killed.

Usage: python tests/crash_child.py DIR [THREADS]

Prints ``ack PID THREAD COUNTER LASTSEQ SIZE`` (flushed) after each batch's
``append_durable`` returned. Each record's payload is ``PID:THREAD:COUNTER:INDEX:SIZE:`` plus padding.
"""

from __future__ import annotations

import os
import random
import sys
import threading

from oplog.devicelog import DeviceLog

DEVICE = "c0ffee0000000001"


def main() -> None:
    """Open the log (recovering it) and append until SIGKILL."""
    folder = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    log = DeviceLog.open(folder, DEVICE, segment_bytes=32 << 10)
    pid = os.getpid()
    out = sys.stdout
    lock = threading.Lock()
    print(f"ready {log.last_seq}", flush=True)

    def worker(t: int) -> None:
        rng = random.Random(pid * 100 + t)
        c = 0
        while True:
            k = rng.choice([1, 1, 2, 3, 5])
            batch = [f"{pid}:{t}:{c}:{i}:{k}:".encode() + b"x" * rng.randrange(200) for i in range(k)]
            seq = log.append_durable(batch)
            with lock:
                out.write(f"ack {pid} {t} {c} {seq} {k}\n")
                out.flush()
            c += 1

    for t in range(threads):
        threading.Thread(target=worker, args=(t,), daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
