"""Server reflection: a client without the generated stubs lists the service and calls GetState."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from oplog.server.app import RunningServer, start_server
from oplog.server.auth import AuthConfig
from tests.server_helpers import open_store, setup_request


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningServer, Any]]:
    """A token-protected server over a store holding 00-setup.json."""
    store = open_store(tmp_path / "data")
    store.apply(setup_request())
    running = start_server(store, listen="127.0.0.1:0", auth=AuthConfig.single_token("refl"))
    try:
        yield running, store
    finally:
        running.stop(grace=1)
        store.close()


def test_reflection_lists_services_and_calls_get_state(served: tuple[RunningServer, Any]) -> None:
    running, store = served
    with grpc.insecure_channel(running.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {
            "oplog.v1.OpLog",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        } <= services

        # A fresh pool: nothing from the generated oplog_pb2 module is used below.
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName("oplog.v1.OpLog")
        assert {m.name for m in service.methods} >= {"Apply", "Subscribe", "GetState", "Query"}
        method = service.FindMethodByName("GetState")
        request_cls = message_factory.GetMessageClass(method.input_type)
        reply_cls = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary(
            f"/{service.full_name}/{method.name}",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=reply_cls.FromString,
        )
        reply = call(request_cls(), metadata=(("authorization", "Token refl"),), timeout=10)

    expected = store.state()
    assert reply.DESCRIPTOR.full_name == "oplog.v1.GetStateResponse"
    assert reply.state_hash == expected.state_hash
    assert reply.block_count == expected.block_count
    assert dict(reply.device_heads) == dict(expected.device_heads)


def test_reflection_describes_messages_by_symbol(served: tuple[RunningServer, Any]) -> None:
    running, _ = served
    with grpc.insecure_channel(running.address) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        operation = pool.FindMessageTypeByName("oplog.v1.Operation")
        assert {"parent_id", "previous_id", "next_id", "data_type"} <= {f.name for f in operation.fields}
        assert operation.fields_by_name["data"].message_type.full_name == "google.protobuf.Value"
