"""The merged order of every device's events: ``(hlc, device_id, device_seq)``.

A streaming k-way merge: memory grows with the number of devices, not events.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from oplog.v1 import oplog_pb2 as pb

__all__ = ["order_key", "merge_events"]


def order_key(event: pb.Event) -> tuple[int, str, int]:
    """The sort key of an event in the merged order."""
    return (event.hlc, event.device_id, event.device_seq)


def merge_events(streams: Iterable[Iterable[pb.Event]]) -> Iterator[pb.Event]:
    """Merge per-device event streams (each already in device order) into the merged order.

    Within one device, hlc grows with device_seq, so each stream is sorted by
    ``order_key`` and a heap merge is exact.
    """
    return heapq.merge(*streams, key=order_key)
