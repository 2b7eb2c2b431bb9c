"""The CLI's shared vocabulary: one definition per option concept, and one-line errors and warnings.

As sqlite-utils shares its option decorators, every subcommand that talks
about a remote folder, a cloud name, a lock wait, a server or a token adds
the option through the helper here, so the spelling, the default and the
check are the same everywhere (``--lock-wait`` everywhere; ``oplog sync``'s
older ``--lock-timeout`` is kept as a hidden alias). Values are checked when
parsed, so a bad one is a one-line usage error before anything is opened:
``--remote ""``, a negative wait, a ``--listen`` that is not ``host:port``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import re
import sys
from typing import Any

from oplog.errors import InvalidArgument

__all__ = [
    "DEFAULT_REMOTE",
    "DEFAULT_LOCK_WAIT_S",
    "add_remote",
    "add_cloud_name",
    "add_lock_wait",
    "add_server",
    "add_token",
    "remote_folder",
    "seconds",
    "listen_address",
    "parse_time_ms",
    "one_line_warnings",
    "usage_error",
]

#: The remote folder when none is given (serve, sync, watch).
DEFAULT_REMOTE = "./oplog-remote"
#: How long a local writer (apply, sync, watch, archive restore, serve) waits for another to let go.
DEFAULT_LOCK_WAIT_S = 10.0


def remote_folder(text: str) -> str:
    """An argparse type: a remote folder path, not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty (a remote folder path)")
    return text


def seconds(text: str) -> float:
    """An argparse type: a non-negative number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


_HOST_RE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")
_IPV4_LIKE_RE = re.compile(r"[0-9.]+")


def listen_address(text: str) -> str:
    """``host:port`` checked (port 0-65535, host a name or an IP, IPv6 in brackets) or ``unix:PATH``; else ``InvalidArgument``.

    gRPC would otherwise take ``127.0.0.1:70000`` as port 4464 (70000 mod 65536)
    and ``127.0.0.1`` as port 443.
    """
    if text.startswith(("unix:", "unix-abstract:")):
        if not text.partition(":")[2]:
            raise InvalidArgument(f"--listen {text!r}: name the socket, for example unix:/run/oplog.sock")
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise InvalidArgument(
            f"--listen {text!r}: expected HOST:PORT (for example 127.0.0.1:6807; port 0 picks one)"
        )
    if not port.isdigit() or int(port) > 65535:
        raise InvalidArgument(f"--listen {text!r}: the port must be a number from 0 to 65535, got {port!r}")
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            raise InvalidArgument(f"--listen {text!r}: {name!r} is not an IPv6 address") from None
    elif ":" in host:
        raise InvalidArgument(f"--listen {text!r}: write an IPv6 address in brackets, [{host}]:{port}")
    elif not _HOST_RE.fullmatch(name):
        raise InvalidArgument(f"--listen {text!r}: {name!r} is not a host name or an IP address")
    elif _IPV4_LIKE_RE.fullmatch(name):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise InvalidArgument(f"--listen {text!r}: {name!r} is not an IPv4 address") from None
    return text


def add_remote(parser: argparse.ArgumentParser, *, default: str | None = DEFAULT_REMOTE, help: str) -> None:
    """``--remote DIR``: the remote folder (never empty)."""
    parser.add_argument("--remote", type=remote_folder, default=default, metavar="DIR", help=help)


def count(text: str) -> int:
    """A whole number of things, zero or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def add_snapshot_every(parser: argparse.ArgumentParser) -> None:
    """``--snapshot-every N``: how often this device uploads a remote snapshot (0: never, and never start from one)."""
    from oplog.syncsnap import DEFAULT_SNAPSHOT_EVERY

    parser.add_argument(
        "--snapshot-every",
        type=count,
        default=DEFAULT_SNAPSHOT_EVERY,
        metavar="N",
        help=(
            "upload a snapshot of the state to <cloud>/snapshots/ at most every N events, and start a pull "
            f"at least N events behind from the newest one (default {DEFAULT_SNAPSHOT_EVERY}; 0 turns both off)"
        ),
    )


def add_cloud_name(parser: argparse.ArgumentParser, *, default: str | None, help: str) -> None:
    """``--cloud-name NAME``: the folder under the remote."""
    parser.add_argument("--cloud-name", default=default, metavar="NAME", help=help)


def add_lock_wait(parser: argparse.ArgumentParser, *, what: str = "another local writer") -> None:
    """``--lock-wait SECONDS`` (hidden alias ``--lock-timeout``): how long to wait for the writer's lock."""
    parser.add_argument(
        "--lock-wait",
        type=seconds,
        default=DEFAULT_LOCK_WAIT_S,
        metavar="SECONDS",
        help=f"how long to wait for {what} to let go of the data directory (default {DEFAULT_LOCK_WAIT_S:g})",
    )
    parser.add_argument(
        "--lock-timeout", dest="lock_wait", type=seconds, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )


def add_server(parser: argparse.ArgumentParser, *, help: str) -> None:
    """``--server ADDR``: a running oplog server (host:port)."""
    parser.add_argument("--server", metavar="ADDR", help=help)


def add_token(
    parser: argparse._ActionsContainer,
    *,
    default: str | None = None,
    help: str = "API token for the server (default $OPLOG_TOKEN)",
) -> None:
    """``--token TOKEN``: the API token (clients read ``$OPLOG_TOKEN`` when it is left out)."""
    parser.add_argument("--token", metavar="TOKEN", default=default, help=help)


def parse_time_ms(text: str, option: str = "--until-time") -> int:
    """Milliseconds since the epoch of an ISO 8601 time (UTC when it has no offset); names ``option`` if bad."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidArgument(f"{option}: not an ISO 8601 time: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def one_line_warnings() -> None:
    """Show warnings (a damaged checkpoint, a cut tail) as one ``oplog: warning:`` line each."""
    import warnings

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: Any = None,
    ) -> None:
        print(f"oplog: warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def usage_error(message: str) -> int:
    """Print a one-line usage error and return exit status 2."""
    print(f"oplog: error: {message}", file=sys.stderr)
    return 2
