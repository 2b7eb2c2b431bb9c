"""The ``oplog`` entry point: one parser, one module per subcommand group."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from oplog import __version__
from oplog.errors import OplogError

__all__ = ["main", "build_parser"]

#: Each entry: (module under oplog.tools, subcommand names it registers).
#: A module exposes ``register(subparsers, parent)`` that adds its subcommands
#: with ``set_defaults(func=...)``; ``func(args) -> int``.
_COMMAND_MODULES: tuple[str, ...] = (
    "apply",
    "serve",
    "replay",
    "query",
    "stats",
    "sync",
    "watch",
    "archive",
    "verify",
    "diff",
    "dump",
    "history",
    "conflicts",
    "remote",
)


def _common_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--data",
        default=os.environ.get("OPLOG_DATA", "./oplog-data"),
        help="data directory (default ./oplog-data, env OPLOG_DATA)",
    )
    parent.add_argument("--json", action="store_true", help="machine-readable output")
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, every subcommand registered."""
    import importlib

    parser = argparse.ArgumentParser(prog="oplog", description="Event-sourced SiYuan block store.")
    parser.add_argument("--version", action="version", version=f"oplog {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    parent = _common_parent()
    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"oplog.tools.{name}")
        module.register(subparsers, parent)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``oplog`` command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except OplogError as exc:
        print(f"oplog: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("oplog: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
