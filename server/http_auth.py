"""Who may call which HTTP endpoint: the gRPC auth decisions, answered in SiYuan's words.

Each endpoint is bound to the gRPC method whose rule it shares (a block write
is an ``Apply``, ``query/sql`` a ``Query``, ``performSync`` a
``PerformSync``…), and the decision is made by the very
:class:`~oplog.server.auth.AuthInterceptor` that guards gRPC, so the two
protocols can never disagree on a token or a role. Only the answer differs:
the kernel's ``Auth failed [header: Authorization]`` with HTTP 401 for a wrong
or missing token, HTTP 403 for a role too low, and for a write on a read-only
server the kernel's HTTP 200 ``code: -1`` with ``closeTimeout``.

Tokens come as SiYuan's clients send them: ``Authorization: Token T``
(``token``, ``Bearer``, ``bearer`` too) or the ``?token=T`` query parameter.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from oplog.server.auth import METHOD_RULES, AuthConfig, AuthInterceptor, MethodRule
from oplog.server.http_envelope import READONLY_MSG, Refusal

__all__ = ["HttpAuth", "OPEN", "HEADER_FAILED", "QUERY_FAILED"]

#: Endpoints that answer without a token, as the kernel's do.
OPEN = "open"
HEADER_FAILED = "Auth failed [header: Authorization]"
QUERY_FAILED = "Auth failed [query: token]"

_PREFIXES = ("Token ", "token ", "Bearer ", "bearer ")


def _header_token(value: str | None) -> str | None:
    if not value:
        return None
    for prefix in _PREFIXES:
        if value.startswith(prefix):
            return value[len(prefix) :].strip() or None
    return None


class HttpAuth:
    """Applies the gRPC method rules to HTTP requests (``method`` is a gRPC path or ``OPEN``)."""

    def __init__(self, auth: AuthConfig, *, readonly: bool) -> None:
        self.auth = auth
        self.readonly = readonly
        # The read-only switch is checked here (to answer in the kernel's shape), not by the interceptor.
        self._interceptor = AuthInterceptor(auth, readonly=False)

    def rule(self, method: str) -> MethodRule:
        """The rule of a gRPC method (the interceptor's default for one not listed)."""
        return METHOD_RULES.get(method, MethodRule("reader"))

    def check(self, method: str, headers: Mapping[str, str], query: Mapping[str, str]) -> Refusal | None:
        """The refusal for this call, or None to let it through."""
        if method == OPEN:
            return None
        header = headers.get("authorization")
        token = _header_token(header)
        where = HEADER_FAILED
        if token is None and query.get("token"):
            token = query["token"]
            where = QUERY_FAILED
        metadata = [("authorization", f"Token {token}")] if token else []
        verdict = self._interceptor.decide(method, metadata)
        if verdict is not None:
            code, message = verdict
            if code == grpc.StatusCode.UNAUTHENTICATED:
                return Refusal(where, status=401)
            return Refusal(message, status=403)
        if self.readonly and self.rule(method).writes:
            return Refusal(READONLY_MSG, data={"closeTimeout": 5000})
        return None
