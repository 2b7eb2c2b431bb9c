"""The remote's formats: layout names, cloud names, ``SegEntry``, ``Manifest``, ``EpochInfo``.

Everything that reads or writes a sync remote (the session, ``verify_remote``,
the daemon's change filter, the sync benchmark) spells the layout from here, so
a change of layout is a change of one module. Layout (SPEC §6)::

    <cloudName>/EPOCH                          the current epoch (JSON, replaced atomically)
    <cloudName>/devices/<device_id>/%016x.seg  that device's sealed segments (same bytes as locally)
    <cloudName>/devices/<device_id>/MANIFEST   written last: epoch, segments, counts, checksums, last seq

The documents are deterministic JSON (sorted keys, no spaces) so that "has it
changed" is a byte comparison and two devices writing the same manifest write
the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import google_crc32c

from oplog.errors import InvalidSyncArgument

__all__ = [
    "DEFAULT_CLOUD",
    "INITIAL_EPOCH",
    "MANIFEST",
    "EPOCH_FILE",
    "DEVICES",
    "MAX_CLOUD_NAME_BYTES",
    "check_cloud_name",
    "cloud_path",
    "remote_change_kind",
    "segment_crc",
    "SegEntry",
    "Manifest",
    "EpochInfo",
]

DEFAULT_CLOUD = "main"
INITIAL_EPOCH = "0"
MANIFEST = "MANIFEST"
EPOCH_FILE = "EPOCH"
DEVICES = "devices"
#: The longest file name common file systems (ext4, APFS, NTFS in UTF-16 units) accept.
MAX_CLOUD_NAME_BYTES = 255


def check_cloud_name(name: str) -> str:
    """A safe cloud folder name, trimmed; ``InvalidSyncArgument`` (INVALID_ARGUMENT) otherwise.

    The one check every entry point uses (PerformSync, ``oplog sync``, ``oplog serve
    --cloud-name``, ``oplog watch``), so a name is refused before any sync starts
    rather than failing later inside a background sync.
    """
    trimmed = name.strip()
    if not trimmed:
        raise InvalidSyncArgument("cloudName must not be empty")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in trimmed):
        raise InvalidSyncArgument(f"cloudName {name!r} must not contain control characters")
    if trimmed.startswith(("/", "\\")) or (len(trimmed) > 1 and trimmed[1] == ":"):
        raise InvalidSyncArgument(f"cloudName {name!r} must not be an absolute path")
    if trimmed == ".":
        raise InvalidSyncArgument("cloudName must not be '.' (the remote's root)")
    if ".." in trimmed or "/" in trimmed or "\\" in trimmed:
        raise InvalidSyncArgument(f"cloudName {name!r} must not contain '..', '/' or '\\'")
    try:
        size = len(trimmed.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidSyncArgument(f"cloudName {name!r} is not valid UTF-8 text") from None
    if size > MAX_CLOUD_NAME_BYTES:
        raise InvalidSyncArgument(
            f"cloudName is {size} bytes long; at most {MAX_CLOUD_NAME_BYTES} bytes (UTF-8) are allowed"
        )
    return trimmed


def cloud_path(cloud: str, *parts: str) -> str:
    """The remote path of ``parts`` under cloud folder ``cloud``."""
    return "/".join((cloud, *parts))


def remote_change_kind(parts: list[str], me: str) -> str | None:
    """What a changed path under a cloud folder (split into parts) is news of, for a device ``me``.

    ``"epoch"`` for ``EPOCH``, ``"manifest"`` for another device's ``MANIFEST``,
    None for everything else (segments land before their manifest; ``me``'s own
    folder is written only by ``me``).
    """
    if parts == [EPOCH_FILE]:
        return "epoch"
    if len(parts) == 3 and parts[0] == DEVICES and parts[2] == MANIFEST and parts[1] != me:
        return "manifest"
    return None


def segment_crc(data: bytes) -> str:
    """The checksum manifests list for a segment file (CRC32C, 8 hex digits)."""
    return f"{google_crc32c.value(data):08x}"


@dataclass(frozen=True)
class SegEntry:
    """One sealed segment as manifests and epochs list it."""

    name: str
    first_seq: int
    count: int
    size: int
    crc: str

    @property
    def last_seq(self) -> int:
        """The seq of the segment's last event."""
        return self.first_seq + self.count - 1

    def key(self) -> tuple[str, str]:
        """What makes two entries the same file: name and checksum."""
        return (self.name, self.crc)


def _entries(raw: list[dict[str, Any]]) -> list[SegEntry]:
    return [
        SegEntry(str(e["name"]), int(e["first_seq"]), int(e["count"]), int(e["size"]), str(e["crc"]))
        for e in raw
    ]


@dataclass
class Manifest:
    """A device folder's manifest: its epoch, its segments in order, and damage it saw in other folders.

    ``damaged`` lists ``(device_id, segment name)`` pairs whose remote copy did
    not match that device's manifest when this device last pulled: a device can
    write only its own folder, so this is how it tells the owner, who reads every
    manifest on each sync anyway and re-uploads what is named.
    """

    epoch: str
    device_id: str
    segments: list[SegEntry]
    damaged: list[tuple[str, str]] = field(default_factory=list)

    @property
    def last_seq(self) -> int:
        """The last seq the folder holds."""
        return self.segments[-1].last_seq if self.segments else 0

    def encode(self) -> bytes:
        """Deterministic JSON."""
        body = {
            "epoch": self.epoch,
            "device_id": self.device_id,
            "last_seq": self.last_seq,
            "segments": [asdict(s) for s in self.segments],
        }
        if self.damaged:
            # Only when there is something to say: manifests without reports keep their bytes.
            body["damaged"] = [list(pair) for pair in sorted(set(self.damaged))]
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parse; ``ValueError`` if it is not a manifest."""
        try:
            raw = json.loads(data)
            damaged = [(str(d), str(n)) for d, n in raw.get("damaged", [])]
            return cls(str(raw["epoch"]), str(raw["device_id"]), _entries(raw["segments"]), damaged)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a manifest: {exc}") from exc


@dataclass
class EpochInfo:
    """The remote's ``EPOCH``: id, the device that started it, and its base (per-device prefixes)."""

    epoch: str
    device_id: str = ""
    time_ms: int = 0
    base: dict[str, list[SegEntry]] = field(default_factory=dict)

    def encode(self) -> bytes:
        """Deterministic JSON."""
        body = {
            "epoch": self.epoch,
            "device_id": self.device_id,
            "time_ms": self.time_ms,
            "base": {d: [asdict(s) for s in segs] for d, segs in sorted(self.base.items())},
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> EpochInfo:
        """Parse; ``ValueError`` if it is not an epoch marker."""
        try:
            raw = json.loads(data)
            base = {str(d): _entries(v) for d, v in raw.get("base", {}).items()}
            return cls(str(raw["epoch"]), str(raw.get("device_id", "")), int(raw.get("time_ms", 0)), base)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an epoch marker: {exc}") from exc
