"""Sync over the real remotes: racing force-pushes, request counts, HTTP faults, serve + PerformSync, the simulation.

The servers are moto's S3 server and wsgidav (tests/remote_servers.py), started
once for this module on 127.0.0.1 and stopped after; each test works under a
root of its own. Faults come from a real proxy on loopback (``FaultProxy``)
between oplog and the server.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oplog.clock import FakeClock, RandomIds
from oplog.errors import RemoteError, TransientRemoteError
from oplog.remote import VersionedRemote
from oplog.remoteurl import display_remote, open_remote
from oplog.store import Store
from oplog.sync import RetryPolicy
from oplog.syncrunner import run_sync
from oplog.tree import snapshot
from oplog.wire import request_from_json
from tests.engine_helpers import numbered_doc_body
from tests.remote_servers import (
    BUCKET,
    S3_SECRET,
    WEBDAV_PASSWORD,
    WEBDAV_USER,
    FaultProxy,
    Serialised,
    point_aws_chain_at_test_credentials,
    s3_server,
    webdav_server,
)
from tests.watch_helpers import Events

T0 = 1_721_527_400_000
FAST = RetryPolicy(retries=8, backoff_s=0.01, max_backoff_s=0.05)


@pytest.fixture(scope="module")
def s3_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Serialised]]:
    """moto's S3 server for this module, with the AWS chain pointed at fake credentials only."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("aws")
        point_aws_chain_at_test_credentials(mp, home)
        with s3_server() as served:
            yield served


@pytest.fixture(scope="module")
def webdav_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Serialised]]:
    """wsgidav for this module: base URL (``/dav`` is served) and the app."""
    with webdav_server(tmp_path_factory.mktemp("webdav")) as served:
        yield served


@dataclass
class Site:
    """A remote under a fresh root: its URL (with the WebDAV password in it) and, for servers, the app and port."""

    kind: str
    root: str
    spec_at: Callable[[int | None], str]
    app: Serialised | None
    port: int | None

    @property
    def spec(self) -> str:
        """The URL of the remote, directly."""
        return self.spec_at(None)

    def open(self, port: int | None = None) -> VersionedRemote:
        """The remote (through ``port``, a proxy, when given)."""
        remote = open_remote(self.spec_at(port))
        assert isinstance(remote, VersionedRemote)
        return remote


@pytest.fixture
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Site:
    """The folder, S3 or WebDAV (``indirect`` parametrization), under a root no other test uses."""
    kind = request.param
    root = f"s{uuid.uuid4().hex[:10]}"
    if kind == "folder":
        path = tmp_path / "remote"
        return Site(kind, root, lambda port: str(path), None, None)
    if kind == "s3":
        endpoint, app = request.getfixturevalue("s3_app")
        port = int(endpoint.rsplit(":", 1)[1])
        return Site(
            kind,
            root,
            lambda p: f"s3://{BUCKET}/{root}?endpoint=http://127.0.0.1:{p or port}",
            app,
            port,
        )
    base, app = request.getfixturevalue("webdav_app")
    port = int(base.rsplit(":", 1)[1])
    return Site(
        kind,
        root,
        lambda p: f"webdav://{WEBDAV_USER}:{WEBDAV_PASSWORD}@127.0.0.1:{p or port}/dav/{root}",
        app,
        port,
    )


ALL = pytest.mark.parametrize("site", ["folder", "s3", "webdav"], indirect=True)
SERVED = pytest.mark.parametrize("site", ["s3", "webdav"], indirect=True)


def _store(path: Path, i: int) -> Store:
    return Store.open(path, clock=FakeClock(T0 + i * 1000, step_ms=11), ids=RandomIds(1000 + i))


def _doc(store: Store, n: int) -> None:
    store.apply(request_from_json(numbered_doc_body(n)))


def _titles(store: Store) -> set[str]:
    return {str(doc.title) for doc in store.ws.docs.values()} if _has_titles(store) else set(store.ws.docs)


def _has_titles(store: Store) -> bool:
    return all(hasattr(doc, "title") for doc in store.ws.docs.values())


