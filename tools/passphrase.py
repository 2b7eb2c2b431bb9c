"""Where a command gets the passphrase of an encrypted remote: ``--passphrase-file FILE`` or ``$OPLOG_PASSPHRASE``.

Design. One option helper (``add_passphrase_option``) and one function
(``passphrase_from``) serve ``serve``, ``sync``, ``watch``, ``verify`` and
``remote passwd``, so every command reads it the same way. A file is read as
bytes with one trailing newline dropped (``echo secret > f`` works); the
environment variable is the fallback. The passphrase is never put in a
message, and ``remote_for`` turns it into a ``Keyring`` (with ``os.urandom``,
the edge's randomness) around the command's remote — or, without one, a guard
that refuses an encrypted cloud folder with one line.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from oplog.errors import InvalidArgument
from oplog.remote import Remote
from oplog.sealed import Keyring, guard_remote

__all__ = [
    "ENV_PASSPHRASE",
    "ENV_NEW_PASSPHRASE",
    "add_passphrase_option",
    "passphrase_from",
    "read_passphrase",
    "keyring_from",
    "remote_for",
]

ENV_PASSPHRASE = "OPLOG_PASSPHRASE"
ENV_NEW_PASSPHRASE = "OPLOG_NEW_PASSPHRASE"


def add_passphrase_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--passphrase-file FILE`` (the remote's passphrase; default ``$OPLOG_PASSPHRASE``)."""
    parser.add_argument(
        "--passphrase-file",
        metavar="FILE",
        default=None,
        help=f"passphrase of an encrypted remote, read from FILE (default ${ENV_PASSPHRASE}); "
        "the first sync with a passphrase encrypts a new cloud folder",
    )


def read_passphrase(path: str | None, env: Mapping[str, str], var: str, option: str) -> bytes | None:
    """The passphrase from file ``path`` (one trailing newline dropped), else ``env[var]``, else None."""
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise InvalidArgument(f"{option} {path}: {exc.strerror or exc}") from None
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        if not data:
            raise InvalidArgument(f"{option} {path}: the file is empty")
        return data
    value = env.get(var)
    if value is None:
        return None
    if not value:
        raise InvalidArgument(f"${var} is set but empty")
    return value.encode()


def passphrase_from(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> bytes | None:
    """The remote's passphrase from ``--passphrase-file`` or ``$OPLOG_PASSPHRASE``; None when neither is given."""
    return read_passphrase(
        getattr(args, "passphrase_file", None),
        os.environ if env is None else env,
        ENV_PASSPHRASE,
        "--passphrase-file",
    )


def keyring_from(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Keyring | None:
    """A ``Keyring`` holding the passphrase (randomness from ``os.urandom``), or None without one."""
    passphrase = passphrase_from(args, env)
    return Keyring(passphrase, os.urandom) if passphrase is not None else None


def remote_for(remote: Remote, keyring: Keyring | None) -> Remote:
    """``remote`` sealed under ``keyring``, or guarded against encrypted clouds when there is none."""
    return guard_remote(remote, keyring)
