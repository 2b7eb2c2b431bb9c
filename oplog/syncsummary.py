"""What one sync did: the one summary type for a local sync, a sync run by a server, and the daemon's log.

A sync run by a server is only seen through its events and ``GetSyncInfo``; the
``syncEnd`` message carries the counts (:meth:`SyncSummary.end_message` writes
it, :meth:`SyncSummary.from_end_message` reads it back), so both routes give the
same fields. A count a route cannot know is None, never a made-up zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SyncSummary"]

_COUNT = re.compile(r"\b(pushed|pulled|archived|rebased|refused|repaired) (\d+)")
_EVENTS = re.compile(r"\((\d+) events\)")
_SNAPSHOT = re.compile(r"started from snapshot (\S+)")


@dataclass
class SyncSummary:
    """What one sync did (counts of segments unless named otherwise)."""

    cloud_name: str = ""
    epoch: str = ""
    pushed_segments: int = 0
    pulled_segments: int = 0
    pulled_events: int | None = 0
    archived_segments: int = 0
    rebased_events: int | None = 0
    bytes_up: int | None = 0
    bytes_down: int | None = 0
    #: temporaries an interrupted upload of this device had left in its remote folder, removed
    swept_temporaries: int | None = 0
    #: segments refused (damaged, not matching the manifest, stamped in the future), one line each
    refused: list[str] = field(default_factory=list)
    #: damaged copies replaced from a good one (local pulled copies re-fetched, own remote copies re-uploaded)
    repaired: list[str] = field(default_factory=list)
    last_sync_time: int = 0
    #: the remote snapshot the pull's fold started from ("" if none; ``oplog.remotesnap``)
    snapshot: str = ""
    #: this device's check of that snapshot (``oplog.snapcheck``): verified, mismatch, superseded, or "" if not run
    snapshot_check: str = ""
    #: the server that ran the sync ("" for a local sync)
    server: str = ""
    #: the ``syncEnd`` message (through a server)
    message: str = ""

    @property
    def changed(self) -> bool:
        """True if anything moved."""
        return bool(
            self.pushed_segments
            or self.pulled_segments
            or self.archived_segments
            or self.rebased_events
            or self.repaired
        )

    def end_message(self) -> str:
        """The ``syncEnd`` message: every count, in words a person and :meth:`from_end_message` read."""
        text = f"pushed {self.pushed_segments}, pulled {self.pulled_segments} segment(s)"
        if self.pulled_events is not None:
            text += f" ({self.pulled_events} events)"
        if self.archived_segments:
            text += f", archived {self.archived_segments}"
        if self.rebased_events:
            text += f", rebased {self.rebased_events}"
        if self.repaired:
            text += f", repaired {len(self.repaired)}"
        if self.refused:
            text += f", refused {len(self.refused)}"
        if self.snapshot:
            text += f"; started from snapshot {self.snapshot}"
        return text

    @classmethod
    def from_end_message(cls, message: str, *, server: str) -> SyncSummary:
        """The counts a server's ``syncEnd`` message carries (older servers: no event count, None)."""
        counts = {name: int(n) for name, n in _COUNT.findall(message)}
        events = _EVENTS.search(message)
        snapshot = _SNAPSHOT.search(message)
        return cls(
            pushed_segments=counts.get("pushed", 0),
            pulled_segments=counts.get("pulled", 0),
            pulled_events=int(events.group(1)) if events else None,
            archived_segments=counts.get("archived", 0),
            rebased_events=counts.get("rebased", 0) if events else None,
            bytes_up=None,
            bytes_down=None,
            swept_temporaries=None,
            snapshot=snapshot.group(1) if snapshot else "",
            server=server,
            message=message,
        )

    def to_json(self) -> dict[str, Any]:
        """The fields ``oplog sync --json`` prints."""
        out: dict[str, Any] = {
            "cloud_name": self.cloud_name,
            "epoch": self.epoch,
            "pushed_segments": self.pushed_segments,
            "pulled_segments": self.pulled_segments,
            "pulled_events": self.pulled_events,
            "archived_segments": self.archived_segments,
            "rebased_events": self.rebased_events,
            "swept_temporaries": self.swept_temporaries,
            "refused": list(self.refused),
            "repaired": list(self.repaired),
            "last_sync_time": self.last_sync_time,
        }
        if self.snapshot:
            out["snapshot"] = self.snapshot
            out["snapshot_check"] = self.snapshot_check
        if self.server:
            out["server"] = self.server
        return out
