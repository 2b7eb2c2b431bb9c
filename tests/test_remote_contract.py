"""One ``Remote`` contract, run against every backend: a folder, the fake, a real S3 server, a real WebDAV server.

The S3 server is moto's, the WebDAV server wsgidav on cheroot, both started
once per session on 127.0.0.1 (tests/remote_servers.py) and stopped after;
each test works under a fresh root of its own, so tests do not see each
other's files. Faults are real too: a server that is not there, a proxy that
cuts a connection mid-upload or answers 5xx/429, wrong credentials, a missing
bucket.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oplog.errors import InvalidArgument, RemoteError, TransientRemoteError
from oplog.remote import FakeRemote, LocalDirRemote, VersionedRemote, content_version
from oplog.remote_s3 import S3Remote
from oplog.remote_webdav import WebDavRemote
from oplog.remotefetch import read_many
from oplog.remoteurl import display_remote, open_remote, remote_kind
from tests.remote_servers import (
    BUCKET,
    S3_KEY_ID,
    S3_SECRET,
    WEBDAV_PASSWORD,
    WEBDAV_USER,
    CuttingProxy,
    Serialised,
    free_port,
    point_aws_chain_at_test_credentials,
    s3_server,
    webdav_server,
)

KINDS = ["folder", "fake", "s3", "webdav"]
#: the tests that need a server to cut, stall or count take only these (indirect parametrization)
SERVED = pytest.mark.parametrize("backend", ["s3", "webdav"], indirect=True)
#: the tests that open a remote by its URL: every backend that has one
WITH_URL = pytest.mark.parametrize("backend", ["folder", "s3", "webdav"], indirect=True)
SEG = "main/devices/a/0000000000000001.seg"
MiB = 1024 * 1024


@pytest.fixture(scope="session")
def s3_server_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Serialised]]:
    """moto's S3 server for the session, with the AWS chain pointed at fake credentials only."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("aws")
        point_aws_chain_at_test_credentials(mp, home)
        with s3_server() as served:
            yield served


@pytest.fixture(scope="session")
def s3_endpoint(s3_server_app: tuple[str, Serialised]) -> str:
    """The session's S3 server's endpoint URL."""
    return s3_server_app[0]


@pytest.fixture(scope="session")
def webdav_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Serialised]]:
    """wsgidav for the session: its base URL, the folder it serves (``/dav`` is that folder), the app."""
    root = tmp_path_factory.mktemp("webdav")
    with webdav_server(root) as (base, app):
        yield base, root, app


@pytest.fixture(scope="session")
def webdav_base(webdav_served: tuple[str, Path, Serialised]) -> tuple[str, Path]:
    """The session's WebDAV server: base URL and served folder."""
    return webdav_served[0], webdav_served[1]


@dataclass
class Backend:
    """One backend under a fresh root: how to open it, its URL, and how to reach it on another port."""

    kind: str
    root: str
    open: Callable[[], VersionedRemote]
    spec: str
    #: the same root reached through ``port`` (a proxy in front of the server); None for the folder
    via: Callable[[int], VersionedRemote] | None
    server_port: int | None
    #: where the files are on disk (folder and WebDAV), None for S3
    disk: Path | None