class Interleave:
    """A remote that runs ``hook`` once, just before the first conditional replace of ``EPOCH`` goes out."""

    def __init__(self, inner: VersionedRemote, hook: Callable[[], None]) -> None:
        self.inner = inner
        self.hook: Callable[[], None] | None = hook
        self.url = getattr(inner, "url", "")

    def list(self, folder: str) -> list[str]:
        return self.inner.list(folder)

    def sizes(self, folder: str) -> dict[str, int]:
        return self.inner.sizes(folder)

    def read(self, path: str) -> bytes | None:
        return self.inner.read(path)

    def read_versioned(self, path: str) -> tuple[bytes | None, str | None]:
        return self.inner.read_versioned(path)

    def write_new(self, path: str, data: bytes) -> bool:
        return self.inner.write_new(path, data)

    def replace(self, path: str, data: bytes) -> None:
        self.inner.replace(path, data)

    def replace_if(self, path: str, data: bytes, version: str | None) -> bool:
        if path.endswith("/EPOCH") and version is not None and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return self.inner.replace_if(path, data, version)

    def delete(self, path: str) -> None:
        self.inner.delete(path)

    def sweep(self, folder: str) -> int:
        return self.inner.sweep(folder)


# ---------------------------------------------------------------- EPOCH: replaced only if unchanged


@ALL
def test_racing_force_pushes_have_one_winner_and_lose_nothing(site: Site, tmp_path: Path) -> None:
    """B force-pushes between A's read of EPOCH and A's write of it: B wins, A fails with one clear line,
    then normal syncs converge and every edit of both is kept (A's unpushed one rebased onto B's epoch)."""
    warnings.simplefilter("ignore")
    a, b = _store(tmp_path / "a", 1), _store(tmp_path / "b", 2)
    try:
        _doc(a, 1)
        _doc(b, 2)
        for s in (a, b, a):
            run_sync(s, site.open(), s.clock)
        _doc(a, 3)  # unpushed on A
        _doc(b, 4)  # unpushed on B
        b_result: list[Any] = []
        remote = Interleave(
            site.open(),
            lambda: b_result.append(run_sync(b, site.open(), b.clock, push_mode="force-push")),
        )
        with pytest.raises(RemoteError) as lost:
            run_sync(a, remote, a.clock, push_mode="force-push")
        message = str(lost.value)
        assert (
            "lost a race" in message
            and "\n" not in message
            and not isinstance(lost.value, TransientRemoteError)
        )
        assert b_result and b_result[0].epoch
        epoch_now = json.loads(site.open().read("main/EPOCH") or b"{}")
        assert epoch_now["epoch"] == b_result[0].epoch and epoch_now["device_id"] == b.device_id
        assert "lost a race" in json.loads((tmp_path / "a" / "sync.json").read_text())["last_error"]
        for s in (a, b, a, b):
            run_sync(s, site.open(), s.clock)
        assert snapshot(a.ws) == snapshot(b.ws)
        assert len(a.ws.docs) == 4  # docs 1-4: A's unpushed doc 3 was rebased, not lost
    finally:
        a.close()
        b.close()


@ALL
def test_a_retried_epoch_write_that_had_succeeded_is_no_race(site: Site, tmp_path: Path) -> None:
    """The reply to a successful conditional write of EPOCH is lost; the retry finds EPOCH already ours."""
    warnings.simplefilter("ignore")
    inner = site.open()

    class LostReply(Interleave):
        def replace_if(self, path: str, data: bytes, version: str | None) -> bool:
            done = self.inner.replace_if(path, data, version)
            if path.endswith("/EPOCH") and version is not None and self.hook is not None:
                self.hook = None
                raise TransientRemoteError("reply lost")
            return done

    a = _store(tmp_path / "a", 1)
    try:
        _doc(a, 1)
        run_sync(a, inner, a.clock)
        retries: list[str] = []
        result = run_sync(
            a,
            LostReply(inner, lambda: None),
            a.clock,
            push_mode="force-push",
            retry=FAST,
            sleeper=lambda s: None,
            emit=lambda cmd, cur, tot, msg: retries.append(msg) if cmd == "syncRetry" else None,
        )
        assert len(retries) == 1 and "reply lost" in retries[0]
        assert json.loads(inner.read("main/EPOCH") or b"{}")["epoch"] == result.epoch
    finally:
        a.close()


# ---------------------------------------------------------------- request economy


def _history(folder: Path, tmp_path: Path, segments: int) -> Store:
    """Device B with ``segments`` sealed segments, synced into the folder remote ``folder`` (one per sync)."""
    b = _store(tmp_path / f"b{segments}", 2)
    remote = open_remote(str(folder))
    for n in range(segments):
        _doc(b, n + 1)
        run_sync(b, remote, b.clock)
    return b


def _copy_into(folder: Path, remote: VersionedRemote) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            remote.write_new(path.relative_to(folder).as_posix(), path.read_bytes())


