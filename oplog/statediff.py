"""Compare block states and device logs: what ``oplog diff`` reports.

Two kinds of comparison:

* ``diff_workspaces(before, after)``: blocks added, removed and changed —
  content (Markdown, type, subtype), attributes, and position (structural
  parent, previous sibling, owning document; box and path for documents) —
  plus renamed attribute views and notebooks whose conf changed (created,
  renamed, opened or closed, reconfigured, removed). ``diff_positions`` replays one set of logs to
  two positions of the merged order and compares the states, starting from a
  checkpoint and reusing the first state so the cost follows the distance.
* ``compare_logs(ours, theirs)``: per device, how far the two copies of a log
  agree byte for byte, which events each side has that the other lacks, and
  the first such event in merged order with its position.

Pure functions of their inputs: nothing here reads a clock or writes a file.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

from oplog.checkpoint import CheckpointStore
from oplog.errors import InvalidArgument, StorageError
from oplog.eventlog import EventLog, decode_event
from oplog.replay import ReplayResult, base_fits, replay, rewind
from oplog.scan import total_events
from oplog.statehash import prev_id
from oplog.tree import Node, Workspace, iter_blocks, iter_documents
from oplog.v1 import oplog_pb2 as pb

__all__ = [
    "BlockState",
    "BlockChange",
    "NotebookChange",
    "StateDiff",
    "PositionDiff",
    "DeviceComparison",
    "EventRef",
    "LogComparison",
    "block_states",
    "diff_states",
    "diff_workspaces",
    "diff_positions",
    "notebook_confs",
    "compare_logs",
]

#: Fields compared for every block, in report order.
BLOCK_FIELDS = ("type", "content", "attrs", "parent", "previous", "document")
#: Fields compared for documents only (other blocks follow their document).
DOC_FIELDS = ("box", "path")


@dataclass(frozen=True)
class BlockState:
    """One block as ``diff`` compares it."""

    id: str
    type: str
    subtype: str
    markdown: str
    attrs: tuple[tuple[str, str], ...]
    parent_id: str
    previous_id: str
    root_id: str
    box: str
    path: str

    def get(self, name: str) -> Any:
        """The value of one compared field."""
        if name == "type":
            return (self.type, self.subtype)
        if name == "content":
            return self.markdown
        if name == "attrs":
            return dict(self.attrs)
        if name == "parent":
            return self.parent_id
        if name == "previous":
            return self.previous_id
        if name == "document":
            return self.root_id
        if name == "box":
            return self.box
        return self.path

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "type": self.type,
            "subtype": self.subtype,
            "markdown": self.markdown,
            "attrs": dict(self.attrs),
            "parent_id": self.parent_id,
            "previous_id": self.previous_id,
            "root_id": self.root_id,
            "box": self.box,
            "path": self.path,
        }


def _state_of(node: Node) -> BlockState:
    root = node.root if node.root is not None else node
    return BlockState(
        id=node.id,
        type=node.type,
        subtype=node.subtype,
        markdown=node.markdown,
        attrs=tuple(sorted(node.attrs.items())),
        parent_id=node.parent.id if node.parent is not None else "",
        previous_id=prev_id(node),
        root_id=root.id,
        box=root.box,
        path=root.path,
    )


def block_states(ws: Workspace) -> dict[str, BlockState]:
    """Every block's state, in document order (documents by id, blocks in tree order)."""
    return {node.id: _state_of(node) for doc in iter_documents(ws) for node in iter_blocks(doc)}