def _s3(endpoint: str, root: str, **kwargs: Any) -> S3Remote:
    # Small parts so the multipart path runs on a few MiB (S3's minimum part is 5 MiB).
    return S3Remote(BUCKET, root, endpoint=endpoint, multipart_threshold=6 * MiB, part_size=5 * MiB, **kwargs)


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each backend in turn, under a root no other test uses."""
    root = f"t{uuid.uuid4().hex[:10]}"
    if request.param == "folder":
        path = tmp_path / "remote"
        return Backend("folder", root, lambda: LocalDirRemote(path), str(path), None, None, path)
    if request.param == "fake":
        # Every "open" is the same in-memory store, as every client of a server sees one store.
        shared = FakeRemote(seed=7)
        return Backend("fake", root, lambda: shared, "", None, None, None)
    if request.param == "s3":
        endpoint: str = request.getfixturevalue("s3_endpoint")
        port = int(endpoint.rsplit(":", 1)[1])
        return Backend(
            "s3",
            root,
            lambda: _s3(endpoint, root),
            f"s3://{BUCKET}/{root}?endpoint={endpoint}",
            lambda p: _s3(f"http://127.0.0.1:{p}", root),
            port,
            None,
        )
    base, disk = request.getfixturevalue("webdav_base")
    port = int(base.rsplit(":", 1)[1])
    return Backend(
        "webdav",
        root,
        lambda: WebDavRemote(f"{base}/dav/{root}", user=WEBDAV_USER, password=WEBDAV_PASSWORD),
        f"webdav://{WEBDAV_USER}:{WEBDAV_PASSWORD}@127.0.0.1:{port}/dav/{root}",
        lambda p: WebDavRemote(
            f"http://127.0.0.1:{p}/dav/{root}", user=WEBDAV_USER, password=WEBDAV_PASSWORD
        ),
        port,
        disk / root,
    )


def _race(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` on ``n`` threads released together; their results in order (errors re-raised)."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            out[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


# ---- the contract ----


def test_basic_contract(backend: Backend) -> None:
    """Create-only writes, replace, read, list one level, delete (idempotent), on every backend."""
    r = backend.open()
    assert r.list("main") == [] and r.list("") == []
    assert r.read("main/EPOCH") is None
    assert r.write_new(SEG, b"x")
    assert not r.write_new(SEG, b"y")
    assert r.read(SEG) == b"x"
    r.replace("main/devices/a/MANIFEST", b"1")
    r.replace("main/devices/a/MANIFEST", b"22")
    assert r.read("main/devices/a/MANIFEST") == b"22"
    r.replace("main/EPOCH", b"e")
    assert r.list("") == ["main"]
    assert r.list("main") == ["EPOCH", "devices"]
    assert r.list("main/devices") == ["a"]
    assert r.list("main/devices/a") == ["0000000000000001.seg", "MANIFEST"]
    if hasattr(r, "sizes"):
        assert r.sizes("main/devices/a") == {"0000000000000001.seg": 1, "MANIFEST": 2}
    r.delete("main/devices/a/MANIFEST")
    r.delete("main/devices/a/MANIFEST")
    assert r.list("main/devices/a") == ["0000000000000001.seg"]
    assert r.read("main/devices/a/MANIFEST") is None
    with pytest.raises(RemoteError):
        r.read("../escape")


def test_listing_is_one_level_and_sorted(backend: Backend) -> None:
    """``list`` names what is directly inside a folder (files and sub-folders), never deeper."""
    r = backend.open()
    for path in ("c/devices/b/2.seg", "c/devices/b/1.seg", "c/devices/a/MANIFEST", "c/EPOCH", "c/x/y/z"):
        assert r.write_new(path, path.encode())
    assert r.list("c") == ["EPOCH", "devices", "x"]
    assert r.list("c/devices") == ["a", "b"]
    assert r.list("c/devices/b") == ["1.seg", "2.seg"]
    assert r.list("c/nothing") == []
    assert r.read("c/x/y/z") == b"c/x/y/z"


def test_writes_recreate_a_folder_removed_behind_the_remotes_back(backend: Backend) -> None:
    """A folder another party removed is made again on the next write (WebDAV: 409, MKCOL, PUT again)."""
    import shutil

    r = backend.open()
    assert r.write_new(SEG, b"1")
    if backend.disk is not None:
        shutil.rmtree(backend.disk / "main")
    else:
        r.delete(SEG)
    assert r.write_new(SEG, b"2") and r.read(SEG) == b"2"
    r.replace("main/devices/a/MANIFEST", b"m")
    assert r.list("main/devices/a") == ["0000000000000001.seg", "MANIFEST"]


def test_create_only_race_has_one_winner(backend: Backend) -> None:
    """Writers racing to create one name: exactly one wins and its bytes are what is stored."""
    remotes = [backend.open() for _ in range(4)]
    for round_ in range(6):
        path = f"race/devices/a/{round_:016x}.seg"

        def write(i: int, path: str = path, n: int = round_) -> bool:
            return remotes[i].write_new(path, f"writer {i} round {n}".encode() * 50)

        won = _race(4, write)
        assert won.count(True) == 1, won
        winner = won.index(True)
        assert remotes[0].read(path) == f"writer {winner} round {round_}".encode() * 50
        assert remotes[0].list("race/devices/a").count(f"{round_:016x}.seg") == 1


def test_replace_is_atomic_for_readers(backend: Backend) -> None:
    """A reader racing a writer that replaces a file sees the old or the new bytes, never a mix or nothing."""
    writer, reader = backend.open(), backend.open()
    versions = [bytes([65 + i]) * (200_000 + i) for i in range(4)]
    writer.replace("main/devices/a/MANIFEST", versions[0])
    stop = threading.Event()
    seen: list[bytes | None] = []

    def read_loop() -> None:
        while not stop.is_set():
            seen.append(reader.read("main/devices/a/MANIFEST"))

    thread = threading.Thread(target=read_loop)
    thread.start()
    try:
        for i in range(12):
            writer.replace("main/devices/a/MANIFEST", versions[i % 4])
    finally:
        stop.set()
        thread.join()
    assert seen, "the reader never ran"
    bad = [None if s is None else (len(s), s[:1], s[-1:]) for s in seen if s not in versions]
    assert not bad, bad[:3]


def test_conditional_replace(backend: Backend) -> None:
    """``replace_if`` replaces only what did not change since ``read_versioned``; None means absent."""
    r = backend.open()
    assert isinstance(r, VersionedRemote)
    assert r.read_versioned("main/EPOCH") == (None, None)
    assert r.replace_if("main/EPOCH", b"e0", None)
    assert not r.replace_if("main/EPOCH", b"again", None)
    data, v1 = r.read_versioned("main/EPOCH")
    assert data == b"e0" and v1 is not None
    assert r.replace_if("main/EPOCH", b"e1", v1)
    assert not r.replace_if("main/EPOCH", b"stale", v1), "a version read before a replace must not win"
    data, v2 = r.read_versioned("main/EPOCH")
    assert data == b"e1" and v2 != v1
    other = backend.open()
    other.replace("main/EPOCH", b"e2 from a plain replace")
    assert not r.replace_if("main/EPOCH", b"e3", v2)
    assert r.read("main/EPOCH") == b"e2 from a plain replace"
    r.delete("main/EPOCH")
    _, v3 = other.read_versioned("main/EPOCH")
    assert v3 is None
    if backend.kind != "webdav":
        # wsgidav skips an ``If`` condition on a destination that does not exist (RFC 4918 says it
        # fails); sync never deletes EPOCH, so only a hand-deleted file meets this (docs/sync.md).
        assert not r.replace_if("main/EPOCH", b"gone", v2)


def test_racing_conditional_replaces_have_one_winner(backend: Backend) -> None:
    """Two force-pushes that read the same ``EPOCH`` and replace it: one wins, the other learns it lost."""
    remotes = [backend.open() for _ in range(3)]
    remotes[0].replace("main/EPOCH", b"start")
    for round_ in range(5):
        _, version = remotes[0].read_versioned("main/EPOCH")

        def swap(i: int, n: int = round_, v: str | None = version) -> bool:
            return remotes[i].replace_if("main/EPOCH", f"{n}:{i}".encode(), v)

        won = _race(3, swap)
        assert won.count(True) == 1, won
        assert remotes[0].read("main/EPOCH") == f"{round_}:{won.index(True)}".encode()


def test_large_objects_keep_create_only(backend: Backend) -> None:
    """Objects above the multipart threshold (S3 uploads them in parts) are create-only and whole."""
    r = backend.open()
    big = os.urandom(11 * MiB)
    assert r.write_new(SEG, big)
    assert not r.write_new(SEG, b"small")
    assert not r.write_new(SEG, big[::-1])
    assert r.read(SEG) == big
    # Two writers racing with large objects: on S3 both upload their parts; the completion decides.
    writers = [backend.open(), backend.open()]
    bigs = [os.urandom(7 * MiB), os.urandom(7 * MiB)]
    won = _race(2, lambda i: writers[i].write_new("main/devices/a/0000000000000002.seg", bigs[i]))
    assert won.count(True) == 1, won
    assert r.read("main/devices/a/0000000000000002.seg") == bigs[won.index(True)]
    if isinstance(r, S3Remote):
        assert r.sweep("main/devices/a") == 0, "a completed multipart upload leaves nothing to sweep"


@SERVED
def test_a_cut_upload_is_never_visible_and_sweep_cleans_up(backend: Backend) -> None:
    """An upload whose connection dies half-way leaves nothing under the final name; a retry succeeds."""
    assert backend.via is not None and backend.server_port is not None
    proxy = CuttingProxy(backend.server_port)
    try:
        data = os.urandom(3 * MiB)
        direct = backend.open()
        direct.replace("main/devices/a/MANIFEST", b"{}")
        cut = backend.via(proxy.port)
        proxy.cut_after = 1 * MiB
        with pytest.raises(TransientRemoteError):
            cut.write_new(SEG, data)
        assert direct.read(SEG) is None
        assert direct.list("main/devices/a") == ["MANIFEST"]
        direct.sweep("main/devices/a")
        if backend.disk is not None:
            left = [p.name for p in (backend.disk / "main/devices/a").iterdir()]
            assert left == ["MANIFEST"], left
        assert direct.write_new(SEG, data)
        assert direct.read(SEG) == data
    finally:
        proxy.close()


def test_s3_sweep_aborts_incomplete_multipart_uploads(s3_endpoint: str) -> None:
    """A killed multipart upload is invisible (no object) until swept; sweep aborts only that folder's."""
    import boto3

    root = f"t{uuid.uuid4().hex[:10]}"
    r = _s3(s3_endpoint, root)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for key in (f"{root}/main/devices/a/1.seg", f"{root}/main/devices/a/2.seg", f"{root}/main/EPOCH"):
        up = client.create_multipart_upload(Bucket=BUCKET, Key=key)
        client.upload_part(Bucket=BUCKET, Key=key, UploadId=up["UploadId"], PartNumber=1, Body=b"p" * 1000)
    assert r.list("main/devices/a") == [] and r.read("main/devices/a/1.seg") is None
    assert r.sweep("main/devices/a") == 2
    assert r.sweep("main/devices/a") == 0
    assert r.sweep("main") == 1