@SERVED
def test_an_incremental_sync_costs_the_same_requests_whatever_the_history(site: Site, tmp_path: Path) -> None:
    """A pulls one new segment of B: the same request count with 4 or 40 segments of history, no recursive listing."""
    assert site.app is not None
    warnings.simplefilter("ignore")
    counts: dict[int, dict[str, int]] = {}
    for size in (4, 40):
        folder = tmp_path / f"history{size}"
        b = _history(folder, tmp_path, size)
        spec = site.spec_at(None).replace(site.root, f"{site.root}-{size}")
        remote = open_remote(spec)
        assert isinstance(remote, VersionedRemote)
        _copy_into(folder, remote)
        a = _store(tmp_path / f"a{size}", 1)
        try:
            run_sync(b, remote, b.clock)  # B joins the copied history on this remote: nothing to upload
            run_sync(a, remote, a.clock)  # A's initial pull
            assert len(a.ws.docs) == size
            _doc(b, size + 1)
            run_sync(b, remote, b.clock)
            before = len(site.app.requests)
            result = run_sync(a, remote, a.clock)
            seen = site.app.requests[before:]
            assert result.pulled_segments == 1 and len(a.ws.docs) == size + 1
        finally:
            a.close()
            b.close()
        by_method: dict[str, int] = {}
        for line in seen:
            method = line.split(" ", 1)[0]
            if "list-type=2" in line:
                method = "LIST"
                assert "delimiter=%2F" in line, f"a recursive listing: {line}"
            by_method[method] = by_method.get(method, 0) + 1
        counts[size] = by_method
        print(f"{site.kind}: incremental sync against {size} segments: {len(seen)} requests {by_method}")
    assert counts[4] == counts[40]
    # EPOCH, the device listing, 2 manifests, this device's folder listing, the one new segment.
    assert sum(counts[40].values()) <= 8


# ---------------------------------------------------------------- faults at the HTTP level


def _fault_chooser(seed: int, rate: float, kinds: tuple[str, ...]) -> Callable[[], str | None]:
    rng = random.Random(seed)
    return lambda: rng.choice(kinds) if rng.random() < rate else None


@SERVED
@pytest.mark.parametrize("seed", [1, 2])
def test_syncs_through_a_faulty_proxy_retry_and_lose_nothing(site: Site, tmp_path: Path, seed: int) -> None:
    """Drops, delays, 500/503/429 and cut replies on a third of the requests: syncs retry (syncRetry) and
    converge, every document arrives on every device (lost = 0)."""
    assert site.app is not None and site.port is not None
    print(f"fault proxy seed {seed}")
    warnings.simplefilter("ignore")
    kinds = ("drop", "delay", "500", "503", "429", "truncate")
    proxy = FaultProxy(site.port, _fault_chooser(seed, 0.3, kinds))
    site.app.close_connections = True
    stores = [_store(tmp_path / f"d{i}", i) for i in range(3)]
    retries: list[str] = []
    try:
        for i, s in enumerate(stores):
            for n in range(3):
                _doc(s, 10 * i + n + 1)
        for s in stores + stores:
            run_sync(
                s,
                site.open(proxy.port),
                s.clock,
                retry=FAST,
                sleeper=lambda t: None,
                emit=lambda cmd, cur, tot, msg: retries.append(msg) if cmd == "syncRetry" else None,
            )
        print(f"injected {proxy.counts}; {len(retries)} retries")
        assert retries and sum(proxy.counts.values()) > 0
        snaps = [snapshot(s.ws) for s in stores]
        assert snaps[0] == snaps[1] == snaps[2] and len(stores[0].ws.docs) == 9
    finally:
        site.app.close_connections = False
        proxy.close()
        for s in stores:
            s.close()


