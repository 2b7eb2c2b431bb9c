"""The remote contract, run against LocalDirRemote and FakeRemote."""

from __future__ import annotations

from pathlib import Path

import pytest

from oplog.errors import RemoteError, TransientRemoteError
from oplog.remote import FakeRemote, Faults, LocalDirRemote, Remote


@pytest.fixture(params=["local", "fake"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """Each backend in turn."""
    return LocalDirRemote(tmp_path / "remote") if request.param == "local" else FakeRemote(1)


def test_contract(remote: Remote) -> None:
    """Create-only writes, atomic replace, list, read, delete."""
    assert remote.list("main") == []
    assert remote.read("main/EPOCH") is None
    assert remote.write_new("main/devices/a/0000000000000001.seg", b"x")
    assert not remote.write_new("main/devices/a/0000000000000001.seg", b"y")
    assert remote.read("main/devices/a/0000000000000001.seg") == b"x"
    remote.replace("main/devices/a/MANIFEST", b"1")
    remote.replace("main/devices/a/MANIFEST", b"2")
    assert remote.read("main/devices/a/MANIFEST") == b"2"
    assert remote.list("main") == ["devices"]
    assert remote.list("main/devices/a") == ["0000000000000001.seg", "MANIFEST"]
    remote.delete("main/devices/a/MANIFEST")
    remote.delete("main/devices/a/MANIFEST")
    assert remote.list("main/devices/a") == ["0000000000000001.seg"]


@pytest.mark.parametrize("bad", ["../x", "/abs", "a//b", "a/../b", "a\\b", ""])
def test_unsafe_paths_refused(remote: Remote, bad: str) -> None:
    """Paths that could leave the root are refused."""
    with pytest.raises(RemoteError):
        remote.read(bad)


def test_local_leaves_no_temporaries(tmp_path: Path) -> None:
    """Nothing partial or temporary stays under the root."""
    r = LocalDirRemote(tmp_path)
    r.write_new("c/f", b"abc")
    r.replace("c/g", b"def")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["f", "g"]


def test_local_sweep_removes_only_temporaries(tmp_path: Path) -> None:
    """``sweep`` unlinks what a killed writer left in one folder, nothing listed, nothing elsewhere."""
    r = LocalDirRemote(tmp_path)
    r.write_new("c/d/1.seg", b"abc")
    r.replace("c/d/MANIFEST", b"m")
    (tmp_path / "c/d/2.seg.tmp-0123abcd").write_bytes(b"partial")
    (tmp_path / "c/d/MANIFEST.tmp-4567ef01").write_bytes(b"m2")
    (tmp_path / "c/EPOCH.tmp-89ab").write_bytes(b"e")
    assert r.sweep("c/d") == 2
    assert sorted(p.name for p in (tmp_path / "c/d").iterdir()) == ["1.seg", "MANIFEST"]
    assert (tmp_path / "c/EPOCH.tmp-89ab").exists()
    assert r.sweep("c/d") == 0
    assert r.sweep("c/missing") == 0
    assert FakeRemote(1).sweep("c/d") == 0


def test_fake_faults_are_seeded() -> None:
    """The same seed gives the same faults; each kind shows up."""

    def run(seed: int) -> list[str]:
        r = FakeRemote(
            seed, Faults(io_error=0.2, partial_upload=0.2, duplicate_upload=0.2, stale_listing=0.5)
        )
        for i in range(60):
            try:
                r.write_new(f"c/{i}.seg", b"0123456789")
                r.list("c")
            except TransientRemoteError:
                pass
        return r.faults.kinds

    assert run(3) == run(3)
    assert {"io_error", "partial_upload", "duplicate_upload", "stale_listing"} <= set(run(3))


def test_fake_fail_after_cuts_every_call() -> None:
    """``fail_after`` simulates a connection lost mid-sync."""
    r = FakeRemote(0, Faults(fail_after=1))
    r.read("a")
    with pytest.raises(TransientRemoteError):
        r.read("a")
