"""Streaming scans of a data directory's events in merged order: positions, filters, the ids an event names.

The merged order is ``(hlc, device_id, device_seq)`` over every device log
(``oplog.merge``); the event at merged index N (1-based) is *at position N*:
folding it brings the state to position N. ``scan`` is a k-way merge over one
reader per device, so memory grows with the number of devices (and the
segment a reader holds), never with the number of events. Every record comes
with its raw bytes: a block id's bytes occur in a record whenever one of its
operations names that block, so ``needle in raw`` (C speed) rules out almost
every event before any protobuf field is looked at.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from oplog.actions import HANDLERS
from oplog.errors import InvalidArgument
from oplog.eventlog import EventLog
from oplog.hlc import COUNTER_BITS
from oplog.resolve import seed_action
from oplog.v1 import oplog_pb2 as pb

__all__ = [
    "Item",
    "EventFilter",
    "PROGRESS_EVERY",
    "total_events",
    "merged_records",
    "scan",
    "op_block_ids",
    "event_block_ids",
    "names_block",
    "spec_ids",
    "hlc_ms",
]

#: One scanned event: its position in the merged order, the decoded event, the record's bytes.
Item = tuple[int, pb.Event, bytes]

#: How often (in events read) ``scan`` calls its progress callback.
PROGRESS_EVERY = 8192


def hlc_ms(hlc: int) -> int:
    """The physical milliseconds of a hybrid-clock stamp."""
    return hlc >> COUNTER_BITS


def total_events(logs: Mapping[str, EventLog]) -> int:
    """How many events the logs hold: the position of the end of the merged order."""
    return sum(log.last_seq for log in logs.values())


def _merged(
    logs: Mapping[str, EventLog], heads: Mapping[str, int]
) -> Iterator[tuple[int, str, int, pb.Event, bytes]]:
    streams = [log.records(heads.get(device, 0) + 1) for device, log in sorted(logs.items())]
    return streams[0] if len(streams) == 1 else heapq.merge(*streams)


def merged_records(
    logs: Mapping[str, EventLog], heads: Mapping[str, int] | None = None
) -> Iterator[tuple[pb.Event, bytes]]:
    """Every event (with its record bytes) in merged order; with ``heads``, each device from just after its head."""
    for record in _merged(logs, heads or {}):
        yield record[3], record[4]


def spec_ids(specs: Iterable[pb.BlockSpec]) -> Iterator[str]:
    """The ids of a tree of block specs (every level)."""
    stack = list(specs)
    while stack:
        spec = stack.pop()
        yield spec.id
        if spec.children:
            stack.extend(spec.children)


def op_block_ids(op: pb.Operation) -> set[str]:
    """The block ids an operation names: target, parent, previous/next anchors, parent document, placed blocks."""
    ids = {op.id, op.parent_id, op.previous_id, op.next_id, op.parent_doc}
    if op.blocks:
        ids.update(spec_ids(op.blocks))
    ids.discard("")
    return ids


def event_block_ids(event: pb.Event) -> set[str]:
    """The block ids the event's (do) operations name."""
    ids: set[str] = set()
    for op in event.transaction.do_operations:
        ids |= op_block_ids(op)
    return ids


def names_block(event: pb.Event, raw: bytes, block_id: str, needle: bytes | None = None) -> bool:
    """Whether one of the event's operations names ``block_id`` (see ``op_block_ids``); ``raw`` is its record."""
    if (needle if needle is not None else block_id.encode()) not in raw:
        return False
    for op in event.transaction.do_operations:
        if block_id in (op.id, op.parent_id, op.previous_id, op.next_id, op.parent_doc):
            return True
        if op.blocks and block_id in spec_ids(op.blocks):
            return True
    return False


@dataclass(frozen=True)
class EventFilter:
    """Which events a scan keeps. Positions: ``after < position <= through``; times compare the hlc's milliseconds."""

    after: int = 0
    through: int | None = None
    devices: frozenset[str] | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    block_id: str | None = None
    #: Seed action names (aliases are mapped: ``update`` is ``updateBlock``).
    actions: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.after < 0 or (self.through is not None and self.through < 0):
            raise InvalidArgument("positions must not be negative")
        if self.through is not None and self.after > self.through:
            raise InvalidArgument(f"--from {self.after} is after --to {self.through}")
        if self.since_ms is not None and self.until_ms is not None and self.since_ms > self.until_ms:
            raise InvalidArgument("--since is after --until")
        if self.actions is not None:
            unknown = sorted(a for a in self.actions if a not in HANDLERS and seed_action(a) not in HANDLERS)
            if unknown:
                raise InvalidArgument(
                    f"--action {', '.join(unknown)}: no such action (known: {', '.join(sorted(HANDLERS))})"
                )
            object.__setattr__(self, "actions", frozenset(seed_action(a) for a in self.actions))

    def check_against(self, logs: Mapping[str, EventLog]) -> None:
        """``InvalidArgument`` for positions past the end or devices the data directory does not hold."""
        total = total_events(logs)
        for name, value in (("--from", self.after), ("--to", self.through)):
            if value is not None and value > total:
                raise InvalidArgument(f"{name} {value} is past the end of the history ({total} events)")
        if self.devices is not None:
            unknown = sorted(d for d in self.devices if d not in logs)
            if unknown:
                raise InvalidArgument(f"no device {', '.join(unknown)} in this data directory")

    def matches(self, event: pb.Event, raw: bytes) -> bool:
        """Whether an event inside the position and time window passes the device, action and block filters."""
        if self.devices is not None and event.device_id not in self.devices:
            return False
        if self.block_id is not None and not names_block(event, raw, self.block_id, self._needle):
            return False
        if self.actions is not None:
            wanted = self.actions
            if not any(seed_action(op.action) in wanted for op in event.transaction.do_operations):
                return False
        return True

    @property
    def _needle(self) -> bytes | None:
        return self.block_id.encode() if self.block_id is not None else None


def scan(
    logs: Mapping[str, EventLog],
    flt: EventFilter | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    start: tuple[int, Mapping[str, int]] | None = None,
) -> Iterator[Item]:
    """The events that pass ``flt``, in merged order, with their positions (streaming).

    ``start`` = (position, heads) begins the merge just after a known prefix
    (a replayed or checkpointed state), skipping the reads before it.
    ``progress(n)`` is called every ``PROGRESS_EVERY`` events read.
    """
    flt = flt or EventFilter()
    position, heads = start if start is not None else (0, {})
    after, through = flt.after, flt.through
    since = None if flt.since_ms is None else flt.since_ms << COUNTER_BITS
    until = None if flt.until_ms is None else (flt.until_ms + 1) << COUNTER_BITS
    plain = flt.devices is None and flt.block_id is None and flt.actions is None
    matches = flt.matches
    if through is not None and position >= through:
        return
    # The merge's own tuples, unpacked here: one generator layer less than merged_records, and the hlc
    # without another protobuf read: ≈ 0.15 µs less per event (measured against merged_records).
    for hlc, _, _, event, raw in _merged(logs, heads):
        position += 1
        if progress is not None and position % PROGRESS_EVERY == 0:
            progress(position)
        if position <= after:
            continue
        if until is not None and hlc >= until:
            break  # the merged order is sorted by hlc: nothing later can match
        if (since is None or hlc >= since) and (plain or matches(event, raw)):
            yield position, event, raw
        if position == through:
            break
    if progress is not None:
        progress(position)
