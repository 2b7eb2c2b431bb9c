"""``oplog verify``: check every segment, checkpoint, the journal, sync.json and (``--remote``) the remote.

Exit status: 0 sound (warnings allowed), 1 damage found, 2 bad usage.
Read-only: never takes the writer's lock, so it runs beside ``oplog serve``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from oplog.datadir import check_data_dir
from oplog.errors import InvalidArgument, NotADataDir, OplogError
from oplog.tools.options import add_cloud_name, add_remote, usage_error
from oplog.tools.passphrase import add_passphrase_option
from oplog.tools.progress import progress_bar, wanted
from oplog.verify import VerifyReport, verify_data_dir
from oplog.verify_remote import verify_remote

__all__ = ["register", "run"]


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    """Add the ``verify`` subcommand."""
    cmd = subparsers.add_parser(
        "verify",
        parents=[parent],
        help="check every segment, checkpoint and manifest; exit 1 on damage",
        description=(
            "Check every local segment (header, frames, CRCs, seal trailer, dense seqs, the events inside), "
            "every checkpoint (decodes, its state matches its hash, it fits the logs), journal.json and "
            "sync.json; with --remote also the cloud folder's EPOCH, every MANIFEST and every segment they "
            "list; an encrypted one (with its passphrase) also checks KEY and opens every object. Read-only: works while a server runs. Exit 0 when sound, 1 when damage was found, "
            "2 for bad usage."
        ),
    )
    add_remote(cmd, default=None, help="also check this remote folder")
    add_cloud_name(
        cmd, default=None, help="cloud folder under the remote (default: the one in sync.json, else main)"
    )
    add_passphrase_option(cmd)
    cmd.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> tuple[Path, str]:
    """The data directory and the cloud folder to check (empty without ``--remote``); usage errors raise."""
    from oplog.syncformat import check_cloud_name

    data_dir = check_data_dir(args.data)
    cloud = check_cloud_name(args.cloud_name) if args.cloud_name is not None else None
    if args.remote is not None:
        from oplog.remoteurl import display_remote, remote_kind

        cloud = cloud or _current_cloud(data_dir)
        if remote_kind(args.remote) != "folder":
            # An object store or WebDAV share: whether the cloud folder exists is asked of it by verify_remote.
            return data_dir, cloud
        from oplog.remote import LocalDirRemote
        from oplog.remoteurl import open_remote

        folder = open_remote(args.remote)
        if not isinstance(folder, LocalDirRemote):  # remote_kind said "folder"; for the type checker
            raise InvalidArgument(f"--remote {display_remote(args.remote)}: not a folder")
        root = folder.root
        if not root.is_dir():
            raise InvalidArgument(f"--remote {display_remote(args.remote)}: no such directory")
        if not (root / cloud).is_dir():
            raise InvalidArgument(f"--remote {root} holds no cloud folder {cloud!r} (see --cloud-name)")
        return data_dir, cloud
    if cloud is not None:
        raise InvalidArgument("--cloud-name needs --remote")
    return data_dir, ""


def _current_cloud(data_dir: Path) -> str:
    """The cloud name this directory last synced with (``main`` when none or unreadable)."""
    from oplog.errors import StorageError
    from oplog.syncformat import DEFAULT_CLOUD
    from oplog.syncstate import load_state

    try:
        return load_state(data_dir).cloud_name or DEFAULT_CLOUD
    except StorageError:
        return DEFAULT_CLOUD


def _print_text(report: VerifyReport, data_dir: Path, remote: str | None) -> None:
    for finding in report.findings:
        print(finding.line())
    checked = (
        f"{report.devices} device(s), {report.segments} segment(s), {report.events} event(s), "
        f"{report.bytes} bytes, {report.checkpoints} checkpoint(s)"
    )
    if remote is not None:
        checked += f"; remote: {report.remote_manifests} manifest(s), {report.remote_segments} segment(s)"
    damage = sum(1 for f in report.findings if f.severity == "damage")
    warnings = len(report.findings) - damage
    verdict = "sound" if not damage else f"DAMAGED: {damage} problem(s)"
    tail = f", {warnings} warning(s)" if warnings else ""
    print(f"{data_dir}: {verdict}{tail} ({checked})")


def run(args: argparse.Namespace) -> int:
    """Verify; print findings (or JSON); exit 0 sound, 1 damaged, 2 bad usage."""
    from oplog.remoteurl import display_remote, open_remote
    from oplog.sealed import SealedRemote, guard_remote
    from oplog.tools.passphrase import keyring_from
    from oplog.verify_sealed import verify_sealed_objects

    try:
        data_dir, cloud = _check_args(args)
    except (InvalidArgument, NotADataDir) as exc:
        return usage_error(str(exc))
    with progress_bar(wanted(args), desc="verify", unit="B", min_total=0) as bar:
        try:
            report = verify_data_dir(data_dir, progress=bar)
            if args.remote is not None:
                remote = guard_remote(open_remote(args.remote), keyring_from(args))
                remote.check_key(cloud)  # a wrong or missing passphrase: one line, exit 1
                label = display_remote(args.remote)
                verify_remote(remote, cloud, label=label, progress=bar, report=report)
                if isinstance(remote, SealedRemote):
                    verify_sealed_objects(remote, cloud, label=label, report=report)
        except (OplogError, OSError) as exc:
            # Something verify could not even look at (an unreadable folder): that is damage too.
            print(f"oplog: error: {exc}", file=sys.stderr)
            return 1
    if args.json:
        out = report.as_dict()
        out["data_dir"] = str(data_dir)
        out["remote"] = args.remote
        out["cloud_name"] = cloud or None
        print(json.dumps(out, indent=2))
    else:
        _print_text(report, data_dir, args.remote)
    return 1 if report.damaged else 0
