"""Real remote servers on loopback for the remote tests: moto's S3 server, wsgidav, a cutting proxy.

Each server runs in this process on 127.0.0.1 and a free port, speaking its
real protocol over real sockets; nothing reaches the network.

Both servers check a write's condition (``If-None-Match``, ``If-Match``,
``Overwrite: F``) and then perform the write as two steps, and they serve
requests on several threads at once, so two racing conditional writes could
both pass the check. A real S3 store decides such a race atomically; so do
WebDAV servers that lock (Nextcloud). ``Serialised`` gives the test servers
that property by running one request at a time (the response is read out
under the lock): what the race tests then show is that *the client* leaves the
decision to the server — a client that checked and then wrote in two requests
would still let both writers win.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

BUCKET = "oplog-test"
WEBDAV_USER = "alice"
WEBDAV_PASSWORD = "s3cr3t-webdav-pass"
#: fake credentials for the S3 server (moto accepts any); the secret key must never show up in output
S3_KEY_ID = "AKIAOPLOGTEST"
S3_SECRET = "s3cr3t-aws-secret-key-0123456789"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Serialised:
    """A WSGI wrapper that runs one request at a time (see the module docstring)."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.lock = threading.Lock()
        #: every request served, as ``"METHOD /path?query"`` (the request-economy tests read it)
        self.requests: list[str] = []
        #: answer every request with ``Connection: close``, so each request comes on a connection
        #: of its own and a ``FaultProxy`` (which faults per connection) can hit any of them
        self.close_connections = False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self.lock:
            query = environ.get("QUERY_STRING", "")
            self.requests.append(f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')}?{query}")
            if self.close_connections:
                inner = start_response

                def start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                    kept = [(k, v) for k, v in headers if k.lower() != "connection"]
                    return inner(status, [*kept, ("Connection", "close")], *exc)

            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


def point_aws_chain_at_test_credentials(mp: pytest.MonkeyPatch, home: Path) -> None:
    """The AWS chain (env, config files) set to fake credentials only, and never an instance-metadata service."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        mp.delenv(name, raising=False)
    mp.setenv("AWS_CONFIG_FILE", str(home / "config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    mp.setenv("AWS_ACCESS_KEY_ID", S3_KEY_ID)
    mp.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # Loopback only: the credential chain must not reach for a metadata service.
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _reset(client: socket.socket) -> None:
    """Close ``client`` with a TCP reset (SO_LINGER 0), as a refusing or dropping server does."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()


def _close_both(*sockets: socket.socket) -> None:
    """Shut down and close both ends of a proxied connection, whatever state each is in."""
    for s in sockets:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def free_port() -> int:
    """A port free on 127.0.0.1 right now (for a server that needs one before it binds)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def s3_server() -> Iterator[tuple[str, Serialised]]:
    """moto's S3 server on a free loopback port, with the test bucket; yields its endpoint URL and app."""
    import boto3
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = Serialised(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="moto-s3", daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        yield endpoint, app
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def webdav_server(root: Path) -> Iterator[tuple[str, Serialised]]:
    """wsgidav + cheroot serving ``root`` under ``/dav`` with one user; yields ``http://127.0.0.1:PORT``, app."""
    from cheroot import wsgi
    from wsgidav.fs_dav_provider import FilesystemProvider
    from wsgidav.wsgidav_app import WsgiDAVApp

    root.mkdir(parents=True, exist_ok=True)
    config = {
        "provider_mapping": {"/dav": FilesystemProvider(str(root))},
        "simple_dc": {"user_mapping": {"*": {WEBDAV_USER: {"password": WEBDAV_PASSWORD}}}},
        "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
        "verbose": 0,
        "logging": {"enable": False, "enable_loggers": []},
        "dir_browser": {"enable": False},
        "lock_storage": True,
    }
    app = Serialised(WsgiDAVApp(config))
    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=8)
    server.prepare()
    thread = threading.Thread(target=server.serve, name="wsgidav", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.bind_addr[1]}", app
    finally:
        server.stop()
        thread.join(timeout=10)


class CuttingProxy:
    """A TCP proxy on loopback that can cut connections: after N request bytes, or at once.

    ``forwarded`` counts the client→server bytes sent on; ``cut_after`` (None: never)
    closes both sides once a connection has forwarded that many; ``refuse`` closes each
    new connection at once (a server that resets); ``answer`` (an HTTP status) answers
    each new connection's first request with that status itself (an overloaded server);
    ``cut_reply_after`` closes a connection once that many reply bytes went back (a download
    cut short); ``stall`` accepts connections and never answers (a hung server);
    ``throttle`` (seconds per 4 KiB sent upward) slows uploads so a test can stop a writer mid-way.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cut_after: int | None = None
        self.refuse = False
        self.answer: int | None = None
        self.cut_reply_after: int | None = None
        self.stall = False
        self.throttle: float | None = None
        self._stalled: list[socket.socket] = []
        self.answered = 0
        self.forwarded = 0
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._take(client)

    def _take(self, client: socket.socket) -> None:
        """A new connection: refuse, stall, answer in the server's place, or forward (cut where told)."""
        if self.refuse:
            _reset(client)
            return
        if self.stall:
            self._stalled.append(client)
            return
        if self.answer is not None:
            threading.Thread(target=self._answer, args=(client, self.answer), daemon=True).start()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        sent, returned = [0], [0]
        threading.Thread(target=self._pump, args=(client, upstream, sent, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, client, returned, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, sent: list[int], upward: bool) -> None:
        try:
            while True:
                slow = upward and self.throttle is not None
                data = src.recv(4096 if slow else 65536)
                if slow and self.throttle is not None:
                    time.sleep(self.throttle)
                if not data:
                    break
                limit = self.cut_after if upward else self.cut_reply_after
                if limit is not None and sent[0] + len(data) > limit:
                    dst.sendall(data[: max(0, limit - sent[0])])
                    if upward:
                        self.forwarded += max(0, limit - sent[0])
                    sent[0] = limit
                    break
                dst.sendall(data)
                sent[0] += len(data)
                if upward:
                    self.forwarded += len(data)
        except OSError:
            pass
        finally:
            _close_both(src, dst)

    def _answer(self, client: socket.socket, status: int) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            self.answered += 1
            client.sendall(
                f"HTTP/1.1 {status} Injected\r\nContent-Length: 0\r\nRetry-After: 1\r\n"
                "Connection: close\r\n\r\n".encode()
            )

    def close(self) -> None:
        """Stop accepting (open connections end with their peers)."""
        self._stop.set()
        self._listener.close()
        for s in self._stalled:
            s.close()


#: the faults a ``FaultProxy`` can put on a connection
FAULT_KINDS = ("drop", "delay", "500", "503", "429", "truncate")


class FaultProxy(CuttingProxy):
    """A ``CuttingProxy`` that puts a seeded fault on some connections: drops, delays, 5xx/429, cut replies.

    ``choose()`` is asked once per new connection and returns a kind from
    ``FAULT_KINDS`` or None (passed through untouched). ``drop`` resets the
    connection at once; ``delay`` waits ``delay_s`` before forwarding; ``500``,
    ``503``, ``429`` answer the request in the proxy's place; ``truncate`` passes
    the request on and cuts the reply ``truncate_at`` bytes into its body (the
    status line and headers arrive, the body only in part).
    With ``Serialised.close_connections`` every request is its own connection.
    ``counts`` tells how many of each kind were injected.
    """

    def __init__(self, target_port: int, choose: Callable[[], str | None]) -> None:
        self.choose = choose
        self.delay_s = 0.05
        #: body bytes a truncated reply keeps
        self.truncate_at = 10
        self.counts: dict[str, int] = {}
        self._count_lock = threading.Lock()
        super().__init__(target_port)

    def _take(self, client: socket.socket) -> None:
        kind = self.choose()
        if kind is not None:
            with self._count_lock:
                self.counts[kind] = self.counts.get(kind, 0) + 1
        threading.Thread(target=self._serve, args=(client, kind), daemon=True).start()

    def _serve(self, client: socket.socket, kind: str | None) -> None:
        if kind == "drop":
            _reset(client)
            return
        if kind in ("500", "503", "429"):
            self._answer(client, int(kind))
            return
        if kind == "delay":
            time.sleep(self.delay_s)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        returned = [0]
        limit = self.truncate_at if kind == "truncate" else None
        threading.Thread(target=self._pump, args=(client, upstream, [0], True), daemon=True).start()
        threading.Thread(
            target=self._pump_reply, args=(upstream, client, returned, limit), daemon=True
        ).start()

    def _pump_reply(self, src: socket.socket, dst: socket.socket, sent: list[int], limit: int | None) -> None:
        """Pass the reply on; with ``limit``, only that many body bytes after the headers, then close."""
        head = b""
        budget: int | None = None  # body bytes still allowed through, once the headers are seen
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if limit is None:
                    dst.sendall(data)
                    continue
                if budget is None:
                    head += data
                    end = head.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    data, budget = head[end + 4 :], limit
                    dst.sendall(head[: end + 4])
                if len(data) > budget:
                    dst.sendall(data[:budget])
                    break
                dst.sendall(data)
                budget -= len(data)
        except OSError:
            pass
        finally:
            _close_both(src, dst)
