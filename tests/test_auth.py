"""Auth: tokens, roles and the read-only switch, for every rpc, against a real server."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from oplog.clock import FakeClock
from oplog.errors import InvalidArgument
from oplog.remote import LocalDirRemote
from oplog.server.app import RunningServer, start_server
from oplog.server.auth import (
    METHOD_RULES,
    AuthConfig,
    AuthInterceptor,
    check_listen_address,
    is_loopback_address,
    load_auth_file,
    token_from_metadata,
)
from oplog.server.client import Client
from oplog.syncrunner import SyncRunner
from oplog.v1 import oplog_pb2 as pb
from tests.server_helpers import DOC, append_request, block_id, open_store, setup_request

TOKENS = {"reader": "r-token-1", "editor": "e-token-2", "admin": "a-token-3"}
AUTH_TOML = "\n".join(
    f'[[token]]\nname = "{role} user"\ntoken = "{token}"\nrole = "{role}"\n' for role, token in TOKENS.items()
)

#: rpc -> (lowest role, writes)
RPCS: dict[str, tuple[str, bool]] = {
    "Apply": ("editor", True),
    "PerformSync": ("admin", True),
    "GetSyncInfo": ("admin", False),
    "WatchSync": ("admin", False),
    "Subscribe": ("reader", False),
    "GetBlock": ("reader", False),
    "GetDocument": ("reader", False),
    "Query": ("reader", False),
    "GetState": ("reader", False),
}
RANK = {"reader": 0, "editor": 1, "admin": 2}
_counter = iter(range(1, 10**6))


def _request(rpc: str) -> Any:
    return {
        "Apply": lambda: append_request(block_id(next(_counter), "20240723100000"), "auth"),
        "PerformSync": lambda: pb.PerformSyncRequest(app="test"),
        "GetSyncInfo": pb.GetSyncInfoRequest,
        "WatchSync": pb.WatchSyncRequest,
        "Subscribe": lambda: pb.SubscribeRequest(from_position=0),
        "GetBlock": lambda: pb.GetBlockRequest(id=DOC),
        "GetDocument": lambda: pb.GetDocumentRequest(id=DOC),
        "Query": lambda: pb.QueryRequest(sql="SELECT count(*) FROM blocks"),
        "GetState": pb.GetStateRequest,
    }[rpc]()


def _call(
    address: str, token: str | None, rpc: str, *, raw_metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.StatusCode:
    with Client(address, token) as c:
        method = getattr(c.stub, rpc)
        try:
            result = method(_request(rpc), timeout=10, metadata=raw_metadata or None)
            if rpc in ("Subscribe", "WatchSync"):
                next(result)
                result.cancel()
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def _passed_auth(code: grpc.StatusCode) -> bool:
    return code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


@pytest.fixture(scope="module")
def auth_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TOML auth file with one token per role."""
    path = tmp_path_factory.mktemp("auth") / "auth.toml"
    path.write_text(AUTH_TOML, encoding="utf-8")
    return path


def _serve(tmp: Path, auth: AuthConfig, *, readonly: bool) -> Iterator[RunningServer]:
    store = open_store(tmp / "data")
    store.apply(setup_request())
    runner = SyncRunner(store, lambda: LocalDirRemote(tmp / "remote"), FakeClock())
    running = start_server(store, listen="127.0.0.1:0", auth=auth, readonly=readonly, sync=runner)
    try:
        yield running
    finally:
        running.stop(grace=1)
        runner.close()
        store.close()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory, auth_file: Path) -> Iterator[RunningServer]:
    """A read-write server that requires tokens."""
    yield from _serve(tmp_path_factory.mktemp("rw"), load_auth_file(auth_file), readonly=False)


@pytest.fixture(scope="module")
def readonly_server(tmp_path_factory: pytest.TempPathFactory, auth_file: Path) -> Iterator[RunningServer]:
    """A read-only server that requires tokens."""
    yield from _serve(tmp_path_factory.mktemp("ro"), load_auth_file(auth_file), readonly=True)


