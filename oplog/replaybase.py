"""Where a replay starts: the ``Base`` it folds on and the check that a base still fits the logs.

A base (a loaded checkpoint or an earlier replay result) is still a prefix of
the merged order when every device's log still holds the event the base names
as its head (same hlc) and every event after a head sorts after the base's
last event; ``prime`` checks that on each device's stream before anything is
folded, and raises ``StaleBase`` otherwise.

Both ``oplog.replay`` (folding in this process) and ``oplog.replayreader``
(reading in a child process) prime their streams, so the check lives here,
below both: the reader's child imports only this and the log layer, not the
fold, and neither of the two modules imports the other's caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any, Protocol

from oplog.errors import StaleBase
from oplog.v1 import oplog_pb2 as pb

if TYPE_CHECKING:
    from oplog.checkpoint import ConflictRecord
    from oplog.statehash import StateHash
    from oplog.tree import Workspace

__all__ = ["Key", "Keyed", "Base", "prime"]

#: A position in the merged order: ``(hlc, device_id, device_seq)``.
Key = tuple[int, str, int]

#: What the merge orders: ``EventLog.records``' tuples — the event's ``order_key`` fields, then the
#: event and its record bytes (never compared: keys are unique).
Keyed = tuple[int, str, int, pb.Event, bytes]


class Base(Protocol):
    """What replay can start from: a ``Checkpoint`` or an earlier ``ReplayResult``."""

    ws: Workspace
    state_hash: StateHash
    position: int
    heads: dict[str, int]
    head_hlcs: dict[str, int]
    last_key: Key | None
    conflicts: list[ConflictRecord]


def prime(streams: list[Iterator[Keyed]], base: Any) -> list[Iterator[Keyed]]:
    """Check the base against each stream's first events; return streams positioned just after the heads."""
    heads = base.heads if base is not None else {}
    hlcs = base.head_hlcs if base is not None else {}
    last_key = base.last_key if base is not None else None
    seen: set[str] = set()
    out: list[Iterator[Keyed]] = []
    for stream in streams:
        first = next(stream, None)
        if first is None:
            continue
        device = first[1]
        seen.add(device)
        head = heads.get(device, 0)
        if head:
            if first[2] > head:
                raise StaleBase(f"device {device}'s log no longer holds event {head} the checkpoint covers")
            while first is not None and first[2] < head:
                first = next(stream, None)
            if first is None or first[2] != head:
                raise StaleBase(f"device {device}'s log ends before event {head} the checkpoint covers")
            if device in hlcs and first[0] != hlcs[device]:
                raise StaleBase(f"device {device}'s event {head} is not the one the checkpoint covers")
            first = next(stream, None)
            if first is None:
                continue
        if last_key is not None and first[:3] <= last_key:
            raise StaleBase(f"device {device}'s event {first[2]} sorts before the checkpoint's last event")
        out.append(chain((first,), stream))
    missing = [d for d, h in heads.items() if h and d not in seen]
    if missing:
        raise StaleBase(
            f"the checkpoint covers devices whose logs are missing or empty: {', '.join(sorted(missing))}"
        )
    return out