@dataclass(frozen=True)
class BlockChange:
    """A block present on both sides whose compared fields differ."""

    id: str
    fields: tuple[str, ...]
    before: BlockState
    after: BlockState

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: the changed fields with their values on each side."""
        out: dict[str, Any] = {"id": self.id, "fields": list(self.fields), "changes": {}}
        for name in self.fields:
            old, new = self.before.get(name), self.after.get(name)
            if name == "attrs":
                out["changes"][name] = {
                    "added": {k: v for k, v in new.items() if k not in old},
                    "removed": {k: v for k, v in old.items() if k not in new},
                    "changed": {k: [old[k], v] for k, v in new.items() if k in old and old[k] != v},
                }
            else:
                out["changes"][name] = {
                    "before": list(old) if isinstance(old, tuple) else old,
                    "after": list(new) if isinstance(new, tuple) else new,
                }
        out["before"] = self.before.as_dict()
        out["after"] = self.after.as_dict()
        return out


@dataclass(frozen=True)
class NotebookChange:
    """A notebook whose conf differs: ``before``/``after`` is None where the notebook has no conf."""

    id: str
    before: Mapping[str, str] | None
    after: Mapping[str, str] | None

    @property
    def fields(self) -> tuple[str, ...]:
        """The conf fields that differ (every field of the side present when one side is None)."""
        old, new = self.before or {}, self.after or {}
        return tuple(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        before = dict(self.before) if self.before is not None else None
        after = dict(self.after) if self.after is not None else None
        return {"id": self.id, "fields": list(self.fields), "before": before, "after": after}


@dataclass
class StateDiff:
    """Blocks added, removed and changed from one state to another, and renamed attribute views."""

    added: list[BlockState] = field(default_factory=list)
    removed: list[BlockState] = field(default_factory=list)
    changed: list[BlockChange] = field(default_factory=list)
    #: attribute view id, name before (None: absent), name after (None: absent)
    attribute_views: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    #: notebooks whose conf differs, by id
    notebooks: list[NotebookChange] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True when the two states hold the same blocks at the same places and the same notebooks."""
        return not (self.added or self.removed or self.changed or self.attribute_views or self.notebooks)

    def summary(self) -> dict[str, int]:
        """Counts per kind."""
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "attribute_views": len(self.attribute_views),
            "notebooks": len(self.notebooks),
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "summary": self.summary(),
            "added": [b.as_dict() for b in self.added],
            "removed": [b.as_dict() for b in self.removed],
            "changed": [c.as_dict() for c in self.changed],
            "attribute_views": [{"id": i, "before": a, "after": b} for i, a, b in self.attribute_views],
            "notebooks": [n.as_dict() for n in self.notebooks],
        }