@pytest.mark.parametrize("rpc", sorted(RPCS))
@pytest.mark.parametrize("who", ["none", "wrong", "reader", "editor", "admin"])
def test_auth_matrix(auth_server: RunningServer, rpc: str, who: str) -> None:
    token = {"none": None, "wrong": "not-a-token"}.get(who, TOKENS.get(who))
    code = _call(auth_server.address, token, rpc)
    if who in ("none", "wrong"):
        assert code == grpc.StatusCode.UNAUTHENTICATED
    elif RANK[who] < RANK[RPCS[rpc][0]]:
        assert code == grpc.StatusCode.PERMISSION_DENIED
    else:
        assert _passed_auth(code), code
        if rpc == "PerformSync":
            # Another matrix row may have started a sync that is still running.
            assert code in (grpc.StatusCode.OK, grpc.StatusCode.ABORTED), code
        else:
            assert code == grpc.StatusCode.OK


@pytest.mark.parametrize("rpc", sorted(RPCS))
@pytest.mark.parametrize("who", ["none", "reader", "editor", "admin"])
def test_read_only_matrix(readonly_server: RunningServer, rpc: str, who: str) -> None:
    code = _call(readonly_server.address, TOKENS.get(who), rpc)
    role, writes = RPCS[rpc]
    if who == "none":
        assert code == grpc.StatusCode.UNAUTHENTICATED
    elif RANK[who] < RANK[role] or writes:
        assert code == grpc.StatusCode.PERMISSION_DENIED
    else:
        assert _passed_auth(code)


def test_permission_denied_names_the_role(auth_server: RunningServer, readonly_server: RunningServer) -> None:
    with Client(auth_server.address, TOKENS["reader"]) as c:
        with pytest.raises(grpc.RpcError) as info:
            c.stub.Apply(_request("Apply"), timeout=10)
    assert "editor" in info.value.details() and "reader" in info.value.details()
    with Client(readonly_server.address, TOKENS["admin"]) as c:
        with pytest.raises(grpc.RpcError) as info:
            c.stub.Apply(_request("Apply"), timeout=10)
    assert "read-only" in info.value.details()


def test_health_and_reflection_need_no_token(auth_server: RunningServer) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with Client(auth_server.address) as c:
        assert c.serving()
        stub = reflection_pb2_grpc.ServerReflectionStub(c.channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        names = {s.name for s in next(replies).list_services_response.service}
    assert "oplog.v1.OpLog" in names
    with Client(auth_server.address) as c:
        reply = c.health.Check(health_pb2.HealthCheckRequest(service="oplog.v1.OpLog"), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("header", ["Token {t}", "token {t}", "Bearer {t}", "  Token   {t}  "])
def test_authorization_header_spellings(auth_server: RunningServer, header: str) -> None:
    metadata = (("authorization", header.format(t=TOKENS["reader"])),)
    assert _call(auth_server.address, None, "GetState", raw_metadata=metadata) == grpc.StatusCode.OK


@pytest.mark.parametrize("header", ["{t}", "Basic {t}", "Token", "Token wrong{t}"])
def test_malformed_authorization_is_unauthenticated(auth_server: RunningServer, header: str) -> None:
    metadata = (("authorization", header.format(t=TOKENS["admin"])),)
    assert (
        _call(auth_server.address, None, "GetState", raw_metadata=metadata) == grpc.StatusCode.UNAUTHENTICATED
    )


def test_single_token_is_admin(tmp_path: Path) -> None:
    for item in _serve(tmp_path, AuthConfig.single_token("only-one"), readonly=False):
        assert _call(item.address, "only-one", "Apply") == grpc.StatusCode.OK
        assert _call(item.address, "only-one", "GetSyncInfo") == grpc.StatusCode.OK
        assert _call(item.address, "other", "GetState") == grpc.StatusCode.UNAUTHENTICATED


def test_without_tokens_every_caller_is_admin_on_loopback(tmp_path: Path) -> None:
    for item in _serve(tmp_path, AuthConfig.none(), readonly=False):
        assert _call(item.address, None, "Apply") == grpc.StatusCode.OK
        assert _call(item.address, "anything", "GetState") == grpc.StatusCode.OK


# ---- the auth file ----


def test_auth_file_toml_json_and_digests(tmp_path: Path) -> None:
    toml = tmp_path / "a.toml"
    toml.write_text(
        AUTH_TOML
        + f'[[token]]\nsha256 = "{hashlib.sha256(b"hashed-secret").hexdigest()}"\nrole = "editor"\n',
        encoding="utf-8",
    )
    config = load_auth_file(toml)
    assert config.role_of(TOKENS["reader"]) == "reader"
    assert config.role_of("hashed-secret") == "editor"
    assert config.role_of("nope") is None
    assert config.name_of(TOKENS["admin"]) == "admin user"
    as_json = tmp_path / "a.json"
    as_json.write_text(json.dumps({"token": [{"token": "j", "role": "admin"}]}), encoding="utf-8")
    assert load_auth_file(as_json).role_of("j") == "admin"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "non-empty list"),
        ('[[token]]\ntoken = "x"\nrole = "root"\n', "role must be one of"),
        ('[[token]]\nrole = "admin"\n', "exactly one of"),
        ('[[token]]\ntoken = "x"\nsha256 = "00"\nrole = "admin"\n', "exactly one of"),
        ('[[token]]\nsha256 = "XYZ"\nrole = "admin"\n', "64 lower-case hex"),
        ('[[token]]\ntoken = "a b"\nrole = "admin"\n', "no spaces"),
        ('[[token]]\ntoken = "x"\nrole = "admin"\n[[token]]\ntoken = "x"\nrole = "reader"\n', "twice"),
        ("[[token]\n", "not valid TOML"),
    ],
)
def test_bad_auth_files_are_refused_with_one_clear_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "auth.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(InvalidArgument, match=message) as info:
        load_auth_file(path)
    assert "\n" not in str(info.value)
    with pytest.raises(InvalidArgument, match="auth file"):
        load_auth_file(tmp_path / "missing.toml")


