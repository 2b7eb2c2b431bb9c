"""The device identity: generated once, stored in ``<data>/DEVICE``.

The DEVICE file is also what makes a folder a data directory: ``Store.open``
writes it before anything else, so every directory a store ever opened has
one, and a folder without it (a typo, a half-copied backup, a remote's cloud
folder) is refused by every command with the same message
(``check_data_dir``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from oplog.clock import IdSource
from oplog.errors import NotADataDir, StorageError
from oplog.fsutil import atomic_write

__all__ = ["load_or_create_device_id", "is_device_id", "check_data_dir", "DEVICE_FILE", "DEVICES_DIR"]

DEVICE_FILE = "DEVICE"
#: The folder of a data directory (and of a remote cloud folder) holding one log folder per device.
DEVICES_DIR = "devices"
_DEVICE_ID_RE = re.compile(r"^[0-9a-f]{16}$")


def is_device_id(text: str) -> bool:
    """Whether ``text`` is a device id: 16 lowercase hex characters."""
    return _DEVICE_ID_RE.match(text) is not None


def check_data_dir(data_dir: str | os.PathLike[str]) -> Path:
    """``data_dir`` as a Path; ``NotADataDir`` unless it is a directory holding a ``DEVICE`` file."""
    path = Path(data_dir)
    if not path.is_dir():
        why = "not a directory" if path.exists() else "no such directory"
        raise NotADataDir(f"{path} is not an oplog data directory ({why})")
    if not (path / DEVICE_FILE).is_file():
        raise NotADataDir(f"{path} is not an oplog data directory (no {DEVICE_FILE} file)")
    return path


def load_or_create_device_id(data_dir: str | os.PathLike[str], ids: IdSource) -> str:
    """Read this data directory's device id, creating it (16 hex chars, written atomically) if missing."""
    path = os.path.join(os.fspath(data_dir), DEVICE_FILE)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(256)
    except FileNotFoundError:
        raw = None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if raw is not None:
        text = raw.decode("ascii", "replace").strip()
        if not is_device_id(text):
            raise StorageError(f"{path} does not hold a device id (16 lowercase hex characters)")
        return text
    device_id = ids.token(8)
    if not is_device_id(device_id):
        raise StorageError(f"id source produced an unusable device id {device_id!r}")
    os.makedirs(os.fspath(data_dir), exist_ok=True)
    atomic_write(path, (device_id + "\n").encode("ascii"))
    return device_id
