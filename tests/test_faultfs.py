"""Simulated power loss at every sync point: synced records survive, garbage never comes back."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import pytest

from oplog.errors import CorruptSegment
from tests.faultfs import FaultFileOps
from tests.log_helpers import DEVICE, open_log

SEED = int(os.environ.get("OPLOG_SEED", "20240721"))
MODES = ["keep", "drop", "prefix", "prefix", "mixed", "mixed", "mixed", "mixed"]


def _payload(rng: random.Random, seq: int) -> bytes:
    return f"<{seq}>".encode() + rng.randbytes(rng.randrange(0, 120))


def test_crash_at_every_sync_point(tmp_path: Path) -> None:
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    live = tmp_path / "live"
    folder = str(live / "devices" / DEVICE)
    ops = FaultFileOps()
    written: list[bytes] = []
    batch_ends = {0}
    acked = 0
    crashes: list[tuple[int, dict[str, int], dict[str, bytes]]] = []

    def on_sync() -> None:
        sizes = {p: len(b) for p, b in ops.durable.items()}
        for mode in MODES:
            crashes.append((acked, sizes, ops.crash_image(rng, mode)))

    ops.on_sync = on_sync
    log = open_log(folder, segment_bytes=700, file_ops=ops)
    for _ in range(30):
        batch = [_payload(rng, len(written) + 1 + i) for i in range(rng.choice([1, 1, 2, 3]))]
        # Two appends, one sync now and then: unsynced writes pile up between sync points.
        seq = log.append(batch)
        written.extend(batch)
        batch_ends.add(seq)
        if rng.random() < 0.5:
            # A read writes the buffered batches out: several unsynced writes per sync.
            assert list(log.read(seq))[-1] == (seq, batch[-1])
        if rng.random() < 0.4:
            log.wait_durable(seq)
            acked = seq
    log.close()
    assert ops.sync_points >= 20

    outcomes = {"recovered": 0, "reported": 0}
    for index, (acked_then, durable_sizes, image) in enumerate(crashes):
        root = tmp_path / f"crash{index}"
        for path, content in image.items():
            target = root / os.path.relpath(path, live)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        crashed = str(root / "devices" / DEVICE)
        if not os.path.isdir(crashed):
            assert acked_then == 0
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                log = open_log(crashed)
            except CorruptSegment as exc:
                # Reported, not returned: the damage lies in bytes that were never synced.
                live_path = os.path.join(live, os.path.relpath(exc.path, root))
                assert exc.offset >= durable_sizes[live_path], (index, exc)
                outcomes["reported"] += 1
                continue
        records = list(log.read())
        n = len(records)
        assert [s for s, _ in records] == list(range(1, n + 1))
        assert n >= acked_then, f"crash {index}: lost synced records ({n} < {acked_then})"
        assert n in batch_ends, f"crash {index}: a partial batch came back ({n})"
        for seq, data in records:
            assert data == written[seq - 1], f"crash {index}: garbage returned at seq {seq}"
        assert log.append_durable([b"after"]) == n + 1
        log.close()
        outcomes["recovered"] += 1
    print(len(crashes), "crash images:", outcomes)
    assert outcomes["recovered"] > len(crashes) // 2


@pytest.mark.parametrize("mode", ["keep", "drop"])
def test_crash_image_modes(tmp_path: Path, mode: str) -> None:
    ops = FaultFileOps()
    path = str(tmp_path / "f")
    fd = ops.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    ops.write(fd, b"synced")
    ops.fdatasync(fd)
    ops.write(fd, b"+pending")
    image = ops.crash_image(random.Random(1), mode)
    ops.close(fd)
    assert image[path] == (b"synced+pending" if mode == "keep" else b"synced")
