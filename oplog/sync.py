"""One sync of a data directory with a remote: seal, push, pull, settle epochs, rebuild, record.

The rules are in docs/sync.md. In short: the remote's ``<cloud>/EPOCH`` names
the current epoch; each device's ``MANIFEST`` says which epoch its folder
belongs to. The *view* of a device under epoch E is its manifest's segment list
when the manifest is at E, else the prefix the epoch's ``base`` lists for it.
Every sync makes each foreign device's local log equal to its view (longest
common prefix kept, the rest archived, the missing part pulled and verified)
and makes this device's folder on the remote equal to its local log.

How far this device's own log is in a remote's history is kept per remote (URL
and cloud name, ``oplog.syncstate``): after syncing with another remote, the
events that remote holds but this one lacks are still "unpushed" here, so a new
epoch here rebases them instead of archiving them.

The parts: remote formats in ``oplog.syncformat``, ``sync.json`` in
``oplog.syncstate``, the summary in ``oplog.syncsummary``, repair of damaged
pulled copies before the store opens in ``oplog.syncrepair``; this module is
the session.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from oplog.archive import ArchivedSegment, ArchiveEntry, add_to_archive
from oplog.checkpoint import Checkpoint
from oplog.clock import Clock
from oplog.collector import collector_paused
from oplog.compaction import Retile, match_tilings
from oplog.errors import (
    DamagedRemoteObject,
    InvalidSyncArgument,
    OplogError,
    RemoteError,
    TransientRemoteError,
)
from oplog.eventlog import decode_event
from oplog.foldbeside import switching_often
from oplog.fsutil import atomic_write, read_file
from oplog.hlc import hlc_ms
from oplog.remote import Remote, VersionedRemote, remote_url
from oplog.remotefetch import DEFAULT_WORKERS, read_many
from oplog.segment import SEAL_FRAME_SIZE, SEGMENT_HEADER_SIZE, scan_segment
from oplog.segmerge import remove_segments, write_segments
from oplog.store import Store
from oplog.syncformat import (
    DEFAULT_CLOUD,
    DEVICES,
    EPOCH_FILE,
    INITIAL_EPOCH,
    MANIFEST,
    EpochInfo,
    Manifest,
    SegEntry,
    check_cloud_name,
    segment_crc,
)
from oplog.syncsnap import (
    DEFAULT_SNAPSHOT_EVERY,
    note_adopted,
    offer_snapshots,
    remote_heads,
    upload_snapshot,
)
from oplog.syncstate import (
    SYNC_FILE,
    RemotePosition,
    SyncState,
    error_text,
    load_state,
    record_error,
    save_state,
)
from oplog.syncsummary import SyncSummary
from oplog.v1 import oplog_pb2 as pb

__all__ = [
    "DEFAULT_CLOUD",
    "FUTURE_BOUND_MS",
    "PUSH_MODES",
    "SegEntry",
    "Manifest",
    "EpochInfo",
    "SyncParams",
    "RetryPolicy",
    "DEFAULT_RETRY",
    "SyncState",
    "SyncResult",
    "SyncSummary",
    "SyncSession",
    "parse_sync_params",
    "check_cloud_name",
    "load_state",
    "record_error",
    "error_text",
]

#: The formats and the local state live in oplog.syncformat and oplog.syncstate; these names
#: stay importable from here for callers written before the split.
_REEXPORTED = (SYNC_FILE, EPOCH_FILE, MANIFEST, INITIAL_EPOCH)

PUSH_MODES = ("", "force-push", "force-pull")
#: A pulled event stamped more than this beyond this device's clock is refused with its segment.
FUTURE_BOUND_MS = 10 * 60 * 1000

#: What one sync did; the one summary type (oplog.syncsummary), under its historical name.
SyncResult = SyncSummary

T = TypeVar("T")
Emit = Callable[[str, int, int, str], None]


# ---- parameters ----


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a sync retries a transient remote error: ``retries`` times, waits doubling from ``backoff_s``."""

    retries: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1-based)."""
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class SyncParams:
    """Validated performSync parameters."""

    app: str
    force: bool = False
    push_mode: str = ""
    cloud_name: str | None = None


def parse_sync_params(
    app: str,
    *,
    force: bool = False,
    push_mode: str = "",
    push_only: bool = False,
    cloud_name: str | None = None,
) -> SyncParams:
    """Check performSync's parameters as SiYuan does; ``pushOnly`` means ``force-push``."""
    if not app or not app.strip():
        raise InvalidSyncArgument("app is required")
    if push_mode not in PUSH_MODES:
        raise InvalidSyncArgument(
            f"pushMode must be one of '', 'force-push', 'force-pull'; got {push_mode!r}"
        )
    if push_only:
        push_mode = "force-push"
    name = check_cloud_name(cloud_name) if cloud_name is not None and cloud_name != "" else None
    return SyncParams(app=app, force=force, push_mode=push_mode, cloud_name=name)


@dataclass
class Fetched:
    """A downloaded and checked segment of a foreign device, with its events."""

    device_id: str
    entry: SegEntry
    data: bytes
    events: list[pb.Event]
    #: local files of the device this segment replaces (they held its first events), removed once it is stored
    replaces: list[str] = field(default_factory=list)


