"""A sync remote on an S3-compatible object store (AWS S3, MinIO, R2, Garage, Ceph…).

Why boto3: it is the reference client, so the whole standard AWS configuration
chain comes for free and behaves as users expect (``AWS_ACCESS_KEY_ID`` …,
``AWS_PROFILE`` and the shared ``~/.aws`` files, ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL``, SSO and instance roles), it signs every request (no
hand-written SigV4), and recent botocore sends the conditional-write headers
oplog needs: ``If-None-Match: *`` on ``PutObject`` and on
``CompleteMultipartUpload`` (create-only, also for multipart uploads) and
``If-Match: <etag>`` on ``PutObject`` (replace only if unchanged). obstore was
the other candidate (smaller, Rust-backed, conditional puts too) but brings its
own configuration rules instead of the AWS chain.

Layout: a remote path ``p`` is the object key ``PREFIX/p`` (SPEC §6 unchanged),
so a folder remote copied into a bucket works as is. ``list`` is one delimiter
listing of one "folder" (never recursive). A PUT is atomic on S3: an object is
visible whole or not at all, so nothing partial is ever under a final name;
large objects go up in parts and only ``CompleteMultipartUpload`` makes them
visible, so ``sweep`` aborts the incomplete multipart uploads a killed writer
left (the S3 counterpart of a folder's temporaries).

botocore's own retries are turned off: sync retries transient errors itself,
with back-off and a ``syncRetry`` event per retry, and two nested retry loops
would multiply the waits and hide them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from oplog.errors import RemoteError, TransientRemoteError
from oplog.remote import check_remote_path, lookup_failed

__all__ = ["S3Remote", "MULTIPART_THRESHOLD", "PART_SIZE"]

#: Objects at least this large go up in parts (S3's minimum part size is 5 MiB).
MULTIPART_THRESHOLD = 16 * 1024 * 1024
#: The size of each part of a multipart upload.
PART_SIZE = 8 * 1024 * 1024
#: Parts uploaded at once: enough to fill a link, bounded so memory stays at a few parts.
PART_WORKERS = 4

_TRANSIENT_CODES = {
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    # A concurrent conditional write on the same key is in flight: retrying settles it (then 412 or success).
    "ConditionalRequestConflict",
    "OperationAborted",
}
_T = TypeVar("_T")


class S3Remote:
    """A remote whose root is ``s3://BUCKET/PREFIX``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        addressing: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
    ) -> None:
        """A client for ``bucket``; unset options come from the standard AWS chain (env, config files)."""
        import boto3
        from botocore.config import Config

        if not bucket:
            raise RemoteError("s3 remote: no bucket named")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        # A non-AWS server (MinIO, moto, Garage) named by an endpoint rarely has wildcard DNS for
        # virtual-hosted buckets: path-style is the safe default there, AWS keeps botocore's choice.
        style = addressing or ("path" if endpoint else None)
        s3_config: dict[str, str] = {"addressing_style": style} if style else {}
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3=s3_config or None,
            max_pool_connections=PART_WORKERS * 2 + 2,
        )
        try:
            session = boto3.session.Session(profile_name=profile, region_name=region)
            self._client: Any = session.client("s3", endpoint_url=endpoint, config=config)
        except Exception as exc:  # botocore: ProfileNotFound, invalid endpoint, no region for a partition
            raise RemoteError(f"remote s3://{bucket}: cannot configure the client: {_cause(exc)}") from None
        if (
            style is None
            and self._client.meta.endpoint_url
            and "amazonaws.com" not in (self._client.meta.endpoint_url)
        ):
            # The endpoint came from AWS_ENDPOINT_URL(_S3) or a profile: same reasoning as above.
            config = config.merge(Config(s3={"addressing_style": "path"}))
            self._client = session.client("s3", endpoint_url=endpoint, config=config)
        creds = session.get_credentials()
        frozen = creds.get_frozen_credentials() if creds is not None else None
        #: strings that must never reach a message (the secret key and session token)
        self._secrets = [
            s for s in (getattr(frozen, "secret_key", None), getattr(frozen, "token", None)) if s
        ]
        self.endpoint = str(self._client.meta.endpoint_url or "")
        root = f"s3://{bucket}/{self.prefix}".rstrip("/")
        #: what identifies this remote across runs: bucket, prefix and the server (a bucket name is
        #: only unique per server); never a credential
        self.url = root if self.endpoint.endswith("amazonaws.com") else f"{root}?endpoint={self.endpoint}"

    def __repr__(self) -> str:
        return f"S3Remote({self.url!r})"

    def describe(self) -> str:
        """The remote as shown to a person: its URL, no credentials."""
        return self.url

    # ---- paths and errors ----

    def _key(self, path: str) -> str:
        check_remote_path(path)
        return f"{self.prefix}/{path}" if self.prefix else path

    def _folder_prefix(self, folder: str) -> str:
        if not folder:
            return f"{self.prefix}/" if self.prefix else ""
        return self._key(folder) + "/"

    def _error(self, what: str, path: str, exc: Exception) -> RemoteError:
        """One line naming the remote and the cause; transient or not as the cause says."""
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectionError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
            ResponseStreamingError,
        )

        transient = False
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            transient = status >= 500 or status == 429 or code in _TRANSIENT_CODES
            if code == "NoSuchBucket":
                cause = f"no such bucket {self.bucket!r}"
            elif status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                cause = f"access denied ({code or status}: check the credentials and the bucket policy)"
            else:
                cause = f"{code or status}: {err.get('Message', '')}".rstrip(": ")
        elif isinstance(exc, NoCredentialsError):
            cause = "no credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
        elif isinstance(exc, EndpointConnectionError) and lookup_failed(exc):
            cause = f"unknown host ({self.endpoint or 'the S3 endpoint'})"
        elif isinstance(
            exc, ConnectionError | ConnectionClosedError | ReadTimeoutError | ResponseStreamingError
        ):
            transient = True
            cause = _cause(exc)
        elif isinstance(exc, OSError):
            transient = True
            cause = _cause(exc)
        else:
            cause = _cause(exc)
        cls = TransientRemoteError if transient else RemoteError
        return cls(self._scrub(f"remote {self.url}: cannot {what} {path}: {cause}"))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _run(self, what: str, path: str, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except RemoteError:
            raise
        except Exception as exc:
            raise self._error(what, path, exc) from None

    @staticmethod
    def _code(exc: Exception) -> str:
        response = getattr(exc, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code or str(status or "")

    # ---- the Remote interface ----

    def _listing(self, folder: str) -> Iterator[dict[str, Any]]:
        """The pages of one delimiter listing of ``folder`` (one request per 1000 names)."""
        paginator = self._client.get_paginator("list_objects_v2")
        yield from paginator.paginate(Bucket=self.bucket, Prefix=self._folder_prefix(folder), Delimiter="/")

    def list(self, folder: str) -> list[str]:
        """Names directly inside ``folder``: objects and "sub-folders" (common prefixes), sorted."""
        start = len(self._folder_prefix(folder))

        def run() -> list[str]:
            names: set[str] = set()
            for page in self._listing(folder):
                names.update(p["Prefix"][start:].rstrip("/") for p in page.get("CommonPrefixes", []))
                names.update(o["Key"][start:] for o in page.get("Contents", []))
            names.discard("")
            return sorted(names)

        return self._run("list", folder, run)

    def sizes(self, folder: str) -> dict[str, int]:
        """Objects directly inside ``folder`` and their sizes, from the same single listing."""
        start = len(self._folder_prefix(folder))

        def run() -> dict[str, int]:
            out: dict[str, int] = {}
            for page in self._listing(folder):
                for obj in page.get("Contents", []):
                    name = obj["Key"][start:]
                    if name:
                        out[name] = int(obj["Size"])
            return out

        return self._run("list", folder, run)

    def read_versioned(self, path: str) -> tuple[bytes | None, str | None]:
        """The object's bytes and ETag, or (None, None) when it does not exist."""
        key = self._key(path)

        def run() -> tuple[bytes | None, str | None]:
            try:
                reply = self._client.get_object(Bucket=self.bucket, Key=key)
            except Exception as exc:
                if self._code(exc) in ("NoSuchKey", "404"):
                    return None, None
                raise
            body = reply["Body"].read()
            expected = reply.get("ContentLength")
            if expected is not None and len(body) != int(expected):
                # urllib3 normally raises on a short body; this is the belt to its braces.
                raise TransientRemoteError(
                    f"remote {self.url}: cannot read {path}: got {len(body)} of {expected} bytes"
                )
            return body, str(reply["ETag"])

        return self._run("read", path, run)

    def read(self, path: str) -> bytes | None:
        """The whole object, or None if it does not exist."""
        return self.read_versioned(path)[0]

    def version(self, path: str) -> str | None:
        """The object's ETag without its bytes (one HEAD), or None when it does not exist."""
        key = self._key(path)

        def run() -> str | None:
            try:
                reply = self._client.head_object(Bucket=self.bucket, Key=key)
            except Exception as exc:
                if self._code(exc) in ("NoSuchKey", "404", "NotFound"):
                    return None
                raise
            return str(reply["ETag"])

        return self._run("stat", path, run)

    def _put(self, path: str, data: bytes, **condition: str) -> bool:
        """One PUT (or a multipart upload) with an optional condition; False when the condition failed."""
        key = self._key(path)

        def run() -> bool:
            try:
                if len(data) >= self.multipart_threshold:
                    self._multipart(key, data, condition)
                else:
                    self._client.put_object(Bucket=self.bucket, Key=key, Body=data, **condition)
            except Exception as exc:
                # 412: the condition did not hold; 404 on If-Match: the object is gone (also "changed").
                if condition and self._code(exc) in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                    return False
                raise
            return True

        return self._run("write", path, run)

    def _multipart(self, key: str, data: bytes, condition: dict[str, str]) -> None:
        """Upload ``data`` in parts; the condition applies to the completion, which is what makes it visible."""
        if condition.get("IfNoneMatch") == "*":
            # Cheap early exit: no need to send 100 MB to learn the name is taken (the real check is below).
            try:
                self._client.head_object(Bucket=self.bucket, Key=key)
            except Exception as exc:
                if self._code(exc) not in ("NoSuchKey", "404", "NotFound"):
                    raise
            else:
                from botocore.exceptions import ClientError

                raise ClientError({"Error": {"Code": "PreconditionFailed"}}, "HeadObject")
        upload = self._client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        try:
            size = self.part_size
            chunks = [data[i : i + size] for i in range(0, len(data), size)]

            def part(number: int) -> dict[str, Any]:
                reply = self._client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=number, Body=chunks[number - 1]
                )
                return {"PartNumber": number, "ETag": reply["ETag"]}

            with ThreadPoolExecutor(max_workers=PART_WORKERS) as pool:
                parts = list(pool.map(part, range(1, len(chunks) + 1)))
            self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}, **condition
            )
        except BaseException:
            try:
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            except Exception:
                pass  # sweep aborts it later; the original error is the one to report
            raise

    def write_new(self, path: str, data: bytes) -> bool:
        """Create the object unless it exists (``If-None-Match: *``); False, nothing written, if it does."""
        return self._put(path, data, IfNoneMatch="*")

    def replace(self, path: str, data: bytes) -> None:
        """Create or replace the object; a PUT is atomic, readers see the old or the new object."""
        self._put(path, data)

    def replace_if(self, path: str, data: bytes, version: str | None) -> bool:
        """Replace only if the object is still at ``version`` (its ETag; None: only if absent)."""
        if version is None:
            return self._put(path, data, IfNoneMatch="*")
        return self._put(path, data, IfMatch=version)

    def delete(self, path: str) -> None:
        """Remove the object; no error if it is already gone."""
        key = self._key(path)
        self._run("delete", path, lambda: self._client.delete_object(Bucket=self.bucket, Key=key))

    def sweep(self, folder: str) -> int:
        """Abort the incomplete multipart uploads directly inside ``folder``; how many."""
        prefix = self._folder_prefix(folder)

        def run() -> int:
            removed = 0
            paginator = self._client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for up in page.get("Uploads", []):
                    if "/" in up["Key"][len(prefix) :]:
                        continue
                    self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                    )
                    removed += 1
            return removed

        return self._run("sweep", folder, run)


def _cause(exc: BaseException) -> str:
    """A one-line description of ``exc``."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