def diff_states(
    before: Mapping[str, BlockState],
    after: Mapping[str, BlockState],
    avs_before: Mapping[str, str] | None = None,
    avs_after: Mapping[str, str] | None = None,
    notebooks_before: Mapping[str, Mapping[str, str]] | None = None,
    notebooks_after: Mapping[str, Mapping[str, str]] | None = None,
) -> StateDiff:
    """Compare two sets of block states; added and changed follow ``after``'s order, removed ``before``'s."""
    out = StateDiff()
    for block_id, new in after.items():
        old = before.get(block_id)
        if old is None:
            out.added.append(new)
            continue
        if old == new:
            continue
        names = BLOCK_FIELDS + DOC_FIELDS if new.type == "d" or old.type == "d" else BLOCK_FIELDS
        fields = tuple(n for n in names if old.get(n) != new.get(n))
        if fields:
            out.changed.append(BlockChange(block_id, fields, old, new))
    out.removed = [old for block_id, old in before.items() if block_id not in after]
    a, b = avs_before or {}, avs_after or {}
    out.attribute_views = [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    nb, na = notebooks_before or {}, notebooks_after or {}
    out.notebooks = [
        NotebookChange(k, nb.get(k), na.get(k)) for k in sorted(set(nb) | set(na)) if nb.get(k) != na.get(k)
    ]
    return out


def notebook_confs(ws: Workspace) -> dict[str, dict[str, str]]:
    """A copy of every notebook's conf (the workspace's own dicts change as events fold in)."""
    return {box: dict(conf) for box, conf in ws.notebooks.items()}


def diff_workspaces(before: Workspace, after: Workspace) -> StateDiff:
    """Compare two workspaces."""
    return diff_states(
        block_states(before),
        block_states(after),
        before.avs,
        after.avs,
        notebook_confs(before),
        notebook_confs(after),
    )


# ---------------------------------------------------------------- two positions of one data directory


@dataclass
class PositionDiff:
    """The difference between two positions of one merged order."""

    from_position: int
    to_position: int
    from_hash: str
    to_hash: str
    diff: StateDiff
    #: events folded to reach both states (checkpoint loads not counted)
    events_replayed: int = 0
    #: positions of the checkpoints used, if any
    checkpoints_used: list[int] = field(default_factory=list)


def check_positions(start: int, end: int, total: int) -> None:
    """``InvalidArgument`` unless ``0 <= start <= end <= total``."""
    for name, value in (("--from", start), ("--to", end)):
        if value < 0:
            raise InvalidArgument(f"{name} {value}: positions are not negative")
        if value > total:
            raise InvalidArgument(f"{name} {value} is past the end of the history ({total} events)")
    if start > end:
        raise InvalidArgument(f"--from {start} is after --to {end}")


def diff_positions(
    logs: Mapping[str, EventLog],
    checkpoints: CheckpointStore | None,
    start: int,
    end: int,
    *,
    progress: Callable[[int], None] | None = None,
) -> PositionDiff:
    """Replay to ``start`` and to ``end`` (checkpoint-aware) and compare the two states.

    The second state continues from the first unless a usable checkpoint lies
    between them, so the replay cost is the distance from a checkpoint to
    ``start`` plus the distance from ``start`` (or a later checkpoint) to ``end``.
    """
    check_positions(start, end, total_events(logs))
    first = rewind(logs, checkpoints, until_position=start, progress=progress, warn_missing=False)
    used = [first.checkpoint.position] if first.checkpoint is not None else []
    states = block_states(first.ws)
    avs = dict(first.ws.avs)
    notebooks = notebook_confs(first.ws)
    from_hash = first.state_hash.hexdigest()
    replayed = first.applied
    if end == start:
        return PositionDiff(start, end, from_hash, from_hash, StateDiff(), replayed, used)
    infos = checkpoints.list() if checkpoints is not None else []
    closer = any(start < i.position <= end and base_fits(i, logs) for i in infos)
    second: ReplayResult
    if closer:
        second = rewind(logs, checkpoints, until_position=end, progress=progress, warn_missing=False)
        if second.checkpoint is not None:
            used.append(second.checkpoint.position)
    else:
        # ``first`` is consumed: its workspace is folded forward in place (its states are copied above).
        second = replay(logs, base=first, until_position=end, progress=progress)
    replayed += second.applied
    diff = diff_states(
        states, block_states(second.ws), avs, second.ws.avs, notebooks, notebook_confs(second.ws)
    )
    return PositionDiff(start, end, from_hash, second.state_hash.hexdigest(), diff, replayed, used)


# ---------------------------------------------------------------- two data directories


@dataclass
class DeviceComparison:
    """One device's log in two data directories."""

    device_id: str
    ours_last: int
    theirs_last: int
    #: how many events from seq 1 on are byte-for-byte the same on both sides
    common: int
    #: the first seq both sides hold but with different bytes (None: the shorter is a prefix of the longer)
    first_difference: int | None

    @property
    def ours_only(self) -> int:
        """How many of our events the other side lacks."""
        return self.ours_last - self.common

    @property
    def theirs_only(self) -> int:
        """How many of their events this side lacks."""
        return self.theirs_last - self.common

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "device_id": self.device_id,
            "ours_last_seq": self.ours_last,
            "theirs_last_seq": self.theirs_last,
            "common_prefix": self.common,
            "first_difference": self.first_difference,
            "ours_only": self.ours_only,
            "theirs_only": self.theirs_only,
        }


@dataclass(frozen=True)
class EventRef:
    """An event one side has and the other lacks, and where it sits in each side's merged order."""

    device_id: str
    seq: int
    hlc: int
    time_ms: int
    actions: tuple[str, ...]
    req_id: int
    app: str
    #: its position (1-based index) in the merged order of the side that has it
    position: int
    #: how many of the other side's events sort before it
    other_before: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "device_id": self.device_id,
            "seq": self.seq,
            "hlc": self.hlc,
            "time_ms": self.time_ms,
            "actions": list(self.actions),
            "req_id": self.req_id,
            "app": self.app,
            "position": self.position,
            "other_before": self.other_before,
        }


@dataclass
class LogComparison:
    """How two data directories' logs relate."""

    devices: list[DeviceComparison]
    first_ours_only: EventRef | None
    first_theirs_only: EventRef | None
    ours_total: int
    theirs_total: int

    @property
    def same_events(self) -> bool:
        """True when both sides hold exactly the same events."""
        return all(d.ours_only == 0 and d.theirs_only == 0 for d in self.devices)


def _payloads(log: EventLog | None) -> Iterator[tuple[int, bytes]]:
    return log.log.read() if log is not None else iter(())


