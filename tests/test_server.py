"""The gRPC service against a real store: every rpc's success path, every status code, limits, load."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest

from oplog import errors, wire
from oplog.server.app import RunningServer, start_server
from oplog.server.auth import AuthConfig
from oplog.server.client import Client
from oplog.server.service import Limits
from oplog.server.status import STATUS_TABLE, error_from_rpc, status_for
from oplog.v1 import oplog_pb2 as pb
from tests.fixtures import request_body
from tests.server_helpers import (
    BOX,
    DOC,
    HEADING,
    HELLO,
    QUOTE,
    append_request,
    block_id,
    open_store,
    setup_request,
)

# ---- helpers used only here (the shared ones are in tests/server_helpers.py) ----


def code_of(fn: Any, *args: Any, **kwargs: Any) -> grpc.StatusCode:
    """The status code a call ends with (OK when it succeeds)."""
    try:
        result = fn(*args, **kwargs)
        if hasattr(result, "__next__"):
            next(result, None)
            result.cancel()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def rpc_error(fn: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    """The error a call fails with (fails the test if it succeeds)."""
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    return info.value


class StoreWrapper:
    """Forwards to a real store; ``fail_with`` makes every call raise that error first."""

    def __init__(self, store: Any, fail_with: BaseException | None = None) -> None:
        self._store = store
        self.fail_with = fail_with

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if not callable(target) or self.fail_with is None:
            return target

        def failing(*args: Any, **kwargs: Any) -> Any:
            raise self.fail_with  # type: ignore[misc]

        return failing


# ---- success paths ----


def test_apply_replies_with_transactions_positions_and_server_timing(client: Client) -> None:
    response, call = client.stub.Apply.with_call(setup_request(), timeout=30)
    assert len(response.transactions) == 1
    assert response.transactions[0].timestamp == request_body("00")["reqId"]  # overwritten with reqId
    assert len(response.positions) == 1
    assert response.positions[0].device_seq == 1
    assert response.positions[0].device_id
    timing = dict(call.trailing_metadata())["server-timing"]
    assert timing.startswith("total;dur=")
    assert float(timing.removeprefix("total;dur=")) >= 0


def test_get_block_and_document(client: Client, seeded: pb.ApplyResponse) -> None:
    block = client.stub.GetBlock(pb.GetBlockRequest(id=HELLO), timeout=10)
    assert block.id == HELLO and block.type == "p" and block.root_id == DOC
    assert "Saw two heron" in block.markdown
    blocks = client.stub.GetDocument(pb.GetDocumentRequest(id=DOC), timeout=10).blocks
    assert blocks[0].id == DOC and blocks[0].type == "d"
    ids = [b.id for b in blocks]
    assert ids.index(HELLO) < ids.index(HEADING) < ids.index(QUOTE)
    assert list(blocks[0].child_ids)[0] == HELLO


def test_query_with_bound_arguments(client: Client, seeded: pb.ApplyResponse) -> None:
    request = pb.QueryRequest(
        sql="SELECT id, type FROM blocks WHERE root_id = ? AND type = ? ORDER BY id",
        args=[wire.to_value(DOC), wire.to_value("h")],
    )
    reply = client.stub.Query(request, timeout=10)
    assert list(reply.columns) == ["id", "type"]
    assert [wire.from_value(v) for v in reply.rows[0].values] == [HEADING, "h"]
    assert not reply.truncated


def test_query_row_cap_sets_truncated(tmp_store: Any) -> None:
    running = start_server(tmp_store, listen="127.0.0.1:0", limits=Limits(query_max_rows=3))
    try:
        with Client(running.address) as c:
            c.stub.Apply(setup_request(), timeout=30)
            reply = c.stub.Query(pb.QueryRequest(sql="SELECT id FROM blocks"), timeout=10)
            assert len(reply.rows) == 3 and reply.truncated
    finally:
        running.stop(grace=1)


def test_get_state(client: Client, seeded: pb.ApplyResponse) -> None:
    state = client.stub.GetState(pb.GetStateRequest(), timeout=10)
    assert len(state.state_hash) >= 16
    assert state.block_count >= 5
    assert state.position == 1
    assert dict(state.device_heads) == {seeded.positions[0].device_id: 1}


def test_subscribe_catches_up_then_streams_live_events(client: Client, seeded: pb.ApplyResponse) -> None:
    stream = client.stub.Subscribe(pb.SubscribeRequest(from_position=0), timeout=30)
    first = next(stream)
    assert first.position == 1 and first.event.device_seq == 1
    client.stub.Apply(append_request(block_id(1), "live"), timeout=30)
    second = next(stream)
    assert second.position == 2
    assert second.event.transaction.do_operations[0].id == block_id(1)
    stream.cancel()


def test_subscribe_from_a_position_skips_earlier_events(client: Client, seeded: pb.ApplyResponse) -> None:
    for n in range(3):
        client.stub.Apply(append_request(block_id(n), f"p{n}"), timeout=30)
    stream = client.stub.Subscribe(pb.SubscribeRequest(from_position=2), timeout=30)
    assert [next(stream).position for _ in range(2)] == [3, 4]
    stream.cancel()


def test_client_cancellation_closes_the_subscription(grpc_server: RunningServer, client: Client) -> None:
    client.stub.Apply(setup_request(), timeout=30)
    stream = client.stub.Subscribe(pb.SubscribeRequest(from_position=0), timeout=30)
    next(stream)
    assert grpc_server.service.subscriber_count == 1
    stream.cancel()
    assert _eventually(lambda: grpc_server.service.subscriber_count == 0)


def _eventually(predicate: Any, attempts: int = 200) -> bool:
    event = threading.Event()
    for _ in range(attempts):
        if predicate():
            return True
        event.wait(0.025)
    return bool(predicate())


def test_health_serving_then_not_serving_on_stop(tmp_store: Any) -> None:
    from grpc_health.v1 import health_pb2

    running = start_server(tmp_store, listen="127.0.0.1:0")
    with Client(running.address) as c:
        assert c.serving() and c.serving("oplog.v1.OpLog")
        watch = c.health.Watch(health_pb2.HealthCheckRequest(service="oplog.v1.OpLog"), timeout=30)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        stopper = threading.Thread(target=running.stop, kwargs={"grace": 1})
        stopper.start()
        statuses = []
        try:
            for reply in watch:
                statuses.append(reply.status)
        except grpc.RpcError:
            pass
        stopper.join()
        assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses


# ---- status codes (SPEC §4 and the rest of the mapping) ----


def test_invalid_transaction_is_invalid_argument_naming_the_operation(
    client: Client, seeded: pb.ApplyResponse
) -> None:
    request = append_request(block_id(1), "ok")
    request.transactions[0].do_operations.add(action="noSuchAction", id=block_id(2))
    error = rpc_error(client.stub.Apply, request, timeout=10)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "transactions[0].doOperations[1]" in error.details()
    # Atomic: the good first operation was not applied either.
    assert (
        code_of(client.stub.GetBlock, pb.GetBlockRequest(id=block_id(1)), timeout=10)
        == grpc.StatusCode.NOT_FOUND
    )
    assert client.stub.GetState(pb.GetStateRequest(), timeout=10).position == 1


def test_missing_block_is_not_found(client: Client, seeded: pb.ApplyResponse) -> None:
    error = rpc_error(client.stub.GetBlock, pb.GetBlockRequest(id="20200101000000-nothere"), timeout=10)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "20200101000000-nothere" in error.details()
    missing_doc = pb.GetDocumentRequest(id="20200101000000-nothere")
    assert code_of(client.stub.GetDocument, missing_doc, timeout=10) == grpc.StatusCode.NOT_FOUND
    apply_under_missing = append_request(block_id(3), "x", parent="20200101000000-nothere")
    assert code_of(client.stub.Apply, apply_under_missing, timeout=10) == grpc.StatusCode.NOT_FOUND


def test_empty_id_is_invalid_argument(client: Client) -> None:
    assert code_of(client.stub.GetBlock, pb.GetBlockRequest(), timeout=10) == grpc.StatusCode.INVALID_ARGUMENT


# ---- the wire edge: malformed requests are the caller's INVALID_ARGUMENT, never INTERNAL ----


def _one_op(op: dict[str, Any]) -> pb.ApplyRequest:
    return wire.request_from_json({"app": "test", "transactions": [{"doOperations": [op]}]})


@pytest.fixture
def small_doc(client: Client) -> str:
    """A document with one paragraph, HELLO, made from a request written here (no shared examples)."""
    create = {"action": "createDoc", "id": DOC, "data": {"box": BOX, "title": "Edge"}}
    append = {"action": "appendBlock", "parentID": DOC, "id": HELLO, "dataType": "markdown", "data": "hi"}
    client.stub.Apply(_one_op(create), timeout=30)
    client.stub.Apply(_one_op(append), timeout=30)
    return HELLO


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("Apply", b"\xff\xff\xff"),  # a field with tag 0x1fff...: not protobuf wire format
        ("Apply", b"\x0a\x05ab"),  # transactions (field 1) says 5 bytes follow, 2 do
        ("GetBlock", b"\x0a\x02\xc3\x28"),  # id (a string) that is not UTF-8
        ("Query", b"\x0a"),  # a truncated tag
        ("Subscribe", b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),  # a varint too long
    ],
)
def test_undecodable_body_is_invalid_argument(grpc_server: RunningServer, method: str, body: bytes) -> None:
    with grpc.insecure_channel(grpc_server.address) as channel:
        # Identity (de)serializers: the bytes go out exactly as written here.
        if method == "Subscribe":
            call = channel.unary_stream(f"/oplog.v1.OpLog/{method}", lambda b: b, lambda b: b)
            error = rpc_error(lambda: list(call(body, timeout=10)))
        else:
            call = channel.unary_unary(f"/oplog.v1.OpLog/{method}", lambda b: b, lambda b: b)
            error = rpc_error(call, body, timeout=10)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "the request body is not a valid oplog.v1." in error.details()
    assert method.removeprefix("Get") in error.details()


def test_a_valid_body_still_decodes_through_the_raw_path(grpc_server: RunningServer) -> None:
    with grpc.insecure_channel(grpc_server.address) as channel:
        call = channel.unary_unary("/oplog.v1.OpLog/GetState", lambda b: b, lambda b: b)
        reply = pb.GetStateResponse.FromString(call(pb.GetStateRequest().SerializeToString(), timeout=10))
    assert reply.position == 0 and reply.block_count == 0


#: Statuses a malformed body may end with; INTERNAL / UNKNOWN / DATA_LOSS would be the server's fault.
_CALLERS_FAULT = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,  # a Subscribe that decoded and waits for live events
}
FUZZ_BODIES = 2000 if os.environ.get("OPLOG_SOAK") == "1" else 150
FUZZ_SEED = int(os.environ.get("OPLOG_SEED", str(random.SystemRandom().randrange(1 << 32))))


def _fuzz_body(rng: random.Random, valid: bytes) -> bytes:
    """Random bytes, or a valid body with some bytes flipped, cut or repeated."""
    if not valid or rng.random() < 0.3:
        return rng.randbytes(rng.randrange(0, 48))
    body = bytearray(valid)
    for _ in range(rng.randrange(1, 4)):
        choice = rng.random()
        at = rng.randrange(len(body)) if body else 0
        if choice < 0.5 and body:
            body[at] = rng.randrange(256)
        elif choice < 0.75:
            del body[at:]
        else:
            body[at:at] = body[at : at + rng.randrange(1, 8)]
    return bytes(body)


def test_fuzzed_bodies_are_never_the_servers_fault(grpc_server: RunningServer, client: Client) -> None:
    """Seeded (OPLOG_SEED, printed); 150 bodies, OPLOG_SOAK=1 runs 2,000."""
    print(f"wire fuzz seed {FUZZ_SEED} ({FUZZ_BODIES} bodies)")
    rng = random.Random(FUZZ_SEED)
    create = {"action": "createDoc", "id": DOC, "data": {"box": BOX, "title": "Fuzz"}}
    valid = {
        "Apply": _one_op(create).SerializeToString(),
        "GetBlock": pb.GetBlockRequest(id=DOC).SerializeToString(),
        "GetDocument": pb.GetDocumentRequest(id=DOC).SerializeToString(),
        "Query": pb.QueryRequest(
            sql="SELECT id FROM blocks WHERE id = ?", args=[wire.to_value(DOC)]
        ).SerializeToString(),
        "GetState": b"",
        "Subscribe": pb.SubscribeRequest(from_position=1).SerializeToString(),
    }
    seen: dict[grpc.StatusCode, int] = {}
    with grpc.insecure_channel(grpc_server.address) as channel:
        for n in range(FUZZ_BODIES):
            method = rng.choice(sorted(valid))
            body = _fuzz_body(rng, valid[method])
            path = f"/oplog.v1.OpLog/{method}"
            try:
                if method == "Subscribe":
                    stream = channel.unary_stream(path, lambda b: b, lambda b: b)(body, timeout=0.5)
                    next(stream, None)
                    stream.cancel()
                else:
                    channel.unary_unary(path, lambda b: b, lambda b: b)(body, timeout=10)
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code = exc.code()
            seen[code] = seen.get(code, 0) + 1
            assert code in _CALLERS_FAULT, (FUZZ_SEED, n, method, body.hex(), code)
    print({code.name: count for code, count in sorted(seen.items(), key=lambda kv: kv[0].name)})
    assert client.stub.GetState(pb.GetStateRequest(), timeout=10).state_hash


def test_apply_with_no_transactions_is_invalid_argument(client: Client) -> None:
    error = rpc_error(client.stub.Apply, pb.ApplyRequest(app="test", req_id=1), timeout=10)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at least one transaction" in error.details()
    assert client.stub.GetState(pb.GetStateRequest(), timeout=10).position == 0
    with pytest.raises(errors.InvalidTransaction, match="at least one transaction"):
        wire.request_from_json({"transactions": []})


@pytest.mark.parametrize("bad", ["nothing", "20240101000000-ABCDEFG", "20240101000000-abc", "x" * 5000])
def test_malformed_block_id_is_invalid_argument_not_found(client: Client, bad: str) -> None:
    for rpc, request in (
        (client.stub.GetBlock, pb.GetBlockRequest(id=bad)),
        (client.stub.GetDocument, pb.GetDocumentRequest(id=bad)),
    ):
        error = rpc_error(rpc, request, timeout=10)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "is not a block id" in error.details()
        assert len(error.details()) < 200  # a 5000-character id is not echoed back whole


@pytest.mark.parametrize(
    "stamp", ["20241301000000", "20240230120000", "20240101250000", "20240101006100", "00000101000000"]
)
def test_impossible_times_are_invalid_argument(client: Client, small_doc: str, stamp: str) -> None:
    update = _one_op({"action": "doUpdateUpdated", "id": small_doc, "data": stamp})
    error = rpc_error(client.stub.Apply, update, timeout=10)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "doOperations[0]" in error.details() and "real time" in error.details()
    attrs = _one_op({"action": "setBlockAttrs", "id": small_doc, "data": {"updated": stamp}})
    assert code_of(client.stub.Apply, attrs, timeout=10) == grpc.StatusCode.INVALID_ARGUMENT
    reminder = _one_op({"action": "setBlockReminder", "id": small_doc, "data": {"timed": stamp}})
    assert code_of(client.stub.Apply, reminder, timeout=10) == grpc.StatusCode.INVALID_ARGUMENT
    # A real time (29 February of a leap year) is accepted.
    client.stub.Apply(
        _one_op({"action": "doUpdateUpdated", "id": small_doc, "data": "20240229235959"}), timeout=10
    )
    block = client.stub.GetBlock(pb.GetBlockRequest(id=small_doc), timeout=10)
    assert {a.name: a.value for a in block.attrs}["updated"] == "20240229235959"


def test_nul_in_attribute_values_is_invalid_argument(client: Client, small_doc: str) -> None:
    before = client.stub.GetState(pb.GetStateRequest(), timeout=10)
    for value in ("a\x00b", "\x00"):
        set_attrs = _one_op({"action": "setBlockAttrs", "id": small_doc, "data": {"custom-x": value}})
        error = rpc_error(client.stub.Apply, set_attrs, timeout=10)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "NUL" in error.details() and "custom-x" in error.details()
    assert client.stub.GetState(pb.GetStateRequest(), timeout=10).state_hash == before.state_hash
    # In Markdown, NUL never reaches an attribute: CommonMark reads it as U+FFFD.
    in_ial = {"action": "appendBlock", "parentID": DOC, "id": block_id(77), "dataType": "markdown"}
    client.stub.Apply(_one_op({**in_ial, "data": 'text\n{: custom-y="c\x00d"}'}), timeout=10)
    block = client.stub.GetBlock(pb.GetBlockRequest(id=block_id(77)), timeout=10)
    assert {a.name: a.value for a in block.attrs}["custom-y"] == "c\ufffdd"


def test_subscribe_beyond_the_end_is_out_of_range_naming_the_end(client: Client, small_doc: str) -> None:
    stream = client.stub.Subscribe(pb.SubscribeRequest(from_position=3), timeout=10)
    error = rpc_error(next, stream)
    assert error.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "the current end is position 2" in error.details()
    # The end itself is a valid place to start: the next event is the first one streamed.
    stream = client.stub.Subscribe(pb.SubscribeRequest(from_position=2), timeout=30)
    client.stub.Apply(append_request(block_id(5), "after"), timeout=30)
    assert next(stream).position == 3
    stream.cancel()


def test_moving_a_block_under_itself_is_failed_precondition(client: Client, seeded: pb.ApplyResponse) -> None:
    quote = client.stub.GetBlock(pb.GetBlockRequest(id=QUOTE), timeout=10)
    (child,) = quote.child_ids
    request = wire.request_from_json(
        {"transactions": [{"doOperations": [{"action": "moveBlock", "id": QUOTE, "parentID": child}]}]}
    )
    error = rpc_error(client.stub.Apply, request, timeout=10)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()


def _apply_failing_with(store: Any, error: errors.OplogError) -> grpc.RpcError:
    """Apply against a real server whose store raises ``error``; the client's error."""
    running = start_server(StoreWrapper(store, fail_with=error), listen="127.0.0.1:0")
    try:
        with Client(running.address) as c:
            return rpc_error(c.stub.Apply, setup_request(), timeout=10)
    finally:
        running.stop(grace=1)


