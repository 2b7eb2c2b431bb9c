"""Who may call what: tokens, roles, the read-only switch, and the interceptor that enforces them.

A caller sends metadata ``authorization: Token <token>``. Tokens map to one of
three roles, ordered ``reader`` < ``editor`` < ``admin``. They come from an
auth file (TOML or JSON, see ``docs/server.md``) or from one ``--token``, which
is an admin token. With no token configured there is no authentication: every
caller is an admin, and the server refuses to listen on anything but loopback
(:func:`check_listen_address`).

The interceptor answers before the handler runs: a missing or unknown token is
``UNAUTHENTICATED``; a role below the method's, or a write while the server is
read-only, is ``PERMISSION_DENIED``. Health checks and reflection need no token.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from oplog.errors import InvalidArgument

__all__ = [
    "ROLES",
    "MethodRule",
    "METHOD_RULES",
    "AuthConfig",
    "load_auth_file",
    "AuthInterceptor",
    "check_listen_address",
    "is_loopback_address",
    "token_from_metadata",
]

#: Roles from least to most trusted.
ROLES: tuple[str, ...] = ("reader", "editor", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}

_SERVICE = "/oplog.v1.OpLog/"

#: Methods any caller may use without a token.
_OPEN_PREFIXES: tuple[str, ...] = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


@dataclass(frozen=True, slots=True)
class MethodRule:
    """The lowest role a method needs, and whether it writes (refused when read-only)."""

    role: str
    writes: bool = False


#: The role table of SPEC §4. Methods not listed need a valid token of any role.
METHOD_RULES: dict[str, MethodRule] = {
    _SERVICE + "Apply": MethodRule("editor", writes=True),
    _SERVICE + "PerformSync": MethodRule("admin", writes=True),
    _SERVICE + "GetSyncInfo": MethodRule("admin"),
    _SERVICE + "WatchSync": MethodRule("admin"),
    _SERVICE + "Subscribe": MethodRule("reader"),
    _SERVICE + "GetBlock": MethodRule("reader"),
    _SERVICE + "GetDocument": MethodRule("reader"),
    _SERVICE + "Query": MethodRule("reader"),
    _SERVICE + "GetState": MethodRule("reader"),
}
_DEFAULT_RULE = MethodRule("reader")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuthConfig:
    """Token digests → roles; empty means no authentication (loopback only)."""

    roles_by_digest: Mapping[str, str] = field(default_factory=dict)
    names_by_digest: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def none(cls) -> AuthConfig:
        """No tokens: every caller is an admin; only loopback listening is allowed."""
        return cls()

    @classmethod
    def single_token(cls, token: str) -> AuthConfig:
        """One admin token (``--token``)."""
        _check_token(token, "--token")
        return cls({_digest(token): "admin"}, {_digest(token): "admin"})

    @property
    def enabled(self) -> bool:
        """Whether callers must present a token."""
        return bool(self.roles_by_digest)

    def role_of(self, token: str) -> str | None:
        """The role of ``token``, or None when it is unknown."""
        # Looking up a SHA-256 digest, not the token, keeps the comparison independent of
        # how much of a guessed token matches, and lets auth files hold digests only.
        return self.roles_by_digest.get(_digest(token))

    def name_of(self, token: str) -> str:
        """The name the auth file gives ``token`` (for logs), or its role."""
        return self.names_by_digest.get(_digest(token), self.role_of(token) or "")


def _check_token(token: str, where: str) -> None:
    if not token or token != token.strip() or any(ch.isspace() for ch in token):
        raise InvalidArgument(f"{where}: a token must be non-empty and contain no spaces")


def load_auth_file(path: str | Path) -> AuthConfig:
    """Read an auth file: ``[[token]]`` entries with ``token`` (or ``sha256``), ``role`` and an optional ``name``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"auth file {path}: {exc.strerror or exc}") from exc
    try:
        if path.suffix.lower() == ".json":
            doc: Any = json.loads(raw)
        else:
            doc = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(
            f"auth file {path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}"
        ) from exc
    entries = doc.get("token") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InvalidArgument(f"auth file {path}: expected a non-empty list of tokens under the key 'token'")
    roles: dict[str, str] = {}
    names: dict[str, str] = {}
    for i, entry in enumerate(entries):
        where = f"auth file {path}: token[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{where}: expected a table with 'token' or 'sha256' and 'role'")
        role = entry.get("role")
        if role not in _RANK:
            raise InvalidArgument(f"{where}: role must be one of {', '.join(ROLES)}, got {role!r}")
        if ("token" in entry) == ("sha256" in entry):
            raise InvalidArgument(f"{where}: give exactly one of 'token' and 'sha256'")
        if "token" in entry:
            token = entry["token"]
            if not isinstance(token, str):
                raise InvalidArgument(f"{where}: token must be a string")
            _check_token(token, where)
            digest = _digest(token)
        else:
            digest = entry["sha256"]
            if (
                not isinstance(digest, str)
                or len(digest) != 64
                or any(c not in "0123456789abcdef" for c in digest)
            ):
                raise InvalidArgument(f"{where}: sha256 must be 64 lower-case hex digits")
        if digest in roles:
            raise InvalidArgument(f"{where}: the same token appears twice")
        roles[digest] = role
        name = entry.get("name", role)
        names[digest] = str(name)
    return AuthConfig(roles, names)


