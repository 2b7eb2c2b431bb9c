"""Typed layer over ``DeviceLog``: protobuf ``Event`` records in, ``Event`` records out."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from types import TracebackType

from google.protobuf.message import DecodeError

from oplog.devicelog import DeviceLog
from oplog.errors import StorageError
from oplog.fsutil import FileOps
from oplog.v1.oplog_pb2 import Event

__all__ = ["encode_event", "decode_event", "EventLog"]


def encode_event(event: Event) -> bytes:
    """Serialize an event for the log (deterministic, so equal events give equal bytes)."""
    return event.SerializeToString(deterministic=True)


def decode_event(data: bytes) -> Event:
    """Parse an event read from the log; ``StorageError`` if it is not one."""
    event = Event()
    try:
        event.ParseFromString(data)
    except DecodeError as exc:
        raise StorageError(f"a log record does not decode as an Event: {exc}") from exc
    return event


class EventLog:
    """A device's log of ``Event`` messages; the caller fills device_id, device_seq and hlc."""

    def __init__(self, log: DeviceLog) -> None:
        """Wrap an open ``DeviceLog``."""
        self.log = log

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike[str],
        device_id: str,
        *,
        writable: bool = True,
        durability: str = "always",
        interval_ms: int = 50,
        segment_bytes: int = 64 << 20,
        file_ops: FileOps | None = None,
    ) -> EventLog:
        """Open the device log in ``folder`` (see ``DeviceLog.open``)."""
        return cls(
            DeviceLog.open(
                folder,
                device_id,
                writable=writable,
                durability=durability,
                interval_ms=interval_ms,
                segment_bytes=segment_bytes,
                file_ops=file_ops,
            )
        )

    @property
    def last_seq(self) -> int:
        """The device_seq of the last appended event."""
        return self.log.last_seq

    def _check(self, events: Sequence[Event]) -> list[bytes]:
        first = self.log.last_seq + 1
        for i, event in enumerate(events):
            if event.device_id != self.log.device_id:
                raise StorageError(
                    f"event for device {event.device_id!r} appended to {self.log.device_id!r}'s log"
                )
            if event.device_seq != first + i:
                raise StorageError(
                    f"event has device_seq {event.device_seq}, the log's next seq is {first + i}"
                )
        return [encode_event(e) for e in events]

    def append(self, events: Sequence[Event]) -> int:
        """Append one request's events as an atomic batch (not yet durable); return the last seq."""
        payloads = self._check(events)
        return self.log.append(payloads, expect_seq=events[0].device_seq if events else None)

    def append_written(self, events: Sequence[Event]) -> int:
        """Append one request's events and hand them to the OS now (see ``DeviceLog.append_written``)."""
        payloads = self._check(events)
        return self.log.append_written(payloads, expect_seq=events[0].device_seq if events else None)

    def append_durable(self, events: Sequence[Event]) -> int:
        """Append one request's events and wait until they are durable; return the last seq."""
        payloads = self._check(events)
        return self.log.append_durable(payloads, expect_seq=events[0].device_seq if events else None)

    def wait_durable(self, seq: int) -> None:
        """Block until ``seq`` is durable (see ``DeviceLog.wait_durable``)."""
        self.log.wait_durable(seq)

    def records(
        self, from_seq: int = 1, to_seq: int | None = None
    ) -> Iterator[tuple[int, str, int, Event, bytes]]:
        """Yield ``(hlc, device_id, seq, event, record bytes)`` in seq order, checking each event's device_id and seq.

        The leading ``(hlc, device_id, seq)`` is the event's key in the merged
        order and unique, so these tuples go straight into a k-way merge (their
        comparison never reaches the event).
        """
        device_id = self.log.device_id
        parse = Event.FromString
        for seq, data in self.log.read(from_seq, to_seq):
            try:
                event = parse(data)
            except DecodeError as exc:
                raise StorageError(
                    f"log {self.log.folder}: record {seq} does not decode as an Event: {exc}"
                ) from exc
            if event.device_seq != seq or event.device_id != device_id:
                raise StorageError(
                    f"log {self.log.folder}: record {seq} holds event {event.device_id!r}#{event.device_seq}"
                )
            yield event.hlc, device_id, seq, event, data

    def read(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Event]:
        """Yield events in seq order, checking each one's device_id and device_seq."""
        for record in self.records(from_seq, to_seq):
            yield record[3]

    def close(self) -> None:
        """Close the underlying log."""
        self.log.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
