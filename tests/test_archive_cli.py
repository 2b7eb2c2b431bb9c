"""``oplog archive list|show|restore`` on a real three-device data set built with real syncs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oplog.archive import list_archive
from oplog.clock import FakeClock, RandomIds, SystemClock
from oplog.datadir import replay_data_dir
from oplog.remote import LocalDirRemote
from oplog.store import Store
from oplog.syncrunner import run_sync
from oplog.tools.cli import main
from oplog.wire import request_from_json
from tests.cli_helpers import run_cli
from tests.closed_pipe import run_into_closed_pipe

from .serve_helpers import ServeProcess

T0 = 1_721_527_400_000
BOX = "20240101000000-notebk1"
PARA = "20240101000000-para001"


def doc_id(n: int) -> str:
    """The id of test document ``n``."""
    return f"20240101000000-{n:07d}"


def _create_doc(n: int) -> dict[str, Any]:
    return {"action": "createDoc", "id": doc_id(n), "data": {"box": BOX, "title": f"T{n}"}}


def _apply(store: Store, req_id: int, *ops: dict[str, Any]) -> None:
    store.apply(
        request_from_json({"reqId": req_id, "app": "t", "transactions": [{"doOperations": list(ops)}]})
    )


@dataclass
class DataSet:
    """Three data directories (a, b, c), their device ids and the remote folder."""

    root: Path
    ids: dict[str, str]

    def data(self, name: str) -> Path:
        """The data directory of device ``name``."""
        return self.root / name

    @property
    def remote(self) -> LocalDirRemote:
        """The shared remote."""
        return LocalDirRemote(self.root / "remote")


def _build(root: Path) -> dict[str, str]:
    """The history behind the data set (see the module test docstrings for what each archive holds).

    1. a creates doc 1 and syncs; b syncs, creates doc 2 and appends a paragraph
       to doc 1 (one event), syncs; c syncs (it now holds b's segment).
    2. b creates doc 3 (not pushed); a removes doc 1, creates doc 4, force-pushes.
    3. b syncs: it adopts the new epoch, archives its two events (doc 2 pushed
       and dropped, doc 3 rebased). c syncs: b's old segment left the history,
       c archives it.
    4. b creates doc 5 and force-pulls: doc 5 is archived, not rebased.
    """
    warnings.simplefilter("ignore")
    stores = {
        n: Store.open(root / n, clock=FakeClock(T0 + s, step_ms=11), ids=RandomIds(s))
        for s, n in enumerate("abc", 1)
    }
    a, b, c = stores["a"], stores["b"], stores["c"]
    remote = LocalDirRemote(root / "remote")

    def sync(store: Store, **kw: Any) -> None:
        run_sync(store, remote, store.clock, **kw)

    try:
        _apply(a, 1, _create_doc(1))
        sync(a)
        sync(b)
        _apply(
            b,
            2,
            _create_doc(2),
            {
                "action": "appendBlock",
                "data": f'para\n{{: id="{PARA}"}}',
                "dataType": "markdown",
                "parentID": doc_id(1),
            },
        )
        sync(b)
        sync(c)
        _apply(b, 3, _create_doc(3))
        _apply(a, 4, {"action": "removeDoc", "id": doc_id(1)})
        _apply(a, 5, _create_doc(4))
        sync(a, push_mode="force-push")
        sync(b)
        sync(c)
        _apply(b, 6, _create_doc(5))
        sync(b, push_mode="force-pull")
        return {n: s.device_id for n, s in stores.items()}
    finally:
        for store in stores.values():
            store.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> DataSet:
    """The data set, built once."""
    root = tmp_path_factory.mktemp("archive-set")
    return DataSet(root, _build(root))


@pytest.fixture
def dataset(built: DataSet, tmp_path: Path) -> DataSet:
    """A private copy of the data set."""
    shutil.copytree(built.root, tmp_path / "set")
    return DataSet(tmp_path / "set", built.ids)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``oplog`` in-process; exit code, stdout, stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def entries(capsys: pytest.CaptureFixture[str], data: Path) -> list[dict[str, Any]]:
    """``archive list --json``, parsed."""
    code, out, err = cli(capsys, "archive", "list", "--data", str(data), "--json")
    assert code == 0, err
    return json.loads(out)


def entry_with(listing: list[dict[str, Any]], words: str) -> dict[str, Any]:
    """The one entry whose reason contains ``words``."""
    found = [e for e in listing if words in e["reason"]]
    assert len(found) == 1, listing
    return found[0]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _docs(data: Path) -> set[str]:
    return set(replay_data_dir(data, full=True).ws.docs)


# ---- list ----


def test_list_reports_every_entry_with_counts(dataset: DataSet, capsys: pytest.CaptureFixture[str]) -> None:
    """b holds the adopt entry (2 events, 1 rebased) and the force-pull entry; c holds b's dropped segment."""
    b_id = dataset.ids["b"]
    listing = entries(capsys, dataset.data("b"))
    assert len(listing) == 2
    adopt = entry_with(listing, "adopted")
    assert adopt["devices"] == [b_id] and adopt["events"] == 2 and adopt["segments"] == 2
    assert adopt["rebased"] == 1 and adopt["restored"] == 0
    assert adopt["epoch_to"] and adopt["epoch_to"] != adopt["epoch_from"]
    assert adopt["time"].endswith("Z") and adopt["time_ms"] > 0
    pull = entry_with(listing, "force-pull")
    assert pull["events"] == 1 and pull["rebased"] == 0
    left = entry_with(entries(capsys, dataset.data("c")), "left the history")
    assert left["devices"] == [b_id] and left["events"] == 1

    code, out, _ = cli(capsys, "archive", "list", "--data", str(dataset.data("b")))
    assert code == 0 and adopt["id"] in out and pull["id"] in out and "force-pull" in out


def test_list_of_a_directory_without_archive_is_empty(
    dataset: DataSet, capsys: pytest.CaptureFixture[str]
) -> None:
    """No archive: an empty list (exit 0), not an error."""
    assert entries(capsys, dataset.data("a")) == []
    code, out, _ = cli(capsys, "archive", "list", "--data", str(dataset.data("a")))
    assert code == 0 and "no archive entries" in out


def test_list_json_in_a_real_process(dataset: DataSet) -> None:
    """``python -m oplog.tools.cli archive list --json`` prints parseable JSON."""
    proc = run_cli("archive", "list", "--json", "--data", str(dataset.data("c")))
    assert proc.returncode == 0, proc.stderr
    assert [e["events"] for e in json.loads(proc.stdout)] == [1]


# ---- show ----


def test_show_prints_events_and_json_lines(dataset: DataSet, capsys: pytest.CaptureFixture[str]) -> None:
    """Text lists device#seq, hlc, app, status and the actions' block ids; --json gives one event per line."""
    data = dataset.data("b")
    adopt = entry_with(entries(capsys, data), "adopted")
    code, out, _ = cli(capsys, "archive", "show", adopt["id"], "--data", str(data))
    assert code == 0
    assert (
        f"createDoc {doc_id(2)}" in out and f"appendBlock {PARA}" in out and f"createDoc {doc_id(3)}" in out
    )
    assert "rebased" in out and "archived" in out

    code, out, _ = cli(capsys, "archive", "show", adopt["id"], "--json", "--data", str(data))
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["device_seq"] for e in events] == [1, 2]
    assert {e["device_id"] for e in events} == {dataset.ids["b"]}
    first, second = events
    assert first["status"] == "archived" and second["status"] == "rebased"
    assert first["req_id"] == 2 and first["app"] == "t" and first["hlc"] < second["hlc"]
    ops = first["transaction"]["doOperations"]
    assert [op["action"] for op in ops] == ["createDoc", "appendBlock"]
    assert ops[1]["parentID"] == doc_id(1)
    assert first["operations"][1] == {"action": "appendBlock", "ids": [PARA]}

    code, out, _ = cli(
        capsys, "archive", "show", adopt["id"], "--json", "--device", dataset.ids["b"], "--data", str(data)
    )
    assert code == 0 and len(out.splitlines()) == 2