def _decode_at(payload: bytes, where: str, seq: int) -> pb.Event:
    event = decode_event(payload)
    if event.device_seq != seq:
        raise StorageError(f"{where}: record {seq} holds event #{event.device_seq}")
    return event


def _rank(hlcs: Mapping[str, array[int]], key: tuple[int, str, int]) -> int:
    """How many events of these per-device stamp lists sort before ``key`` in the merged order."""
    hlc, device, _ = key
    count = 0
    for other, stamps in hlcs.items():
        # Within one device stamps strictly grow with seq, so the hlc alone places the event.
        count += bisect.bisect_left(stamps, hlc)
        if other < device:
            count += bisect.bisect_right(stamps, hlc) - bisect.bisect_left(stamps, hlc)
    return count


def _ref(event: pb.Event, own: Mapping[str, array[int]], other: Mapping[str, array[int]]) -> EventRef:
    key = (event.hlc, event.device_id, event.device_seq)
    return EventRef(
        device_id=event.device_id,
        seq=event.device_seq,
        hlc=event.hlc,
        time_ms=event.time_ms,
        actions=tuple(op.action for op in event.transaction.do_operations),
        req_id=event.req_id,
        app=event.app,
        position=_rank(own, key) + 1,
        other_before=_rank(other, key),
    )


def compare_logs(
    ours: Mapping[str, EventLog],
    theirs: Mapping[str, EventLog],
    *,
    progress: Callable[[int], None] | None = None,
) -> LogComparison:
    """Compare two data directories' device logs event by event (by their stored bytes)."""
    ours_hlcs: dict[str, array[int]] = {}
    theirs_hlcs: dict[str, array[int]] = {}
    devices: list[DeviceComparison] = []
    firsts_ours: list[pb.Event] = []
    firsts_theirs: list[pb.Event] = []
    seen = 0
    for device_id in sorted(set(ours) | set(theirs)):
        a_stamps: array[int] = array("Q")
        b_stamps: array[int] = array("Q")
        first_diff: int | None = None
        a_first: pb.Event | None = None
        b_first: pb.Event | None = None
        for a, b in zip_longest(_payloads(ours.get(device_id)), _payloads(theirs.get(device_id))):
            seq = a[0] if a is not None else b[0]
            a_event = _decode_at(a[1], f"ours/{device_id}", seq) if a is not None else None
            b_event = _decode_at(b[1], f"theirs/{device_id}", seq) if b is not None else None
            if a_event is not None:
                a_stamps.append(a_event.hlc)
            if b_event is not None:
                b_stamps.append(b_event.hlc)
            differs = a is None or b is None or a[1] != b[1]
            if differs and a_first is None and b_first is None:
                if a is not None and b is not None:
                    first_diff = seq
                a_first, b_first = a_event, b_event
            seen += 1
            if progress is not None and seen % 4096 == 0:
                progress(seen)
        ours_last, theirs_last = len(a_stamps), len(b_stamps)
        if a_first is not None:
            common = a_first.device_seq - 1
        elif b_first is not None:
            common = b_first.device_seq - 1
        else:
            common = min(ours_last, theirs_last)
        devices.append(DeviceComparison(device_id, ours_last, theirs_last, common, first_diff))
        if device_id in ours:
            ours_hlcs[device_id] = a_stamps
        if device_id in theirs:
            theirs_hlcs[device_id] = b_stamps
        if a_first is not None:
            firsts_ours.append(a_first)
        if b_first is not None:
            firsts_theirs.append(b_first)
    if progress is not None:
        progress(seen)

    def earliest(events: list[pb.Event]) -> pb.Event | None:
        return min(events, key=lambda e: (e.hlc, e.device_id, e.device_seq), default=None)

    first_a, first_b = earliest(firsts_ours), earliest(firsts_theirs)
    return LogComparison(
        devices=devices,
        first_ours_only=_ref(first_a, ours_hlcs, theirs_hlcs) if first_a is not None else None,
        first_theirs_only=_ref(first_b, theirs_hlcs, ours_hlcs) if first_b is not None else None,
        ours_total=sum(len(s) for s in ours_hlcs.values()),
        theirs_total=sum(len(s) for s in theirs_hlcs.values()),
    )
