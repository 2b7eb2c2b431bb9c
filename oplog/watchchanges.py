"""What the sync daemon watches, and which changes are news: fingerprints, classification, the change source.

``oplog/watcher.py``'s :class:`~oplog.watcher.Watcher` watches two folders: this
device's log folder ``<data>/devices/<id>/`` and the cloud folder
``<remote>/<cloud>/``. A batch of changes there touches ``local``, ``remote`` or
neither (:func:`classify`); whether a touched source is *news* — not the daemon's
own writes — is decided by comparing fingerprints (name, size, mtime, inode of
the files that matter) with what they were when the daemon last synced: cheap
(one ``scandir``), and blind to nothing a sync or a commit can do to a file.

The remote side only looks at other devices' ``MANIFEST`` (written last by their
syncs) and at ``EPOCH`` when another device wrote it (a force-push): segments
are read only once a manifest names them, and this device's own folder holds
its own pushes.

The change source is a plain callable (default :func:`watchfiles_source`), so
tests hand the daemon the batches watchfiles would report, as watchfiles fakes
its own core in its tests.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from oplog.syncformat import DEVICES, EPOCH_FILE, MANIFEST, EpochInfo, remote_change_kind

__all__ = [
    "Fingerprint",
    "local_fingerprint",
    "remote_fingerprint",
    "is_remote_news",
    "classify",
    "ChangeSource",
    "watchfiles_source",
]

#: watchfiles hands over a batch after this much quiet ...
_WATCH_STEP_MS = 15
#: ... or after grouping this long, whichever comes first (keeps the added latency under 100 ms).
_WATCH_GROUP_MS = 60
#: watchfiles wakes up this often when nothing happens; its first wake-up means it is watching.
_WATCH_TICK_MS = 500


#: name, size, modification time (ns), inode of each file that matters.
Fingerprint = tuple[tuple[str, int, int, int], ...]


def local_fingerprint(folder: Path) -> Fingerprint:
    """The files of a log folder: name, size, modification time, inode."""
    out: list[tuple[str, int, int, int]] = []
    for entry in _scandir(folder):
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        out.append((entry.name, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sorted(out))


def is_remote_news(parts: Sequence[str], device_id: str) -> bool:
    """Whether a path under the cloud folder (split in parts) may be another device's news.

    Another device's ``devices/<id>/MANIFEST`` (written last by its syncs) or
    ``EPOCH`` (a force-push); segments are only read after their manifest names
    them, and this device's own folder is its own writes.
    """
    return remote_change_kind(list(parts), device_id) is not None


def _news_files(cloud_dir: Path, device_id: str) -> list[Path]:
    """The files whose change is news: other devices' manifests, and ``EPOCH`` if another device wrote it."""
    paths = [
        Path(e.path) / MANIFEST
        for e in _scandir(cloud_dir / DEVICES)
        if e.name != device_id and e.is_dir(follow_symlinks=False)
    ]
    epoch = cloud_dir / EPOCH_FILE
    try:
        writer = EpochInfo.decode(epoch.read_bytes()).device_id
    except (OSError, ValueError):
        writer = None
    # The initial epoch (no writer) that any device's first sync creates, or one this device
    # wrote, is no news.
    if writer and writer != device_id:
        paths.append(epoch)
    return paths


def remote_fingerprint(cloud_dir: Path, device_id: str) -> Fingerprint:
    """Other devices' ``MANIFEST`` files and a foreign ``EPOCH`` under a cloud folder: path, size, time, inode."""
    out: list[tuple[str, int, int, int]] = []
    for path in _news_files(cloud_dir, device_id):
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((str(path.relative_to(cloud_dir)), st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sorted(out))


def classify(
    changes: Iterable[tuple[Any, str]], local_dir: Path, cloud_dir: Path, device_id: str
) -> set[str]:
    """Which sources (``local``, ``remote``) a batch of changes touches; ``local_dir``/``cloud_dir`` resolved."""
    sources: set[str] = set()
    local = str(local_dir) + os.sep
    cloud = str(cloud_dir) + os.sep
    for _change, path in changes:
        if path.startswith(local):
            sources.add("local")
        elif path.startswith(cloud) and is_remote_news(path[len(cloud) :].split(os.sep), device_id):
            sources.add("remote")
    return sources


def _scandir(folder: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


#: ``(paths, stop_event, poll)`` -> batches of ``(change, absolute path)``; an empty batch means "still watching".
ChangeSource = Callable[[Sequence[Path], threading.Event, bool], Iterable[set[tuple[Any, str]]]]


def watchfiles_source(
    paths: Sequence[Path], stop: threading.Event, poll: bool
) -> Iterator[set[tuple[Any, str]]]:
    """The real change source: ``watchfiles.watch`` on ``paths`` until ``stop`` is set (``poll``: no inotify)."""
    import watchfiles

    yield from watchfiles.watch(
        *paths,
        watch_filter=None,
        debounce=_WATCH_GROUP_MS,
        step=_WATCH_STEP_MS,
        stop_event=stop,
        rust_timeout=_WATCH_TICK_MS,
        yield_on_timeout=True,
        raise_interrupt=False,
        force_polling=True if poll else None,
        poll_delay_ms=100,
    )
