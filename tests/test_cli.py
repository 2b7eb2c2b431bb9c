"""The ``oplog`` command line as a whole: one vocabulary, help, lazy imports, docs, and user mistakes.

Every user mistake is a one-line error and a non-zero exit in a real process
(``tests.cli_helpers.run_cli``), never a traceback; a reader that closes the
pipe early (``oplog dump | head``) ends the command quietly — tested with a
real pipe whose read end is closed before the command starts, so the first
write meets EPIPE every time.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oplog.clock import FakeClock, RandomIds
from oplog.store import Store
from oplog.tools.cli import COMMANDS, build_parser, main
from oplog.wire import request_from_json
from tests.cli_helpers import REPO, run_cli
from tests.closed_pipe import run_into_closed_pipe
from tests.engine_helpers import T0, numbered_doc_body

TOOLS = REPO / "tools"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    with Store.open(path, clock=FakeClock(T0), ids=RandomIds(3)) as store:
        for n in range(1, 5):
            store.apply(request_from_json(numbered_doc_body(n)))
    return path


def _one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "error" in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)


# ---------------------------------------------------------------- vocabulary and help


def test_global_options_come_before_or_after_the_subcommand(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data", str(data), "--json", "stats", "--no-hash"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert main(["stats", "--no-hash", "--data", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == before and before["events"] == 4
    body = tmp_path / "body.json"
    body.write_text(json.dumps(numbered_doc_body(9)))
    assert main(["--data", str(data), "apply", str(body)]) == 0
    assert "positions" in capsys.readouterr().out
    # After the subcommand wins over before it, as the nearer one.
    assert main(["--data", str(tmp_path / "nowhere"), "replay", "--data", str(data)]) == 0
    capsys.readouterr()


def test_help_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["help", "dump"]) == 0
    assert capsys.readouterr().out.startswith("usage: oplog dump")
    assert main(["help", "archive", "restore"]) == 0
    assert "--dry-run" in capsys.readouterr().out
    assert main(["help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    assert main(["help", "nosuch"]) == 2
    assert "no such command 'nosuch'" in capsys.readouterr().err


def test_help_does_not_import_grpc() -> None:
    """``oplog --help`` and a read command's help load no gRPC (it alone costs most of the start-up)."""
    script = (
        "import sys\n"
        "from oplog.tools.cli import main\n"
        "for argv in (['--help'], ['replay', '--help'], ['help', 'dump']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('GRPC' if 'grpc' in sys.modules else 'NOGRPC', file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )
    assert proc.stderr.strip().endswith("NOGRPC"), proc.stderr
    assert "Event-sourced" in proc.stdout


def test_summaries_match_what_each_module_registers() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0])))  # type: ignore[union-attr]
    registered = {choice.dest: choice.help for choice in sub._choices_actions}
    for name, (_module, summary) in COMMANDS.items():
        assert registered[name] == summary, name


def test_lock_timeout_is_a_hidden_alias_of_lock_wait() -> None:
    parser = build_parser("sync")
    assert parser.parse_args(["sync", "--lock-timeout", "3"]).lock_wait == 3.0
    assert parser.parse_args(["sync", "--lock-wait", "4"]).lock_wait == 4.0
    assert parser.parse_args(["sync"]).lock_wait == 10.0
    sync_help = parser._subparsers._group_actions[0].choices["sync"].format_help()  # type: ignore[union-attr]
    assert "--lock-wait" in sync_help and "--lock-timeout" not in sync_help
    for name in ("apply", "serve", "watch", "archive"):
        argv = [name, "restore", "x"] if name == "archive" else [name, *(["f"] if name == "apply" else [])]
        assert build_parser(name).parse_args([*argv, "--lock-wait", "2"]).lock_wait == 2.0


def _tools_sources() -> dict[str, ast.Module]:
    return {p.name: ast.parse(p.read_text()) for p in sorted(TOOLS.glob("*.py"))}


def test_one_definition_per_concept() -> None:
    """DEFAULT_REMOTE is assigned once, tqdm imported once, the shared options added only by their helpers."""
    shared = {"--remote", "--cloud-name", "--lock-wait", "--lock-timeout", "--server", "--token"}
    assigned, tqdm_users, spelled = [], [], []
    for name, tree in _tools_sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == "DEFAULT_REMOTE" for t in targets):
                    assigned.append(name)
            elif isinstance(node, ast.ImportFrom | ast.Import):
                names = (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                )
                if any(n.split(".")[0] == "tqdm" for n in names):
                    tqdm_users.append(name)
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                flags = {a.value for a in node.args if isinstance(a, ast.Constant)}
                if flags & shared and name != "options.py":
                    spelled.append((name, sorted(flags & shared)))
    assert assigned == ["options.py"]
    assert tqdm_users == ["progress.py"]
    assert spelled == []