def test_show_into_a_closed_pipe_ends_quietly(dataset: DataSet, capsys: pytest.CaptureFixture[str]) -> None:
    """``oplog archive show ID | head`` after head quit: exit 0, nothing on stderr (BrokenPipeError before)."""
    data = dataset.data("b")
    adopt = entry_with(entries(capsys, data), "adopted")
    for extra in ([], ["--json"]):
        proc = run_into_closed_pipe("archive", "show", adopt["id"], *extra, "--data", str(data))
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["archive", "show", "nope"], "no archive entry 'nope'"),
        (["archive", "restore", "nope"], "no archive entry 'nope'"),
        (["archive", "restore", "nope", "--dry-run"], "no archive entry 'nope'"),
    ],
)
def test_unknown_id_is_a_one_line_error(
    dataset: DataSet, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """An unknown entry id: exit 1, one line on stderr, no traceback."""
    code, out, err = cli(capsys, *argv, "--data", str(dataset.data("b")))
    assert code == 1 and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_input_errors(dataset: DataSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not a data directory, no archive at all, an unknown device, a bad --seq: one line each, exit 1."""
    b = str(dataset.data("b"))
    entry = entry_with(entries(capsys, dataset.data("b")), "adopted")["id"]
    cases = [
        (["archive", "list", "--data", str(tmp_path / "missing")], "not an oplog data directory"),
        (["archive", "show", "x", "--data", str(dataset.data("a"))], "has no archive"),
        (["archive", "show", entry, "--device", "ghost", "--data", b], "no events of device 'ghost'"),
        (["archive", "restore", entry, "--seq", "3-1", "--data", b], "empty"),
        (["archive", "restore", entry, "--seq", "x", "--data", b], "--seq: expected A-B"),
    ]
    for argv, message in cases:
        code, _, err = cli(capsys, *argv)
        assert code == 1 and message in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)


# ---- restore ----


def test_dry_run_changes_nothing(dataset: DataSet, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run names the event it would restore and the one it skips, and writes no file."""
    data = dataset.data("b")
    adopt = entry_with(entries(capsys, data), "adopted")
    before = _files(data)
    code, out, _ = cli(capsys, "archive", "restore", adopt["id"], "--dry-run", "--json", "--data", str(data))
    assert code == 0
    reply = json.loads(out)
    assert reply["dry_run"] and reply["skipped"] == {"rebased": 1}
    assert [(e["device_seq"], "new" in e) for e in reply["restored"]] == [(1, False)]
    assert _files(data) == before


def test_restore_puts_events_back_and_twice_is_once(
    dataset: DataSet, capsys: pytest.CaptureFixture[str]
) -> None:
    """doc 2 comes back (its append into the removed doc 1 is a recorded conflict); a second restore is a no-op."""
    data = dataset.data("b")
    adopt = entry_with(entries(capsys, data), "adopted")
    assert doc_id(2) not in _docs(data)
    code, out, err = cli(capsys, "archive", "restore", adopt["id"], "--json", "--data", str(data))
    assert code == 0, err
    reply = json.loads(out)
    assert not reply["dry_run"] and reply["skipped"] == {"rebased": 1}
    [item] = reply["restored"]
    assert item["device_seq"] == 1 and item["new"]["device_id"] == dataset.ids["b"]

    fresh = replay_data_dir(data, full=True)
    assert doc_id(2) in fresh.ws.docs and doc_id(3) in fresh.ws.docs and doc_id(1) not in fresh.ws.docs
    assert PARA not in fresh.ws.blocks
    assert reply["state_hash"] == fresh.state_hash.hexdigest()
    with Store.open(data, create=False) as store:
        assert store.state().state_hash == fresh.state_hash.hexdigest()
        # Replay tolerance: the append into the removed doc 1 is kept in the log and recorded as a conflict.
        assert [(c.device_seq, c.action, c.block_id) for c in store.conflicts()] == [
            (item["new"]["device_seq"], "appendBlock", PARA)
        ]
        last_seq = store.device_log(store.device_id).last_seq  # type: ignore[union-attr]
        restored_copy = list(store.device_log(store.device_id).read(item["new"]["device_seq"]))[0]  # type: ignore[union-attr]
    assert [op.action for op in restored_copy.transaction.do_operations] == ["createDoc", "appendBlock"]
    assert restored_copy.req_id == 2 and restored_copy.hlc == item["new"]["hlc"]

    assert entry_with(entries(capsys, data), "adopted")["restored"] == 1
    before = _files(data)
    code, out, _ = cli(capsys, "archive", "restore", adopt["id"], "--data", str(data))
    assert code == 0 and "nothing to restore" in out and "1 already restored" in out
    with Store.open(data, create=False) as store:
        assert store.device_log(store.device_id).last_seq == last_seq  # type: ignore[union-attr]
    changed = {k for k, v in _files(data).items() if before.get(k) != v}
    assert not {k for k in changed if k.startswith(("devices", "archive"))}


def test_restore_after_a_crash_before_the_index_was_written(
    dataset: DataSet, capsys: pytest.CaptureFixture[str]
) -> None:
    """Events appended but not recorded (a crash between the two): the next restore finds them in the history."""
    data = dataset.data("b")
    adopt = entry_with(entries(capsys, data), "adopted")
    assert cli(capsys, "archive", "restore", adopt["id"], "--data", str(data))[0] == 0
    index = data / "archive" / "index.json"
    raw = json.loads(index.read_text())
    for e in raw["entries"]:
        e["restored"] = {}
    index.write_text(json.dumps(raw))
    code, out, _ = cli(capsys, "archive", "restore", adopt["id"], "--json", "--data", str(data))
    reply = json.loads(out)
    assert code == 0 and reply["restored"] == [] and reply["skipped"] == {"rebased": 1, "in_history": 1}


def test_restore_filters_by_seq_and_device(dataset: DataSet, capsys: pytest.CaptureFixture[str]) -> None:
    """--seq outside the entry restores nothing; the force-pull entry's doc 5 comes back with --seq and --device."""
    data = dataset.data("b")
    pull = entry_with(entries(capsys, data), "force-pull")
    code, out, _ = cli(capsys, "archive", "show", pull["id"], "--json", "--data", str(data))
    [event] = [json.loads(line) for line in out.splitlines()]
    seq = event["device_seq"]
    code, out, _ = cli(
        capsys, "archive", "restore", pull["id"], "--seq", f"{seq + 1}-{seq + 5}", "--data", str(data)
    )
    assert code == 0 and "nothing to restore" in out
    assert doc_id(5) not in _docs(data)
    argv = [
        "archive",
        "restore",
        pull["id"],
        "--seq",
        str(seq),
        "--device",
        dataset.ids["b"],
        "--data",
        str(data),
    ]
    code, out, _ = cli(capsys, *argv)
    assert code == 0 and "restored 1 event(s)" in out and f"createDoc {doc_id(5)}" in out
    assert doc_id(5) in _docs(data)


def _sync(data: Path, remote: LocalDirRemote) -> None:
    with Store.open(data, create=False) as store:
        run_sync(store, remote, SystemClock())


def test_restored_events_are_shared_and_not_restored_again_elsewhere(
    dataset: DataSet, capsys: pytest.CaptureFixture[str]
) -> None:
    """b restores doc 2 and syncs; c pulls the copy, so restoring c's entry of the same event restores nothing."""
    b, c = dataset.data("b"), dataset.data("c")
    adopt = entry_with(entries(capsys, b), "adopted")
    assert cli(capsys, "archive", "restore", adopt["id"], "--data", str(b))[0] == 0
    _sync(b, dataset.remote)
    _sync(c, dataset.remote)
    _sync(dataset.data("a"), dataset.remote)
    assert doc_id(2) in _docs(c) and doc_id(2) in _docs(dataset.data("a"))
    left = entry_with(entries(capsys, c), "left the history")
    code, out, _ = cli(capsys, "archive", "restore", left["id"], "--json", "--data", str(c))
    reply = json.loads(out)
    assert code == 0 and reply["restored"] == [] and reply["skipped"] == {"in_history": 1}


# ---- busy directories ----


@pytest.fixture
def served_b(dataset: DataSet) -> Iterator[ServeProcess]:
    """A real ``oplog serve`` holding b's data directory."""
    child = ServeProcess(dataset.data("b"), "--no-boot-sync")
    try:
        yield child
    finally:
        child.stop()


def test_read_commands_work_while_a_server_runs_and_restore_refuses(
    dataset: DataSet, served_b: ServeProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """list, show and restore --dry-run read without the lock; restore names the server and changes nothing."""
    data = dataset.data("b")
    adopt = entry_with(entries(capsys, data), "adopted")
    assert cli(capsys, "archive", "show", adopt["id"], "--data", str(data))[0] == 0
    code, out, _ = cli(capsys, "archive", "restore", adopt["id"], "--dry-run", "--data", str(data))
    assert code == 0 and "would restore 1 event(s)" in out
    before = _files(data / "devices")
    code, out, err = cli(capsys, "archive", "restore", adopt["id"], "--data", str(data))
    assert code == 1 and out == "" and "Traceback" not in err and err.count("\n") == 1
    assert served_b.address in err and "stop the server" in err
    assert _files(data / "devices") == before
    assert entry_with(entries(capsys, data), "adopted")["restored"] == 0


HOLD_LOCK = """
import sys
from oplog.store import Store
store = Store.open(sys.argv[1], create=False)
print("held", flush=True)
sys.stdin.read()
store.close()
"""


def test_restore_with_the_lock_held_by_another_writer(
    dataset: DataSet, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another process holds the writer's lock: list works; restore waits --lock-wait, then says it is busy."""
    data = dataset.data("c")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(data)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        proc = run_cli("archive", "list", "--json", "--data", str(data))
        assert proc.returncode == 0, proc.stderr
        [left] = json.loads(proc.stdout)
        code, _, err = cli(
            capsys, "archive", "restore", left["id"], "--lock-wait", "0.2", "--data", str(data)
        )
        assert code == 1 and "locked" in err and "retry" in err and err.count("\n") == 1
    finally:
        holder.communicate("", timeout=60)
    assert list_archive(data)[0].restored == {}


# ---- the core: presence is found wherever the copy sits ----


class _Recorder:
    """A progress callback that keeps its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


def test_plan_finds_events_still_in_a_long_history(tmp_path: Path) -> None:
    """Archive copies of sealed segments that are still in the log: every event is found, none restored."""
    from oplog.archive import ArchivedSegment, ArchiveEntry, add_to_archive, plan_restore
    from oplog.store import StoreOptions

    warnings.simplefilter("ignore")
    data = tmp_path / "long"
    options = StoreOptions(segment_bytes=700)
    with Store.open(data, options=options, clock=FakeClock(T0, step_ms=7), ids=RandomIds(9)) as store:
        for n in range(1, 41):
            _apply(store, n, _create_doc(n))
        store.seal_local()
        log = store.device_log(store.device_id)
        assert log is not None
        segments = [s for s in log.log.segments() if s.count]
        assert len(segments) >= 5
        for index, seg in enumerate((segments[0], segments[len(segments) // 2], segments[-1])):
            folder = store.device_dir(store.device_id)
            entry = ArchiveEntry(f"copy-{index}", T0, "test copy", "0", "0")
            entry.segments = [ArchivedSegment(store.device_id, seg.name, seg.first_seq, seg.count)]
            add_to_archive(data, entry, {(store.device_id, seg.name): (folder / seg.name).read_bytes()})
            progress = _Recorder()
            plan = plan_restore(data, entry, {store.device_id: log}, progress=progress)
            assert plan.originals == [] and plan.skipped == {"in_history": seg.count}, seg
            # Only the segments from the copy's on were read.
            assert progress.calls[-1] == (log.last_seq - seg.first_seq + 1,) * 2
