"""``oplog diff`` reports notebook changes: created, renamed, closed, reconfigured, removed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oplog import notebooks as nb
from oplog.clock import FakeClock, RandomIds
from oplog.statediff import diff_workspaces
from oplog.store import Store
from oplog.tools.cli import main
from oplog.tree import Workspace

A = "20240101000000-nbaaaaa"
B = "20240101000000-nbbbbbb"


def _store(path: Path) -> Store:
    return Store.open(path, clock=FakeClock(1_721_527_400_000, step_ms=3), ids=RandomIds(5))


def _history(path: Path) -> int:
    """Two notebooks made; then A renamed, closed and reconfigured, B removed. The position between."""
    store = _store(path)
    try:
        store.apply(nb.apply_request([nb.create_notebook_op("Alpha", notebook_id=A)], req_id=1))
        store.apply(nb.apply_request([nb.create_notebook_op("Beta", notebook_id=B)], req_id=2))
        middle = int(store.state().position)
        store.apply(
            nb.apply_request([nb.rename_notebook_op(A, "Alpha 2"), nb.close_notebook_op(A)], req_id=3)
        )
        store.apply(nb.apply_request([nb.set_notebook_conf_op(A, {"icon": "1f4d4"})], req_id=4))
        store.apply(nb.apply_request([nb.remove_notebook_op(B)], req_id=5))
    finally:
        store.close()
    return middle


def test_diff_lists_notebook_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d"
    middle = _history(data)
    assert main(["diff", "--data", str(data), "--from", str(middle), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    blocks = report  # --from/--to: the diff is the report itself
    assert blocks["summary"]["notebooks"] == 2
    by_id = {n["id"]: n for n in blocks["notebooks"]}
    assert by_id[A]["fields"] == ["closed", "icon", "name"]
    assert (by_id[A]["before"]["name"], by_id[A]["after"]["name"]) == ("Alpha", "Alpha 2")
    assert by_id[A]["after"]["closed"] == "true"
    assert by_id[B]["after"] is None and by_id[B]["before"]["name"] == "Beta"

    assert main(["diff", "--data", str(data), "--from", str(middle)]) == 0
    text = capsys.readouterr().out
    assert f"~ notebook {A}  closed 'false' -> 'true'; icon '' -> '1f4d4'; name 'Alpha' -> 'Alpha 2'" in text
    assert f"- notebook {B} 'Beta'" in text
    assert "2 notebook(s) changed" in text
    assert main(["diff", "--data", str(data), "--to", str(middle)]) == 0
    assert f"+ notebook {A} 'Alpha'" in capsys.readouterr().out


def test_same_notebooks_diff_empty() -> None:
    ws = Workspace()
    assert diff_workspaces(ws, Workspace()).empty
    ws.notebooks[A] = {"name": "x"}
    assert not diff_workspaces(Workspace(), ws).empty
