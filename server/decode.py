"""The OpLog method handlers, with request decoding that fails as ``INVALID_ARGUMENT``.

grpcio decodes a request before any handler or interceptor code sees it; if
the deserializer raises, grpcio ends the call itself with ``INTERNAL:
Exception deserializing request!`` — a server fault, for what is the caller's
malformed input. So the deserializers here never raise: a body that does not
parse (bad wire format, a string field that is not UTF-8) becomes an
:class:`Undecodable` value, and the handler wrapper ends the call with
``INVALID_ARGUMENT`` naming the expected message type. The table is built
from the service descriptor, so it has exactly the generated code's methods
and message types.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

from oplog.server.status import abort
from oplog.v1 import oplog_pb2 as pb

__all__ = ["SERVICE", "Undecodable", "method_handlers", "add_service"]

#: The OpLog service's full name.
SERVICE: str = pb.DESCRIPTOR.services_by_name["OpLog"].full_name


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A request body that did not parse as ``type_name``."""

    type_name: str
    reason: str


def _decoder(message_type: Any) -> Callable[[bytes], Any]:
    name = message_type.DESCRIPTOR.full_name

    def decode(body: bytes) -> Any:
        try:
            return message_type.FromString(body)
        except Exception as exc:  # DecodeError, or any other parse failure: the caller's input
            return Undecodable(name, str(exc) or type(exc).__name__)

    return decode


def _refuse(context: grpc.ServicerContext, request: Undecodable) -> None:
    abort(
        context,
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request body is not a valid {request.type_name}: {request.reason}",
    )


def _unary(behaviour: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            _refuse(context, request)
        return behaviour(request, context)

    return handle


def _streaming(behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]]) -> Callable[..., Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        if isinstance(request, Undecodable):
            _refuse(context, request)
        yield from behaviour(request, context)

    return handle


def _handler(method: MethodDescriptor, servicer: Any) -> grpc.RpcMethodHandler:
    request_type = message_factory.GetMessageClass(method.input_type)
    reply_type = message_factory.GetMessageClass(method.output_type)
    behaviour = getattr(servicer, method.name)
    decode = _decoder(request_type)
    if method.client_streaming:
        raise TypeError(f"{method.full_name}: client streaming is not served")  # none in oplog.v1
    if method.server_streaming:
        return grpc.unary_stream_rpc_method_handler(
            _streaming(behaviour),
            request_deserializer=decode,
            response_serializer=reply_type.SerializeToString,
        )
    return grpc.unary_unary_rpc_method_handler(
        _unary(behaviour), request_deserializer=decode, response_serializer=reply_type.SerializeToString
    )


def method_handlers(servicer: Any) -> dict[str, grpc.RpcMethodHandler]:
    """Handlers for every OpLog method of ``servicer``, keyed by method name."""
    service = pb.DESCRIPTOR.services_by_name["OpLog"]
    return {method.name: _handler(method, servicer) for method in service.methods}


def add_service(servicer: Any, server: grpc.Server) -> None:
    """Register ``servicer`` on ``server`` (in place of the generated ``add_OpLogServicer_to_server``)."""
    handlers = method_handlers(servicer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