def test_folder_killed_writer_leaves_nothing_visible(tmp_path: Path) -> None:
    """A process SIGKILLed while writing a big segment leaves no final name; sweep removes its temporary."""
    root = tmp_path / "remote"
    code = (
        "import sys; from oplog.remote import LocalDirRemote\n"
        f"LocalDirRemote({str(root)!r}).write_new({SEG!r}, b'x' * (256 * 1024 * 1024))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    folder = root / "main/devices/a"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            temps = list(folder.glob("*.tmp-*")) if folder.is_dir() else []
            if temps and temps[0].stat().st_size > 4 * MiB:
                break
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    r = LocalDirRemote(root)
    final = r.read(SEG)
    # Killed before the link: nothing under the final name (whole if the child won the race to finish).
    assert final is None or len(final) == 256 * MiB
    assert r.list("main/devices/a") == ([] if final is None else ["0000000000000001.seg"])
    r.sweep("main/devices/a")
    assert not list(folder.glob("*.tmp-*"))


# ---- errors ----


@SERVED
def test_a_server_that_is_not_there_is_transient(backend: Backend) -> None:
    """Connection refused (a stopped server) is worth retrying: TransientRemoteError naming the remote."""
    assert backend.via is not None
    r = backend.via(free_port())
    with pytest.raises(TransientRemoteError) as info:
        r.list("main")
    assert "remote " in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("status", [500, 503, 429])
@SERVED
def test_overloaded_server_answers_are_transient(backend: Backend, status: int) -> None:
    """5xx and 429 answers are TransientRemoteError; so is a connection reset."""
    assert backend.via is not None and backend.server_port is not None
    proxy = CuttingProxy(backend.server_port)
    try:
        r = backend.via(proxy.port)
        proxy.answer = status
        with pytest.raises(TransientRemoteError, match=str(status)):
            r.read("main/EPOCH")
        assert proxy.answered >= 1
        proxy.answer = None
        proxy.refuse = True
        with pytest.raises(TransientRemoteError):
            backend.via(proxy.port).list("main")
    finally:
        proxy.close()


@SERVED
def test_a_download_cut_short_is_transient_never_short_bytes(backend: Backend) -> None:
    """A reply whose connection dies mid-body raises TransientRemoteError; no truncated bytes come back."""
    assert backend.via is not None and backend.server_port is not None
    data = os.urandom(2 * MiB)
    backend.open().replace("main/devices/a/MANIFEST", data)
    proxy = CuttingProxy(backend.server_port)
    try:
        proxy.cut_reply_after = 256 * 1024
        with pytest.raises(TransientRemoteError):
            backend.via(proxy.port).read("main/devices/a/MANIFEST")
        proxy.cut_reply_after = None
        assert backend.via(proxy.port).read("main/devices/a/MANIFEST") == data
    finally:
        proxy.close()


@SERVED
def test_a_hung_server_times_out_as_transient(backend: Backend) -> None:
    """A server that accepts and never answers: the read times out (TransientRemoteError), never hangs."""
    assert backend.via is not None and backend.server_port is not None
    proxy = CuttingProxy(backend.server_port)
    proxy.stall = True
    try:
        if backend.kind == "s3":
            r: VersionedRemote = S3Remote(
                BUCKET, backend.root, endpoint=f"http://127.0.0.1:{proxy.port}", read_timeout=0.5
            )
        else:
            r = WebDavRemote(f"http://127.0.0.1:{proxy.port}/dav/x", user="u", password="p", timeout=0.5)
        with pytest.raises(TransientRemoteError):
            r.read("main/EPOCH")
    finally:
        proxy.close()


def test_missing_bucket_is_permanent_and_names_it(s3_endpoint: str) -> None:
    """No such bucket: RemoteError (not transient), one line naming the remote and the bucket, no secret."""
    r = S3Remote("no-such-bucket-here", "p", endpoint=s3_endpoint)
    for call in (lambda: r.list("main"), lambda: r.read("main/EPOCH"), lambda: r.write_new(SEG, b"x")):
        with pytest.raises(RemoteError) as info:
            call()
        assert not isinstance(info.value, TransientRemoteError)
        text = str(info.value)
        assert "no such bucket 'no-such-bucket-here'" in text and "s3://no-such-bucket-here/p" in text
        assert S3_SECRET not in text and "\n" not in text


def test_wrong_webdav_password_is_permanent_and_secret(webdav_base: tuple[str, Path]) -> None:
    """401: RemoteError (not transient), no password in the message, the repr or the URL."""
    base, _ = webdav_base
    port = base.rsplit(":", 1)[1]
    wrong = "not-the-password-42"
    r = open_remote(f"webdav://{WEBDAV_USER}:{wrong}@127.0.0.1:{port}/dav/x")
    for call in (lambda: r.list("main"), lambda: r.write_new(SEG, b"x")):
        with pytest.raises(RemoteError) as info:
            call()
        assert not isinstance(info.value, TransientRemoteError)
        assert "401" in str(info.value) and "access denied" in str(info.value)
        assert wrong not in str(info.value) and f"{WEBDAV_USER}:" not in str(info.value)
    for shown in (repr(r), str(r), r.url, r.describe()):  # type: ignore[attr-defined]
        assert wrong not in shown and "@" not in shown


@WITH_URL
def test_secrets_absent_from_errors_and_reprs(backend: Backend) -> None:
    """Neither the S3 secret key nor the WebDAV password appears in any message or repr a test can see."""
    r = open_remote(backend.spec)
    texts = [repr(r), str(r), str(getattr(r, "url", "")), display_remote(backend.spec)]
    if backend.via is not None:
        texts.append(str(pytest.raises(TransientRemoteError, backend.via(free_port()).list, "main").value))
    with pytest.raises(RemoteError) as info:
        r.read("a/../b")
    texts.append(str(info.value))
    for text in texts:
        assert S3_SECRET not in text and WEBDAV_PASSWORD not in text, text


# ---- URLs and layout ----


def test_open_remote_chooses_the_backend_by_url(tmp_path: Path, s3_endpoint: str) -> None:
    """Folder paths and file:// URLs, s3:// with options, webdav(s):// with credentials from URL or env."""
    assert isinstance(open_remote(str(tmp_path)), LocalDirRemote)
    local = open_remote(f"file://{tmp_path}/r")
    assert isinstance(local, LocalDirRemote) and local.root == tmp_path / "r"
    s3 = open_remote(f"s3://{BUCKET}/a/b?endpoint={s3_endpoint}&region=eu-west-1")
    assert isinstance(s3, S3Remote) and s3.prefix == "a/b" and s3.bucket == BUCKET
    assert s3.url == f"s3://{BUCKET}/a/b?endpoint={s3_endpoint}"
    env = {"OPLOG_WEBDAV_USER": "bob", "OPLOG_WEBDAV_PASSWORD": "env-pass-7"}
    dav = open_remote("webdavs://dav.example.org:8443/remote.php/dav/files/bob/oplog/", env=env)
    assert (
        isinstance(dav, WebDavRemote)
        and dav.url == "webdavs://dav.example.org:8443/remote.php/dav/files/bob/oplog"
    )
    assert "env-pass-7" not in repr(dav)
    assert [remote_kind(s) for s in ("/x", "file:///x", "s3://b", "webdav://h/p", "WEBDAVS://h/p")] == [
        "folder",
        "folder",
        "s3",
        "webdav",
        "webdav",
    ]
    assert display_remote("webdav://u:p@h:1/x") == "webdav://h:1/x"
    assert display_remote("/plain/folder") == "/plain/folder"
    for bad in ("", "ftp://h/x", "s3://", "s3://b?colour=red", "s3://b?addressing=sideways", "webdav:///x"):
        with pytest.raises(InvalidArgument):
            open_remote(bad)


def test_a_folder_remote_copied_into_the_store_works_as_is(backend: Backend, tmp_path: Path) -> None:
    """The layout is §6's on every backend: files copied from a folder remote read back under the same paths."""
    folder = LocalDirRemote(tmp_path / "source")
    files = {
        "main/EPOCH": b'{"epoch": "0"}',
        "main/devices/a/0000000000000001.seg": b"segment one",
        "main/devices/a/MANIFEST": b"{}",
        "main/devices/b/0000000000000003.seg": b"segment three",
    }
    for path, data in files.items():
        folder.write_new(path, data)
    target = backend.open()
    source = tmp_path / "source"
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        assert target.write_new(file.relative_to(source).as_posix(), file.read_bytes())
    assert {p: target.read(p) for p in files} == files
    assert target.list("main/devices") == folder.list("main/devices")
    assert target.list("main/devices/a") == folder.list("main/devices/a")
    if backend.disk is not None and backend.kind == "webdav":
        # WebDAV keeps the same tree on the server's disk: a folder remote in all but name.
        assert LocalDirRemote(backend.disk).read("main/devices/b/0000000000000003.seg") == b"segment three"


@SERVED
def test_request_economy(backend: Backend, request: pytest.FixtureRequest) -> None:
    """One request per listing (never recursive), per read, per S3 write; two per WebDAV write (PUT + MOVE)."""
    app: Serialised = (
        request.getfixturevalue("s3_server_app")[1]
        if backend.kind == "s3"
        else request.getfixturevalue("webdav_served")[2]
    )
    r = backend.open()
    for i in range(30):
        r.write_new(f"main/devices/d{i % 3}/{i:016x}.seg", b"s")
    r.replace("main/EPOCH", b"e")

    def count(call: Callable[[], object]) -> list[str]:
        before = len(app.requests)
        call()
        return app.requests[before:]

    assert len(count(lambda: r.list("main/devices"))) == 1
    assert len(count(lambda: r.list("main/devices/d1"))) == 1
    assert len(count(lambda: r.read("main/EPOCH"))) == 1
    assert len(count(lambda: r.read("main/devices/d1/missing"))) == 1
    writes = 1 if backend.kind == "s3" else 2
    assert len(count(lambda: r.write_new("main/devices/d1/new.seg", b"n"))) == writes
    assert len(count(lambda: r.write_new("main/devices/d1/new.seg", b"n"))) == writes + (
        backend.kind == "webdav"
    )
    assert len(count(lambda: r.replace("main/EPOCH", b"f"))) == writes
    _, version = r.read_versioned("main/EPOCH")
    assert len(count(lambda: r.replace_if("main/EPOCH", b"g", version))) == writes
    listing = count(lambda: r.list("main"))
    assert len(listing) == 1 and ("delimiter=" in listing[0].lower() or listing[0].startswith("PROPFIND"))


def test_s3_configuration_from_the_aws_chain(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials from a profile in the shared files, the endpoint from AWS_ENDPOINT_URL_S3, path-style."""
    (tmp_path / "credentials").write_text(
        f"[oplogtest]\naws_access_key_id = {S3_KEY_ID}\naws_secret_access_key = {S3_SECRET}\n"
    )
    (tmp_path / "config").write_text("[profile oplogtest]\nregion = eu-central-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_PROFILE", "oplogtest")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    r = open_remote(f"s3://{BUCKET}/chain-{uuid.uuid4().hex[:8]}")
    assert isinstance(r, S3Remote) and r.endpoint == s3_endpoint and s3_endpoint in r.url
    assert r.write_new("main/EPOCH", b"from a profile") and r.read("main/EPOCH") == b"from a profile"
    assert S3_SECRET not in repr(r) + r.url
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(RemoteError, match="cannot configure") as info:
        open_remote(f"s3://{BUCKET}/x")
    assert "\n" not in str(info.value)


def test_read_many_is_bounded_ordered_and_stops_on_error(backend: Backend) -> None:
    """Reads run at most ``workers`` at a time, results come in the order asked, an error raises at its turn."""
    r = backend.open()
    paths = [f"main/devices/a/{i:016x}.seg" for i in range(40)]
    for i, path in enumerate(paths):
        if i % 7:
            r.write_new(path, f"segment {i}".encode())
    lock = threading.Lock()
    running, peak = [0], [0]

    def read(path: str) -> bytes | None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return r.read(path)
        finally:
            with lock:
                running[0] -= 1

    got = list(read_many(read, paths, workers=4))
    assert [p for p, _ in got] == paths
    assert [d for _, d in got] == [None if i % 7 == 0 else f"segment {i}".encode() for i in range(40)]
    assert 1 <= peak[0] <= 4

    def failing(path: str) -> bytes | None:
        if path.endswith(f"{5:016x}.seg"):
            raise TransientRemoteError("injected")
        return r.read(path)

    seen = []
    with pytest.raises(TransientRemoteError, match="injected"):
        for path, _ in read_many(failing, paths, workers=3):
            seen.append(path)
    assert seen == paths[:5]


def test_content_version_is_a_digest() -> None:
    """The folder's and the fake's version: equal bytes, equal version; no file, None."""
    assert content_version(None) is None
    assert content_version(b"a") == content_version(b"a") != content_version(b"b")


# ---- end to end through the library ----


@WITH_URL
def test_three_devices_converge_through_every_backend(backend: Backend, tmp_path: Path) -> None:
    """Three data directories sync through the backend (opened by URL) and reach the same state."""
    from oplog.clock import FakeClock, RandomIds
    from oplog.store import Store
    from oplog.syncrunner import run_sync
    from oplog.tree import snapshot
    from oplog.wire import request_from_json
    from tests.engine_helpers import numbered_doc_body

    warnings.simplefilter("ignore")
    stores = [
        Store.open(tmp_path / f"d{i}", clock=FakeClock(1_721_527_400_000 + i, step_ms=11), ids=RandomIds(i))
        for i in range(3)
    ]
    try:
        for i, store in enumerate(stores):
            store.apply(request_from_json(numbered_doc_body(i + 1)))
        for store in stores + stores:
            run_sync(store, open_remote(backend.spec), store.clock)
        states = [snapshot(s.ws) for s in stores]
        assert states[0] == states[1] == states[2] and len(stores[0].ws.docs) == 3
        again = run_sync(stores[0], open_remote(backend.spec), stores[0].clock)
        assert not again.changed
        # force-push from device 1 starts a new epoch on this backend too; the others adopt it.
        run_sync(stores[1], open_remote(backend.spec), stores[1].clock, push_mode="force-push")
        for store in stores:
            run_sync(store, open_remote(backend.spec), store.clock)
        assert snapshot(stores[0].ws) == snapshot(stores[1].ws) == snapshot(stores[2].ws)
    finally:
        for store in stores:
            store.close()


_SYNC_CHILD = """
import sys, warnings
warnings.simplefilter("ignore")
from oplog.remoteurl import open_remote
from oplog.store import Store
from oplog.syncrunner import run_sync
store = Store.open(sys.argv[1])
run_sync(store, open_remote(sys.argv[2]), store.clock)
store.close()
"""


@SERVED
def test_a_sync_killed_mid_upload_loses_nothing(backend: Backend, tmp_path: Path) -> None:
    """A sync process SIGKILLed half-way through its uploads (by bytes sent): the next sync completes,
    another device converges, and no temporary or partial object is listed."""
    import shutil

    from oplog.clock import FakeClock, RandomIds
    from oplog.store import Store
    from oplog.syncrunner import run_sync
    from oplog.tree import snapshot
    from oplog.wire import request_from_json
    from tests.engine_helpers import numbered_doc_body

    assert backend.via is not None and backend.server_port is not None
    warnings.simplefilter("ignore")
    a_dir = tmp_path / "a"
    store = Store.open(a_dir, clock=FakeClock(1_721_527_400_000, step_ms=11), ids=RandomIds(3))
    for n in range(1, 121):
        store.apply(request_from_json(numbered_doc_body(n)))
    store.close()
    shutil.copytree(a_dir, tmp_path / "a-probe")

    def proxied_spec(port: int, root: str) -> str:
        if backend.kind == "s3":
            return f"s3://{BUCKET}/{root}?endpoint=http://127.0.0.1:{port}"
        return f"webdav://{WEBDAV_USER}:{WEBDAV_PASSWORD}@127.0.0.1:{port}/dav/{root}"

    proxy = CuttingProxy(backend.server_port)
    try:
        # A full sync of a copy (to another root) measures how many bytes the sync sends...
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                _SYNC_CHILD,
                str(tmp_path / "a-probe"),
                proxied_spec(proxy.port, backend.root + "p"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert probe.returncode == 0, probe.stderr[-2000:]
        total = proxy.forwarded
        assert total > 0
        proxy.forwarded = 0
        # ...then the real one, slowed down, is killed once it has sent about half of that.
        proxy.throttle = 0.005
        child = subprocess.Popen(
            [sys.executable, "-c", _SYNC_CHILD, str(a_dir), proxied_spec(proxy.port, backend.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while proxy.forwarded < total // 2 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
        child.wait()
        print(f"killed after {proxy.forwarded} of {total} bytes (exit {child.returncode})")
    finally:
        proxy.close()
    remote = backend.open()
    a = Store.open(a_dir)
    b = Store.open(tmp_path / "b", clock=FakeClock(1_721_527_500_000, step_ms=11), ids=RandomIds(4))
    try:
        run_sync(a, remote, a.clock)
        run_sync(b, remote, b.clock)
        assert snapshot(a.ws) == snapshot(b.ws) and len(b.ws.docs) == 120
        for device in remote.list("main/devices"):
            names = remote.list(f"main/devices/{device}")
            assert "MANIFEST" in names and not [n for n in names if ".tmp-" in n], names
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------- the command line on every backend


@WITH_URL
def test_two_devices_converge_with_oplog_sync_and_no_secret_is_shown_or_stored(
    backend: Backend, tmp_path: Path
) -> None:
    """oplog apply + oplog sync --remote URL on two data directories: same state hash, no secret anywhere."""
    import json

    from tests.cli_helpers import run_cli
    from tests.engine_helpers import numbered_doc_body

    url = backend.spec  # WebDAV's user and password are in it, S3's keys in the environment
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPLOG_WEBDAV_")}
    outputs: list[str] = []
    for i, name in enumerate(("x", "y"), start=1):
        body = tmp_path / f"{name}.json"
        body.write_text(json.dumps(numbered_doc_body(i)))
        done = run_cli("apply", str(body), "--data", str(tmp_path / name), env=env)
        assert done.returncode == 0, done.stderr
    for name in ("x", "y", "x"):
        done = run_cli("sync", "--remote", url, "--json", "--data", str(tmp_path / name), env=env)
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]
    hashes = []
    for name in ("x", "y"):
        stats = run_cli("stats", "--json", "--data", str(tmp_path / name), env=env)
        assert stats.returncode == 0, stats.stderr
        hashes.append(json.loads(stats.stdout)["state_hash"])
        outputs.append(stats.stdout)
    assert hashes[0] == hashes[1]
    checked = run_cli("verify", "--remote", url, "--data", str(tmp_path / "x"), env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    outputs += [checked.stdout, checked.stderr]
    secrets = [WEBDAV_PASSWORD, os.environ.get("AWS_SECRET_ACCESS_KEY", "never-set-here")]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    for secret in secrets:
        assert not any(secret in text for text in outputs)
        assert not any(secret.encode() in p.read_bytes() for p in files), secret
