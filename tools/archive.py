"""``oplog archive list|show|restore``: the events that left the shared history (see docs/archive.md).

``list`` and ``show`` only read (no writer's lock; they work while a server
runs). ``restore`` writes: it opens the store with a bounded lock wait and
refuses, naming the server, when ``oplog serve`` holds the directory.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from oplog import wire
from oplog.archive import (
    ArchiveEntry,
    RestoreResult,
    SeqRange,
    entry_events,
    find_entry,
    list_archive,
    plan_restore,
    restore,
)
from oplog.datadir import check_data_dir, opened_readonly
from oplog.errors import DataDirLocked, InvalidArgument
from oplog.isotime import iso_time
from oplog.tools.options import add_lock_wait
from oplog.tools.progress import progress_bar, wanted
from oplog.v1 import oplog_pb2 as pb

__all__ = [
    "register",
    "run_list",
    "run_show",
    "run_restore",
    "parse_seq_range",
    "entry_summary",
    "event_json",
]


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    """Add the ``archive`` subcommand group (``list``, ``show``, ``restore``)."""
    group = subparsers.add_parser(
        "archive",
        help="list, show and restore archived events",
        description="Events that force-push, force-pull or an epoch change moved out of the shared history.",
    )
    actions = group.add_subparsers(dest="archive_command", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        parents=[parent],
        help="every archive entry",
        description="List every archive entry (read-only).",
    )
    listing.set_defaults(func=run_list)
    show = actions.add_parser(
        "show",
        parents=[parent],
        help="the events of one entry",
        description="Print an entry's events (read-only).",
    )
    show.add_argument("id", help="the archive entry id (see 'oplog archive list')")
    show.add_argument("--device", metavar="D", help="only this device's events")
    show.set_defaults(func=run_show)
    rest = actions.add_parser(
        "restore",
        parents=[parent],
        help="re-apply an entry's events as new local events",
        description=(
            "Re-apply archived events as new local events (new seq and hlc, same transactions), skipping "
            "those already rebased, restored or still in the history. Restoring twice = restoring once."
        ),
    )
    rest.add_argument("id", help="the archive entry id (see 'oplog archive list')")
    rest.add_argument("--device", metavar="D", help="only this device's events")
    rest.add_argument("--seq", metavar="A-B", help="only seqs A through B (or just A)")
    rest.add_argument("--dry-run", action="store_true", help="show what would be restored; change nothing")
    add_lock_wait(rest)
    rest.set_defaults(func=run_restore)


# ---- shared helpers ----


def parse_seq_range(text: str) -> SeqRange:
    """``A-B`` or ``A`` as a ``SeqRange``; ``InvalidArgument`` otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if match is None:
        raise InvalidArgument(f"--seq: expected A-B or A (positive integers), got {text!r}")
    first = int(match.group(1))
    return SeqRange(first, int(match.group(2)) if match.group(2) else first)


def _check_device(entry: ArchiveEntry, device_id: str | None) -> None:
    if device_id is not None and device_id not in entry.device_ids:
        held = ", ".join(entry.device_ids) or "none"
        raise InvalidArgument(
            f"archive entry {entry.id} holds no events of device {device_id!r} (devices: {held})"
        )


def _data_dir(data: str) -> Path:
    return check_data_dir(data)


def entry_summary(entry: ArchiveEntry) -> dict[str, Any]:
    """One archive entry as JSON: id, reason, time, epochs, devices and counts."""
    return {
        "id": entry.id,
        "reason": entry.reason,
        "time_ms": entry.time_ms,
        "time": iso_time(entry.time_ms),
        "epoch_from": entry.epoch_from,
        "epoch_to": entry.epoch_to,
        "devices": entry.device_ids,
        "segments": len(entry.segments),
        "events": entry.event_count,
        "rebased": sum(len(v) for v in entry.rebased.values()),
        "restored": sum(len(v) for v in entry.restored.values()),
    }


def _operations(tx: pb.Transaction) -> list[dict[str, Any]]:
    """Each operation's action and the blocks it names or places."""
    out: list[dict[str, Any]] = []
    for op in tx.do_operations:
        ids = [op.id] if op.id else []
        ids += [spec.id for spec in op.blocks if spec.id and spec.id not in ids]
        out.append({"action": op.action, "ids": ids})
    return out


def _actions_text(event: pb.Event) -> str:
    return "; ".join(" ".join([o["action"], *o["ids"]]) for o in _operations(event.transaction))


def _status(entry: ArchiveEntry, event: pb.Event) -> str:
    if event.device_seq in entry.rebased.get(event.device_id, ()):
        return "rebased"
    if event.device_seq in entry.restored.get(event.device_id, ()):
        return "restored"
    return "archived"


def event_json(entry: ArchiveEntry, event: pb.Event) -> dict[str, Any]:
    """One archived event as JSON: position, stamps, status, operations and the full transaction."""
    return {
        "device_id": event.device_id,
        "device_seq": event.device_seq,
        "hlc": event.hlc,
        "time_ms": event.time_ms,
        "time": iso_time(event.time_ms),
        "app": event.app,
        "session": event.session,
        "req_id": event.req_id,
        "tx_index": event.tx_index,
        "tx_count": event.tx_count,
        "status": _status(entry, event),
        "operations": _operations(event.transaction),
        "transaction": wire.transaction_to_json(event.transaction, resolved=True),
    }


# ---- list ----


