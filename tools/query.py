"""``oplog query SQL``: read-only SQL over the materialised ``blocks`` view.

Parse, call ``oplog.datadir.query_data_dir``, print.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from oplog.datadir import query_data_dir

__all__ = ["register", "run"]


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    """Add the ``query`` subcommand."""
    cmd = subparsers.add_parser(
        "query",
        parents=[parent],
        help="run read-only SQL over the blocks view",
        description=(
            "Run one read-only SQL statement over the data directory's blocks view (tables blocks, attributes, "
            "conflicts, meta; SiYuan's columns). Writes, ATTACH and state-changing pragmas are refused. "
            "Without a view yet (no server has run), one is built in a temporary file from the logs."
        ),
    )
    cmd.add_argument("sql", help="the SQL statement")
    cmd.add_argument("--arg", action="append", default=[], metavar="VALUE", help="a ? parameter (repeatable)")
    cmd.add_argument(
        "--max-rows", type=int, default=1000, help="cut the result after this many rows (default 1000)"
    )
    cmd.add_argument("--timeout", type=float, default=10.0, help="time budget in seconds (default 10)")
    cmd.set_defaults(func=run)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.hex()
    return str(value).replace("\t", " ").replace("\n", "\\n")


def run(args: argparse.Namespace) -> int:
    """Run the query; print a tab-separated table or JSON."""
    result = query_data_dir(
        args.data, args.sql, list(args.arg), max_rows=args.max_rows, time_budget_s=args.timeout
    )
    if args.json:
        rows = [[v.hex() if isinstance(v, bytes) else v for v in row] for row in result.rows]
        print(
            json.dumps(
                {"columns": result.columns, "rows": rows, "truncated": result.truncated}, ensure_ascii=False
            )
        )
    else:
        print("\t".join(result.columns))
        for row in result.rows:
            print("\t".join(_cell(v) for v in row))
        if result.truncated:
            print(f"(cut at {len(result.rows)} rows)", file=sys.stderr)
    return 0
