"""One device's durable, segmented operation log in one folder.

Records are opaque bytes; the device_seq of a record is its ordinal (1, 2, 3...).
The newest segment is open for appends, the others are sealed (see
``oplog.segment``). Writes go through a ``FileOps`` seam so tests can inject
faults and simulate crashes.

Durability:

* ``always`` (default): ``append`` writes a batch with one ``write``;
  ``wait_durable(seq)`` returns once an ``fdatasync`` that started after the
  batch was written has finished. Concurrent waiters share syncs (group commit):
  the first waiter becomes the leader and syncs everything written so far, the
  others wait on a condition and either find their seq covered or lead the next
  sync.
* ``interval``: a background thread syncs every ``interval_ms``;
  ``wait_durable`` only writes the buffer out (one ``write``, no fsync), so an
  acknowledged batch is in the kernel: a process crash loses nothing, a machine
  crash (power loss) can lose the batches acknowledged in the last
  ``interval_ms`` plus the duration of one sync.

``append_written`` is ``append`` with the batch written before it returns. A
failed ``write`` there (a full disk) leaves the log exactly as it was — the
batch gets no seq, the file is cut back — so the caller may retry later; the
store uses it so that a request that failed to reach the disk is never folded
into the state. A failed ``fdatasync`` is never retried: the log is unusable
until it is reopened (after a failed fsync the page cache state is unknown).

Recovery on a writable open cuts a torn tail of the open segment back to the
last complete batch, after saving the cut bytes to ``<segment>.broken``.

Compaction (``compact``, ``oplog.segmerge``) merges sealed segments into one
written beside them before they are removed; a folder holding both (a crash in
between) is read as the widest segments, the covered ones ignored, and a
writable open removes those leftovers. Readers streaming a piece that a merge
removed meanwhile go on from the merged segment.
"""

from __future__ import annotations

import bisect
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

import google_crc32c

from oplog import framing, segment, segmerge
from oplog.errors import CorruptSegment, InvalidArgument, StorageError
from oplog.fsutil import FileOps, OsFileOps, atomic_write, read_file

__all__ = ["DeviceLog", "SegmentInfo", "DURABILITY_MODES"]

DURABILITY_MODES = ("always", "interval")
_extend = google_crc32c.extend
# Files in a device folder that are ours but not segments: saved torn tails, temporaries.
_KNOWN_SUFFIXES = (".broken", ".tmp")
# How many syncs a group-commit leader runs back to back for waiters queued behind it.
_MAX_LEAD_ROUNDS = 4
# Buffered batches are written out once this many bytes wait (bounds memory and, in
# ``interval`` mode, what a process crash can lose before the next flush).
_FLUSH_BYTES = 64 << 10
# Reads stream a segment in chunks of this size, so memory stays flat whatever the log's size.
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class SegmentInfo:
    """A segment as listed by ``DeviceLog.segments()``."""

    name: str
    first_seq: int
    count: int
    sealed: bool
    size: int


class _Seg:
    """Mutable bookkeeping for one segment file."""

    __slots__ = ("name", "path", "first_seq", "count", "sealed", "size")

    def __init__(self, name: str, path: str, first_seq: int, count: int, sealed: bool, size: int) -> None:
        self.name = name
        self.path = path
        self.first_seq = first_seq
        self.count = count
        self.sealed = sealed
        self.size = size


def _is_known_leftover(name: str) -> bool:
    base = name.split(".seg", 1)
    return (
        len(base) == 2
        and segment.parse_segment_name(base[0] + ".seg") is not None
        and (base[1].startswith(_KNOWN_SUFFIXES))
    )