@SERVED
def test_a_server_that_keeps_failing_fails_clearly_and_a_cut_download_applies_nothing(
    site: Site, tmp_path: Path
) -> None:
    """503 on every request: the sync gives up with one line naming the remote (no secret); replies cut
    mid-body with no retries left: the sync fails and nothing of the cut download is applied; then a clean
    sync converges."""
    assert site.app is not None and site.port is not None
    warnings.simplefilter("ignore")
    a, b = _store(tmp_path / "a", 1), _store(tmp_path / "b", 2)
    site.app.close_connections = True
    try:
        _doc(b, 1)
        run_sync(b, site.open(), b.clock)
        always_503 = FaultProxy(site.port, lambda: "503")
        try:
            with pytest.raises(RemoteError) as failed:
                run_sync(a, site.open(always_503.port), a.clock, retry=FAST, sleeper=lambda t: None)
        finally:
            always_503.close()
        text = str(failed.value)
        assert "\n" not in text and "gave up after 8 retries" in text and "503" in text
        assert display_remote(site.spec_at(always_503.port)).split("//", 1)[1].split("/", 1)[0] in text
        assert WEBDAV_PASSWORD not in text and S3_SECRET not in text
        # Cut replies only on the segment downloads: everything else goes through.
        state = {"n": 0}
        downloads = [0]

        class CutSegments(FaultProxy):
            pass

        cut = CutSegments(site.port, lambda: None)
        cut.choose = lambda: "truncate" if state["n"] else None
        remote = site.open(cut.port)
        try:
            original_read = remote.read

            def read(path: str) -> bytes | None:
                state["n"] = 1 if path.endswith(".seg") else 0
                downloads[0] += path.endswith(".seg")
                try:
                    return original_read(path)
                finally:
                    state["n"] = 0

            remote.read = read  # type: ignore[method-assign]
            no_retry = RetryPolicy(retries=0)
            with pytest.raises(RemoteError):
                run_sync(a, remote, a.clock, retry=no_retry, sleeper=lambda t: None)
        finally:
            cut.close()
        assert downloads[0] >= 1 and cut.counts.get("truncate", 0) >= 1
        assert len(a.ws.docs) == 0  # nothing from the cut download was applied
        run_sync(a, site.open(), a.clock)
        assert snapshot(a.ws) == snapshot(b.ws) and len(a.ws.docs) == 1
    finally:
        site.app.close_connections = False
        a.close()
        b.close()


# ---------------------------------------------------------------- the simulation on the real S3 server

#: a slice of tests/test_sync_sim.py's seeds; OPLOG_SOAK=1 runs more
SIM_SEEDS = range(30) if os.environ.get("OPLOG_SOAK") == "1" else range(3)


@pytest.mark.parametrize("site", ["s3"], indirect=True)
@pytest.mark.parametrize("seed", SIM_SEEDS)
def test_simulation_seeds_on_the_real_s3_server(site: Site, tmp_path: Path, seed: int) -> None:
    """The seeded multi-device simulation (edits, faults, interrupted, forced and switched syncs) with both
    of its remotes on moto's S3 server instead of the in-memory fake: same state everywhere, lost = 0."""
    from oplog.remote_s3 import S3Remote
    from tests.remote_faults import FaultyRemote
    from tests.sync_sim import Simulation

    print(f"sync simulation on S3, seed {seed} (rerun with OPLOG_SYNC_SEED={seed})")
    warnings.simplefilter("ignore")
    endpoint = f"http://127.0.0.1:{site.port}"

    def make(s: int, faults: Any, name: str) -> FaultyRemote:
        return FaultyRemote(S3Remote(BUCKET, f"{site.root}-{name}", endpoint=endpoint), s, faults, name=name)

    sim = Simulation(tmp_path, seed, remote_factory=make)
    try:
        sim.run(12)
        sim.settle()
        sim.check()
    finally:
        sim.close()


# ---------------------------------------------------------------- oplog serve + PerformSync


