"""End-to-end encryption of the remote (issue 19): nothing readable on the remote, keys, refusals, passwd.

Everything is real: stores in data directories, ``LocalDirRemote`` on real
files, the real sync, the real ``oplog`` command in a second process for the
passphrase-leak checks. Randomness of the sealing layer is a seeded
``random.Random`` (printed) so a failure replays; the CLI uses ``os.urandom``.
Most clouds here are made with a cheap scrypt cost (recorded in their KEY, as
any cost is); one test runs the default cost through the CLI.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from oplog.clock import FakeClock, RandomIds
from oplog.cloudkey import DEFAULT_KDF, KEY_FILE, KdfParams
from oplog.errors import CloudKeyError, DamagedRemoteObject
from oplog.remote import FakeRemote, Faults, LocalDirRemote, remote_url
from oplog.sealed import SEAL_FORMAT, Keyring, PlainGuardRemote, SealedRemote, guard_remote
from oplog.server.status import status_for
from oplog.statehash import StateHash
from oplog.store import Store
from oplog.syncrunner import run_sync
from oplog.tree import snapshot
from oplog.wire import request_from_json
from tests.sync_sim import Simulation

T0 = 1_721_527_400_000
BOX = "20240101000000-notebk1"
CHEAP = KdfParams(n=1 << 10, r=8, p=1)
PASS = b"correct horse battery staple"
SEED = int(os.environ.get("OPLOG_SEED", "1919"))


def _keyring(passphrase: bytes = PASS, seed: int = SEED) -> Keyring:
    print(f"sealing seed {seed} (rerun with OPLOG_SEED={seed})")
    return Keyring(passphrase, random.Random(seed).randbytes, CHEAP)


def _open(root: Path, name: str, seed: int) -> Store:
    warnings.simplefilter("ignore")
    return Store.open(root / name, clock=FakeClock(T0 + seed, step_ms=11), ids=RandomIds(seed))


def _doc_id(n: int) -> str:
    return f"20240101000000-{n:07d}"


def _doc(store: Store, n: int) -> None:
    op = {"action": "createDoc", "id": _doc_id(n), "data": {"box": BOX, "title": f"Zebracontent{n:04d}"}}
    body = {"reqId": n, "app": "t", "transactions": [{"doOperations": [op]}]}
    store.apply(request_from_json(body))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _sync(store: Store, remote: Any, **kwargs: Any) -> Any:
    return run_sync(store, remote, store._clock, **kwargs)


def test_remote_bytes_hold_no_block_content_or_id_and_two_devices_converge(tmp_path: Path) -> None:
    """Every object on the remote is grepped for ids, titles and device ids in contents; names stay visible."""
    a, b = _open(tmp_path, "a", 1), _open(tmp_path, "b", 2)
    folder = LocalDirRemote(tmp_path / "remote")
    try:
        for n in range(1, 6):
            _doc(a, n)
            _doc(b, 100 + n)
            _sync(a, SealedRemote(folder, _keyring(seed=SEED)))
            _sync(b, SealedRemote(folder, _keyring(seed=SEED + 1)))
        _sync(a, SealedRemote(folder, _keyring(seed=SEED + 2)))
        assert snapshot(a.ws) == snapshot(b.ws) and len(a.ws.docs) == 10
        files = _files(tmp_path / "remote")
        names = set(files)
        assert f"main/{KEY_FILE}" in names and "main/EPOCH" in names
        assert any(n.startswith(f"main/devices/{a.device_id}/") and n.endswith(".seg") for n in names)
        secrets = [_doc_id(n).encode() for n in (*range(1, 6), *range(101, 106))]
        secrets += [
            b"Zebracontent",
            b"notebk1",
            a.device_id.encode(),
            b.device_id.encode(),
            PASS,
            b"createDoc",
        ]
        for name, data in files.items():
            for secret in secrets:
                assert secret not in data, f"{name} holds {secret!r}"
            if name != f"main/{KEY_FILE}":
                assert data.startswith(b"OPLS"), name
        key = json.loads(files[f"main/{KEY_FILE}"])
        assert (
            key["kdf"]["name"] == "scrypt" and key["kdf"]["n"] == CHEAP.n and key["cipher"] == "AES-256-GCM"
        )
        # The local copies stay plain: the pulled segment is the same file a wrote.
        seg = next(n for n in names if n.startswith(f"main/devices/{a.device_id}/") and n.endswith(".seg"))
        local = (b.data_dir / "devices" / a.device_id / seg.rsplit("/", 1)[1]).read_bytes()
        assert (a.data_dir / "devices" / a.device_id / seg.rsplit("/", 1)[1]).read_bytes() == local
        assert _doc_id(1).encode() in local or _doc_id(2).encode() in local or b"Zebracontent" in local
    finally:
        a.close()
        b.close()


def _encrypted_pair(tmp_path: Path) -> tuple[Store, Store, LocalDirRemote]:
    a, b = _open(tmp_path, "a", 1), _open(tmp_path, "b", 2)
    folder = LocalDirRemote(tmp_path / "remote")
    _doc(a, 1)
    _sync(a, SealedRemote(folder, _keyring()))
    return a, b, folder


def test_missing_wrong_and_unneeded_passphrases_are_one_line_errors_and_write_nothing(tmp_path: Path) -> None:
    """No passphrase / a wrong one for an encrypted cloud; a passphrase for a plain one: CloudKeyError, nothing moves."""
    a, b, folder = _encrypted_pair(tmp_path)
    try:
        _doc(b, 2)
        before_remote = _files(tmp_path / "remote")
        before_hash = StateHash.of(b.ws).hexdigest()
        attempts = [
            (PlainGuardRemote(folder), "is encrypted: give its passphrase"),
            (SealedRemote(folder, _keyring(b"not the passphrase")), "wrong passphrase"),
        ]
        for remote, message in attempts:
            with pytest.raises(CloudKeyError, match=message) as info:
                _sync(b, remote)
            assert "\n" not in str(info.value) and PASS.decode() not in str(info.value)
            assert _files(tmp_path / "remote") == before_remote
            assert StateHash.of(b.ws).hexdigest() == before_hash and b.device_log(a.device_id) is None
        assert status_for(info.value)[0] == grpc.StatusCode.FAILED_PRECONDITION
        # A plain cloud (b's, under another name) refuses a passphrase.
        _sync(b, PlainGuardRemote(folder), cloud_name="plain")
        before_remote = _files(tmp_path / "remote")
        before_hash = StateHash.of(a.ws).hexdigest()
        with pytest.raises(CloudKeyError, match="already holds unencrypted data"):
            _sync(a, SealedRemote(folder, _keyring()), cloud_name="plain")
        assert _files(tmp_path / "remote") == before_remote
        assert StateHash.of(a.ws).hexdigest() == before_hash and a.device_log(b.device_id) is None
        # The right passphrase still works.
        _sync(b, SealedRemote(folder, _keyring()), cloud_name="main")
        assert b.device_log(a.device_id) is not None
    finally:
        a.close()
        b.close()


def test_flipped_byte_and_swapped_objects_are_refused_and_nothing_else_is_lost(tmp_path: Path) -> None:
    """A damaged or moved segment is refused by name, never applied; every other device's data arrives."""
    a, b, c = _open(tmp_path, "a", 1), _open(tmp_path, "b", 2), _open(tmp_path, "c", 3)
    folder = LocalDirRemote(tmp_path / "remote")
    root = tmp_path / "remote" / "main" / "devices"
    try:
        for n in range(1, 4):  # three segments of a
            _doc(a, n)
            _sync(a, SealedRemote(folder, _keyring()))
        _doc(c, 50)
        _sync(c, SealedRemote(folder, _keyring()))
        segs = sorted(p for p in (root / a.device_id).iterdir() if p.suffix == ".seg")
        assert len(segs) == 3
        good = {p: p.read_bytes() for p in segs}
        flipped = bytearray(good[segs[1]])
        flipped[len(flipped) // 2] ^= 0x01
        segs[1].write_bytes(bytes(flipped))
        result = _sync(b, SealedRemote(folder, _keyring()))
        assert len(result.refused) == 1 and segs[1].name in result.refused[0]
        assert "does not open" in result.refused[0]
        assert {d.id for d in b.ws.docs.values()} >= {_doc_id(1), _doc_id(50)}
        assert _doc_id(2) not in {d.id for d in b.ws.docs.values()}
        # Swapped: both objects are whole and sealed with the right key, but under each other's name.
        segs[1].write_bytes(good[segs[2]])
        segs[2].write_bytes(good[segs[1]])
        result = _sync(b, SealedRemote(folder, _keyring()))
        assert len(result.refused) == 1 and segs[1].name in result.refused[0]
        assert "moved from another name" in result.refused[0]
        assert _doc_id(2) not in {d.id for d in b.ws.docs.values()}
        with pytest.raises(DamagedRemoteObject) as info:
            SealedRemote(folder, _keyring()).read(f"main/devices/{a.device_id}/{segs[1].name}")
        assert status_for(info.value)[0] == grpc.StatusCode.DATA_LOSS
        # Repaired: everything arrives, the devices converge.
        for p, data in good.items():
            p.write_bytes(data)
        result = _sync(b, SealedRemote(folder, _keyring()))
        assert not result.refused
        _sync(a, SealedRemote(folder, _keyring()))
        assert snapshot(a.ws) == snapshot(b.ws) and len(b.ws.docs) == 4
    finally:
        for s in (a, b, c):
            s.close()


def test_a_damaged_manifest_is_refused_by_name(tmp_path: Path) -> None:
    """A manifest that does not open makes its device unreadable for this sync, the rest goes on."""
    a, b, folder = _encrypted_pair(tmp_path)
    try:
        manifest = tmp_path / "remote" / "main" / "devices" / a.device_id / "MANIFEST"
        data = bytearray(manifest.read_bytes())
        data[-1] ^= 0x80
        manifest.write_bytes(bytes(data))
        result = _sync(b, SealedRemote(folder, _keyring()))
        assert any(a.device_id in r and "MANIFEST" in r for r in result.refused)
        assert b.device_log(a.device_id) is None
    finally:
        a.close()
        b.close()


def test_newer_formats_are_refused_with_upgrade_oplog(tmp_path: Path) -> None:
    """A sealed object or a KEY of a newer format: one line that says to upgrade, never misread."""
    a, b, folder = _encrypted_pair(tmp_path)
    try:
        epoch = tmp_path / "remote" / "main" / "EPOCH"
        data = bytearray(epoch.read_bytes())
        data[4] = SEAL_FORMAT + 1
        epoch.write_bytes(bytes(data))
        with pytest.raises(DamagedRemoteObject, match="upgrade oplog"):
            SealedRemote(folder, _keyring()).read("main/EPOCH")
        key = tmp_path / "remote" / "main" / KEY_FILE
        doc = json.loads(key.read_bytes())
        doc["format"] = 2
        key.write_text(json.dumps(doc))
        with pytest.raises(CloudKeyError, match="upgrade oplog"):
            SealedRemote(folder, _keyring()).check_key("main")
    finally:
        a.close()
        b.close()


def test_each_object_gets_a_fresh_nonce() -> None:
    """The same contents written twice under one name are sealed differently (and both open)."""
    inner = FakeRemote()
    remote = SealedRemote(inner, _keyring())
    remote.replace("main/EPOCH", b"same")
    first = inner.files["main/EPOCH"]
    remote.replace("main/EPOCH", b"same")
    assert inner.files["main/EPOCH"] != first and remote.read("main/EPOCH") == b"same"
    assert inner.files["main/EPOCH"][16:] != first[16:]


def _oplog(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("OPLOG_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "oplog.tools.cli", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=120,
    )


def test_cli_sync_verify_passwd_and_the_passphrase_never_shows(tmp_path: Path) -> None:
    """Real processes: sync, verify and remote passwd with the default KDF; the passphrases appear nowhere."""
    old, new = "tell-no-one-4f1c", "brand-new-9a7e"
    (tmp_path / "old").write_text(old + "\n")
    (tmp_path / "new").write_text(new + "\n")
    remote = str(tmp_path / "remote")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    store = _open(tmp_path, "a", 1)
    _doc(store, 1)
    store.close()
    outputs: list[str] = []

    def run(*args: str, env: dict[str, str] | None = None, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = _oplog(*args, env=env)
        outputs.extend((done.stdout, done.stderr))
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done

    run("sync", "--data", a, "--remote", remote, "--passphrase-file", str(tmp_path / "old"))
    key = json.loads((tmp_path / "remote" / "main" / KEY_FILE).read_bytes())
    assert key["kdf"]["n"] == DEFAULT_KDF.n
    # b: none, wrong, then right (from the environment).
    done = run("sync", "--data", b, "--remote", remote, code=1)
    assert done.stderr.count("\n") == 1 and "is encrypted" in done.stderr and "Traceback" not in done.stderr
    done = run("sync", "--data", b, "--remote", remote, env={"OPLOG_PASSPHRASE": new}, code=1)
    assert "wrong passphrase" in done.stderr and done.stderr.count("\n") == 1
    a_id = (tmp_path / "a" / "DEVICE").read_text().strip()
    assert not (tmp_path / "b" / "devices" / a_id).exists()
    run("sync", "--data", b, "--remote", remote, env={"OPLOG_PASSPHRASE": old})
    done = run("verify", "--data", b, "--remote", remote, "--passphrase-file", str(tmp_path / "old"))
    assert "sound" in done.stdout
    done = run("verify", "--data", b, "--remote", remote, "--passphrase-file", str(tmp_path / "new"), code=1)
    assert "wrong passphrase" in done.stderr
    # passwd: one small write; no segment touched.
    objects = {
        p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "remote").rglob("*") if p.is_file()
    }
    run(
        "remote",
        "passwd",
        "--remote",
        remote,
        "--passphrase-file",
        str(tmp_path / "new"),
        "--new-passphrase-file",
        str(tmp_path / "old"),
        code=1,
    )
    run(
        "remote",
        "passwd",
        "--remote",
        remote,
        "--passphrase-file",
        str(tmp_path / "old"),
        env={"OPLOG_NEW_PASSPHRASE": new},
    )
    changed = [
        p
        for p in (tmp_path / "remote").rglob("*")
        if p.is_file() and objects.get(p) != (p.stat().st_ino, p.stat().st_mtime_ns)
    ]
    assert [p.name for p in changed] == [KEY_FILE]
    done = run("sync", "--data", a, "--remote", remote, "--passphrase-file", str(tmp_path / "old"), code=1)
    assert "wrong passphrase" in done.stderr
    done = run("verify", "--data", a, "--remote", remote, "--passphrase-file", str(tmp_path / "new"))
    assert "sound" in done.stdout
    with_new = run("sync", "--data", b, "--remote", remote, "--json", env={"OPLOG_PASSPHRASE": new})
    assert json.loads(with_new.stdout)["refused"] == []
    # A flipped byte in a segment no manifest lists any more still fails verify, by name.
    extra = tmp_path / "remote" / "main" / "devices" / "stray" / "0000000000000001.seg"
    extra.parent.mkdir()
    extra.write_bytes(b"OPLS\x01\x00" + bytes(40))
    done = run("verify", "--data", a, "--remote", remote, "--passphrase-file", str(tmp_path / "new"), code=1)
    assert "stray/0000000000000001.seg" in done.stdout
    for secret in (old, new):
        for text in outputs:
            assert secret not in text
        for path in tmp_path.rglob("*"):
            if path.is_file() and path.name not in ("old", "new"):
                assert secret.encode() not in path.read_bytes(), path


def test_every_daemon_command_takes_a_passphrase() -> None:
    """serve, sync, watch and verify all offer --passphrase-file (and name $OPLOG_PASSPHRASE)."""
    from oplog.tools.cli import build_parser

    parser = build_parser()
    for command in ("serve", "sync", "watch", "verify"):
        args = parser.parse_args([command, "--passphrase-file", "f"])
        assert args.passphrase_file == "f"


def test_the_daemons_local_sync_seals(tmp_path: Path) -> None:
    """``oplog watch``'s LocalSync syncs through the sealing layer when given a keyring, and refuses without."""
    from oplog.clock import SystemClock
    from oplog.watcher import LocalSync, SyncRequest, is_permanent

    a, b, folder = _encrypted_pair(tmp_path)
    b.close()
    try:
        plain = LocalSync(tmp_path / "b", folder.root, SystemClock(), lock_wait_s=5, app="t")
        with pytest.raises(CloudKeyError) as info:
            plain(SyncRequest("start", None, "main", threading.Event()))
        assert is_permanent(info.value)
        sealed = LocalSync(
            tmp_path / "b", folder.root, SystemClock(), lock_wait_s=5, app="t", keyring=_keyring()
        )
        sealed(SyncRequest("start", None, "main", threading.Event()))
        assert (tmp_path / "b" / "devices" / a.device_id).is_dir()
    finally:
        a.close()


class _SealedFake(SealedRemote):
    """A fake remote behind the sealing layer, with the fake's faults and counters, and its files opened."""

    def __init__(self, inner: FakeRemote, keyring: Keyring) -> None:
        super().__init__(inner, keyring)
        self.fake = inner

    @property
    def faults(self) -> Faults:
        return self.fake.faults

    @property
    def calls(self) -> int:
        return self.fake.calls

    @property
    def files(self) -> dict[str, bytes]:
        """Every object opened (a torn one nobody lists stays as stored, so using it fails loudly)."""
        out: dict[str, bytes] = {}
        for path, blob in self.fake.files.items():
            if path.endswith(f"/{KEY_FILE}"):
                continue
            try:
                out[path] = self.read(path) or b""
            except DamagedRemoteObject:
                out[path] = blob
        return out


class _SealedSimulation(Simulation):
    """The multi-device simulation (remote switches, faults, forces) with every remote behind the sealing layer."""

    def __init__(self, root: Path, seed: int) -> None:
        super().__init__(root, seed, devices=3)
        keyring = Keyring(PASS, random.Random(seed).randbytes, CHEAP)
        self.remote = _SealedFake(self.remote, keyring)  # type: ignore[assignment]
        self.remotes = [self.remote, _SealedFake(self.remotes[1], keyring)]  # type: ignore[list-item]
        self.raw = [r.fake for r in self.remotes]  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", [7, 8])
def test_a_slice_of_the_simulation_runs_encrypted(tmp_path: Path, seed: int) -> None:
    """Random edits and syncs with faults (torn uploads, lost replies, stale listings), all sealed: no loss."""
    print(f"encrypted sync simulation seed {seed}")
    sim = _SealedSimulation(tmp_path, seed)
    try:
        sim.run(12)
        sim.settle()
        sim.check()
        for raw in sim.raw:
            for path, blob in raw.files.items():
                assert path.endswith(f"/{KEY_FILE}") or blob.startswith(b"OPLS"), path
    finally:
        sim.close()


def test_guard_remote_picks_the_layer() -> None:
    """No keyring: the plain guard; a keyring: the sealing layer; the keyring never shows its passphrase."""
    inner = FakeRemote()
    assert isinstance(guard_remote(inner, None), PlainGuardRemote)
    keyring = _keyring()
    assert isinstance(guard_remote(inner, keyring), SealedRemote)
    assert PASS.decode() not in repr(keyring) and PASS.decode() not in str(vars(SealedRemote(inner, keyring)))


def test_compressed_objects_open(tmp_path: Path) -> None:
    """A zlib'd body (flag bit 0, which a later oplog may write) opens; the layer itself never writes one."""
    from oplog.sealed import seal

    inner = FakeRemote()
    remote = SealedRemote(inner, _keyring())
    remote.replace("main/EPOCH", b"x")
    key = remote._keys["main"]
    inner.files["main/EPOCH"] = seal(
        key, "EPOCH", b"squeezed " * 100, random.Random(SEED).randbytes, compress=True
    )
    assert inner.files["main/EPOCH"][:6] == b"OPLS\x01\x01" and len(inner.files["main/EPOCH"]) < 900
    assert remote.read("main/EPOCH") == b"squeezed " * 100


def test_sizes_are_content_sizes(tmp_path: Path) -> None:
    """``sizes`` reports what the manifests hold (stored size less the overhead): sync's read-free check holds."""
    from oplog.sealed import SEAL_OVERHEAD

    a, b, folder = _encrypted_pair(tmp_path)
    try:
        remote = SealedRemote(folder, _keyring())
        stored = folder.sizes(f"main/devices/{a.device_id}")
        seen = remote.sizes(f"main/devices/{a.device_id}")
        assert all(seen[n] == stored[n] - SEAL_OVERHEAD for n in stored)
        for name in seen:
            assert seen[name] == len(remote.read(f"main/devices/{a.device_id}/{name}") or b"")
        assert remote.sizes("main")[KEY_FILE] == folder.sizes("main")[KEY_FILE]
        assert remote.url == remote_url(folder) != ""
        # A sync with nothing new re-uploads nothing: the sizes agree with the manifest.
        _doc(a, 2)
        result = _sync(a, remote)
        assert result.pushed_segments == 1 and not result.repaired
        assert _sync(a, SealedRemote(folder, _keyring())).pushed_segments == 0
    finally:
        a.close()
        b.close()


def test_bench_crypt_runs_end_to_end(tmp_path: Path) -> None:
    """bench/crypt.py's smallest run prints every figure and writes them (never timed here)."""
    from tests.bench_helpers import run_bench

    out = tmp_path / "figures.json"
    stdout = run_bench("crypt.py", "--mb", "1", "--json", str(out), timeout=300)
    assert "push encrypted" in stdout and "initial pull encrypted" in stdout and "scrypt" in stdout
    figures = json.loads(out.read_text())
    assert set(figures["push"]["seconds"]) == set(figures["pull"]) == {"plain", "encrypted", "encrypted+zlib"}
    assert figures["pull"]["encrypted"]["events"] == figures["pull"]["plain"]["events"] == figures["events"]


def test_passphrase_from_file_or_environment(tmp_path: Path) -> None:
    """The file wins over the environment, one trailing newline is dropped; empty or missing is a one-line error."""
    import argparse

    from oplog.errors import InvalidArgument
    from oplog.tools.passphrase import passphrase_from

    f = tmp_path / "p"
    f.write_bytes(b"  spaced pass \n")
    assert (
        passphrase_from(argparse.Namespace(passphrase_file=str(f)), {"OPLOG_PASSPHRASE": "env"})
        == b"  spaced pass "
    )
    assert passphrase_from(argparse.Namespace(passphrase_file=None), {"OPLOG_PASSPHRASE": "env"}) == b"env"
    assert passphrase_from(argparse.Namespace(passphrase_file=None), {}) is None
    f.write_bytes(b"\n")
    with pytest.raises(InvalidArgument, match="empty"):
        passphrase_from(argparse.Namespace(passphrase_file=str(f)), {})
    with pytest.raises(InvalidArgument, match="OPLOG_PASSPHRASE"):
        passphrase_from(argparse.Namespace(passphrase_file=None), {"OPLOG_PASSPHRASE": ""})
    with pytest.raises(InvalidArgument, match="No such file"):
        passphrase_from(argparse.Namespace(passphrase_file=str(tmp_path / "missing")), {})


def test_serve_syncs_an_encrypted_remote_with_its_passphrase(tmp_path: Path) -> None:
    """``oplog serve --passphrase-file``: its syncs (asked by ``oplog sync``) open the cloud; a wrong one is refused."""
    from tests.serve_helpers import ServeProcess

    a, b, folder = _encrypted_pair(tmp_path)
    a_id = a.device_id
    a.close()
    b.close()
    (tmp_path / "right").write_text(PASS.decode() + "\n")
    (tmp_path / "wrong").write_text("not it\n")
    for name, ok in (("wrong", False), ("right", True)):
        server = ServeProcess(
            tmp_path / "b", "--remote", str(folder.root), "--passphrase-file", str(tmp_path / name)
        )
        try:
            done = _oplog("sync", "--data", str(tmp_path / "b"))
        finally:
            code, err = server.stop()
        assert code == 0, err
        assert (done.returncode == 0) == ok, (done.stdout, done.stderr)
        assert (tmp_path / "b" / "devices" / a_id).is_dir() == ok
        if not ok:
            assert "wrong passphrase" in done.stderr and done.stderr.count("\n") == 1
        for text in (done.stdout, done.stderr, err):
            assert PASS.decode() not in text and "not it" not in text


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """moto's S3 server and wsgidav on loopback (tests/remote_servers.py): a maker of a fresh remote of each."""
    import uuid

    from oplog.remote_s3 import S3Remote
    from oplog.remote_webdav import WebDavRemote
    from tests.remote_servers import (
        BUCKET,
        WEBDAV_PASSWORD,
        WEBDAV_USER,
        point_aws_chain_at_test_credentials,
        s3_server,
        webdav_server,
    )

    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("aws")
        point_aws_chain_at_test_credentials(mp, home)
        with s3_server() as (endpoint, _), webdav_server(tmp_path_factory.mktemp("dav")) as (base, _):

            def make(kind: str) -> Callable[[], Any]:
                """An opener of one fresh root on the ``kind`` server (each sync opens its own client)."""
                root = f"c{uuid.uuid4().hex[:10]}"
                if kind == "s3":
                    return lambda: S3Remote(BUCKET, root, endpoint=endpoint)
                return lambda: WebDavRemote(f"{base}/dav/{root}", user=WEBDAV_USER, password=WEBDAV_PASSWORD)

            yield make


@pytest.mark.parametrize("kind", ["s3", "webdav"])
def test_two_devices_converge_through_an_encrypted_object_store(
    tmp_path: Path, served: Any, kind: str
) -> None:
    """An encrypted S3 bucket and an encrypted WebDAV share: devices converge; every stored object is sealed."""
    opener = served(kind)
    a, b = _open(tmp_path, "a", 1), _open(tmp_path, "b", 2)
    try:
        for n in range(1, 4):
            _doc(a, n)
            _doc(b, 20 + n)
            _sync(a, SealedRemote(opener(), _keyring(seed=SEED + n)))
            _sync(b, SealedRemote(opener(), _keyring(seed=SEED + 10 + n)))
        _sync(a, SealedRemote(opener(), _keyring()))
        assert snapshot(a.ws) == snapshot(b.ws) and len(a.ws.docs) == 6
        raw = opener()
        paths = [f"main/{n}" for n in raw.list("main") if n != "devices"]
        for device in raw.list("main/devices"):
            paths += [f"main/devices/{device}/{n}" for n in raw.list(f"main/devices/{device}")]
        assert f"main/{KEY_FILE}" in paths and len(paths) > 4
        for path in paths:
            data = raw.read(path)
            assert data is not None
            assert path.endswith(KEY_FILE) or data.startswith(b"OPLS"), path
            assert _doc_id(1).encode() not in data and b"Zebracontent" not in data, path
        with pytest.raises(CloudKeyError, match="wrong passphrase"):
            _sync(b, SealedRemote(opener(), _keyring(b"other")))
        with pytest.raises(CloudKeyError, match="is encrypted"):
            _sync(b, PlainGuardRemote(opener()))
    finally:
        a.close()
        b.close()