def token_from_metadata(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The token of an ``authorization: Token <t>`` metadata entry (``Bearer`` also accepted), or None."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        scheme, _, token = str(value).strip().partition(" ")
        if scheme.lower() in ("token", "bearer") and token.strip():
            return token.strip()
        return None
    return None


def _denying_handler(
    handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that ends the call with ``code``."""

    def deny(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    def deny_stream(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)
        yield  # pragma: no cover - makes this a generator

    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny_stream, des, ser)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, des, ser)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny_stream, des, ser)
    return grpc.unary_unary_rpc_method_handler(deny, des, ser)


class AuthInterceptor(grpc.ServerInterceptor):
    """Checks the token, the caller's role and the read-only switch before any oplog handler runs."""

    def __init__(
        self,
        auth: AuthConfig,
        *,
        readonly: bool = False,
        rules: Mapping[str, MethodRule] | None = None,
        on_denied: Callable[[str, grpc.StatusCode], None] | None = None,
    ) -> None:
        self.auth = auth
        self.readonly = readonly
        self.rules = dict(METHOD_RULES if rules is None else rules)
        self.on_denied = on_denied

    def decide(
        self, method: str, metadata: Iterable[tuple[str, Any]] | None
    ) -> tuple[grpc.StatusCode, str] | None:
        """None to let the call through, else the status and message to refuse it with."""
        if method.startswith(_OPEN_PREFIXES):
            return None
        rule = self.rules.get(method, _DEFAULT_RULE)
        if self.auth.enabled:
            token = token_from_metadata(metadata)
            if token is None:
                return (
                    grpc.StatusCode.UNAUTHENTICATED,
                    "missing token: send metadata 'authorization: Token <token>'",
                )
            role = self.auth.role_of(token)
            if role is None:
                return grpc.StatusCode.UNAUTHENTICATED, "unknown token"
        else:
            role = "admin"
        short = method.rsplit("/", 1)[-1]
        if _RANK[role] < _RANK[rule.role]:
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"{short} needs the {rule.role} role; this token has the {role} role",
            )
        if rule.writes and self.readonly:
            return grpc.StatusCode.PERMISSION_DENIED, f"{short} is refused: the server is read-only"
        return None

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """Let the call through to its handler, or answer it with a refusing handler of the same shape."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        verdict = self.decide(method, handler_call_details.invocation_metadata)  # type: ignore[attr-defined]
        if verdict is None:
            return handler
        if self.on_denied is not None:
            self.on_denied(method, verdict[0])
        return _denying_handler(handler, *verdict)


def is_loopback_address(listen: str) -> bool:
    """Whether a ``host:port`` (or ``unix:``) listen address is reachable only from this machine."""
    if listen.startswith(("unix:", "unix-abstract:")):
        return True
    host = _host_of(listen)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_of(listen: str) -> str:
    if listen.startswith("["):
        host, _, _rest = listen[1:].partition("]")
        return host
    host, sep, _port = listen.rpartition(":")
    return host if sep else listen


def check_listen_address(listen: str, auth: AuthConfig) -> None:
    """Refuse a non-loopback address when no token is configured (raises ``InvalidArgument``)."""
    if not auth.enabled and not is_loopback_address(listen):
        raise InvalidArgument(
            f"refusing to listen on {listen} without authentication: "
            "set --token or --auth-file, or listen on loopback (127.0.0.1, [::1], localhost)"
        )