@SERVED
def test_three_devices_through_oplog_serve_and_performsync_keep_secrets(site: Site, tmp_path: Path) -> None:
    """Device A is an ``oplog serve --remote URL`` (syncs by PerformSync), B and C sync locally: they converge;
    a force-push from B is adopted by A's server (A's unpushed edit rebased, nothing lost); a force-pull on the
    server; SERVER, sync.json, GetSyncInfo and the server's output never hold the password or secret key."""
    from oplog.server.client import Client
    from oplog.tools.server_sync import sync_through_server
    from oplog.v1 import oplog_pb2 as pb
    from tests.store_procs import Served

    warnings.simplefilter("ignore")
    a_dir = tmp_path / "a"
    server = Served(a_dir, "--remote", site.spec)
    # The server stamps events with the real clock: so do these (a fake 2024 clock would refuse them as future).
    stores = [Store.open(tmp_path / "b"), Store.open(tmp_path / "c")]
    texts: list[str] = []
    try:
        with Client(server.address) as client:
            client.stub.Apply(request_from_json(numbered_doc_body(1)), timeout=30)
        for i, s in enumerate(stores):
            _doc(s, i + 2)
        for _ in range(2):
            texts.append(repr(sync_through_server(server.address, timeout=120)))
            for s in stores:
                run_sync(s, site.open(), s.clock)
        texts.append(repr(sync_through_server(server.address, timeout=120)))
        with Client(server.address) as client:
            info = client.stub.GetSyncInfo(pb.GetSyncInfoRequest(), timeout=30)
            state_a = client.stub.GetState(pb.GetStateRequest(), timeout=30)
            texts.append(str(info))
            client.stub.Apply(request_from_json(numbered_doc_body(5)), timeout=30)  # unpushed on A
        assert snapshot(stores[0].ws) == snapshot(stores[1].ws) and len(stores[0].ws.docs) == 3, texts
        assert info.pending_local_events == 0 and info.epoch and state_a.position
        # B force-pushes; A's server adopts the new epoch and keeps its unpushed doc 5 (rebased).
        run_sync(stores[0], site.open(), stores[0].clock, push_mode="force-push")
        texts.append(repr(sync_through_server(server.address, timeout=120)))
        for s in stores:
            run_sync(s, site.open(), s.clock)
        assert len(stores[1].ws.docs) == 4
        # force-pull on the server with an unpushed edit: the edit goes to the archive, as on a folder.
        with Client(server.address) as client:
            client.stub.Apply(request_from_json(numbered_doc_body(6)), timeout=30)
        texts.append(repr(sync_through_server(server.address, push_mode="force-pull", timeout=120)))
        with Client(server.address) as client:
            texts.append(str(client.stub.GetSyncInfo(pb.GetSyncInfoRequest(), timeout=30)))
        run_sync(stores[1], site.open(), stores[1].clock)
        assert snapshot(stores[0].ws) == snapshot(stores[1].ws)
    finally:
        for s in stores:
            s.close()
        code, err = server.stop()
    texts.append(err)
    assert code == 0, err[-2000:]
    check = Store.open(a_dir)
    try:
        assert snapshot(check.ws) == _reopen(tmp_path / "b") and len(check.ws.docs) == 4
    finally:
        check.close()
    # The archive, as on a folder: the force-pull archived A's unpushed doc 6, which the remote never held.
    from oplog.archive import archived_events, list_archive

    entries = [e for e in list_archive(a_dir) if e.reason == "force-pull"]
    assert entries, [e.reason for e in list_archive(a_dir)]
    assert any(ev.req_id == 6 for e in entries for ev in archived_events(a_dir, e))
    server_record = json.loads((a_dir / "SERVER").read_text()) if (a_dir / "SERVER").exists() else {}
    assert WEBDAV_PASSWORD not in json.dumps(server_record)
    for secret in (WEBDAV_PASSWORD, S3_SECRET):
        assert not any(secret in t for t in texts), secret
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), (secret, path)


def _reopen(path: Path) -> Any:
    store = Store.open(path)
    try:
        return snapshot(store.ws)
    finally:
        store.close()


# ---------------------------------------------------------------- oplog watch on a remote it polls