def _read_workers(remote: object) -> int:
    """How many reads at once ``remote`` wants (``read_workers``, looked up through wrappers' ``inner``)."""
    layer: object | None = remote
    while layer is not None:
        workers = getattr(layer, "read_workers", None)
        if workers is not None:
            return int(workers)
        layer = getattr(layer, "inner", None)
    return DEFAULT_WORKERS


def _common_prefix(a: list[SegEntry], b: list[SegEntry]) -> int:
    k = 0
    while k < len(a) and k < len(b) and a[k].key() == b[k].key():
        k += 1
    return k


class SyncSession:
    """One sync run; ``run()`` does it. Not thread-safe: one session at a time per store."""

    def __init__(
        self,
        store: Store,
        remote: Remote,
        params: SyncParams,
        clock: Clock,
        *,
        emit: Emit | None = None,
        sleeper: Callable[[float], object] | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        future_bound_ms: int = FUTURE_BOUND_MS,
        compact: bool = True,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    ) -> None:
        """Prepare a sync of ``store`` with ``remote``; ``emit(cmd, current, total, msg)`` gets progress.

        ``compact`` merges this device's sealed segments after sealing (``oplog.segmerge``),
        so the push leaves the remote folder merged too; off only to measure without it.
        ``snapshot_every``: upload a state snapshot at most every so many events, and start a
        pull that far behind from one (``oplog.syncsnap``); 0 uploads none and uses none.
        """
        self.store = store
        self.remote = remote
        self.params = params
        self.clock = clock
        self._emit = emit or (lambda cmd, cur, tot, msg: None)
        self._sleep = sleeper or threading.Event().wait
        self.retry = retry
        self.future_bound_ms = future_bound_ms
        self.compact = compact
        self.snapshot_every = snapshot_every
        self.me = store.device_id
        self.state = load_state(store.data_dir)
        self.url = remote_url(remote)
        self.result = SyncSummary()
        self._step = 0
        self._steps = 0
        #: (device, segment) pairs whose remote copy this sync found not matching its manifest
        self._damage_seen: set[tuple[str, str]] = set()
        #: this device's manifest as it is on the remote now
        self._own_manifest: Manifest | None = None
        #: the remote snapshot this sync offered the store's fold ("" if none; ``oplog.syncsnap``)
        self.offered_snapshot = ""
        #: ``EPOCH``'s version when this sync read it (``VersionedRemote`` only; None: absent)
        self._epoch_version: str | None = None

    # ---- plumbing ----

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        attempt = 0
        while True:
            try:
                return fn(*args)
            except TransientRemoteError as exc:
                attempt += 1
                if attempt > self.retry.retries:
                    raise RemoteError(f"{exc} (gave up after {self.retry.retries} retries)") from exc
                delay = self.retry.delay(attempt)
                self._emit(
                    "syncRetry", self._step, self._steps, f"{what}: {exc}; retry {attempt} in {delay:g}s"
                )
                self._sleep(delay)

    def _read_or_damaged(self, what: str, path: str) -> bytes | None:
        """The object, or None when missing or (encrypted) not opening: either way not what we hold."""
        try:
            return self._call(what, self.remote.read, path)
        except DamagedRemoteObject:
            return None

    def _progress(self, msg: str) -> None:
        self._step += 1
        self._steps = max(self._steps, self._step)
        self._emit("syncProgress", self._step, self._steps, msg)

    def _log(self, msg: str) -> None:
        self._emit("syncLog", self._step, self._steps, msg)

    def _path(self, *parts: str) -> str:
        return "/".join((self.cloud, *parts))

    def _save_state(self) -> None:
        save_state(self.store.data_dir, self.state)

    # ---- local segments ----

    def _local_entries(self, device_id: str, *, recheck: bool = False) -> list[SegEntry]:
        log = self.store.device_log(device_id)
        if log is None:
            return []
        known = self.state.known.setdefault(device_id, {})
        folder = self.store.device_dir(device_id)
        out: list[SegEntry] = []
        for seg in log.log.segments():
            if not seg.sealed:
                break
            cached = known.get(seg.name)
            if recheck or cached is None or cached[0] != seg.size:
                crc = segment_crc(read_file(str(folder / seg.name)))
                known[seg.name] = [seg.size, crc]
            else:
                crc = cached[1]
            out.append(SegEntry(seg.name, seg.first_seq, seg.count, seg.size, crc))
        for name in set(known) - {e.name for e in out}:
            del known[name]  # merged away or archived: the cache keeps only what the log holds
        return out

    def _archive(
        self, device_id: str, drop: list[SegEntry], reason: str, epoch_to: str, rebase_after: int | None
    ) -> list[pb.Event]:
        """Move ``drop`` (a suffix of the device's log) to the archive; return the events to rebase."""
        folder = self.store.device_dir(device_id)
        files: dict[tuple[str, str], bytes] = {}
        rebase: list[pb.Event] = []
        for entry in drop:
            data = read_file(str(folder / entry.name))
            files[(device_id, entry.name)] = data
            if rebase_after is not None and entry.last_seq > rebase_after:
                scan = scan_segment(data, str(folder / entry.name), device_id=device_id, payloads=True)
                rebase.extend(e for e in map(decode_event, scan.payloads) if e.device_seq > rebase_after)
        archive_id = f"{self.clock.now_ms()}-{self.store.new_token()}"
        entry_record = ArchiveEntry(
            id=archive_id,
            time_ms=self.clock.now_ms(),
            reason=reason,
            epoch_from=self.state.epoch or "",
            epoch_to=epoch_to,
            segments=[ArchivedSegment(device_id, e.name, e.first_seq, e.count) for e in drop],
            rebased={device_id: [e.device_seq for e in rebase]} if rebase else {},
        )
        add_to_archive(self.store.data_dir, entry_record, files)
        known = self.state.known.setdefault(device_id, {})
        for entry in reversed(drop):
            (folder / entry.name).unlink()
            known.pop(entry.name, None)
        self.store.reopen_device_log(device_id)
        self.result.archived_segments += len(drop)
        self._log(f"archived {len(drop)} segment(s) of {device_id} ({reason}) as {archive_id}")
        return rebase

    # ---- remote reads ----

    def _read_epoch(self) -> EpochInfo:
        """The remote's ``EPOCH`` (created as the initial epoch if absent), keeping its version.

        On a ``VersionedRemote`` the version read here is what a force-push's
        ``replace_if`` requires ``EPOCH`` to still have: two racing force-pushes
        cannot both win.
        """
        path = self._path(EPOCH_FILE)
        data = self._read_epoch_bytes(path)
        if data is None:
            info = EpochInfo(INITIAL_EPOCH)
            if isinstance(self.remote, VersionedRemote):
                self._call("write EPOCH", self.remote.replace_if, path, info.encode(), None)
            else:
                self._call("write EPOCH", self.remote.write_new, path, info.encode())
            # Whoever created it first, everyone reads the same one.
            again = self._read_epoch_bytes(path)
            data = again if again is not None else info.encode()
        try:
            return EpochInfo.decode(data)
        except ValueError as exc:
            raise RemoteError(f"remote {path} is damaged: {exc}") from exc

    def _read_epoch_bytes(self, path: str) -> bytes | None:
        if isinstance(self.remote, VersionedRemote):
            data, self._epoch_version = self._call("read EPOCH", self.remote.read_versioned, path)
            return data
        return self._call("read EPOCH", self.remote.read, path)

    def _write_epoch(self, info: EpochInfo) -> None:
        """Replace ``EPOCH`` with ``info`` only if it is still as this sync read it (plain replace without versions).

        A ``False`` from ``replace_if`` is either a retried request whose first
        attempt had already succeeded (``EPOCH`` holds our id) or another device
        that force-pushed meanwhile: then this one fails, and its next sync adopts
        that epoch by the usual rules (unpushed events rebased, the rest archived).
        """
        path = self._path(EPOCH_FILE)
        if not isinstance(self.remote, VersionedRemote):
            self._call("write EPOCH", self.remote.replace, path, info.encode())
            return
        if self._call("write EPOCH", self.remote.replace_if, path, info.encode(), self._epoch_version):
            return
        data, _ = self._call("read EPOCH", self.remote.read_versioned, path)
        try:
            there = EpochInfo.decode(data) if data is not None else None
        except ValueError:
            there = None
        if there is not None and there.epoch == info.epoch:
            return
        who = f" by device {there.device_id}" if there is not None and there.device_id else ""
        raise RemoteError(
            f"force-push lost a race: {path} was replaced{who} after this sync read it; "
            "nothing was lost here — sync again to adopt that epoch, then force-push again if still wanted"
        )

    def _read_manifests(self, epoch: EpochInfo) -> tuple[dict[str, Manifest | None], set[str]]:
        names = set(self._call("list devices", self.remote.list, self._path("devices")))
        names |= set(epoch.base) | {self.me}
        manifests: dict[str, Manifest | None] = {}
        unreadable: set[str] = set()
        for device_id in sorted(names):
            try:
                data = self._call(
                    "read manifest", self.remote.read, self._path("devices", device_id, MANIFEST)
                )
            except DamagedRemoteObject as exc:  # an encrypted manifest that does not open
                unreadable.add(device_id)
                self.result.refused.append(f"{device_id}/{MANIFEST}: unreadable ({exc})")
                continue
            if data is None:
                manifests[device_id] = None
                continue
            try:
                manifest = Manifest.decode(data)
                if manifest.device_id != device_id:
                    raise ValueError(f"manifest names device {manifest.device_id!r}")
                manifests[device_id] = manifest
            except ValueError as exc:
                unreadable.add(device_id)
                self.result.refused.append(f"{device_id}/{MANIFEST}: unreadable ({exc})")
        return manifests, unreadable

    @staticmethod
    def _view(
        device_id: str, epoch: EpochInfo, manifests: dict[str, Manifest | None]
    ) -> list[SegEntry] | None:
        manifest = manifests.get(device_id)
        if manifest is not None and manifest.epoch == epoch.epoch:
            return manifest.segments
        if device_id in epoch.base:
            return epoch.base[device_id]
        if manifest is None:
            return None
        return []

    # ---- the run ----

    def run(self) -> SyncSummary:
        """Do the whole sync; raises ``RemoteError`` (after retries) or ``StorageError``.

        A failure is recorded as ``last_error`` in ``sync.json`` before it is
        raised, so it is still reported after a restart.
        """
        try:
            # Requests served beside a sync get the interpreter back quickly after each system call
            # (a 0.1 ms switch interval, not 5 ms): measured in-process on a 200k-event pull, the
            # download's checks alone took Applies to 26-101 ms at the default.
            with switching_often():
                return self._run()
        except Exception as exc:
            record_error(self.store.data_dir, error_text(exc))
            raise

    def _run(self) -> SyncSummary:
        params = self.params
        st = self.state
        self.cloud = params.cloud_name or st.cloud_name or DEFAULT_CLOUD
        # Where this device stands on *this* remote; another remote's position says nothing about it.
        position = st.position(self.url, self.cloud)
        st.epoch, st.pushed_seq = position.epoch, position.pushed_seq
        self.result.cloud_name = self.cloud
        self._steps = 5
        self._progress("sealing the local log")
        self.store.seal_local()
        if self.compact:
            self._compact_own()
        self._progress("reading the remote")
        epoch = self._read_epoch()
        manifests, unreadable = self._read_manifests(epoch)
        if params.push_mode == "force-push":
            self._force_push(epoch, manifests, unreadable)
        else:
            if params.push_mode == "force-pull":
                self._settle_own(epoch, manifests, "force-pull")
            elif st.epoch is None:
                self._settle_own(epoch, manifests, "join")
            elif st.epoch != epoch.epoch:
                self._settle_own(epoch, manifests, "adopt")
            st.epoch = epoch.epoch
            self._progress("pushing local segments")
            self._push_own(epoch.epoch, manifests.get(self.me), self._reported_damage(manifests))
            self._progress("pulling other devices' segments")
            missing: list[tuple[str, SegEntry]] = []
            prefetched: list[Fetched] = []
            for device_id in sorted(manifests):
                if device_id != self.me and device_id not in unreadable:
                    view = self._view(device_id, epoch, manifests)
                    taken, rest = self._fetch_device(device_id, view)
                    prefetched.extend(taken)
                    missing.extend((device_id, e) for e in rest)
            pending = sum(e.count for _, e in missing) + sum(len(f.events) for f in prefetched)
            base = offer_snapshots(
                self, epoch.epoch, self._held(epoch, manifests), pending, self.snapshot_every
            )
            if base is not None and not prefetched and not any(self._last_seq(d) for d, _ in missing):
                # A new device (nothing of these devices held): usable before the history is stored.
                self._join_ahead(base, missing)
            else:
                # A device's straddling segment comes before its downloads: its log order.
                self._store_pulled(prefetched + self._download(missing))
            note_adopted(self)
            self._publish_damage()
            upload_snapshot(
                self, epoch.epoch, self._held(epoch, manifests), self.snapshot_every, self.clock.now_ms
            )
        st.cursors = {d: log_seq for d in self.store.device_ids() if (log_seq := self._last_seq(d))}
        st.last_sync_time = self.clock.now_ms()
        st.last_error = "; ".join(self.result.refused)
        st.keep_position(self.url, self.cloud, RemotePosition(st.epoch, st.pushed_seq))
        self.result.epoch = st.epoch or ""
        self.result.last_sync_time = st.last_sync_time
        self._save_state()
        self._progress("done")
        return self.result

    def _held(self, epoch: EpochInfo, manifests: dict[str, Manifest | None]) -> dict[str, int]:
        """The last seq the remote's history holds per device (this device's: as just pushed)."""
        views = {d: self._view(d, epoch, manifests) for d in manifests}
        if self._own_manifest is not None:
            views[self.me] = self._own_manifest.segments
        return remote_heads(views)

    def _last_seq(self, device_id: str) -> int:
        log = self.store.device_log(device_id)
        return log.last_seq if log is not None else 0

    def _settle_own(self, epoch: EpochInfo, manifests: dict[str, Manifest | None], mode: str) -> None:
        """Make this device's log fit ``epoch`` (adopt, join or force-pull); see docs/sync.md."""
        view = self._view(self.me, epoch, manifests) or []
        with self.store.sync_lock():
            self.store.seal_local()
            k, local, _ = self._align(self.me, self._local_entries(self.me), view, locked=True)
            if k == len(local) or mode == "join":
                return
            if mode == "adopt" and len(view) == k and local[k].first_seq > self.state.pushed_seq:
                return  # nothing of ours dropped out: the unpushed events simply stay on top
            rebase_after = self.state.pushed_seq if mode == "adopt" else None
            kept_end = local[k - 1].last_seq if k else 0
            if rebase_after is not None:
                rebase_after = max(rebase_after, kept_end)
            reason = "force-pull" if mode == "force-pull" else f"epoch {epoch.epoch} adopted"
            # From local[k] on, the seqs will hold other events (or none): no remote holds those yet.
            # Saved before the log changes: a crash in between may re-send, never lose.
            self.state.cut_own_log(kept_end)
            self._save_state()
            rebase = self._archive(self.me, local[k:], reason, epoch.epoch, rebase_after)
            dropped = {self.me: local[k].first_seq}
            if rebase:
                self.store.append_rebased(rebase)
                self.store.seal_local()
                self.result.rebased_events = (self.result.rebased_events or 0) + len(rebase)
                self._log(f"rebased {len(rebase)} local event(s) onto epoch {epoch.epoch}")
            self.store.after_drop(dropped)
            self.state.pushed_seq = kept_end

    def _compact_own(self) -> None:
        """Merge this device's sealed segments (leveled); the push then mirrors the merged tiling."""
        log = self.store.device_log(self.me)
        if log is None:
            return
        try:
            merges = log.log.compact()
        except (OplogError, OSError) as exc:
            # Merging is an optimisation: a full disk or a damaged piece must not stop the sync itself.
            self._log(f"merging this device's segments failed, left as they are: {exc}")
            return
        if merges:
            self._log(f"merged this device's sealed segments ({merges} merge(s))")

    def _align(
        self, device_id: str, local: list[SegEntry], view: list[SegEntry], *, locked: bool = False
    ) -> tuple[int, list[SegEntry], Retile | None]:
        """How many of ``view``'s entries the local log holds, comparing events, not names.

        Where the tilings differ (a merge on either side) the local files are
        re-tiled as the view's, rebuilt from the local records and checked by
        checksum — nothing is downloaded, archived or folded for that. Returns
        ``k`` and the local entries afterwards, whose first ``k`` are ``view[:k]``.
        """
        k = _common_prefix(local, view)
        if k == len(local) or k == len(view):
            return k, local, None
        folder = self.store.device_dir(device_id)
        retile = match_tilings(device_id, local, view, lambda name: read_file(str(folder / name)))
        if retile.writes or retile.removes:
            # ``locked``: the caller holds the store's sync lock already (it is not reentrant).
            with contextlib.nullcontext() if locked else self.store.sync_lock():
                write_segments(folder, retile.writes)
                remove_segments(folder, retile.removes)
                known = self.state.known.setdefault(device_id, {})
                for name in retile.removes:
                    known.pop(name, None)
                for name, data in retile.writes:
                    known[name] = [len(data), segment_crc(data)]
                self.store.reopen_device_log(device_id)
            self._log(f"re-tiled {len(retile.writes)} segment(s) of {device_id} as merged on the remote")
        return retile.k_view, view[: retile.k_view] + retile.rest, retile

    def _take_straddler(
        self, device_id: str, view: list[SegEntry], k: int, retile: Retile | None
    ) -> Fetched | None:
        """When the local log ends inside ``view[k]`` (pulled half-way before a merge): download that
        segment, and if its first events are the ones held here, byte for byte, take it for them."""
        if retile is None or not retile.straddle or k >= len(view):
            return None
        entry = view[k]
        data = self._call("download", self.remote.read, self._path(DEVICES, device_id, entry.name))
        problem = self._check_pulled(device_id, entry, data, self.clock.now_ms())
        if isinstance(problem, str) or data is None:
            return None
        held = retile.held_frames
        if data[SEGMENT_HEADER_SIZE : SEGMENT_HEADER_SIZE + len(held)] != held or len(
            data
        ) - SEAL_FRAME_SIZE < (SEGMENT_HEADER_SIZE + len(held)):
            return None
        held_last = self._last_seq(device_id)
        self.result.bytes_down = (self.result.bytes_down or 0) + len(data)
        new = [e for e in problem if e.device_seq > held_last]
        return Fetched(device_id, entry, data, new, list(retile.held_names))

    def _reported_damage(self, manifests: dict[str, Manifest | None]) -> set[str]:
        """Names of this device's segments that other devices' manifests report damaged on the remote."""
        return {
            name
            for device_id, manifest in manifests.items()
            if manifest is not None and device_id != self.me
            for owner, name in manifest.damaged
            if owner == self.me
        }

    def _publish_damage(self) -> None:
        """Put the damage this sync saw in other folders into this device's manifest (their owners read it)."""
        mine = self._own_manifest
        if mine is None or set(mine.damaged) == self._damage_seen:
            return
        manifest = Manifest(mine.epoch, self.me, mine.segments, sorted(self._damage_seen))
        self._call(
            "write manifest", self.remote.replace, self._path(DEVICES, self.me, MANIFEST), manifest.encode()
        )
        self._own_manifest = manifest

    def _push_own(
        self, epoch: str, remote: Manifest | None, reported: frozenset[str] | set[str] = frozenset()
    ) -> None:
        """Make this device's remote folder equal its sealed local segments, manifest last.

        ``reported`` names segments other devices found damaged here: they are read and compared.
        """
        force = self.params.force
        local = self._local_entries(self.me, recheck=force)
        remote_entries = {e.name: e for e in remote.segments} if remote is not None else {}
        # One listing with sizes finds a truncated, extended or missing copy of a listed segment
        # (damage in this device's remote folder) without reading anything; --force reads and compares all.
        sizes: dict[str, int] = {}
        if remote is not None or force:
            sizes = self._call("list", self.remote.sizes, self._path(DEVICES, self.me))
        present: set[str] | None = set(sizes) if force else None
        folder = self.store.device_dir(self.me)
        swept = False
        for entry in local:
            path = self._path(DEVICES, self.me, entry.name)
            listed = remote_entries.get(entry.name)
            same = listed is not None and listed.key() == entry.key()
            damage = ""
            if same and sizes.get(entry.name) != entry.size:
                there = sizes.get(entry.name)
                damage = "missing" if there is None else f"{there} bytes, its manifest says {entry.size}"
            elif same and (present is not None or entry.name in reported):
                data_there = self._read_or_damaged("verify", path)
                if data_there is None or segment_crc(data_there) != entry.crc:
                    damage = "missing" if data_there is None else "its checksum differs from its manifest"
            if same and not damage:
                continue
            if damage:
                line = (
                    f"{DEVICES}/{self.me}/{entry.name}: the remote copy was damaged ({damage}); re-uploaded"
                )
                self.result.repaired.append(line)
                self._log(f"repaired {line}")
            swept = swept or self._sweep_own()
            data = read_file(str(folder / entry.name))
            if listed is None and not self._call("upload", self.remote.write_new, path, data):
                existing = self._read_or_damaged("read", path)
                if existing != data:
                    self._call("upload", self.remote.replace, path, data)
            elif listed is not None:
                self._call("upload", self.remote.replace, path, data)
            self.result.pushed_segments += 1
            self.result.bytes_up = (self.result.bytes_up or 0) + len(data)
        manifest = Manifest(epoch, self.me, local, list(remote.damaged) if remote is not None else [])
        self._own_manifest = manifest
        if remote is None or remote.encode() != manifest.encode():
            swept = swept or self._sweep_own()
            self._call(
                "write manifest",
                self.remote.replace,
                self._path("devices", self.me, MANIFEST),
                manifest.encode(),
            )
        stale = set(remote_entries) | (present or set())
        stale -= {e.name for e in local} | {MANIFEST}
        for name in sorted(stale):
            self._call("delete", self.remote.delete, self._path("devices", self.me, name))
        self.state.pushed_seq = local[-1].last_seq if local else 0

    def _sweep_own(self) -> bool:
        """Before this device's first upload of a sync: remove what an interrupted upload left behind.

        Only this device writes its remote folder, and this process holds its writer lock, so any
        temporary there is a leftover. A push that uploads nothing costs no extra remote call.
        """
        removed = self._call("sweep", self.remote.sweep, self._path("devices", self.me))
        if removed:
            self.result.swept_temporaries = (self.result.swept_temporaries or 0) + removed
            self._log(f"removed {removed} temporary file(s) an interrupted upload left in devices/{self.me}")
        return True

    def _fetch_device(
        self, device_id: str, view: list[SegEntry] | None
    ) -> tuple[list[Fetched], list[SegEntry]]:
        """Make the local copy of a foreign device's log a prefix of its view.

        Returns what is already fetched (a merged segment straddling what this device holds, taken in
        place of its pieces) and the rest of the view, to download.
        """
        if view is None:
            return [], []
        known_before = dict(self.state.known.get(device_id, {}))
        local = self._local_entries(device_id, recheck=self.params.force)
        if self.params.force:
            local = self._repair_pulled(device_id, local, view, known_before)
        k, local, retile = self._align(device_id, local, view)
        straddler = self._take_straddler(device_id, view, k, retile)
        # With a straddler the held pieces are replaced by it, not archived.
        if straddler is None and k < len(local):
            with self.store.sync_lock():
                self._archive(
                    device_id,
                    local[k:],
                    f"left the history of epoch {self.state.epoch}",
                    self.state.epoch or "",
                    None,
                )
                self.store.after_drop({device_id: local[k].first_seq})
        if self.params.force:
            for entry in view[:k]:
                data = self._read_or_damaged("verify", self._path("devices", device_id, entry.name))
                if data is None or segment_crc(data) != entry.crc:
                    self._damage_seen.add((device_id, entry.name))
                    self.result.refused.append(
                        f"{device_id}/{entry.name}: remote copy missing or damaged; device {device_id} "
                        "re-uploads it on its next sync (`oplog sync` there)"
                    )
        prefetched = [straddler] if straddler is not None else []
        return prefetched, view[k + len(prefetched) :]

    def _download(self, missing: list[tuple[str, SegEntry]]) -> list[Fetched]:
        """Download and check ``missing`` segments (every device's, in log order per device).

        One bounded pool of downloads for all devices (``read_many``, each read with this
        sync's retries), results in order; a device's first segment that fails its checks
        stops that device (its later segments are skipped, as they could not be applied).
        """
        now = self.clock.now_ms()
        wanted = {self._path(DEVICES, d, e.name): (d, e) for d, e in missing}
        #: segments that do not open (an encrypted remote): refused like a bad checksum, not an error
        sealed_damage: dict[str, str] = {}

        def download(path: str) -> bytes | None:
            try:
                return self._call("download", self.remote.read, path)
            except DamagedRemoteObject as exc:
                sealed_damage[path] = str(exc)
                return None

        downloads = read_many(download, list(wanted), workers=_read_workers(self.remote))
        fetched: list[Fetched] = []
        stopped: set[str] = set()
        with closing(downloads):
            for path, data in downloads:
                device_id, entry = wanted[path]
                if device_id in stopped:
                    continue
                problem: str | list[pb.Event]
                if path in sealed_damage:
                    problem = f"damaged: {sealed_damage[path]}"
                else:
                    problem = self._check_pulled(device_id, entry, data, now)
                if isinstance(problem, str):
                    stopped.add(device_id)
                    self._refuse_pulled(device_id, entry, path, data, problem, path in sealed_damage)
                    continue
                assert data is not None
                self.result.bytes_down = (self.result.bytes_down or 0) + len(data)
                fetched.append(Fetched(device_id, entry, data, problem))
        return fetched

    def _refuse_pulled(
        self, device_id: str, entry: SegEntry, path: str, data: bytes | None, problem: str, sealed: bool
    ) -> None:
        if sealed or (data is not None and (len(data) != entry.size or segment_crc(data) != entry.crc)):
            # Only the device itself writes its folder: tell it (our manifest) and the user who can fix it.
            self._damage_seen.add((device_id, entry.name))
            problem += f"; device {device_id} re-uploads it on its next sync (`oplog sync` there)"
        self.result.refused.append(f"{path}: {problem}")
        self._log(f"refused {path}: {problem}")

    def _repair_pulled(
        self, device_id: str, local: list[SegEntry], view: list[SegEntry], known_before: dict[str, list[Any]]
    ) -> list[SegEntry]:
        """Replace local copies of ``device_id``'s segments that were damaged here, from a sound remote copy.

        A copy is damaged here (not replaced by history) when its name is where the view has it, the
        checksum recorded when it was pulled is the view's, and the file no longer has that checksum.
        """
        out = list(local)
        folder = self.store.device_dir(device_id)
        now = self.clock.now_ms()
        for i, (mine, theirs) in enumerate(zip(local, view, strict=False)):
            if mine.name != theirs.name or mine.crc == theirs.crc:
                continue
            recorded = known_before.get(mine.name)
            if recorded is None or recorded[1] != theirs.crc:
                continue
            path = self._path(DEVICES, device_id, theirs.name)
            data = self._call("download", self.remote.read, path)
            problem = self._check_pulled(device_id, theirs, data, now)
            if isinstance(problem, str):
                self.result.refused.append(
                    f"{path}: the local copy is damaged and the remote copy cannot replace it: {problem}"
                )
                continue
            assert data is not None
            with self.store.sync_lock():
                atomic_write(folder / theirs.name, data)
                self.state.known.setdefault(device_id, {})[theirs.name] = [theirs.size, theirs.crc]
                self.store.reopen_device_log(device_id)
            out[i] = theirs
            line = (
                f"{DEVICES}/{device_id}/{theirs.name}: the local copy was damaged; re-fetched from the remote"
            )
            self.result.repaired.append(line)
            self._log(f"repaired {line}")
        return out

    def _join_ahead(self, base: Checkpoint, missing: list[tuple[str, SegEntry]]) -> None:
        """A first pull from a remote snapshot: fold the snapshot plus the segments after its heads, swap, then
        download, check and store the older history, and record it all (``Store.fold_ahead``).

        Should the snapshot not fit, or a segment be refused, it ends as the ordinary pull would: what is
        stored is a prefix of each device's view, and the state is this device's own fold of it.
        """
        heads = base.heads
        # From the segment that holds a device's head on (the head event is checked against the snapshot).
        tail = [(d, e) for d, e in missing if e.last_seq >= heads.get(d, 0)]
        older = [(d, e) for d, e in missing if e.last_seq < heads.get(d, 0)]
        # The collector paused until the swap: the snapshot just decoded is hundreds of thousands of
        # young objects, and a full pass over them (≈ 1 s for 343k blocks) would land here, before
        # the device is usable, for no garbage (measured: the tail's check took 1.43 s instead of 0.4 s).
        with collector_paused():
            got_tail = self._download(tail)
            ahead = self._fold_ahead(base, tail, got_tail)
        stored = self._log_order(missing, self._download(older) + got_tail)
        self._store_pulled(stored, folded=ahead)
        if ahead:
            if len(stored) < len(missing):
                # Refused somewhere: the logs hold less than the state does. Back to this device's own fold.
                self.store.refold_own(base.position)
            self.store.drain_view()

    def _fold_ahead(
        self, base: Checkpoint, tail: list[tuple[str, SegEntry]], got_tail: list[Fetched]
    ) -> bool:
        ahead = False
        if len(got_tail) == len(tail) and got_tail:
            pulled: dict[str, list[pb.Event]] = {}
            for f in got_tail:
                pulled.setdefault(f.device_id, []).extend(f.events)
            newest = max(f.events[-1].hlc for f in got_tail if f.events)
            self.store.offer_bases([])
            ahead = self.store.fold_ahead(base, pulled, newest)
            if ahead:
                self._log(
                    f"usable from remote snapshot {base.info.source if base.info else ''}; fetching older history"
                )
        return ahead

    @staticmethod
    def _log_order(wanted: list[tuple[str, SegEntry]], got: list[Fetched]) -> list[Fetched]:
        """``got`` in ``wanted``'s order, each device cut at its first segment not in ``got`` (refused)."""
        by_name = {(f.device_id, f.entry.name): f for f in got}
        out: list[Fetched] = []
        stopped: set[str] = set()
        for device_id, entry in wanted:
            f = by_name.get((device_id, entry.name))
            if f is None:
                stopped.add(device_id)
            elif device_id not in stopped:
                out.append(f)
        return out

    def _store_pulled(self, fetched: list[Fetched], *, folded: bool = False) -> None:
        """Store every pulled segment, then fold all their events in at once (one rebuild at most).

        ``folded``: the state already holds them (``_join_ahead``); they are only recorded.
        """
        if not fetched:
            return
        devices = sorted({f.device_id for f in fetched})
        # Written (tmp, fsync, rename) before taking the lock: only sync touches a foreign folder, and the
        # log takes the new files in at refresh_device_log. Requests go on meanwhile.
        for device_id in devices:
            folder = self.store.device_dir(device_id)
            folder.mkdir(parents=True, exist_ok=True)
            for f in fetched:
                if f.device_id == device_id:
                    atomic_write(folder / f.entry.name, f.data)
        with self.store.sync_lock():
            for device_id in devices:
                folder = self.store.device_dir(device_id)
                known = self.state.known.setdefault(device_id, {})
                replaced: list[str] = []
                for f in fetched:
                    if f.device_id == device_id:
                        known[f.entry.name] = [f.entry.size, f.entry.crc]
                        replaced.extend(f.replaces)
                # Only now that the segment holding their events is durable do the pieces go.
                remove_segments(folder, replaced)
                for name in replaced:
                    known.pop(name, None)
                self.store.refresh_device_log(device_id)
            runs = [(f.device_id, f.events[0].device_seq, f.entry.last_seq) for f in fetched if f.events]
            beside = self.store.after_pull(
                runs, [event for f in fetched for event in f.events], folded=folded
            )
        if beside:
            # Many events, or events inside the history: folded without the write lock (requests go on).
            self.store.fold_pulled()
        self.result.pulled_segments += len(fetched)
        self.result.pulled_events = (self.result.pulled_events or 0) + sum(len(f.events) for f in fetched)

    def _check_pulled(
        self, device_id: str, entry: SegEntry, data: bytes | None, now: int
    ) -> str | list[pb.Event]:
        """The segment's events, or why it is refused."""
        if data is None:
            return "missing on the remote"
        if len(data) != entry.size or segment_crc(data) != entry.crc:
            return "does not match its manifest (damaged or being replaced)"
        try:
            # One walk checks every frame and the seal (as verify_segment does) and yields the payloads.
            scan = scan_segment(
                data,
                entry.name,
                device_id=device_id,
                first_seq=entry.first_seq,
                payloads=True,
                must_be_sealed=True,
            )
        except OplogError as exc:
            return f"damaged: {exc}"
        if scan.count != entry.count:
            return f"holds {scan.count} events, the manifest says {entry.count}"
        events = [decode_event(p) for p in scan.payloads]
        for offset, event in enumerate(events):
            if event.device_id != device_id or event.device_seq != entry.first_seq + offset:
                return f"record {offset} is event {event.device_id}#{event.device_seq}"
            if hlc_ms(event.hlc) > now + self.future_bound_ms:
                return (
                    f"event {device_id}#{event.device_seq} is stamped {hlc_ms(event.hlc) - now} ms in the future "
                    f"(bound {self.future_bound_ms} ms)"
                )
        return events

    def _force_push(
        self, epoch: EpochInfo, manifests: dict[str, Manifest | None], unreadable: set[str]
    ) -> None:
        """Start a new epoch whose history is this device's."""
        base: dict[str, list[SegEntry]] = {}
        for device_id in self.store.device_ids():
            if device_id == self.me or device_id in unreadable:
                continue
            view = self._view(device_id, epoch, manifests) or []
            k, local, retile = self._align(device_id, self._local_entries(device_id), view)
            if self._take_straddler(device_id, view, k, retile) is not None:
                # What we hold is the start of a segment the device merged since: all of it is shared
                # history (checked byte for byte), so the base lists it as we hold it.
                k = len(local)
            if k < len(local):
                # We hold segments the remote no longer has as they are: they cannot be shared.
                with self.store.sync_lock():
                    self._archive(device_id, local[k:], "force-push: not on the remote", "", None)
                    self.store.after_drop({device_id: local[k].first_seq})
            if k:
                base[device_id] = local[:k]
        new_epoch = self.store.new_token()
        self._progress("pushing local segments (force-push)")
        # The segments go up first (the new base names them), but the manifest moves to the new
        # epoch only once EPOCH is ours: a force-push that loses the race for EPOCH has then
        # changed nothing in anyone's view (under the current epoch its manifest says what it did).
        hold = epoch.epoch if self.state.epoch == epoch.epoch else f"pending-{new_epoch}"
        self._push_own(hold, manifests.get(self.me), self._reported_damage(manifests))
        base[self.me] = self._local_entries(self.me)
        info = EpochInfo(new_epoch, self.me, self.clock.now_ms(), base)
        self._write_epoch(info)
        self.state.epoch = new_epoch
        pushed = self._own_manifest
        if pushed is not None:
            manifest = Manifest(new_epoch, self.me, pushed.segments, list(pushed.damaged))
            self._call(
                "write manifest",
                self.remote.replace,
                self._path(DEVICES, self.me, MANIFEST),
                manifest.encode(),
            )
            self._own_manifest = manifest
        self._log(f"started epoch {new_epoch}")
