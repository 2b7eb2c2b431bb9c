"""Opening a SQLite file read-only, including on read-only media.

The checkpoints file and the blocks view are WAL databases. SQLite opens a WAL
database with ``mode=ro`` only when its ``-shm`` index exists or can be
created; on a read-only medium (a backup on a read-only mount, a directory
after ``chmod -R a-w``) a cleanly closed database has no ``-shm`` left and
the open fails — "unable to open database file" (``SQLITE_CANTOPEN``) on a
read-only mount, "attempt to write a readonly database"
(``SQLITE_READONLY_DIRECTORY``) in a folder the user may not write — which
readers used to report as a damaged checkpoints file or a failed query.

When that happens and no WAL content is pending (no ``-wal`` file, or an
empty one), the main file alone is the whole database, so it is opened again
with ``immutable=1``: SQLite then takes no locks and needs no ``-shm``. A
non-empty ``-wal`` cannot be read without its index, so that case stays an
error, with a message saying why, rather than silently showing an older state.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

__all__ = ["connect_readonly"]


def _pending_wal(path: Path) -> bool:
    try:
        return os.path.getsize(str(path) + "-wal") > 0
    except OSError:
        return False


def _no_wal_index(exc: sqlite3.OperationalError) -> bool:
    """Whether the open failed for want of a ``-shm`` index (cannot create it, or not allowed to write there)."""
    name = getattr(exc, "sqlite_errorname", "")
    # SQLITE_CANTOPEN on a read-only mount, SQLITE_READONLY_DIRECTORY for a user who may not write the folder.
    return name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY")) or "unable to open" in str(exc)


def connect_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A read-only connection to ``path`` (``immutable`` when the medium cannot hold a WAL index)."""
    file = Path(path)
    uri = file.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
    try:
        # The WAL index is opened lazily: touch the schema so a missing -shm fails here.
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if not _no_wal_index(exc):
            raise
        if _pending_wal(file):
            raise sqlite3.OperationalError(
                f"{exc}: {file.name}-wal holds changes that cannot be read without its -shm index, "
                "which this read-only location cannot hold (copy the directory somewhere writable)"
            ) from None
    conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except BaseException:
        conn.close()
        raise
    return conn
