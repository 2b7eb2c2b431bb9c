"""A real ``oplog serve`` process with its HTTP API on a free port, for tests/test_http*.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.serve_helpers import spawn_serve

TOKENS = {"admin": "admin-secret-1", "editor": "editor-secret-2", "reader": "reader-secret-3"}


def write_auth_file(folder: Path) -> Path:
    """An auth file with one token per role."""
    path = folder / "auth.toml"
    path.write_text(
        "".join(f'[[token]]\ntoken = "{token}"\nrole = "{role}"\n\n' for role, token in TOKENS.items())
    )
    return path


class HttpServe:
    """``oplog serve --json`` in a child process; ``url`` is its HTTP API, ``grpc`` its gRPC address."""

    def __init__(self, data: Path, *extra: str, env_extra: dict[str, str] | None = None) -> None:
        remote = data.parent / f"{data.name}-remote"
        args = ["--data", str(data), "--json"]
        args += ["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--remote", str(remote), *extra]
        env = dict(os.environ)
        env.pop("OPLOG_TOKEN", None)
        env.update(env_extra or {})
        self.proc, first = spawn_serve(args, env=env)
        if not first.startswith("{"):
            self.proc.kill()
            raise RuntimeError(f"oplog serve failed: {first}{self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.info: dict[str, Any] = json.loads(first)
        self.http: str = self.info["http"]
        self.url = f"http://{self.http}"
        self.grpc: str = self.info["listening"]

    @classmethod
    def with_tokens(
        cls, folder: Path, *extra: str, data: str = "d", env_extra: dict[str, str] | None = None
    ) -> HttpServe:
        """A server on ``folder/data`` taking the ``TOKENS`` (an auth file in ``folder``), without a boot sync."""
        auth = str(write_auth_file(folder))
        return cls(folder / data, "--auth-file", auth, "--no-boot-sync", *extra, env_extra=env_extra)

    def __enter__(self) -> HttpServe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, token: str | None = None) -> httpx.Client:
        """An httpx client for the API, sending ``Authorization: Token <token>`` if given."""
        headers = {"Authorization": f"Token {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self) -> str:
        """SIGTERM, wait, and return stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stderr.read() if self.proc.stderr else ""  # type: ignore[union-attr]


def ok(response: httpx.Response) -> Any:
    """The ``data`` of a successful envelope (asserting HTTP 200 and code 0)."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 0, body
    return body["data"]
