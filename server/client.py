"""A small client for the oplog server: a channel that sends the token, and the stubs on it."""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oplog.v1 import oplog_pb2_grpc as pb_grpc

__all__ = ["DEFAULT_SERVER", "auth_metadata", "open_channel", "Client", "connect", "token_from_env"]

DEFAULT_SERVER = "127.0.0.1:6807"

#: Replies (a large document, a query) may be bigger than gRPC's 4 MiB default.
_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", -1),
)


def token_from_env() -> str | None:
    """The token in ``$OPLOG_TOKEN``, if set and non-empty."""
    return os.environ.get("OPLOG_TOKEN") or None


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries ``token`` (empty without one)."""
    return (("authorization", f"Token {token}"),) if token else ()


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


class _TokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the authorization metadata to every call."""

    def __init__(self, token: str) -> None:
        self._metadata = auth_metadata(token)

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [(k, v) for k, v in (details.metadata or ()) if k.lower() != "authorization"]
        return _CallDetails(
            details.method,
            details.timeout,
            [*metadata, *self._metadata],
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        """Send a unary call with the token."""
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        """Send a server-streaming call with the token."""
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        """Send a client-streaming call with the token."""
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        """Send a bidirectional call with the token."""
        return continuation(self._details(details), request_iterator)


def open_channel(
    address: str, token: str | None = None, *, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """An insecure channel to ``address`` whose calls carry ``token``."""
    channel = grpc.insecure_channel(address, options=[*_CHANNEL_OPTIONS, *options])
    if token:
        return grpc.intercept_channel(channel, _TokenInterceptor(token))
    return channel


class Client:
    """A channel to one oplog server with its ``OpLog`` and health stubs; use as a context manager."""

    def __init__(
        self, address: str, token: str | None = None, *, options: Sequence[tuple[str, Any]] = ()
    ) -> None:
        self.address = address
        self.channel = open_channel(address, token, options=options)
        self.stub = pb_grpc.OpLogStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the channel is connected (raises ``grpc.FutureTimeoutError``)."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def serving(self, service: str = "", timeout: float = 5.0) -> bool:
        """Whether the health service reports ``service`` (all services by default) as SERVING."""
        reply = self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(address: str = DEFAULT_SERVER, token: str | None = None) -> Client:
    """A client for the server at ``address`` sending ``token`` (default ``$OPLOG_TOKEN``)."""
    return Client(address, token if token is not None else token_from_env())
