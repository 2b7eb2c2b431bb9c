"""A sync remote on a WebDAV server (Nextcloud, ownCloud, Apache mod_dav, rclone, wsgidav…).

Why httpx and the standard library's ElementTree: WebDAV is plain HTTP plus
three methods (PROPFIND, MKCOL, MOVE) and one XML reply (``multistatus``);
httpx is a well-kept HTTP client with connection pooling, timeouts and a
clear exception tree (timeouts and connection errors apart from HTTP
statuses), and ElementTree parses the reply (no hand-written XML parsing).
webdav4 (built on httpx) was the other candidate, but its uploads check for an
existing file before writing (a race) and it cannot send the conditional
headers oplog needs, so it would be bypassed for every write.

Guarantees, as SPEC §8 asks, with the server's help:

- nothing partial under a final name: every write PUTs a temporary
  ``<name>.tmp-<hex>`` (hidden from ``list``, removed by ``sweep``) and then
  MOVEs it into place — a MOVE inside one collection is a rename on every
  file-backed server;
- create-only: the MOVE carries ``Overwrite: F``, so the server refuses (412)
  when the name exists; never a check-then-write by the client;
- replace only if unchanged: the MOVE carries RFC 4918's tagged ``If`` header,
  ``If: </path/of/target> (["etag"])`` — the condition is on the destination,
  which ``If-Match`` (a condition on the request's own resource, the
  temporary) cannot express.

The server decides both conditions; how atomically depends on it (see
docs/sync.md, "Remotes beyond a folder"). When a PUT answers 409 (a missing
parent), the collections are created with MKCOL and the PUT is sent again.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit

import httpx

from oplog.errors import RemoteError, TransientRemoteError
from oplog.remote import check_remote_path, lookup_failed

__all__ = ["WebDavRemote"]

_TMP_MARK = ".tmp-"
_DAV = "{DAV:}"
_PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getcontentlength/></d:prop></d:propfind>'
)
_T = TypeVar("_T")


def _status_error(response: httpx.Response) -> httpx.HTTPStatusError:
    """An HTTP reply the caller did not expect, as httpx names it (``_run`` turns it into a RemoteError)."""
    text = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    return httpx.HTTPStatusError(text, request=response.request, response=response)


class WebDavRemote:
    """A remote whose root is a WebDAV collection (``http(s)://host[:port]/path``)."""

    def __init__(
        self,
        base_url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 60.0,
        display_scheme: str | None = None,
        verify: bool = True,
    ) -> None:
        """A client for the collection at ``base_url`` (no userinfo in it; credentials apart)."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"webdav remote: not an http(s) URL: {_no_userinfo(base_url)}")
        if parts.username or parts.password:
            raise RemoteError("webdav remote: pass the user and password apart from the URL")
        self._base = base_url.rstrip("/")
        self._base_path = parts.path.rstrip("/")
        scheme = display_scheme or ("webdavs" if parts.scheme == "https" else "webdav")
        #: what identifies this remote across runs, and how it is shown: no credentials in it
        self.url = f"{scheme}://{parts.netloc}{self._base_path}"
        self._secrets = [s for s in (password,) if s]
        auth = httpx.BasicAuth(user, password or "") if user else None
        self._http = httpx.Client(
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=10.0),
            follow_redirects=False,
            verify=verify,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )
        self._known_folders: set[str] = set()

    def __repr__(self) -> str:
        return f"WebDavRemote({self.url!r})"

    def describe(self) -> str:
        """The remote as shown to a person: its URL, no credentials."""
        return self.url

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    # ---- paths and errors ----

    def _href(self, path: str) -> str:
        """The URL path (quoted) of a remote path, as the server names it in hrefs and ``If`` tags."""
        return f"{self._base_path}/{quote(path)}" if path else f"{self._base_path}/"

    def _u(self, path: str) -> str:
        return self._base + self._href(path)[len(self._base_path) :]

    def _error(self, what: str, path: str, exc: Exception) -> RemoteError:
        transient = False
        if isinstance(exc, httpx.HTTPStatusError):
            status = exc.response.status_code
            # 423: a file lock held by another client (Nextcloud takes them during uploads).
            transient = status >= 500 or status in (408, 423, 429)
            if status in (401, 403):
                cause = f"access denied (HTTP {status}: check the user and password)"
            else:
                cause = str(exc)
        elif isinstance(exc, httpx.ConnectError) and lookup_failed(exc):
            cause = "unknown host"
        elif isinstance(exc, httpx.TransportError):
            # Timeouts, refused or reset connections, a body cut short: the server or the path may recover.
            transient = True
            cause = f"{type(exc).__name__}: {' '.join(str(exc).split())}".rstrip(": ")
        elif isinstance(exc, ET.ParseError):
            transient = True  # a PROPFIND reply cut short parses as broken XML
            cause = f"unreadable PROPFIND reply ({exc})"
        else:
            cause = f"{type(exc).__name__}: {exc}"
        cls = TransientRemoteError if transient else RemoteError
        text = f"remote {self.url}: cannot {what} {path or '/'}: {cause}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return cls(text)

    def _run(self, what: str, path: str, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except RemoteError:
            raise
        except (httpx.HTTPError, ET.ParseError, OSError) as exc:
            raise self._error(what, path, exc) from None

    def _request(self, method: str, path: str, *, ok: tuple[int, ...], **kwargs: object) -> httpx.Response:
        response = self._http.request(method, self._u(path), **kwargs)  # type: ignore[arg-type]
        if response.status_code not in ok:
            raise _status_error(response)
        return response

    # ---- the Remote interface ----

    def _propfind(self, folder: str) -> dict[str, int | None] | None:
        """Names directly inside ``folder`` → size (None for a collection); None if it does not exist."""
        if folder:
            check_remote_path(folder)
        response = self._request(
            "PROPFIND",
            f"{folder}/" if folder else "",
            ok=(207, 404),
            headers={"Depth": "1", "Content-Type": "application/xml"},
            content=_PROPFIND_BODY,
        )
        if response.status_code == 404:
            return None
        own = unquote(self._href(folder)).rstrip("/")
        out: dict[str, int | None] = {}
        for item in ET.fromstring(response.content).iter(f"{_DAV}response"):
            href = item.findtext(f"{_DAV}href") or ""
            target = unquote(urlsplit(href).path).rstrip("/")
            if target == own or not target.startswith(own + "/"):
                continue
            name = target[len(own) + 1 :]
            if "/" in name:
                continue
            collection = item.find(f".//{_DAV}resourcetype/{_DAV}collection") is not None
            length = item.findtext(f".//{_DAV}getcontentlength")
            out[name] = None if collection else int(length or 0)
        return out

    def list(self, folder: str) -> list[str]:
        """Names directly inside ``folder`` (one PROPFIND, Depth 1), temporaries excluded, sorted."""

        def run() -> list[str]:
            found = self._propfind(folder) or {}
            return sorted(n for n in found if _TMP_MARK not in n)

        return self._run("list", folder, run)

    def sizes(self, folder: str) -> dict[str, int]:
        """Files directly inside ``folder`` and their sizes, from the same single PROPFIND."""

        def run() -> dict[str, int]:
            found = self._propfind(folder) or {}
            return {n: s for n, s in found.items() if s is not None and _TMP_MARK not in n}

        return self._run("list", folder, run)

    def read_versioned(self, path: str) -> tuple[bytes | None, str | None]:
        """The file's bytes and ETag, or (None, None) when it does not exist."""
        check_remote_path(path)

        def run() -> tuple[bytes | None, str | None]:
            response = self._request("GET", path, ok=(200, 404))
            if response.status_code == 404:
                return None, None
            return response.content, response.headers.get("ETag")

        return self._run("read", path, run)

    def read(self, path: str) -> bytes | None:
        """The whole file, or None if it does not exist."""
        return self.read_versioned(path)[0]

    def version(self, path: str) -> str | None:
        """The file's ETag without its bytes (one HEAD), or None when it does not exist."""
        check_remote_path(path)

        def run() -> str | None:
            response = self._request("HEAD", path, ok=(200, 404))
            if response.status_code == 404:
                return None
            # A server without ETags still gives a size and a time: together they tell a change.
            tag = response.headers.get("ETag")
            return tag or f"{response.headers.get('Content-Length')}-{response.headers.get('Last-Modified')}"

        return self._run("stat", path, run)

    def _ensure_folder(self, folder: str) -> None:
        """Create ``folder`` and its parents (MKCOL; 405 means it exists already)."""
        parts = folder.split("/") if folder else []
        if "" not in self._known_folders:
            # The root itself, as a folder remote's root is created on first write (its parent must exist).
            self._request("MKCOL", "", ok=(201, 405))
            self._known_folders.add("")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub in self._known_folders:
                continue
            self._request("MKCOL", sub + "/", ok=(201, 405))
            self._known_folders.add(sub)

    def _put_temporary(self, path: str, data: bytes) -> str:
        folder, _, name = path.rpartition("/")
        tmp = (
            f"{folder}/{name}{_TMP_MARK}{uuid.uuid4().hex}"
            if folder
            else f"{name}{_TMP_MARK}{uuid.uuid4().hex}"
        )
        # Try the PUT first: its folder usually exists, and a 409 (missing parent) costs one round trip.
        # Also when this process made the folder before: someone may have removed it since.
        response = self._http.put(self._u(tmp), content=data)
        if response.status_code == 409:
            self._known_folders.clear()
            self._ensure_folder(folder)
            response = self._http.put(self._u(tmp), content=data)
        if response.status_code not in (200, 201, 204):
            raise _status_error(response)
        self._known_folders.add(folder)
        return tmp

    def _move(self, path: str, data: bytes, headers: dict[str, str]) -> bool:
        """PUT a temporary, MOVE it to ``path`` with ``headers``; False (temporary removed) on 412."""
        tmp = self._put_temporary(path, data)
        try:
            response = self._http.request(
                "MOVE", self._u(tmp), headers={"Destination": self._u(path), **headers}
            )
        except BaseException:
            self._discard(tmp)
            raise
        if response.status_code in (201, 204):
            return True
        self._discard(tmp)
        if response.status_code == 412:
            return False
        raise _status_error(response)

    def _discard(self, tmp: str) -> None:
        try:
            self._http.request("DELETE", self._u(tmp))
        except httpx.HTTPError:
            pass  # sweep removes it later; the caller reports the error that matters

    def write_new(self, path: str, data: bytes) -> bool:
        """Create ``path`` unless it exists (temporary, then MOVE with ``Overwrite: F``); False if it does."""
        check_remote_path(path)
        return self._run("write", path, lambda: self._move(path, data, {"Overwrite": "F"}))

    def replace(self, path: str, data: bytes) -> None:
        """Create or replace ``path`` (temporary, then MOVE with ``Overwrite: T``)."""
        check_remote_path(path)
        self._run("replace", path, lambda: self._move(path, data, {"Overwrite": "T"}))

    def replace_if(self, path: str, data: bytes, version: str | None) -> bool:
        """Replace only if ``path`` is still at ``version`` (its ETag; None: only if absent)."""
        check_remote_path(path)
        if version is None:
            return self.write_new(path, data)
        etag = version if version.startswith(('"', "W/")) else f'"{version}"'
        headers = {"Overwrite": "T", "If": f"<{self._href(path)}> ([{etag}])"}
        return self._run("replace", path, lambda: self._move(path, data, headers))

    def delete(self, path: str) -> None:
        """Remove a file; no error if it is already gone."""
        check_remote_path(path)
        self._run("delete", path, lambda: self._request("DELETE", path, ok=(200, 204, 404)))

    def sweep(self, folder: str) -> int:
        """Remove the temporaries (``<name>.tmp-<hex>``) interrupted writes left in ``folder``; how many."""

        def run() -> int:
            found = self._propfind(folder) or {}
            removed = 0
            for name in sorted(found):
                if _TMP_MARK in name and found[name] is not None:
                    self._request("DELETE", f"{folder}/{name}" if folder else name, ok=(200, 204, 404))
                    removed += 1
            return removed

        return self._run("sweep", folder, run)


def _no_userinfo(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=netloc).geturl()
