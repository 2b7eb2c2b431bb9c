"""The ``oplog`` entry point: one parser, one module per subcommand group, imported only when used.

``COMMANDS`` names every subcommand, its module and its one-line summary, so
``oplog --help`` (and a mistyped command) lists them without importing any
module — the server's modules pull in gRPC, which alone costs more than the
rest of the start-up. Only the module of the command being run is imported and
registered; the others stay placeholders with their summary.

Global options (``--data``, ``--json``) may come before the subcommand or
after it: the subcommands' copies default to ``argparse.SUPPRESS`` so they
never overwrite a value given before the subcommand.

Errors are one line: parse errors (``oplog CMD: error: …``), ``OplogError``
and ``OSError`` (``oplog: error: …``); a closed pipe (``oplog dump | head``)
ends quietly with status 0, as ``head`` asked for no more.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from oplog import __version__
from oplog.errors import OplogError

__all__ = ["main", "build_parser", "COMMANDS"]

#: Each subcommand: (module under oplog.tools, one-line summary). A module exposes
#: ``register(subparsers, parent)`` that adds its subcommand with ``set_defaults(func=...)``
#: and the same summary as its ``help`` (tests/test_inspect_tools.py checks they agree).
COMMANDS: dict[str, tuple[str, str]] = {
    "apply": ("apply", "apply a performTransactions JSON body"),
    "serve": ("serve", "run the gRPC server"),
    "replay": ("replay", "rebuild the state from the logs and print its hash"),
    "query": ("query", "run read-only SQL over the blocks view"),
    "stats": ("stats", "segments, events, devices, sizes, checkpoints, state hash"),
    "sync": ("sync", "one sync with a remote folder"),
    "watch": ("watch", "the auto-sync daemon: sync when the local log or the remote changes"),
    "archive": ("archive", "list, show and restore archived events"),
    "verify": ("verify", "check every segment, checkpoint and manifest; exit 1 on damage"),
    "diff": ("diff", "blocks added, removed and changed between two positions or two data directories"),
    "dump": ("dump", "events in merged order, filtered (JSON lines with --json)"),
    "history": ("history", "every event that touched a block, with its content before and after"),
    "conflicts": ("conflicts", "operations replay skipped, with why"),
    "remote": ("remote", "manage a sync remote: change an encrypted cloud's passphrase"),
}

#: Global options that take a value (the token after them is not the subcommand).
_VALUED_GLOBALS = ("--data",)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _data_default() -> str:
    return os.environ.get("OPLOG_DATA") or "./oplog-data"


def _common_parent() -> argparse.ArgumentParser:
    """``--data`` and ``--json`` after the subcommand; SUPPRESS so they never undo the global ones."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--data",
        default=argparse.SUPPRESS,
        help="data directory (default ./oplog-data, env OPLOG_DATA); may also come before the subcommand",
    )
    parent.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    return parent


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: every subcommand registered, or only ``only`` (the others as placeholders; "": none)."""
    parser = _Parser(prog="oplog", description="Event-sourced SiYuan block store.")
    parser.add_argument("--version", action="version", version=f"oplog {__version__}")
    parser.add_argument(
        "--data", default=_data_default(), help="data directory (default ./oplog-data, env OPLOG_DATA)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    parent = _common_parent()
    for name, (module_name, summary) in COMMANDS.items():
        if only is None or only == name:
            module = importlib.import_module(f"oplog.tools.{module_name}")
            module.register(subparsers, parent)
        else:
            subparsers.add_parser(name, help=summary, add_help=False)
    helper = subparsers.add_parser("help", help="show the help of a subcommand: oplog help CMD [ACTION]")
    helper.add_argument("topic", nargs="*", metavar="CMD", help="the subcommand (and archive's action)")
    helper.set_defaults(func=_help)
    return parser


def _command_in(argv: Sequence[str]) -> str:
    """The subcommand named in ``argv`` (the first word that is not a global option or its value); "" if none."""
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        if word in _VALUED_GLOBALS:
            skip = True
            continue
        if word.startswith("-"):
            continue
        return word if word in COMMANDS else ""
    return ""


def _help(args: argparse.Namespace) -> int:
    """``oplog help [CMD [ACTION]]``: the help of a subcommand (the overview without one)."""
    topic = list(args.topic)
    if topic and topic[0] not in COMMANDS:
        known = ", ".join(COMMANDS)
        print(f"oplog help: error: no such command {topic[0]!r} (commands: {known})", file=sys.stderr)
        return 2
    try:
        build_parser(topic[0] if topic else None).parse_args([*topic, "--help"])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush into the closed pipe says nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``oplog`` command line; returns the exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(words)
    except BrokenPipeError:
        # The reader went away (``oplog dump | head``): it wanted no more, which is not an error.
        _quiet_stdout()
        return 0


def _run(words: list[str]) -> int:
    parser = build_parser(_command_in(words))
    args = parser.parse_args(words)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    from oplog.tools.options import one_line_warnings

    one_line_warnings()
    try:
        code = func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        raise
    except OplogError as exc:
        print(f"oplog: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # The file system refused (a read-only path, a full disk): the user's setup, not a bug.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"oplog: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("oplog: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
