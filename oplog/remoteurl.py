"""From what a user types after ``--remote`` to a ``Remote``: the one place a backend is chosen.

Accepted (SPEC §8):

- a folder path, or ``file:///abs/path`` → ``LocalDirRemote``;
- ``s3://BUCKET[/PREFIX][?endpoint=URL&region=NAME&profile=NAME&addressing=path|virtual]``
  → ``S3Remote``; what the query leaves unset comes from the standard AWS chain;
- ``webdav://[USER[:PASSWORD]@]HOST[:PORT]/PATH`` (http) and ``webdavs://…`` (https)
  → ``WebDavRemote``; the user and password come from the URL or else
  ``OPLOG_WEBDAV_USER`` / ``OPLOG_WEBDAV_PASSWORD``.

Every entry point (``serve``, ``sync``, ``watch``, ``verify``) calls
``open_remote``; ``display_remote`` is what may be printed, logged or stored
(``sync.json``, ``SERVER``, ``GetSyncInfo``): the spec without its userinfo.
The backends import their client library lazily, so a folder remote never
pays for importing boto3 or httpx.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from oplog.errors import InvalidArgument
from oplog.remote import LocalDirRemote, Remote

__all__ = ["open_remote", "display_remote", "remote_kind", "remote_identity"]

_S3_OPTIONS = ("endpoint", "region", "profile", "addressing")


def remote_kind(spec: str) -> str:
    """``"folder"``, ``"s3"`` or ``"webdav"``: which backend ``spec`` names."""
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if scheme in ("", "file"):
        return "folder"
    if scheme == "s3":
        return "s3"
    if scheme in ("webdav", "webdavs"):
        return "webdav"
    raise InvalidArgument(f"unsupported remote {display_remote(spec)!r}: use a folder, s3:// or webdav(s)://")


def display_remote(spec: str) -> str:
    """``spec`` as it may be shown or stored: userinfo (user, password) removed."""
    if "://" not in spec:
        return spec
    parts = urlsplit(spec)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=netloc))


def remote_identity(spec: str | os.PathLike[str]) -> str:
    """What names the same remote however it was typed, safe to store: a folder's real path, else the URL without userinfo."""
    text = os.fspath(spec)
    if "://" not in text:
        return os.path.realpath(text)
    if remote_kind(text) == "folder":
        return os.path.realpath(unquote(urlsplit(text).path))
    return display_remote(text)


def open_remote(spec: str, *, env: Mapping[str, str] | None = None) -> Remote:
    """The remote ``spec`` names (a folder, ``file://``, ``s3://`` or ``webdav(s)://``)."""
    environ = os.environ if env is None else env
    if not spec.strip():
        raise InvalidArgument(
            "--remote is empty: give a folder, s3://BUCKET[/PREFIX] or webdav(s)://HOST/PATH"
        )
    kind = remote_kind(spec)
    if kind == "folder":
        if spec.lower().startswith("file://"):
            parts = urlsplit(spec)
            if parts.netloc not in ("", "localhost"):
                raise InvalidArgument(f"file:// remote on another host: {display_remote(spec)}")
            return LocalDirRemote(unquote(parts.path))
        return LocalDirRemote(spec)
    parts = urlsplit(spec)
    if kind == "s3":
        return _open_s3(spec, parts.netloc, parts.path, parts.query)
    return _open_webdav(spec, environ)


def _open_s3(spec: str, bucket: str, path: str, query: str) -> Remote:
    from oplog.remote_s3 import S3Remote

    if not bucket or "@" in bucket:
        raise InvalidArgument(f"s3 remote needs s3://BUCKET[/PREFIX], got {display_remote(spec)!r}")
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=False).items()}
    unknown = sorted(set(options) - set(_S3_OPTIONS))
    if unknown:
        raise InvalidArgument(f"s3 remote: unknown option {unknown[0]!r} (known: {', '.join(_S3_OPTIONS)})")
    if options.get("addressing") not in (None, "path", "virtual"):
        raise InvalidArgument("s3 remote: addressing must be path or virtual")
    prefix = unquote(path).strip("/")
    return S3Remote(
        bucket,
        prefix,
        endpoint=options.get("endpoint"),
        region=options.get("region"),
        profile=options.get("profile"),
        addressing=options.get("addressing"),
    )


def _open_webdav(spec: str, environ: Mapping[str, str]) -> Remote:
    from oplog.remote_webdav import WebDavRemote

    parts = urlsplit(spec)
    if not parts.hostname:
        raise InvalidArgument(
            f"webdav remote needs webdav(s)://HOST[:PORT]/PATH, got {display_remote(spec)!r}"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InvalidArgument(f"webdav remote: bad port in {display_remote(spec)!r}") from None
    user = unquote(parts.username) if parts.username else environ.get("OPLOG_WEBDAV_USER") or None
    password = unquote(parts.password) if parts.password is not None else environ.get("OPLOG_WEBDAV_PASSWORD")
    http = "https" if parts.scheme.lower() == "webdavs" else "http"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    base = urlunsplit((http, netloc, parts.path.rstrip("/"), "", ""))
    return WebDavRemote(base, user=user, password=password)