def run_list(args: argparse.Namespace) -> int:
    """Print every archive entry (an empty archive is an empty list, not an error)."""
    data = _data_dir(args.data)
    entries = [entry_summary(e) for e in list_archive(data)]
    if args.json:
        print(json.dumps(entries, ensure_ascii=False))
        return 0
    if not entries:
        print(f"no archive entries in {data}")
        return 0
    width = max(len(e["id"]) for e in entries)
    print(
        f"{'ID':<{width}}  {'TIME (UTC)':<24} {'SEGS':>4} {'EVENTS':>6} {'REBASED':>7} {'RESTORED':>8}  DEVICES: REASON"
    )
    for e in entries:
        print(
            f"{e['id']:<{width}}  {e['time']:<24} {e['segments']:>4} {e['events']:>6} {e['rebased']:>7} "
            f"{e['restored']:>8}  {','.join(e['devices'])}: {e['reason']} "
            f"(epoch {e['epoch_from'] or '-'} -> {e['epoch_to'] or '-'})"
        )
    return 0


# ---- show ----


def run_show(args: argparse.Namespace) -> int:
    """Print one entry's events (JSON lines with ``--json``)."""
    data = _data_dir(args.data)
    entry = find_entry(data, args.id)
    _check_device(entry, args.device)
    if not args.json:
        s = entry_summary(entry)
        print(
            f"archive entry {entry.id}: {s['reason']}, {s['time']}, {s['events']} event(s) in "
            f"{s['segments']} segment(s), rebased {s['rebased']}, restored {s['restored']}"
        )
    for event in entry_events(data, entry, device_id=args.device):
        if args.json:
            print(json.dumps(event_json(entry, event), ensure_ascii=False))
        else:
            print(
                f"{event.device_id}#{event.device_seq}  hlc {event.hlc}  {iso_time(event.time_ms)}  "
                f"app {event.app or '-'}  {_status(entry, event)}  {_actions_text(event)}"
            )
    return 0


# ---- restore ----


def _refuse_if_served(data: Path) -> None:
    """Raise ``DataDirLocked`` naming the server when ``oplog serve`` holds ``data``."""
    from oplog.tools.discover import find_server

    server = find_server(data)
    if server is not None:
        raise DataDirLocked(
            f"{data} is held by the oplog server at {server.address} (pid {server.pid}); "
            "restore writes the directory itself and does not go through a server: "
            "stop the server and run it again (--dry-run works while it runs)"
        )


def _restore_local(args: argparse.Namespace, data: Path, seqs: SeqRange | None, bar: Any) -> dict[str, Any]:
    from oplog.store import Store, StoreOptions

    _refuse_if_served(data)
    try:
        store = Store.open(data, options=StoreOptions(lock_timeout_s=args.lock_wait), create=False)
    except DataDirLocked as exc:
        raise DataDirLocked(f"{exc} (waited {args.lock_wait:g} s; retry when it is done)") from None
    with store:
        result = restore(store, args.id, device_id=args.device, seqs=seqs, progress=bar)
        out = _restore_json(result)
        out["state_hash"] = store.state().state_hash
    return out


def _restore_dry(args: argparse.Namespace, data: Path, seqs: SeqRange | None, bar: Any) -> dict[str, Any]:
    entry = find_entry(data, args.id)
    with opened_readonly(data) as logs:
        result = plan_restore(data, entry, logs, device_id=args.device, seqs=seqs, progress=bar)
    return _restore_json(result)


def _restore_json(result: RestoreResult) -> dict[str, Any]:
    events = []
    for index, original in enumerate(result.originals):
        item: dict[str, Any] = {
            "device_id": original.device_id,
            "device_seq": original.device_seq,
            "hlc": original.hlc,
            "operations": _operations(original.transaction),
        }
        if index < len(result.copies):
            copy = result.copies[index]
            item["new"] = {"device_id": copy.device_id, "device_seq": copy.device_seq, "hlc": copy.hlc}
        events.append(item)
    return {
        "entry": result.entry_id,
        "dry_run": result.dry_run,
        "restored": events,
        "skipped": result.skipped,
    }


def _print_restore(out: dict[str, Any]) -> None:
    events = out["restored"]
    verb = "would restore" if out["dry_run"] else "restored"
    if events:
        print(f"{verb} {len(events)} event(s) from archive entry {out['entry']}:")
    else:
        print(f"nothing to restore from archive entry {out['entry']}")
    for item in events:
        target = f" -> {item['new']['device_id']}#{item['new']['device_seq']}" if "new" in item else ""
        actions = "; ".join(" ".join([o["action"], *o["ids"]]) for o in item["operations"])
        print(f"  {item['device_id']}#{item['device_seq']}{target}  {actions}")
    if out["skipped"]:
        names = {
            "rebased": "already rebased",
            "restored": "already restored",
            "in_history": "still in the history",
        }
        parts = [f"{count} {names.get(reason, reason)}" for reason, count in sorted(out["skipped"].items())]
        print("skipped: " + ", ".join(parts))
    if "state_hash" in out:
        print(f"state hash {out['state_hash']}")


def run_restore(args: argparse.Namespace) -> int:
    """Restore (or, with ``--dry-run``, preview restoring) one entry; print what was restored."""
    data = _data_dir(args.data)
    seqs = parse_seq_range(args.seq) if args.seq else None
    _check_device(find_entry(data, args.id), args.device)
    with progress_bar(wanted(args), desc="scanning history", min_total=0) as bar:
        report = bar.report if bar is not None else None
        out = (
            _restore_dry(args, data, seqs, report)
            if args.dry_run
            else _restore_local(args, data, seqs, report)
        )
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        _print_restore(out)
    return 0
