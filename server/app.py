"""Build, start and stop the gRPC server: the oplog service, health, reflection, auth and limits.

The server is grpcio's thread-pool server. The store is synchronous and
thread-safe, and its group commit lets Apply calls running on different
worker threads share one fsync; a blocking call holds a worker thread while
it waits on the disk, with the GIL released.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from oplog.errors import InvalidArgument
from oplog.server.auth import AuthConfig, AuthInterceptor, check_listen_address
from oplog.server.decode import add_service
from oplog.server.service import Limits, OpLogService, StoreLike
from oplog.syncrunner import SyncRunner
from oplog.v1 import oplog_pb2 as pb

__all__ = ["SERVICE_NAME", "DEFAULT_LISTEN", "DEFAULT_WORKERS", "RunningServer", "start_server", "tune_gc"]

log = logging.getLogger("oplog.server")

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["OpLog"].full_name
DEFAULT_LISTEN = "127.0.0.1:6807"
#: Worker threads. Each in-flight call holds one (a subscription for its whole life).
DEFAULT_WORKERS = 32
#: Calls admitted at once (running or waiting for a worker); more are refused with RESOURCE_EXHAUSTED.
DEFAULT_MAX_CONCURRENT_RPCS = 1024


@dataclass
class RunningServer:
    """A started server: where it listens, and how to stop it."""

    server: grpc.Server
    service: OpLogService
    health: health.HealthServicer
    address: str
    port: int
    _stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self, grace: float | None = 10.0) -> None:
        """Report NOT_SERVING, refuse new calls, give in-flight calls ``grace`` seconds, then cancel the rest."""
        if self._stopped.is_set():
            return
        self.health.enter_graceful_shutdown()
        # Subscriptions never end on their own: close them so they do not hold the grace period.
        self.service.begin_shutdown()
        self.server.stop(grace).wait()
        self.service.close()
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server has stopped (or ``timeout`` passes); True once stopped."""
        return self._stopped.wait(timeout)


def tune_gc() -> None:
    """Make the collector's full passes rare and cheap in a long-running server process.

    The block tree is a large, long-lived object graph. With CPython's default
    thresholds a full collection walks all of it every few hundred requests,
    which shows up as the p99 latency. Freezing what exists after the store is
    open moves it out of the collector's view; raising the first threshold
    makes young collections rarer. Reference counting still frees almost
    everything; only cycles wait longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _server_options(limits: Limits) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", limits.max_request_bytes),
        ("grpc.max_send_message_length", -1),
        # Without this, a second server on the same port would bind silently (Linux SO_REUSEPORT).
        ("grpc.so_reuseport", 0),
        # Find dead subscribers (a vanished laptop) so their worker thread is freed.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def start_server(
    store: StoreLike,
    *,
    listen: str = DEFAULT_LISTEN,
    auth: AuthConfig | None = None,
    readonly: bool = False,
    limits: Limits | None = None,
    workers: int = DEFAULT_WORKERS,
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS,
    extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
    sync: SyncRunner | None = None,
) -> RunningServer:
    """Serve ``store`` on ``listen`` (port 0 picks a free port) and report SERVING; raises ``InvalidArgument``."""
    auth = auth or AuthConfig.none()
    limits = limits or Limits()
    check_listen_address(listen, auth)
    if workers < 2:
        raise InvalidArgument("workers must be at least 2")
    if limits.max_queries < 1:
        raise InvalidArgument("max_queries must be at least 1")
    if limits.max_subscribers >= workers:
        # Subscriptions hold their worker; leave some for unary calls.
        limits = dataclasses.replace(limits, max_subscribers=max(1, workers // 2))
    service = OpLogService(store, limits, sync)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="oplog-grpc"),
        interceptors=[AuthInterceptor(auth, readonly=readonly)],
        options=_server_options(limits),
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    # Not the generated add_OpLogServicer_to_server: its decoders make a malformed body INTERNAL.
    add_service(service, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if extra_handlers:
        server.add_generic_rpc_handlers(tuple(extra_handlers))
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as exc:
        raise InvalidArgument(f"cannot listen on {listen}: {exc}") from exc
    if port == 0:
        raise InvalidArgument(f"cannot listen on {listen}: the address is in use or not valid here")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    watch_health = getattr(store, "watch_health", None)
    if watch_health is not None:
        # The store cannot write its log (a full disk, a failed fsync): NOT_SERVING until it recovers.
        def on_health(problem: str | None) -> None:
            status = (
                health_pb2.HealthCheckResponse.NOT_SERVING
                if problem
                else health_pb2.HealthCheckResponse.SERVING
            )
            for name in ("", SERVICE_NAME):
                health_servicer.set(name, status)

        try:
            watch_health(on_health)
        except Exception as exc:
            # Health is an extra signal: a store that cannot report it (a failing test double) is still served.
            log.warning("store health not watched: %s", exc)
    address = _with_port(listen, port)
    log.info("listening on %s", address)
    return RunningServer(server, service, health_servicer, address, port)


def _with_port(listen: str, port: int) -> str:
    if listen.startswith("unix"):
        return listen
    host = listen.rsplit(":", 1)[0] if ":" in listen else listen
    return f"{host}:{port}"