@pytest.mark.parametrize("error", [errors.SyncInProgress(), errors.BootSyncInProgress()])
def test_sync_in_progress_is_aborted_with_siyuan_message(tmp_store: Any, error: errors.OplogError) -> None:
    failure = _apply_failing_with(tmp_store, error)
    assert failure.code() == grpc.StatusCode.ABORTED
    assert failure.details() == str(error)
    assert failure.details().endswith("is in progress, please try again later")


@pytest.mark.parametrize(
    "error",
    [
        errors.SyncInProgress(),
        errors.BootSyncInProgress(),
        errors.ChangeFeedRewritten("sync archived events; resubscribe from position 5", resume_from=5),
    ],
)
def test_aborted_errors_map_back_to_their_class(tmp_store: Any, error: errors.OplogError) -> None:
    """The three ABORTED errors travel over a real server and come back as their own classes."""
    failure = _apply_failing_with(tmp_store, error)
    back = error_from_rpc(failure)
    assert type(back) is type(error)
    if isinstance(error, errors.ChangeFeedRewritten):
        assert isinstance(back, errors.ChangeFeedRewritten) and back.resume_from == 5


def test_query_that_writes_is_invalid_argument(client: Client, seeded: pb.ApplyResponse) -> None:
    for sql in (
        "DELETE FROM blocks",
        "UPDATE blocks SET content = 'x'",
        "DROP TABLE blocks",
        "SELECT 1; DELETE FROM blocks",
    ):
        assert (
            code_of(client.stub.Query, pb.QueryRequest(sql=sql), timeout=10)
            == grpc.StatusCode.INVALID_ARGUMENT
        ), sql
    assert client.stub.GetState(pb.GetStateRequest(), timeout=10).block_count >= 5
    nested = pb.QueryRequest(sql="SELECT ?", args=[wire.to_value([1, 2])])
    assert code_of(client.stub.Query, nested, timeout=10) == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        code_of(client.stub.Query, pb.QueryRequest(sql="  "), timeout=10) == grpc.StatusCode.INVALID_ARGUMENT
    )


