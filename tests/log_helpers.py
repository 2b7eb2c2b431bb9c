"""Helpers shared by the op-log tests: one test device's log, recognisable payloads, bit flips.

The ``log_folder`` fixture that goes with them is in ``tests/conftest.py`` (fixtures live there, so
no test module imports a fixture by name).
"""

from __future__ import annotations

import os
from pathlib import Path

from oplog.devicelog import DeviceLog

DEVICE = "0123456789abcdef"


def open_log(folder: str, **kwargs: object) -> DeviceLog:
    """Open the test device's log in ``folder``."""
    return DeviceLog.open(folder, DEVICE, **kwargs)  # type: ignore[arg-type]


def payload(seq: int, size: int = 40) -> bytes:
    """A recognisable payload for record ``seq``."""
    head = f"record-{seq}:".encode()
    return head + bytes((seq * 7 + i) % 251 for i in range(max(size - len(head), 0)))


def seg_paths(folder: str) -> list[str]:
    """Segment files of a log folder, in log order."""
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".seg"))


def flip_bit(path: str, offset: int, bit: int = 0) -> None:
    """Flip one bit of a file in place."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ (1 << bit)]))


def folder_state(folder: str) -> dict[str, bytes]:
    """Every file of a folder with its bytes (to prove that nothing changed)."""
    return {n: Path(folder, n).read_bytes() for n in sorted(os.listdir(folder))}
