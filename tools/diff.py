"""``oplog diff``: blocks added, removed and changed between two positions, or between two data directories.

``--from POS --to POS`` compares two positions of this directory's merged order
(defaults: 0 and the end). ``--other DIR`` compares this directory ("ours")
with another ("theirs"): events each has that the other lacks, the first such
event, and the block differences from our state to theirs. Read-only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from oplog.checkpoint import CHECKPOINTS_FILE, CheckpointStore
from oplog.datadir import check_data_dir, opened_readonly
from oplog.errors import InvalidArgument, NotADataDir
from oplog.scan import total_events
from oplog.statediff import (
    BlockChange,
    BlockState,
    EventRef,
    LogComparison,
    StateDiff,
    compare_logs,
    diff_positions,
    diff_workspaces,
)
from oplog.tools.options import usage_error
from oplog.tools.progress import progress_bar, wanted

__all__ = ["register", "run"]

#: Below this many events a progress bar is more flicker than help.
_BAR_MIN_EVENTS = 10_000
_PREVIEW = 60


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
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


# ---------------------------------------------------------------- plumbing


def _checkpoints(stack: ExitStack, data_dir: Path, full: bool) -> CheckpointStore | None:
    if full:
        return None
    return stack.enter_context(CheckpointStore(data_dir / CHECKPOINTS_FILE, readonly=True))


@contextmanager
def _bar(total: int, enabled: bool, desc: str) -> Iterator[Callable[[int], None] | None]:
    """``progress_bar`` across several replay calls, each counting from zero."""
    with progress_bar(enabled, min_total=_BAR_MIN_EVENTS, desc=desc) as bar:
        if bar is None:
            yield None
            return
        bar.set_total(total)
        show = bar.update_to
        base = [0, 0]

        def update(done: int) -> None:
            # A smaller count than the last one means the next replay call started.
            if done < base[1]:
                base[0] += base[1]
            base[1] = done
            show(base[0] + done)

        yield update


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
    s = diff.summary()
    views = f", {s['attribute_views']} attribute view(s) changed" if s["attribute_views"] else ""
    print(f"{s['added']} added, {s['removed']} removed, {s['changed']} changed{views}")


def _time(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event_text(ref: EventRef, side: str, other: str) -> str:
    return (
        f"{ref.device_id}#{ref.seq} hlc {ref.hlc} at {_time(ref.time_ms)} ({', '.join(ref.actions) or 'no ops'}), "
        f"position {ref.position} of {side}; {other} has {ref.other_before} event(s) before it"
    )


# ---------------------------------------------------------------- the two modes


def _positions(args: argparse.Namespace, data_dir: Path, show: bool) -> int:
    from oplog.statediff import check_positions

    with ExitStack() as stack:
        logs = stack.enter_context(opened_readonly(data_dir))
        total = total_events(logs)
        start = 0 if args.start is None else args.start
        end = total if args.end is None else args.end
        try:
            check_positions(start, end, total)
        except InvalidArgument as exc:
            return usage_error(str(exc))
        checkpoints = _checkpoints(stack, data_dir, args.full)
        with _bar(end, show, "diff") as progress:
            result = diff_positions(logs, checkpoints, start, end, progress=progress)
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


def _other(args: argparse.Namespace, ours_dir: Path, show: bool) -> int:
    from oplog.replay import rewind

    try:
        theirs_dir = check_data_dir(args.other)
    except NotADataDir as exc:
        return usage_error(f"--other: {exc}")
    if theirs_dir.resolve() == ours_dir.resolve():
        return usage_error("--other names the same data directory as --data")
    with ExitStack() as stack:
        ours = stack.enter_context(opened_readonly(ours_dir))
        theirs = stack.enter_context(opened_readonly(theirs_dir))
        both = total_events(ours) + total_events(theirs)
        with _bar(both, show, "compare") as progress:
            cmp = compare_logs(ours, theirs, progress=progress)
        with _bar(both, show, "replay") as progress:
            a = rewind(ours, _checkpoints(stack, ours_dir, args.full), progress=progress, warn_missing=False)
            b = rewind(
                theirs, _checkpoints(stack, theirs_dir, args.full), progress=progress, warn_missing=False
            )
    diff = diff_workspaces(a.ws, b.ws)
    ours_hash, theirs_hash = a.state_hash.hexdigest(), b.state_hash.hexdigest()
    identical = cmp.same_events and ours_hash == theirs_hash
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
    try:
        data_dir = check_data_dir(args.data)
    except NotADataDir as exc:
        return usage_error(str(exc))
    show = wanted(args)
    if args.other is not None:
        return _other(args, data_dir, show)
    return _positions(args, data_dir, show)