@SERVED
def test_watch_polls_a_remote_it_cannot_watch(site: Site, tmp_path: Path) -> None:
    """``Watcher`` on S3/WebDAV: a push by another device is noticed by a poll and pulled; a local commit
    syncs at once (the local folder is still watched); an idle poll costs one listing and one HEAD per
    other device (here 3 requests), never a GET."""
    from oplog.autosync import Schedule
    from oplog.clock import SystemClock
    from oplog.store import StoreOptions
    from oplog.watcher import Batch, LocalSync, SyncEnded, WatchConfig, Watcher

    assert site.app is not None
    warnings.simplefilter("ignore")
    a_dir = tmp_path / "a"
    b = Store.open(tmp_path / "b")
    _doc(b, 1)
    run_sync(b, site.open(), b.clock)
    schedule = Schedule(debounce_s=0.05, max_delay_s=0.5, interval_s=0, backoff_s=0.05, max_backoff_s=0.2)
    clock = SystemClock()
    config = WatchConfig(
        data=a_dir, remote=site.spec, cloud_name=None, schedule=schedule, lock_wait_s=30, poll_s=0.3
    )
    seen = Events()
    watcher = Watcher(
        config,
        sync=LocalSync(a_dir, site.spec, clock, lock_wait_s=30, app="test"),
        find_server=lambda _data: None,
        monotonic=time.monotonic,
        clock=clock,
        observe=seen,
    )
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(watcher.run()), daemon=True)
    thread.start()
    try:
        i, first = seen.wait(lambda e: isinstance(e, SyncEnded))
        assert first.outcome.ok and first.outcome.pulled_segments == 1
        # Another device pushes: a poll notices it, a sync pulls it.
        _doc(b, 2)
        run_sync(b, site.open(), b.clock)
        i, pulled = seen.wait(lambda e: isinstance(e, SyncEnded) and e.outcome.pulled_segments, i + 1)
        assert "remote" in pulled.outcome.trigger and pulled.outcome.ok
        # A local commit syncs at once, without waiting for a poll.
        with Store.open(a_dir, options=StoreOptions(lock_timeout_s=30)) as a:
            a.apply(request_from_json(numbered_doc_body(3)))
        # The local folder is watched: the commit is seen at once (a batch naming it; deferred, not
        # counted, when a poll's sync is already under way and takes it along — CI saw that under load).
        seen.wait(lambda e: isinstance(e, Batch) and "local" in e.seen, i + 1)
        i, pushed = seen.wait(lambda e: isinstance(e, SyncEnded) and e.outcome.pushed_segments, i + 1)
        assert pushed.outcome.ok
        run_sync(b, site.open(), b.clock)
        assert len(b.ws.docs) == 3
        # Idle: count what the polls ask.
        listing = "GET" if site.kind == "s3" else "PROPFIND"
        mark = len(site.app.requests)
        deadline = time.monotonic() + 60
        while len(site.app.requests) < mark + 9 and time.monotonic() < deadline:
            time.sleep(0.05)
        # From the first poll that started after the mark (one may have been under way).
        start = next(k for k in range(mark, mark + 4) if site.app.requests[k].startswith(listing))
        polls = site.app.requests[start : start + 6]
        methods = [line.split(" ", 1)[0] for line in polls]
        print(f"{site.kind}: two idle polls: {polls}")
        assert methods == [listing, "HEAD", "HEAD"] * 2, polls
        assert site.kind == "webdav" or all("list-type=2" in p for p in polls[0::3])
    finally:
        watcher.request_stop()
        thread.join(60)
        b.close()
    assert outcome == [0]


@SERVED
def test_a_permanent_error_fails_the_sync_at_once_in_one_line_without_secrets(
    site: Site, tmp_path: Path
) -> None:
    """Wrong WebDAV password / missing S3 bucket: no syncRetry, one line naming the remote, no secret."""
    warnings.simplefilter("ignore")
    if site.kind == "webdav":
        spec = site.spec.replace(f":{WEBDAV_PASSWORD}@", ":wrong-pass-123@")
        remote_shown = f"127.0.0.1:{site.port}/dav/{site.root}"
    else:
        spec = site.spec.replace(f"s3://{BUCKET}/", "s3://no-such-bucket-here/")
        remote_shown = "no-such-bucket-here"
    a = _store(tmp_path / "a", 1)
    retries: list[str] = []
    try:
        _doc(a, 1)
        with pytest.raises(RemoteError) as failed:
            run_sync(
                a,
                open_remote(spec),
                a.clock,
                retry=FAST,
                sleeper=lambda t: None,
                emit=lambda cmd, cur, tot, msg: retries.append(msg) if cmd == "syncRetry" else None,
            )
    finally:
        a.close()
    text = str(failed.value)
    print(text)
    assert not retries and not isinstance(failed.value, TransientRemoteError)
    assert "\n" not in text and remote_shown in text
    assert "wrong-pass-123" not in text and S3_SECRET not in text and WEBDAV_PASSWORD not in text


def test_oplog_watch_takes_an_s3_or_webdav_url_and_a_poll_interval(tmp_path: Path) -> None:
    """The command line no longer refuses a URL: it stays a URL (not a folded path), polled every --poll."""
    from oplog.errors import InvalidArgument
    from oplog.tools.cli import build_parser
    from oplog.tools.watch import config_from_args

    parser = build_parser()
    data = str(tmp_path / "d")
    url = "webdav://u:p@127.0.0.1:9/dav/x"
    config = config_from_args(parser.parse_args(["watch", "--data", data, "--remote", url, "--poll", "7"]))
    assert config.remote == url and config.poll_s == 7 and not config.poll
    config = config_from_args(parser.parse_args(["watch", "--data", data, "--remote", "s3://b/p"]))
    assert config.remote == "s3://b/p" and config.poll_s == 30
    folder = config_from_args(
        parser.parse_args(["watch", "--data", data, "--remote", "r", "--force-polling"])
    )
    assert folder.remote == Path("r") and folder.poll
    with pytest.raises(InvalidArgument):
        config_from_args(parser.parse_args(["watch", "--data", data, "--remote", url, "--poll", "0"]))