def test_every_subcommand_is_documented() -> None:
    docs = (REPO / "README.md").read_text() + "".join(
        p.read_text() for p in sorted((REPO / "docs").glob("*.md"))
    )
    missing = [name for name in COMMANDS if f"oplog {name}" not in docs]
    missing += [f"archive {a}" for a in ("list", "show", "restore") if f"oplog archive {a}" not in docs]
    missing += [] if "oplog help" in docs else ["help"]
    assert missing == []


# ---------------------------------------------------------------- user mistakes: one line, no traceback


def test_a_body_that_is_not_utf8(data: Path, tmp_path: Path) -> None:
    body = tmp_path / "latin1.json"
    body.write_bytes(json.dumps(numbered_doc_body(7)).encode().replace(b"T7", b"T\xe97"))
    _one_line_error(run_cli("apply", str(body), "--data", str(data)), "not UTF-8", "offset")
    proc = subprocess.run(
        [sys.executable, "-m", "oplog.tools.cli", "apply", "-", "--data", str(data)],
        input=b"\xff\xfe{}",
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr and b"not UTF-8" in proc.stderr


def test_replay_out_a_directory_or_an_unwritable_path(data: Path, tmp_path: Path) -> None:
    _one_line_error(run_cli("replay", "--data", str(data), "--out", str(tmp_path)), "is a directory")
    # /proc takes no new files, whoever we are (chmod would not stop root).
    _one_line_error(
        run_cli("replay", "--data", str(data), "--out", "/proc/oplog-view.db"), "cannot write the view"
    )
    _one_line_error(
        run_cli("replay", "--data", str(data), "--out", str(tmp_path / "no" / "v.db")), "no such directory"
    )


@pytest.mark.parametrize(
    ("listen", "words"),
    [
        ("127.0.0.1:70000", ("port must be a number from 0 to 65535", "70000")),
        ("127.0.0.1", ("expected HOST:PORT",)),
        ("notanaddress", ("expected HOST:PORT",)),
        ("999.0.0.1:80", ("not an IPv4 address",)),
        ("::1:80", ("in brackets",)),
    ],
)
def test_serve_refuses_a_bad_listen_address(tmp_path: Path, listen: str, words: tuple[str, ...]) -> None:
    target = tmp_path / "never"
    proc = run_cli("serve", "--data", str(target), "--listen", listen, "--no-boot-sync", timeout=60)
    _one_line_error(proc, "--listen", *words)
    assert not target.exists()  # refused before touching the data directory


def test_an_empty_remote_is_refused_everywhere(data: Path) -> None:
    for argv in (["sync"], ["serve", "--listen", "127.0.0.1:0"], ["watch"], ["verify"]):
        _one_line_error(run_cli(*argv, "--remote", "", "--data", str(data)), "--remote", "must not be empty")


def test_positions_past_the_end_are_errors_naming_the_end(data: Path) -> None:
    for argv in (
        ["replay", "--until", "5"],
        ["dump", "--to", "5"],
        ["diff", "--to", "5"],
        ["history", "x", "--from", "5"],
    ):
        _one_line_error(run_cli(*argv, "--data", str(data)), "5 is past the end of the history (4 events)")


def test_unknown_dump_action(data: Path) -> None:
    _one_line_error(
        run_cli("dump", "--action", "nosuchaction", "--data", str(data)), "no such action", "createDoc"
    )
    assert run_cli("dump", "--action", "createDoc", "--action", "insert", "--data", str(data)).returncode == 0


def test_bad_option_values_are_one_line(data: Path) -> None:
    _one_line_error(
        run_cli("apply", "x.json", "--lock-wait", "-1", "--data", str(data)), "must not be negative"
    )
    _one_line_error(run_cli("nosuch"), "invalid choice")
    _one_line_error(run_cli("replay", "--until", "soon"), "invalid int value")


# ---------------------------------------------------------------- a reader that goes away (| head)


def test_a_closed_pipe_ends_every_command_quietly(data: Path, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps(numbered_doc_body(8)))
    commands = [
        ["apply", str(body)],
        ["query", "SELECT id FROM blocks"],
        ["stats"],
        ["replay"],
        ["dump"],
        ["dump", "--json"],
        ["history", "20240101000000-0000001"],
        ["conflicts"],
        ["diff"],
        ["verify"],
        ["archive", "list"],
        ["--help"],
        ["help", "serve"],
    ]
    for argv in commands:
        proc = (
            run_into_closed_pipe(*argv, "--data", str(data))
            if argv[0] not in ("--help", "help")
            else run_into_closed_pipe(*argv)
        )
        assert proc.returncode == 0, (argv, proc.stderr)
        assert proc.stderr == "", (argv, proc.stderr)
    # The apply went through before its reply met the closed pipe.
    assert (
        "20240101000000-0000008"
        in run_cli("query", "SELECT id FROM blocks WHERE type='d'", "--data", str(data)).stdout
    )


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_registers_on_its_own(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``oplog CMD --help`` builds a parser with only CMD's module imported, and shows CMD's usage."""
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: oplog {name}")
