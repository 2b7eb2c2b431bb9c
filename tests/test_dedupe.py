"""Retried requests (issue 15 item 9): the same app, session, reqId and body is answered again, logged once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from oplog.clock import FakeClock, RandomIds
from oplog.dedupe import RequestWindow, request_digest
from oplog.errors import BlockNotFound
from oplog.server.app import start_server
from oplog.server.client import Client
from oplog.store import Store
from oplog.v1 import oplog_pb2 as pb
from oplog.wire import request_from_json
from tests.engine_helpers import BOX, DOC, bid

T0 = 1_721_527_400_000


def _open(path: Path) -> Store:
    return Store.open(path, clock=FakeClock(T0, step_ms=1000), ids=RandomIds(7))


def _body(req_id: int, *ops: dict[str, Any], session: str = "s") -> pb.ApplyRequest:
    return request_from_json(
        {"reqId": req_id, "app": "dedupe", "session": session, "transactions": [{"doOperations": list(ops)}]}
    )


def _create_doc(req_id: int = 1) -> pb.ApplyRequest:
    return _body(req_id, {"action": "createDoc", "id": DOC, "data": {"box": BOX, "title": "Doc"}})


def _append(req_id: int, n: int, text: str = "x", *, session: str = "s") -> pb.ApplyRequest:
    op = {"action": "appendBlock", "parentID": DOC, "id": bid(n), "dataType": "markdown", "data": text}
    return _body(req_id, op, session=session)


def _insert_generated(req_id: int) -> pb.ApplyRequest:
    # No id: the store draws one, so a second apply would add a second block.
    return _body(req_id, {"action": "appendBlock", "parentID": DOC, "dataType": "markdown", "data": "gen"})


def _events(store: Store) -> list[pb.Event]:
    log = store.device_log(store.device_id)
    assert log is not None
    return list(log.read())


def test_a_retry_gets_the_original_reply_and_is_logged_once(tmp_path: Path) -> None:
    with _open(tmp_path / "d") as store:
        store.apply(_create_doc())
        first = store.apply(_insert_generated(2))
        state = store.state()
        again = store.apply(_insert_generated(2))
        assert again == first
        assert store.state() == state
        assert len(_events(store)) == 2
        assert len(store.get_document(DOC)) == 2


def test_a_retry_after_a_restart_is_recognised(tmp_path: Path) -> None:
    with _open(tmp_path / "d") as store:
        store.apply(_create_doc())
        first = store.apply(_insert_generated(2))
    with _open(tmp_path / "d") as store:
        again = store.apply(_insert_generated(2))
        assert again == first
        assert len(_events(store)) == 2


def test_same_key_different_body_is_a_new_request(tmp_path: Path) -> None:
    with _open(tmp_path / "d") as store:
        store.apply(_create_doc())
        store.apply(_append(5, 1, "one"))
        reply = store.apply(_append(5, 2, "two"))
        assert reply.positions[0].device_seq == 3
        assert store.get_block(bid(2)).markdown == "two"


def test_other_session_or_req_id_zero_is_not_a_retry(tmp_path: Path) -> None:
    with _open(tmp_path / "d") as store:
        store.apply(_create_doc())
        store.apply(_insert_generated(9))
        store.apply(
            _body(
                9,
                {"action": "appendBlock", "parentID": DOC, "dataType": "markdown", "data": "gen"},
                session="t",
            )
        )
        store.apply(_insert_generated(0))
        store.apply(_insert_generated(0))
        assert len(_events(store)) == 5


def test_a_retry_of_a_refused_request_is_refused_again(tmp_path: Path) -> None:
    with _open(tmp_path / "d") as store:
        store.apply(_create_doc())
        bad = _body(
            3,
            {
                "action": "appendBlock",
                "parentID": "20240101000000-nothere",
                "dataType": "markdown",
                "data": "x",
            },
        )
        for _ in range(2):
            with pytest.raises(BlockNotFound):
                store.apply(bad)
        assert len(_events(store)) == 1


def test_window_forgets_requests_older_than_its_span() -> None:
    window = RequestWindow(span=10)
    first = _append(1, 1)
    digest = request_digest(first)
    window.add("dedupe", "s", 1, digest, 1, 1)
    assert window.find(first, digest) is not None
    for n in range(2, 12):
        window.add("dedupe", "s", n, b"d%d" % n, n, n)
    assert window.find(first, digest) is None
    assert len(window) == 10


def test_window_rebuilt_from_the_log_matches_the_running_one(tmp_path: Path) -> None:
    with _open(tmp_path / "d") as store:
        store.apply(_create_doc())
        multi = request_from_json(
            {
                "reqId": 7,
                "app": "dedupe",
                "session": "s",
                "transactions": [
                    {
                        "doOperations": [
                            {"action": "appendBlock", "parentID": DOC, "dataType": "markdown", "data": "a"}
                        ]
                    },
                    {
                        "doOperations": [
                            {"action": "appendBlock", "parentID": DOC, "dataType": "markdown", "data": "b"}
                        ]
                    },
                ],
            }
        )
        reply = store.apply(multi)
        log = store.device_log(store.device_id)
        assert log is not None
        rebuilt = RequestWindow.from_log(log)
        seen = rebuilt.find(multi, request_digest(multi))
        assert seen is not None and (seen.first_seq, seen.last_seq) == (2, 3)
        assert store.apply(multi) == reply


def test_a_retry_through_the_server_is_answered_not_applied(tmp_path: Path) -> None:
    store = _open(tmp_path / "d")
    running = start_server(store, listen="127.0.0.1:0")
    try:
        with Client(running.address) as client:
            client.stub.Apply(_create_doc(), timeout=30)
            first = client.stub.Apply(_insert_generated(2), timeout=30)
            again = client.stub.Apply(_insert_generated(2), timeout=30)
            assert again == first
            assert client.stub.GetState(pb.GetStateRequest(), timeout=30).position == 2
            # A different body under the same key is applied; a bad one still fails as before.
            try:
                client.stub.Apply(_body(2, {"action": "nosuchaction", "id": bid(1)}), timeout=30)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
            else:
                raise AssertionError("an unknown action was accepted")
    finally:
        running.stop(grace=1)
        store.close()


def test_oplog_apply_holds_ctrl_c_until_the_committed_reply(capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import signal

    from oplog.tools.apply import _sigint_deferred

    with _sigint_deferred():
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C while the request commits
        committed = True
    assert committed
    assert "committed; its reply follows" in capsys.readouterr().err
    # The usual handler is back: the next Ctrl-C interrupts.
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        signal.sigwait  # noqa: B018 - a statement for the signal to land on
