"""``oplog diff``: blocks added, removed and changed between two positions, or between two data directories.

``--from POS --to POS`` compares two positions of this directory's merged order
(defaults: 0 and the end). ``--other DIR`` compares this directory ("ours")
with another ("theirs"): events each has that the other lacks, the first such
event, and the block differences from our state to theirs. Read-only.
Parse, call ``oplog.datadir.diff_data_dir`` / ``compare_data_dirs``, print.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from oplog.datadir import compare_data_dirs, diff_data_dir
from oplog.errors import InvalidArgument, NotADataDir
from oplog.isotime import iso_time
from oplog.statediff import BlockChange, BlockState, EventRef, LogComparison, NotebookChange, StateDiff
from oplog.tools.options import usage_error
from oplog.tools.progress import progress_bar, wanted

__all__ = ["register", "run"]

#: Below this many events a progress bar is more flicker than help.
_BAR_MIN_EVENTS = 10_000
_PREVIEW = 60


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    """Add the ``diff`` subcommand."""
    cmd = subparsers.add_parser(
        "diff",
        parents=[parent],
        help="blocks added, removed and changed between two positions or two data directories",
        description=(
            "Compare the state at two positions of the merged order (position N = after the first N events; "
            "--from defaults to 0, the empty state; --to to the end), or, with --other DIR, this data "
            "directory with another: the events each has that the other lacks (per device, and the first one "
            "in merged order) and the block differences from this state to the other's. Read-only."
        ),
    )
    cmd.add_argument("--from", dest="start", type=int, metavar="POS", help="the earlier position (default 0)")
    cmd.add_argument(
        "--to", dest="end", type=int, metavar="POS", help="the later position (default: the end)"
    )
    cmd.add_argument("--other", metavar="DIR", help="compare with this other data directory instead")
    cmd.add_argument("--full", action="store_true", help="ignore checkpoints: replay from the first event")
    cmd.set_defaults(func=run)


# ---------------------------------------------------------------- text output


def _preview(text: str) -> str:
    one = " ".join(text.split())
    return json.dumps(one if len(one) <= _PREVIEW else one[: _PREVIEW - 1] + "…", ensure_ascii=False)


def _kind(block: BlockState) -> str:
    return f"{block.type}{'/' + block.subtype if block.subtype else ''}"


def _change_text(change: BlockChange) -> str:
    parts: list[str] = []
    old, new = change.before, change.after
    for name in change.fields:
        if name == "content":
            parts.append(f"content {_preview(old.markdown)} -> {_preview(new.markdown)}")
        elif name == "type":
            parts.append(f"type {_kind(old)} -> {_kind(new)}")
        elif name == "attrs":
            a, b = dict(old.attrs), dict(new.attrs)
            bits = [f"+{k}={b[k]!r}" for k in sorted(set(b) - set(a))]
            bits += [f"-{k}" for k in sorted(set(a) - set(b))]
            bits += [f"~{k}: {a[k]!r} -> {b[k]!r}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]
            parts.append("attrs " + ", ".join(bits))
        else:
            parts.append(f"{name} {old.get(name) or '(none)'} -> {new.get(name) or '(none)'}")
    return f"~ {change.id} {_kind(new)}  " + "; ".join(parts)


def _print_state_diff(diff: StateDiff) -> None:
    for block in diff.added:
        print(f"+ {block.id} {_kind(block)}  {_preview(block.markdown)}  in {block.root_id}")
    for block in diff.removed:
        print(f"- {block.id} {_kind(block)}  {_preview(block.markdown)}  in {block.root_id}")
    for change in diff.changed:
        print(_change_text(change))
    for av_id, before, after in diff.attribute_views:
        print(f"~ attribute view {av_id}: {before!r} -> {after!r}")
    for nb in diff.notebooks:
        print(_notebook_text(nb))
    s = diff.summary()
    views = f", {s['attribute_views']} attribute view(s) changed" if s["attribute_views"] else ""
    boxes = f", {s['notebooks']} notebook(s) changed" if s["notebooks"] else ""
    print(f"{s['added']} added, {s['removed']} removed, {s['changed']} changed{views}{boxes}")


def _notebook_text(change: NotebookChange) -> str:
    if change.before is None:
        return f"+ notebook {change.id} {(change.after or {}).get('name', '')!r}"
    if change.after is None:
        return f"- notebook {change.id} {change.before.get('name', '')!r}"
    parts = [f"{k} {change.before.get(k, '')!r} -> {change.after.get(k, '')!r}" for k in change.fields]
    return f"~ notebook {change.id}  " + "; ".join(parts)


def _event_text(ref: EventRef, side: str, other: str) -> str:
    return (
        f"{ref.device_id}#{ref.seq} hlc {ref.hlc} at {iso_time(ref.time_ms)} ({', '.join(ref.actions) or 'no ops'}), "
        f"position {ref.position} of {side}; {other} has {ref.other_before} event(s) before it"
    )


# ---------------------------------------------------------------- the two modes


def _positions(args: argparse.Namespace, show: bool) -> int:
    try:
        with progress_bar(show, min_total=_BAR_MIN_EVENTS, desc="diff") as bar:
            found = diff_data_dir(args.data, args.start, args.end, full=args.full, progress=bar)
    except (InvalidArgument, NotADataDir) as exc:
        return usage_error(str(exc))
    result, total = found.result, found.end
    if args.json:
        out = {
            "from": result.from_position,
            "to": result.to_position,
            "end": total,
            "from_state_hash": result.from_hash,
            "to_state_hash": result.to_hash,
            "events_replayed": result.events_replayed,
            "checkpoints_used": result.checkpoints_used,
            **result.diff.as_dict(),
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    print(
        f"position {result.from_position} -> {result.to_position} (of {total}); "
        f"state {result.from_hash[:16]} -> {result.to_hash[:16]}"
    )
    _print_state_diff(result.diff)
    return 0


def _comparison_json(cmp: LogComparison) -> dict[str, Any]:
    return {
        "same_events": cmp.same_events,
        "ours_events": cmp.ours_total,
        "theirs_events": cmp.theirs_total,
        "devices": [d.as_dict() for d in cmp.devices],
        "first_ours_only": cmp.first_ours_only.as_dict() if cmp.first_ours_only else None,
        "first_theirs_only": cmp.first_theirs_only.as_dict() if cmp.first_theirs_only else None,
    }


def _other(args: argparse.Namespace, show: bool) -> int:
    try:
        with progress_bar(show, min_total=_BAR_MIN_EVENTS, desc="compare") as bar:
            found = compare_data_dirs(args.data, args.other, full=args.full, progress=bar)
    except (InvalidArgument, NotADataDir) as exc:
        return usage_error(str(exc))
    cmp, diff = found.logs, found.blocks
    ours_dir, theirs_dir = found.ours, found.theirs
    ours_hash, theirs_hash = found.ours_hash, found.theirs_hash
    identical = found.identical
    if args.json:
        out = {
            "ours": str(ours_dir),
            "theirs": str(theirs_dir),
            "identical": identical,
            "ours_state_hash": ours_hash,
            "theirs_state_hash": theirs_hash,
            **_comparison_json(cmp),
            "blocks": diff.as_dict(),
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    print(f"ours:   {ours_dir}  {cmp.ours_total} events, state {ours_hash[:16]}")
    print(f"theirs: {theirs_dir}  {cmp.theirs_total} events, state {theirs_hash[:16]}")
    if identical:
        print(f"identical: the same events and the same state hash {ours_hash}")
        return 0
    for d in cmp.devices:
        if d.ours_only or d.theirs_only:
            where = f", first difference at seq {d.first_difference}" if d.first_difference else ""
            print(
                f"device {d.device_id}: ours {d.ours_last}, theirs {d.theirs_last}, common {d.common}{where} "
                f"(ours has {d.ours_only} they lack, theirs has {d.theirs_only} we lack)"
            )
    if cmp.first_ours_only is not None:
        print("first event ours has and theirs lacks: " + _event_text(cmp.first_ours_only, "ours", "theirs"))
    if cmp.first_theirs_only is not None:
        print(
            "first event theirs has and ours lacks: " + _event_text(cmp.first_theirs_only, "theirs", "ours")
        )
    if cmp.same_events:
        print(
            "the same events but different states: replay is not deterministic here (a bug worth reporting)"
        )
    print("blocks, from ours to theirs:")
    _print_state_diff(diff)
    return 0


def run(args: argparse.Namespace) -> int:
    """Diff two positions or two data directories; 0 on success, 2 for bad usage."""
    if args.other is not None and (args.start is not None or args.end is not None):
        return usage_error("--other compares two data directories; it does not take --from/--to")
    show = wanted(args)
    if args.other is not None:
        return _other(args, show)
    return _positions(args, show)