class DeviceLog:
    """One device's log: append batches, wait for durability, read forward, seal, roll over."""

    def __init__(
        self,
        folder: str,
        device_id: str,
        *,
        writable: bool,
        durability: str,
        interval_ms: int,
        segment_bytes: int,
        file_ops: FileOps,
    ) -> None:
        """Use ``DeviceLog.open``; this only sets fields."""
        self.folder = folder
        self.device_id = device_id
        self.writable = writable
        self.durability = durability
        self.interval_ms = interval_ms
        self.segment_bytes = segment_bytes
        self._ops = file_ops
        self._segs: list[_Seg] = []
        self._firsts: list[int] = []
        self._fd: int | None = None
        self._open: _Seg | None = None
        self._data_crc = 0
        self._buf = bytearray()
        self._written = 0
        self._written_seq = 0
        self._last_seq = 0
        self._durable_seq = 0
        self._wlock = threading.Lock()
        self._cv = threading.Condition(threading.Lock())
        self._syncing = False
        self._want = 0
        self._retired: list[int] = []
        self._failed: str | None = None
        self._closed = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        #: segment files a merged segment covers (left by an interrupted compaction)
        self._covered: list[str] = []

    # ---- opening and recovery ----

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
        check_sealed: bool = True,
    ) -> DeviceLog:
        """Open (and on a writable open, recover) the log in ``folder``; a read-only open changes nothing.

        ``check_sealed`` checks every sealed segment's whole-data CRC on open
        (one C call per segment); the frames themselves are checked when read.
        """
        if durability not in DURABILITY_MODES:
            raise InvalidArgument(f"durability must be one of {DURABILITY_MODES}, got {durability!r}")
        if interval_ms <= 0:
            raise InvalidArgument("interval_ms must be positive")
        if segment_bytes < segment.SEGMENT_HEADER_SIZE + segment.SEAL_FRAME_SIZE + framing.HEADER_SIZE:
            raise InvalidArgument(f"segment_bytes is too small: {segment_bytes}")
        segment.check_device_id(device_id)
        log = cls(
            os.fspath(folder),
            device_id,
            writable=writable,
            durability=durability,
            interval_ms=interval_ms,
            segment_bytes=segment_bytes,
            file_ops=file_ops or OsFileOps(),
        )
        try:
            log._load(check_sealed)
        except OSError as exc:
            log._close_fds()
            raise StorageError(f"cannot open log in {log.folder}: {exc.strerror or exc}") from exc
        except BaseException:
            log._close_fds()
            raise
        if writable and durability == "interval":
            log._flusher = threading.Thread(
                target=log._flush_loop, name=f"oplog-flush-{device_id}", daemon=True
            )
            log._flusher.start()
        return log

    def _list_segments(self) -> list[tuple[int, str]]:
        ops = self._ops
        if not ops.exists(self.folder):
            if self.writable:
                ops.makedirs(self.folder)
                parent = os.path.dirname(self.folder.rstrip(os.sep))
                if parent:
                    ops.fsync_dir(parent)
            return []
        found: list[tuple[int, str]] = []
        for name in ops.listdir(self.folder):
            first = segment.parse_segment_name(name)
            if first is not None:
                found.append((first, name))
            elif not _is_known_leftover(name):
                warnings.warn(f"ignoring unexpected file {name!r} in log folder {self.folder}", stacklevel=4)
        found.sort()
        return self._drop_covered(found)

    def _drop_covered(self, found: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """Leave out segments a merged segment covers: the merge wrote it before removing them."""
        kept, self._covered = segment.split_covered(found)
        return kept

    def _load(self, check_sealed: bool) -> None:
        listing = self._list_segments()
        expected = 1
        for index, (first, name) in enumerate(listing):
            path = os.path.join(self.folder, name)
            if first != expected:
                raise StorageError(
                    f"{path}: log is not dense: expected a segment starting at seq {expected}, found {first}"
                )
            last = index == len(listing) - 1
            scan: segment.SegmentScan | None = None
            if not last and check_sealed:
                # Checked in bounded chunks, never read whole: opening stays at a few MB of memory.
                scan = self._quick_check_sealed(path, first)
            buf = b""
            if scan is None:
                buf = read_file(path, self._ops)
            if not last and not check_sealed:
                scan = self._trailer_only(buf, path, first)
            if scan is None:
                scan = segment.scan_segment(
                    buf, path, device_id=self.device_id, first_seq=first, must_be_sealed=not last
                )
            size = scan.size
            if scan.torn:
                if self.writable:
                    self._cut_tail(path, buf, scan.good_end)
                size = scan.good_end
            seg = _Seg(name, path, first, scan.count, scan.sealed, size)
            self._segs.append(seg)
            self._firsts.append(first)
            expected = first + scan.count
            if last and not scan.sealed:
                self._open = seg
                self._data_crc = scan.data_crc
                self._written = size
        self._last_seq = self._written_seq = expected - 1
        if self.writable and self._covered:
            segmerge.remove_segments(self.folder, self._covered, self._ops)
            self._covered = []
        if self.writable and self._open is not None:
            fd = self._ops.open(self._open.path, os.O_WRONLY | os.O_APPEND)
            self._fd = fd
            # What we found may be only in the page cache (a process crash): make it durable now.
            self._ops.fdatasync(fd)
        self._durable_seq = self._last_seq

    def _quick_check_sealed(self, path: str, first: int) -> segment.SegmentScan | None:
        """``segment.quick_check_sealed`` reading the file in chunks; None when it fails (the caller rescans)."""
        ops = self._ops
        fd = ops.open(path, os.O_RDONLY)
        try:
            size = ops.fsize(fd)
            header = segment.parse_header(ops.pread(fd, segment.SEGMENT_HEADER_SIZE, 0), path)
            segment.check_identity(header, path, self.device_id, first)
            trailer = size - segment.SEAL_FRAME_SIZE
            if trailer < segment.SEGMENT_HEADER_SIZE:
                return None
            tail = ops.pread(fd, segment.SEAL_FRAME_SIZE, trailer)
            if framing.frame_ok(tail, 0, len(tail)) != len(tail) or tail[1] != framing.FLAG_SEAL:
                return None
            seal = segment.parse_seal(tail[framing.HEADER_SIZE :])
            if (
                seal is None
                or seal.first_seq != first
                or seal.data_len != trailer - segment.SEGMENT_HEADER_SIZE
            ):
                return None
            crc = 0
            offset = segment.SEGMENT_HEADER_SIZE
            while offset < trailer:
                chunk = ops.pread(fd, min(4 * _READ_CHUNK, trailer - offset), offset)
                if not chunk:
                    return None
                crc = _extend(crc, chunk)
                offset += len(chunk)
            if crc != seal.data_crc:
                return None
            return segment.SegmentScan(header, seal.count, True, size, size, False, crc, [])
        finally:
            ops.close(fd)

    def _trailer_only(self, buf: bytes, path: str, first: int) -> segment.SegmentScan:
        header = segment.parse_header(buf, path)
        if header.device_id != self.device_id:
            raise StorageError(
                f"{path}: segment belongs to device {header.device_id!r}, not {self.device_id!r}"
            )
        size = len(buf)
        trailer = size - segment.SEAL_FRAME_SIZE
        seal = None
        if trailer >= segment.SEGMENT_HEADER_SIZE and framing.frame_ok(buf, trailer, size) == size:
            seal = segment.parse_seal(buf[trailer + framing.HEADER_SIZE :])
        if seal is None or buf[trailer + 1] != framing.FLAG_SEAL or seal.first_seq != first:
            raise CorruptSegment(
                "segment should be sealed but has no valid seal trailer", path=path, offset=size
            )
        return segment.SegmentScan(header, seal.count, True, size, size, False, seal.data_crc, [])

    def _cut_tail(self, path: str, buf: bytes, good_end: int) -> None:
        """Save the torn tail beside the segment, then truncate the segment to ``good_end``."""
        ops = self._ops
        broken = f"{path}.broken"
        n = 1
        while ops.exists(broken):
            n += 1
            broken = f"{path}.broken.{n}"
        atomic_write(broken, buf[good_end:], ops)
        warnings.warn(
            f"cut a torn tail of {len(buf) - good_end} bytes from {path} at offset {good_end}; saved to {broken}",
            stacklevel=5,
        )
        fd = ops.open(path, os.O_WRONLY)
        try:
            ops.ftruncate(fd, good_end)
            ops.fsync(fd)
        finally:
            ops.close(fd)

    # ---- properties ----

    @property
    def last_seq(self) -> int:
        """The seq of the last appended record (0 when empty)."""
        return self._last_seq

    @property
    def durable_seq(self) -> int:
        """The highest seq known to be on disk."""
        return self._durable_seq

    @property
    def failed(self) -> str | None:
        """Why the log is unusable until reopened (a failed fsync or an uncut partial write), or None."""
        return self._failed

    def segments(self) -> list[SegmentInfo]:
        """The segments in log order."""
        with self._wlock:
            return [SegmentInfo(s.name, s.first_seq, s.count, s.sealed, s.size) for s in self._segs]

    def refresh(self) -> int:
        """Take in sealed segments added to the folder after the known ones; return how many records came.

        For a read-only log whose folder sync extends: only the new files are
        read. ``StorageError`` if the known segments are no longer the folder's
        first ones (reopen the log instead).
        """
        if self.writable:
            raise StorageError(f"log {self.folder}: only a read-only log can be refreshed")
        listing = self._list_segments()
        with self._wlock:
            known = [(s.first_seq, s.name) for s in self._segs]
            if listing[: len(known)] != known or (self._segs and not self._segs[-1].sealed):
                raise StorageError(f"log {self.folder}: its known segments changed; reopen it")
            expected = self._last_seq + 1
            for first, name in listing[len(known) :]:
                path = os.path.join(self.folder, name)
                if first != expected:
                    raise StorageError(
                        f"{path}: log is not dense: expected a segment starting at seq {expected}, found {first}"
                    )
                buf = read_file(path, self._ops)
                scan = segment.quick_check_sealed(buf, path, device_id=self.device_id, first_seq=first)
                if scan is None:
                    scan = segment.scan_segment(
                        buf, path, device_id=self.device_id, first_seq=first, must_be_sealed=True
                    )
                self._segs.append(_Seg(name, path, first, scan.count, True, scan.size))
                self._firsts.append(first)
                expected = first + scan.count
            added = expected - 1 - self._last_seq
            self._last_seq = self._durable_seq = expected - 1
        return added

    # ---- appending ----

    def _check_writable(self) -> None:
        if self._closed:
            raise StorageError(f"log {self.folder} is closed")
        if not self.writable:
            raise StorageError(f"log {self.folder} is open read-only")
        if self._failed is not None:
            raise StorageError(f"log {self.folder} is unusable after an I/O error: {self._failed}")

    def append(self, payloads: Sequence[bytes], *, expect_seq: int | None = None) -> int:
        """Add one atomic batch (not yet durable) and return the seq of its last record.

        The framed bytes go to an in-memory buffer that the next sync (or a full
        buffer, a read, a seal) writes out with one ``write``; appenders thus never
        block on the disk while a group-commit sync is running.
        ``expect_seq``, when given, must be the seq the batch's first record gets;
        it is checked under the writer lock so callers can stamp seqs into payloads.
        """
        data = framing.encode_batch(payloads)
        with self._wlock:
            self._check_next(expect_seq)
            seg = self._segment_for(data)
            self._buf += data
            self._took(seg, data, len(payloads))
            if len(self._buf) >= _FLUSH_BYTES:
                self._flush_locked()
            return self._last_seq

    def append_written(self, payloads: Sequence[bytes], *, expect_seq: int | None = None) -> int:
        """Add one atomic batch and hand it to the OS (one ``write``) before returning its last seq.

        Unlike ``append``, a failed write (ENOSPC, EDQUOT) is not fatal: the
        segment is cut back to its previous end, the batch takes no seq, and
        ``StorageError`` is raised; a later call retries. Not yet durable in
        ``always`` mode (``wait_durable`` syncs).
        """
        data = framing.encode_batch(payloads)
        with self._wlock:
            self._check_next(expect_seq)
            # Batches buffered by ``append`` go first (a failure there is fatal, as in a sync).
            self._flush_locked()
            seg = self._segment_for(data)
            self._write_or_undo(data, seg)
            self._took(seg, data, len(payloads))
            self._written_seq = self._last_seq
            return self._last_seq

    def _check_next(self, expect_seq: int | None) -> None:
        """Refuse an append to a log that cannot take one, or whose next seq is not ``expect_seq`` (holding the writer lock)."""
        if self._closed or self._failed is not None or not self.writable:
            self._check_writable()
        if expect_seq is not None and expect_seq != self._last_seq + 1:
            raise StorageError(
                f"expected to append seq {expect_seq}, but the next seq is {self._last_seq + 1}"
            )

    def _segment_for(self, data: bytes) -> _Seg:
        """The open segment, or a new one when ``data`` would take a non-empty one past ``segment_bytes``."""
        seg = self._open
        if seg is None or (seg.size + len(data) + segment.SEAL_FRAME_SIZE > self.segment_bytes and seg.count):
            seg = self._roll()
        return seg

    def _took(self, seg: _Seg, data: bytes, count: int) -> None:
        """Account for a batch of ``count`` records (``data``, framed) added to ``seg``: sizes, checksum, seq."""
        seg.size += len(data)
        seg.count += count
        self._data_crc = _extend(self._data_crc, data)
        self._last_seq += count

    def _write_all(self, fd: int, data: bytes | bytearray) -> None:
        """Write all of ``data`` through the file-ops seam (a write may take only part); ``OSError`` otherwise."""
        view = memoryview(data)
        while view:
            n = self._ops.write(fd, view)
            if n <= 0:
                raise OSError(0, "short write")
            view = view[n:]

    def _write_or_undo(self, data: bytes | bytearray, seg: _Seg) -> None:
        """Write ``data`` at the open segment's end; on failure cut the file back and raise ``StorageError``.

        Only a failed cut (the file may now end in a partial frame) makes the
        log unusable; otherwise nothing changed and the caller may retry.
        """
        fd = self._fd
        assert fd is not None
        try:
            self._write_all(fd, data)
        except OSError as exc:
            try:
                self._ops.ftruncate(fd, self._written)
            except OSError as cut:
                self._fail(f"cannot write to {seg.path}: {exc}; cannot cut it back: {cut}")
            raise StorageError(f"cannot write to {seg.path}: {exc.strerror or exc}") from exc
        self._written += len(data)

    def _flush_locked(self) -> None:
        """Write the buffered batches to the open segment. Holds the writer lock."""
        data = self._buf
        if not data:
            return
        fd = self._fd
        seg = self._open
        assert fd is not None and seg is not None
        self._buf = bytearray()
        try:
            self._write_all(fd, data)
        except OSError as exc:
            # Seqs were already handed out for these batches: the log cannot go on without them.
            try:
                self._ops.ftruncate(fd, self._written)
            except OSError:
                pass
            self._fail(f"cannot write to {seg.path}: {exc}")
            raise StorageError(f"cannot write to {seg.path}: {exc.strerror or exc}") from exc
        self._written += len(data)
        self._written_seq = self._last_seq

    def _fail(self, why: str) -> None:
        self._failed = why
        with self._cv:
            self._cv.notify_all()

    def _roll(self) -> _Seg:
        """Seal the open segment (if it has records) and start a new one. Holds the writer lock."""
        if self._open is not None:
            if not self._open.count:
                return self._open
            self._seal_locked()
        first = self._last_seq + 1
        name = segment.segment_name(first)
        path = os.path.join(self.folder, name)
        try:
            # Created atomically with its header, so a segment file is never half-made.
            atomic_write(path, segment.encode_header(self.device_id, first), self._ops)
            fd = self._ops.open(path, os.O_WRONLY | os.O_APPEND)
        except (OSError, StorageError) as exc:
            # Not fatal: the previous segment is sealed and durable, no seq was handed out;
            # the next append tries to create the segment again (a full disk may have room then).
            raise StorageError(f"cannot create segment {path}: {exc}") from exc
        seg = _Seg(name, path, first, 0, False, segment.SEGMENT_HEADER_SIZE)
        self._written = segment.SEGMENT_HEADER_SIZE
        self._segs.append(seg)
        self._firsts.append(first)
        self._open = seg
        self._fd = fd
        self._data_crc = 0
        return seg

    def _seal_locked(self) -> None:
        seg = self._open
        fd = self._fd
        assert seg is not None and fd is not None
        self._flush_locked()
        # A seal that does not fit (full disk) leaves the segment open and the log usable.
        self._write_or_undo(
            segment.encode_seal(
                seg.first_seq, seg.count, seg.size - segment.SEGMENT_HEADER_SIZE, self._data_crc
            ),
            seg,
        )
        try:
            self._ops.fdatasync(fd)
        except OSError as exc:
            self._fail(f"cannot seal {seg.path}: {exc}")
            raise StorageError(f"cannot seal {seg.path}: {exc.strerror or exc}") from exc
        seg.size = self._written
        seg.sealed = True
        self._open = None
        self._fd = None
        # A sync leader may still be using this descriptor: the next leader closes it.
        self._retired.append(fd)
        with self._cv:
            if self._durable_seq < self._last_seq:
                self._durable_seq = self._last_seq
            self._cv.notify_all()

    def seal(self) -> bool:
        """Seal the open segment if it has records (the next append starts a new one); True if sealed."""
        with self._wlock:
            self._check_writable()
            if self._open is None or not self._open.count:
                return False
            self._seal_locked()
            return True

    # ---- compaction ----

    def compact(self, fanout: int = segmerge.DEFAULT_FANOUT) -> int:
        """Merge sealed segments as ``segmerge.plan_merge`` says until it says no more; return merges done.

        Each merged segment is built from the (never changing) sealed pieces and
        written durably beside them without the writer lock, so appends go on;
        only the swap in the segment list holds it. The pieces are removed last.
        """
        self._check_writable()
        merges = 0
        while True:
            with self._wlock:
                sealed = [s for s in self._segs if s.sealed]
                lens = [s.size - segment.SEGMENT_HEADER_SIZE - segment.SEAL_FRAME_SIZE for s in sealed]
                span = segmerge.plan_merge(lens, self.segment_bytes, fanout)
                if span is None:
                    return merges
                pieces = sealed[span[0] : span[1]]
            name, data = segmerge.merge_files(
                self.folder, self.device_id, [p.name for p in pieces], self._ops
            )
            segmerge.write_segments(self.folder, [(name, data)], self._ops)
            with self._wlock:
                start = self._segs.index(pieces[0])
                if self._segs[start : start + len(pieces)] != pieces:
                    raise StorageError(f"log {self.folder}: segments changed during a merge")
                merged = _Seg(
                    name,
                    os.path.join(self.folder, name),
                    pieces[0].first_seq,
                    sum(p.count for p in pieces),
                    True,
                    len(data),
                )
                self._segs[start : start + len(pieces)] = [merged]
                self._firsts = [s.first_seq for s in self._segs]
            segmerge.remove_segments(self.folder, [p.name for p in pieces], self._ops)
            merges += 1

    # ---- durability ----

    def _sync_once(self) -> int:
        """One fdatasync of the open segment; return the seq it made durable. Called by the leader only."""
        with self._wlock:
            if self._closed:
                # close() already synced everything and may have closed the descriptors.
                return self._last_seq
            self._flush_locked()
            fd = self._fd
            target = self._last_seq
            retired = self._retired
            self._retired = []
        try:
            if fd is not None:
                self._ops.fdatasync(fd)
        finally:
            for old in retired:
                try:
                    self._ops.close(old)
                except OSError:
                    pass
        return target

    def _lead_until(self, seq: int) -> None:
        """Wait until ``seq`` is durable, leading syncs when nobody else is."""
        cv = self._cv
        with cv:
            if seq > self._want:
                self._want = seq
            while self._durable_seq < seq:
                if self._failed is not None:
                    raise StorageError(f"log {self.folder} is unusable after an I/O error: {self._failed}")
                if self._syncing:
                    cv.wait()
                    continue
                self._syncing = True
                rounds = 0
                # Keep leading while others wait for more: handing the role over costs a thread switch.
                while (
                    rounds < _MAX_LEAD_ROUNDS
                    and self._failed is None
                    and (self._durable_seq < seq or self._want > self._durable_seq)
                ):
                    rounds += 1
                    cv.release()
                    try:
                        target = self._sync_once()
                    except OSError as exc:
                        # After a failed fsync the page cache state is unknown: never retry, give up.
                        self._failed = f"fdatasync failed: {exc}"
                        target = -1
                    except StorageError:
                        target = -1
                    finally:
                        cv.acquire()
                    if target > self._durable_seq:
                        self._durable_seq = target
                    cv.notify_all()
                self._syncing = False
                cv.notify_all()

    def wait_durable(self, seq: int) -> None:
        """Block until record ``seq`` is on disk (``always``); in ``interval`` mode until it is written to the OS."""
        if seq <= self._durable_seq:
            return
        if seq > self._last_seq:
            raise InvalidArgument(f"seq {seq} has not been appended (last is {self._last_seq})")
        if self.durability == "interval":
            # Handed to the kernel before the caller acknowledges it: a process crash loses nothing.
            if seq > self._written_seq:
                with self._wlock:
                    if self._closed or self._failed is not None:
                        self._check_writable()
                    self._flush_locked()
            return
        self._lead_until(seq)

    def flush(self) -> None:
        """Write buffered batches to the open segment (no fsync), so another reader of the files sees them."""
        with self._wlock:
            if self._buf:
                self._flush_locked()

    def sync(self) -> None:
        """Make everything appended so far durable, whatever the durability mode."""
        if self.writable and not self._closed:
            self._lead_until(self._last_seq)

    def append_durable(self, payloads: Sequence[bytes], *, expect_seq: int | None = None) -> int:
        """Append one batch and wait until it is durable (per the durability mode); return its last seq."""
        seq = self.append(payloads, expect_seq=expect_seq)
        self.wait_durable(seq)
        return seq

    def _flush_loop(self) -> None:
        # Event.wait is a sleep, not a clock read: the core still never reads wall time.
        while not self._stop.wait(self.interval_ms / 1000):
            if self._durable_seq < self._last_seq and self._failed is None:
                try:
                    self._lead_until(self._last_seq)
                except StorageError:
                    return

    # ---- reading ----

    def read(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield ``(seq, payload)`` from ``from_seq`` through ``to_seq`` (default: the last seq now)."""
        with self._wlock:
            if self._buf:
                self._flush_locked()
            last = self._last_seq
        if to_seq is None or to_seq > last:
            to_seq = last
        seq = max(from_seq, 1)
        while seq <= to_seq:
            with self._wlock:
                snapshot = [(s.path, s.first_seq, s.count, s.sealed, s.size) for s in self._segs]
            firsts = [s[1] for s in snapshot]
            index = max(bisect.bisect_right(firsts, seq) - 1, 0)
            vanished = False
            for path, first, count, sealed, size in snapshot[index:]:
                if first > to_seq:
                    return
                if count == 0:
                    continue
                start = max(seq - first, 0)
                stop = min(to_seq - first + 1, count)
                at = seq
                try:
                    for payload in self._stream_segment(path, first, count, sealed, size, start, stop):
                        yield seq, payload
                        seq += 1
                except StorageError:
                    if seq != at or not self._merged_away(path):
                        raise
                    vanished = True  # a merge replaced the piece: read on from the merged segment
                    break
            if not vanished:
                return

    def _stream_segment(
        self, path: str, first: int, count: int, sealed: bool, size: int, start: int, stop: int
    ) -> Iterator[bytes]:
        """Yield the payloads of records ``start``..``stop - 1`` of a segment, reading it in bounded chunks.

        Memory stays at one chunk (plus one record, if a record is bigger) whatever
        the segment's size. Every frame's CRC is checked before its record is
        yielded; reading to the end also checks the record count and, for a sealed
        segment, the seal trailer against the records (whole-data CRC). Only the
        first ``size`` bytes are read: a writer may be mid-append past them.
        """
        ops = self._ops
        try:
            fd = ops.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise StorageError(f"cannot read {path}: it is missing") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            header = segment.parse_header(ops.pread(fd, segment.SEGMENT_HEADER_SIZE, 0), path)
            segment.check_identity(header, path, self.device_id, first)
            yield from self._stream_frames(fd, path, first, count, sealed, size, start, stop)
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        finally:
            ops.close(fd)

    def _stream_frames(
        self, fd: int, path: str, first: int, count: int, sealed: bool, size: int, start: int, stop: int
    ) -> Iterator[bytes]:
        # One function, not a framing helper plus a loop: this runs once per record of every replay.
        unpack = framing.unpack_header
        value = google_crc32c.value
        header_size = framing.HEADER_SIZE
        # Module constants as locals: this loop runs once per record of every replay.
        magic_ok = framing.FRAME_MAGIC
        unknown_flags = ~framing.KNOWN_FLAGS
        max_payload = framing.MAX_PAYLOAD
        flag_seal = framing.FLAG_SEAL
        flag_more = framing.FLAG_MORE
        buf = b""
        pos = 0  # next frame in buf
        base = segment.SEGMENT_HEADER_SIZE  # file offset of buf[0]
        offset = base  # file offset of the next read
        index = 0  # records yielded or skipped so far (complete batches only)
        pending: list[bytes] = []  # records of a batch whose last record is still to come
        data_crc = 0
        seal: bytes | None = None
        seal_at = -1
        while seal is None:
            want = min(_READ_CHUNK, size - offset)
            if want <= 0:
                break
            chunk = self._ops.pread(fd, want, offset)
            if len(chunk) < want:
                raise CorruptSegment(
                    "segment is shorter than when it was opened", path=path, offset=offset + len(chunk)
                )
            offset += want
            # Keep the undecoded rest (a frame cut by the chunk boundary) in front of the new bytes.
            buf = buf[pos:] + chunk if pos < len(buf) else chunk
            base += pos
            pos = 0
            end = len(buf)
            while end - pos >= header_size:
                magic, flags, length, crc = unpack(buf, pos)
                if magic != magic_ok or flags & unknown_flags or length > max_payload:
                    raise CorruptSegment("bad record checksum or frame", path=path, offset=base + pos)
                frame_end = pos + header_size + length
                if frame_end > end:
                    break  # the rest of this frame is in the next chunk
                if start and index + len(pending) < start and not flags & flag_seal:
                    # Before the range asked for: walked by its header only (start-up reads a tail from
                    # mid-segment). The open segment's frames were checked on open, a sealed
                    # segment's by the whole-data CRC below.
                    payload = b""
                else:
                    payload = buf[pos + header_size : frame_end]
                    if _extend(value(buf[pos : pos + 6]), payload) != crc:
                        raise CorruptSegment("bad record checksum or frame", path=path, offset=base + pos)
                if flags & flag_seal:
                    if pending or flags & flag_more or frame_end != end or offset != size:
                        raise CorruptSegment(
                            "bad seal trailer or bytes after it", path=path, offset=base + pos
                        )
                    seal = payload
                    seal_at = base + pos
                    data_crc = _extend(data_crc, buf[:pos])
                    pos = end
                    break
                pos = frame_end
                if flags & flag_more:
                    pending.append(payload)
                    continue
                if pending:
                    for record in pending:
                        if start <= index < stop:
                            yield record
                        index += 1
                    pending.clear()
                if start <= index < stop:
                    yield payload
                index += 1
                if index >= stop:
                    return  # a prefix was asked for: the rest is not read
            if seal is None:
                data_crc = _extend(data_crc, buf[:pos])
        if pending or pos < len(buf):
            raise CorruptSegment("segment ends inside a record or batch", path=path, offset=base + pos)
        if index < count:
            raise CorruptSegment(
                f"segment holds {index} records, expected {count}", path=path, offset=base + pos
            )
        if sealed:
            info = segment.parse_seal(seal) if seal is not None else None
            if info is None:
                raise CorruptSegment(
                    "segment should be sealed but has no valid seal trailer", path=path, offset=size
                )
            if (
                info.first_seq != first
                or info.count != index
                or info.data_len != seal_at - segment.SEGMENT_HEADER_SIZE
                or info.data_crc != data_crc
            ):
                raise CorruptSegment("seal trailer does not match the records", path=path, offset=seal_at)

    def _merged_away(self, path: str) -> bool:
        """Whether ``path`` is no longer one of the log's segments (a merge replaced it).

        A read-only log (another process's view, e.g. ``oplog replay`` while a server
        syncs) learns of a merge only from the folder: it re-lists it once here.
        """
        with self._wlock:
            if all(s.path != path for s in self._segs):
                return True
            if self.writable or os.path.exists(path):
                return False
            kept = (self._segs, self._firsts, self._last_seq, self._open)
            self._segs, self._firsts, self._open = [], [], None
            try:
                self._load(False)
            except (StorageError, OSError):
                self._segs, self._firsts, self._last_seq, self._open = kept
                return False
            return all(s.path != path for s in self._segs)

    def verify(self) -> int:
        """Walk and check every frame of every segment; return the number of records."""
        total = 0
        for _ in self.read():
            total += 1
        return total

    # ---- closing ----

    def _close_fds(self) -> None:
        fds = self._retired
        self._retired = []
        if self._fd is not None:
            fds.append(self._fd)
            self._fd = None
        for fd in fds:
            try:
                self._ops.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        """Make everything durable, stop the flusher, close files. Idempotent."""
        if self._closed:
            return
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
        try:
            if self.writable and self._failed is None:
                self._lead_until(self._last_seq)
        finally:
            with self._wlock:
                self._closed = True
            with self._cv:
                # A leader that took its descriptor before we closed may still be syncing on it.
                while self._syncing:
                    self._cv.wait()
            with self._wlock:
                self._close_fds()

    def __enter__(self) -> DeviceLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