def test_long_query_is_deadline_exceeded(tmp_store: Any) -> None:
    running = start_server(tmp_store, listen="127.0.0.1:0", limits=Limits(query_time_budget_s=0.2))
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    try:
        with Client(running.address) as c:
            error = rpc_error(c.stub.Query, pb.QueryRequest(sql=endless), timeout=60)
    finally:
        running.stop(grace=1)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_oversized_request_is_resource_exhausted(client: Client, seeded: pb.ApplyResponse) -> None:
    huge = append_request(block_id(9), "x" * (300 * 1024))
    error = rpc_error(client.stub.Apply, huge, timeout=10)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in error.details()
    assert client.stub.GetState(pb.GetStateRequest(), timeout=10).position == 1


def test_read_only_store_is_permission_denied(tmp_path: Path) -> None:
    writer = open_store(tmp_path / "data")
    writer.apply(setup_request())
    writer.close()
    reader = open_store(tmp_path / "data", readonly=True)
    running = start_server(reader, listen="127.0.0.1:0")
    try:
        with Client(running.address) as c:
            assert c.stub.GetBlock(pb.GetBlockRequest(id=HELLO), timeout=10).id == HELLO
            error = rpc_error(c.stub.Apply, append_request(block_id(1), "no"), timeout=10)
    finally:
        running.stop(grace=1)
        reader.close()
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("rpc", ["PerformSync", "GetSyncInfo", "WatchSync"])
def test_sync_rpcs_without_a_remote_are_a_failed_precondition(client: Client, rpc: str) -> None:
    requests = {
        "PerformSync": pb.PerformSyncRequest(app="t"),
        "GetSyncInfo": pb.GetSyncInfoRequest(),
        "WatchSync": pb.WatchSyncRequest(),
    }
    code = code_of(getattr(client.stub, rpc), requests[rpc], timeout=10)
    assert code == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.InvalidTransaction("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.UnsupportedAction("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.InvalidSyncArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.QueryRefused("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.BlockNotFound("x"), grpc.StatusCode.NOT_FOUND),
        (errors.StructureError("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.SyncInProgress(), grpc.StatusCode.ABORTED),
        (errors.BootSyncInProgress(), grpc.StatusCode.ABORTED),
        (errors.QueryTimeout("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.SubscriberTooSlow("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.ReadOnlyStore("x"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.CorruptSegment("bad checksum", path="seg", offset=7), grpc.StatusCode.DATA_LOSS),
        (errors.DataDirLocked("x"), grpc.StatusCode.UNAVAILABLE),
        (errors.StorageError("x"), grpc.StatusCode.UNAVAILABLE),
        (errors.TransientRemoteError("x"), grpc.StatusCode.UNAVAILABLE),
        (errors.OplogError("x"), grpc.StatusCode.INTERNAL),
        (ValueError("secret detail"), grpc.StatusCode.INTERNAL),
    ],
)
def test_status_mapping(error: BaseException, code: grpc.StatusCode) -> None:
    got, message = status_for(error)
    assert got == code
    if isinstance(error, errors.OplogError):
        assert message == str(error)
    else:
        assert "secret detail" not in message


def test_every_core_error_class_has_a_deliberate_status() -> None:
    mapped = {cls for cls, _ in STATUS_TABLE}
    for name in errors.__all__:
        cls = getattr(errors, name)
        if cls is errors.OplogError:
            continue
        assert any(issubclass(cls, m) for m in mapped), f"{name} has no status code"


def test_unexpected_store_error_is_internal_without_details(tmp_store: Any) -> None:
    running = start_server(
        StoreWrapper(tmp_store, fail_with=RuntimeError("disk says no /secret")), listen="127.0.0.1:0"
    )
    try:
        with Client(running.address) as c:
            error = rpc_error(c.stub.GetState, pb.GetStateRequest(), timeout=10)
    finally:
        running.stop(grace=1)
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "/secret" not in error.details()


def test_error_from_rpc_maps_back(client: Client) -> None:
    failure = rpc_error(client.stub.GetBlock, pb.GetBlockRequest(id="20200101000000-nothere"), timeout=10)
    error = error_from_rpc(failure, server="here:1")
    assert isinstance(error, errors.BlockNotFound)
    assert str(error).startswith("server here:1: NOT_FOUND: ")


# ---- subscribers never slow writers ----


def _batch(first: int, count: int, size: int = 200) -> pb.ApplyRequest:
    body = {
        "transactions": [
            {
                "doOperations": [
                    {
                        "action": "appendBlock",
                        "parentID": DOC,
                        "id": block_id(first + k),
                        "dataType": "markdown",
                        "data": f"p{first + k} " + "x" * size,
                    }
                ]
            }
            for k in range(count)
        ]
    }
    return wire.request_from_json(body)


def test_slow_subscriber_is_ended_with_resource_exhausted_and_can_resume(tmp_path: Path) -> None:
    store = open_store(tmp_path / "data")
    running = start_server(store, listen="127.0.0.1:0", limits=Limits(subscriber_buffer=8))
    try:
        with Client(running.address) as c:
            c.stub.Apply(setup_request(), timeout=30)
            stream = c.stub.Subscribe(pb.SubscribeRequest(from_position=0), timeout=120)
            assert next(stream).position == 1
            # The subscriber stops reading; writers go on, each batch many events, none blocked by it.
            total = 1
            for first in range(0, 3000, 100):
                c.stub.Apply(_batch(first, 100, size=2000), timeout=60)
                total += 100
            seen = [1]
            with pytest.raises(grpc.RpcError) as info:
                for event in stream:
                    seen.append(event.position)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "resume" in info.value.details() and str(seen[-1]) in info.value.details()
            assert seen == list(range(1, len(seen) + 1))
            assert len(seen) < total
            # Resuming from the last position seen delivers the rest, none missed or repeated.
            resumed = c.stub.Subscribe(pb.SubscribeRequest(from_position=seen[-1]), timeout=120)
            for event in resumed:
                seen.append(event.position)
                if event.position == total:
                    break
            resumed.cancel()
            assert seen == list(range(1, total + 1))
    finally:
        running.stop(grace=1)
        store.close()


def test_too_many_subscribers_is_resource_exhausted(tmp_store: Any) -> None:
    running = start_server(tmp_store, listen="127.0.0.1:0", limits=Limits(max_subscribers=2))
    try:
        with Client(running.address) as c:
            c.stub.Apply(setup_request(), timeout=30)
            streams = [c.stub.Subscribe(pb.SubscribeRequest(), timeout=30) for _ in range(2)]
            for s in streams:
                next(s)
            error = rpc_error(lambda: next(c.stub.Subscribe(pb.SubscribeRequest(), timeout=30)))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            for s in streams:
                s.cancel()
            assert _eventually(lambda: running.service.subscriber_count == 0)
            again = c.stub.Subscribe(pb.SubscribeRequest(), timeout=30)
            assert next(again).position == 1
            again.cancel()
    finally:
        running.stop(grace=1)


def test_stop_ends_subscriptions_with_unavailable_and_a_resume_position(tmp_store: Any) -> None:
    running = start_server(tmp_store, listen="127.0.0.1:0")
    with Client(running.address) as c:
        c.stub.Apply(setup_request(), timeout=30)
        stream = c.stub.Subscribe(pb.SubscribeRequest(), timeout=30)
        next(stream)
        running.stop(grace=5)
        error = rpc_error(next, stream)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "from_position=1" in error.details()


# ---- load: concurrent Apply, then every acknowledged transaction is in the log ----


def _load(address: str, threads: int, per_thread: int) -> list[pb.LogPosition]:
    acked: list[pb.LogPosition] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            with Client(address) as c:
                for i in range(per_thread):
                    n = t * 1_000_000 + i
                    reply = c.stub.Apply(append_request(block_id(n), f"t{t} i{i}", req_id=n), timeout=60)
                    with lock:
                        acked.extend(reply.positions)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not failures, failures[0]
    return acked


def _check_after_load(data: Path, acked: list[pb.LogPosition], live_hash: str, expected_events: int) -> None:
    from oplog.tools.replay import replay_data_dir

    # A full replay of the logs, ignoring checkpoints, gives the state the server reported.
    replayed = replay_data_dir(data, full=True)
    assert replayed.position == expected_events
    assert replayed.state_hash.hexdigest() == live_hash
    store = open_store(data)
    try:
        state = store.state()
        assert state.position == expected_events
        assert state.state_hash == live_hash
        logged = {(e.event.device_id, e.event.device_seq) for e in _drain(store, expected_events)}
        assert {(p.device_id, p.device_seq) for p in acked} <= logged
        assert len(logged) == expected_events
    finally:
        store.close()


def _drain(store: Any, count: int) -> list[pb.CommittedEvent]:
    subscription = store.subscribe(0)
    out = []
    try:
        for event in subscription:
            out.append(event)
            if len(out) == count:
                break
    finally:
        subscription.close()
    return out


def _load_test(tmp_path: Path, threads: int, per_thread: int) -> None:
    data = tmp_path / "data"
    store = open_store(data)
    running = start_server(store, listen="127.0.0.1:0", workers=16)
    try:
        with Client(running.address) as c:
            c.stub.Apply(setup_request(), timeout=30)
        acked = _load(running.address, threads, per_thread)
        with Client(running.address) as c:
            live = c.stub.GetState(pb.GetStateRequest(), timeout=30)
    finally:
        running.stop(grace=5)
        store.close()
    assert len(acked) == threads * per_thread
    assert len({(p.device_id, p.device_seq) for p in acked}) == len(acked)
    assert live.position == 1 + threads * per_thread
    _check_after_load(data, acked, live.state_hash, 1 + threads * per_thread)


def test_concurrent_apply_load(tmp_path: Path) -> None:
    _load_test(tmp_path, threads=8, per_thread=200)


@pytest.mark.soak
@pytest.mark.skipif(not os.environ.get("OPLOG_SOAK"), reason="soak test: set OPLOG_SOAK=1")
def test_concurrent_apply_load_soak(tmp_path: Path) -> None:
    _load_test(tmp_path, threads=8, per_thread=2000)


def test_start_server_refuses_a_public_address_without_a_token(tmp_store: Any) -> None:
    with pytest.raises(errors.InvalidArgument, match="without authentication"):
        start_server(tmp_store, listen="0.0.0.0:0")
    running = start_server(tmp_store, listen="0.0.0.0:0", auth=AuthConfig.single_token("t0k3n"))
    running.stop(grace=0)


def test_listening_twice_on_one_port_fails_clearly(grpc_server: RunningServer, tmp_path: Path) -> None:
    other = open_store(tmp_path / "other")
    try:
        with pytest.raises(errors.InvalidArgument, match="cannot listen"):
            start_server(other, listen=grpc_server.address)
    finally:
        other.close()


# ---- the remote half of ``oplog apply --server`` ----


def test_remote_apply_sends_the_json_body_and_maps_errors(tmp_path: Path) -> None:
    from oplog.tools.remote_apply import apply_json_remote

    store = open_store(tmp_path / "data")
    running = start_server(store, listen="127.0.0.1:0", auth=AuthConfig.single_token("rt"))
    body = request_body("00")
    try:
        reply = apply_json_remote(body, server=running.address, token="rt")
        assert reply["positions"] == [
            {"deviceId": store.device_id, "deviceSeq": 1, "hlc": reply["positions"][0]["hlc"]}
        ]
        assert reply["transactions"][0]["doOperations"][0]["action"] == "createDoc"
        assert reply["serverMs"] is not None and reply["serverMs"] >= 0
        with pytest.raises(errors.InvalidArgument, match=r"^server .*: INVALID_ARGUMENT: transactions\[0\]"):
            apply_json_remote(
                {"transactions": [{"doOperations": [{"action": "nope", "id": block_id(5)}]}]},
                server=running.address,
                token="rt",
            )
        with pytest.raises(errors.OplogError, match="UNAUTHENTICATED"):
            apply_json_remote(body, server=running.address, token="wrong")
    finally:
        running.stop(grace=1)
        store.close()