# ---- pieces ----


def test_token_from_metadata() -> None:
    assert token_from_metadata([("authorization", "Token abc")]) == "abc"
    assert token_from_metadata([("Authorization", b"Bearer abc")]) == "abc"
    assert token_from_metadata([("x", "Token abc")]) is None
    assert token_from_metadata(None) is None


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:6807", True),
        ("127.1.2.3:0", True),
        ("localhost:6807", True),
        ("[::1]:6807", True),
        ("unix:/tmp/oplog.sock", True),
        ("0.0.0.0:6807", False),
        ("[::]:6807", False),
        (":6807", False),
        ("192.168.1.10:6807", False),
        ("example.com:6807", False),
    ],
)
def test_loopback_detection(listen: str, loopback: bool) -> None:
    assert is_loopback_address(listen) is loopback
    if loopback:
        check_listen_address(listen, AuthConfig.none())
    else:
        with pytest.raises(InvalidArgument, match="without authentication"):
            check_listen_address(listen, AuthConfig.none())
    check_listen_address(listen, AuthConfig.single_token("t"))


def test_role_table_covers_every_rpc() -> None:
    service = pb.DESCRIPTOR.services_by_name["OpLog"]
    assert {f"/oplog.v1.OpLog/{m.name}" for m in service.methods} == set(METHOD_RULES)
    for rpc, (role, writes) in RPCS.items():
        rule = METHOD_RULES[f"/oplog.v1.OpLog/{rpc}"]
        assert (rule.role, rule.writes) == (role, writes)


def test_interceptor_decisions_without_a_server() -> None:
    interceptor = AuthInterceptor(load_auth_file_from_text(AUTH_TOML), readonly=True)
    meta = [("authorization", f"Token {TOKENS['admin']}")]
    assert interceptor.decide("/grpc.health.v1.Health/Check", None) is None
    assert interceptor.decide("/oplog.v1.OpLog/GetState", meta) is None
    verdict = interceptor.decide("/oplog.v1.OpLog/Apply", meta)
    assert verdict is not None and verdict[0] == grpc.StatusCode.PERMISSION_DENIED
    verdict = interceptor.decide("/oplog.v1.OpLog/GetState", None)
    assert verdict is not None and verdict[0] == grpc.StatusCode.UNAUTHENTICATED


def load_auth_file_from_text(text: str) -> AuthConfig:
    """Parse auth-file TOML given as text."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "auth.toml"
        path.write_text(text, encoding="utf-8")
        return load_auth_file(path)
