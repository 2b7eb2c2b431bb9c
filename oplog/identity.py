"""The device identity: generated once, stored in ``<data>/DEVICE``."""

from __future__ import annotations

import os
import re

from oplog.clock import IdSource
from oplog.errors import StorageError
from oplog.fsutil import atomic_write

__all__ = ["load_or_create_device_id", "DEVICE_FILE"]

DEVICE_FILE = "DEVICE"
_DEVICE_ID_RE = re.compile(r"^[0-9a-f]{16}$")


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
        if not _DEVICE_ID_RE.match(text):
            raise StorageError(f"{path} does not hold a device id (16 lowercase hex characters)")
        return text
    device_id = ids.token(8)
    if not _DEVICE_ID_RE.match(device_id):
        raise StorageError(f"id source produced an unusable device id {device_id!r}")
    os.makedirs(os.fspath(data_dir), exist_ok=True)
    atomic_write(path, (device_id + "\n").encode("ascii"))
    return device_id
