"""``oplog remote passwd``: change the passphrase of an encrypted cloud folder.

Design. The passphrase only wraps the cloud's data key (``oplog.cloudkey``), so
changing it is: read ``<cloud>/KEY``, open it with the old passphrase, wrap the
same data key under the new one with a fresh salt, and atomically replace
``KEY`` — one small write, no object re-uploaded. Devices still holding the old
passphrase are refused on their next sync (one line) until given the new one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from oplog.errors import CloudKeyError, InvalidArgument

__all__ = ["register", "passwd"]


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    """Add ``remote passwd``."""
    from oplog.tools.options import add_cloud_name, add_remote
    from oplog.tools.passphrase import ENV_NEW_PASSPHRASE, add_passphrase_option

    cmd = subparsers.add_parser("remote", help="manage a sync remote: change an encrypted cloud's passphrase")
    sub = cmd.add_subparsers(dest="remote_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser(
        "passwd",
        parents=[parent],
        help="change an encrypted cloud folder's passphrase (rewraps its key; nothing re-uploaded)",
    )
    add_remote(
        p, default=None, help="the remote (required): a folder, s3://BUCKET[/PREFIX] or webdav(s)://HOST/PATH"
    )
    add_cloud_name(p, default=None, help="folder under the remote (default: the data directory's, else main)")
    add_passphrase_option(p)
    p.add_argument(
        "--new-passphrase-file",
        metavar="FILE",
        default=None,
        help=f"the new passphrase, read from FILE (default ${ENV_NEW_PASSPHRASE})",
    )
    p.set_defaults(func=passwd)


def _cloud(args: argparse.Namespace) -> str:
    from oplog.errors import StorageError
    from oplog.syncformat import DEFAULT_CLOUD, check_cloud_name
    from oplog.syncstate import load_state

    if args.cloud_name is not None:
        return check_cloud_name(args.cloud_name)
    try:
        return load_state(Path(args.data)).cloud_name or DEFAULT_CLOUD
    except (StorageError, OSError):
        return DEFAULT_CLOUD


def passwd(args: argparse.Namespace) -> int:
    """Rewrap the data key of ``--remote``/``--cloud-name`` under the new passphrase."""
    from oplog.cloudkey import KEY_FILE, rewrap
    from oplog.remoteurl import display_remote, open_remote
    from oplog.tools.passphrase import ENV_NEW_PASSPHRASE, passphrase_from, read_passphrase

    if args.remote is None:
        raise InvalidArgument("--remote is needed: the remote whose cloud folder is encrypted")
    old = passphrase_from(args)
    if old is None:
        raise InvalidArgument("the current passphrase is needed: --passphrase-file FILE or $OPLOG_PASSPHRASE")
    new = read_passphrase(args.new_passphrase_file, os.environ, ENV_NEW_PASSPHRASE, "--new-passphrase-file")
    if new is None:
        raise InvalidArgument(
            f"the new passphrase is needed: --new-passphrase-file FILE or ${ENV_NEW_PASSPHRASE}"
        )
    cloud = _cloud(args)
    remote = open_remote(args.remote)
    shown = display_remote(args.remote)
    where = f"{cloud}/{KEY_FILE}"
    current = remote.read(where)
    if current is None:
        raise CloudKeyError(f"{shown}/{where} does not exist: cloud folder {cloud!r} is not encrypted")
    remote.replace(where, rewrap(current, old, new, os.urandom, where))
    if args.json:
        print(json.dumps({"changed": True, "cloud_name": cloud}))
    else:
        print(f"passphrase changed for {shown}/{cloud} (KEY rewrapped; nothing re-uploaded)")
    sys.stdout.flush()
    return 0
