"""A deterministic multi-device sync simulation (used by tests/test_sync_sim.py and the CLI crash test)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oplog.archive import archived_events, list_archive
from oplog.clock import FakeClock, RandomIds
from oplog.errors import OplogError, RemoteError
from oplog.remote import FakeRemote, Faults
from oplog.snapcheck import MISMATCH, check_pending
from oplog.store import Store
from oplog.sync import RetryPolicy, SyncSession, parse_sync_params
from oplog.tree import snapshot
from oplog.wire import request_from_json

BOX = "20240101000000-notebk1"
T0 = 1_721_527_400_000


@dataclass
class Device:
    """One simulated device: a real store in its own data directory."""

    store: Store
    clock: FakeClock
    blocks: list[str] = field(default_factory=list)


class Simulation:
    """Seeded devices, operations, syncs and faults; ``check()`` asserts the invariants."""

    def __init__(
        self,
        root: Path,
        seed: int,
        *,
        devices: int | None = None,
        force_modes: bool = True,
        switches: bool = True,
        remote_factory: Callable[[int, Faults, str], Any] | None = None,
        snapshot_every: int = 0,
    ) -> None:
        """``remote_factory(seed, faults, name)`` makes the two remotes (default the in-memory fake).

        ``snapshot_every``: upload remote snapshots that often and start far-behind pulls from
        them, each checked right after its sync (``oplog.snapcheck``); 0 (default) none.
        """
        self.rng = random.Random(seed)
        self.seed = seed
        self.root = root
        n = devices or self.rng.randint(3, 5)
        #: the shared remote everybody settles on, cloud "main" ...
        make = remote_factory or (lambda s, f, name: FakeRemote(s, f, name=name))
        self.remote = make(seed, Faults(), "r0")
        #: ... and a second remote; syncs sometimes go to it, or to another cloud, and come back (issue 15.1)
        self.remotes = [self.remote, make(seed + 1, Faults(), "r1")]
        self.clouds = ["main", "work"]
        self.switches = switches
        # Its own stream, so switching adds to a seed's schedule without changing its edits and faults.
        self.switch_rng = random.Random(seed ^ 0x5EED)
        self.switched = 0
        #: per remote (url, cloud): request ids of this device's events that remote's history was seen to hold
        self.history: dict[tuple[str, str], set[int]] = {}
        #: acknowledged requests a device archived from its own log although the remote it adopted never held them
        self.dropped: dict[int, str] = {}
        self.devices: list[Device] = []
        self.acked: set[tuple[int, int]] = set()
        self.req = 0
        self.force_modes = force_modes
        self.snapshot_every = snapshot_every
        #: snapshot checks that ran: outcome -> count (a mismatch fails ``check``)
        self.snapshot_checks: dict[str, int] = {}
        for i in range(n):
            clock = FakeClock(T0 + i * 7, step_ms=13)
            store = Store.open(root / f"dev{i}", clock=clock, ids=RandomIds(seed * 100 + i))
            self.devices.append(Device(store, clock))

    def close(self) -> None:
        """Close every store."""
        for d in self.devices:
            d.store.close()

    def _apply(self, dev: Device, ops: list[dict[str, Any]]) -> None:
        self.req += 1
        body = {"reqId": self.req, "app": "sim", "session": "s", "transactions": [{"doOperations": ops}]}
        try:
            dev.store.apply(request_from_json(body))
        except OplogError:
            return
        self.acked.add((self.req, 0))

    def random_op(self, dev: Device) -> None:
        """One random edit on ``dev``."""
        rng = self.rng
        ws = dev.store.ws
        docs = sorted(ws.docs)
        blocks = sorted(b for b in (n.id for d in docs for n in _walk(ws.docs[d])) if b not in ws.docs)
        choice = rng.random()
        if not docs or choice < 0.1:
            doc = dev.store._ids.new_block_id(dev.clock.now_ms())
            self._apply(
                dev, [{"action": "createDoc", "id": doc, "data": {"box": BOX, "title": f"D{self.req}"}}]
            )
            return
        doc = rng.choice(docs)
        if not blocks or choice < 0.4:
            self._apply(
                dev,
                [{"action": "appendBlock", "data": f"p{self.req}", "dataType": "markdown", "parentID": doc}],
            )
        elif choice < 0.55:
            self._apply(
                dev,
                [
                    {
                        "action": "insertBlock",
                        "data": f"i{self.req}",
                        "dataType": "markdown",
                        "previousID": rng.choice(blocks),
                    }
                ],
            )
        elif choice < 0.75:
            self._apply(
                dev,
                [
                    {
                        "action": "updateBlock",
                        "id": (b := rng.choice(blocks)),
                        "data": f"u{self.req}",
                        "dataType": "markdown",
                    }
                ],
            )
        elif choice < 0.85:
            a, b = rng.choice(blocks), rng.choice(blocks)
            if a != b:
                self._apply(dev, [{"action": "moveBlock", "id": a, "previousID": b}])
        else:
            self._apply(dev, [{"action": "deleteBlock", "id": rng.choice(blocks)}])

    def _target(self) -> tuple[FakeRemote, str]:
        """Where the next sync goes: mostly the shared remote's main cloud, sometimes elsewhere."""
        if not self.switches or self.switch_rng.random() >= 0.25:
            return self.remote, "main"
        self.switched += 1
        return self.switch_rng.choice(self.remotes), self.switch_rng.choice(self.clouds)

    def sync(
        self,
        dev: Device,
        *,
        push_mode: str = "",
        force: bool = False,
        target: tuple[FakeRemote, str] | None = None,
    ) -> bool:
        """One sync (with the shared remote's main cloud unless ``target`` says otherwise); False if it failed."""
        remote, cloud = target or (self.remote, "main")
        params = parse_sync_params("sim", push_mode=push_mode, force=force, cloud_name=cloud)
        data = dev.store.data_dir
        archived_before = {e.id for e in list_archive(data)}
        ok = True
        try:
            SyncSession(
                dev.store,
                remote,
                params,
                dev.clock,
                sleeper=lambda s: None,
                retry=RetryPolicy(retries=2),
                snapshot_every=self.snapshot_every,
            ).run()
        except RemoteError:
            ok = False
        if self.snapshot_every:
            outcome = check_pending(dev.store)
            if outcome:
                self.snapshot_checks[outcome] = self.snapshot_checks.get(outcome, 0) + 1
        own = self._own_requests(dev)
        held = self.history.setdefault((remote.url, cloud), set())
        if push_mode != "force-pull":
            # Archiving one's own events is right only for events this remote's history held (and a
            # force-push elsewhere dropped); anything else must be rebased, i.e. still be in the own log.
            for entry in list_archive(data):
                if entry.id in archived_before:
                    continue
                for event in archived_events(data, entry):
                    if event.device_id == dev.store.device_id and event.req_id not in own | held:
                        self.dropped[event.req_id] = f"{entry.reason} on {remote.url}/{cloud}"
        if ok:
            held |= own
        return ok

    @staticmethod
    def _own_requests(dev: Device) -> set[int]:
        log = dev.store.device_log(dev.store.device_id)
        return {e.req_id for e in log.read()} if log is not None else set()

    def run(self, steps: int = 12) -> None:
        """Random edits, syncs with faults, interrupted syncs, sometimes a force."""
        rng = self.rng
        for _ in range(steps):
            dev = rng.choice(self.devices)
            r = rng.random()
            if r < 0.55:
                for _ in range(rng.randint(1, 3)):
                    self.random_op(dev)
            else:
                target = self._target()
                f = target[0].faults
                f.io_error = rng.choice([0.0, 0.0, 0.05, 0.2])
                f.partial_upload = rng.choice([0.0, 0.1])
                f.duplicate_upload = rng.choice([0.0, 0.1])
                f.stale_listing = rng.choice([0.0, 0.3])
                f.fail_after = target[0].calls + rng.randint(1, 12) if rng.random() < 0.25 else None
                mode = ""
                if self.force_modes and rng.random() < 0.08:
                    mode = rng.choice(["force-push", "force-pull"])
                self.sync(dev, push_mode=mode, force=rng.random() < 0.1, target=target)
                f.fail_after = None
            if rng.random() < 0.1:
                dev.clock.advance(rng.randint(0, 5000))

    def settle(self, rounds: int = 4) -> None:
        """Quiet rounds without faults until nothing moves."""
        for remote in self.remotes:
            f = remote.faults
            f.io_error = f.partial_upload = f.duplicate_upload = f.stale_listing = 0.0
            f.fail_after = None
        for _ in range(rounds):
            for dev in self.devices:
                assert self.sync(dev), f"seed {self.seed}: quiet sync failed"

    def check(self) -> None:
        """Same state everywhere; every acknowledged request is shared or archived; the remote verifies."""
        seed = self.seed
        snaps = [snapshot(d.store.ws) for d in self.devices]
        for i, s in enumerate(snaps[1:], 1):
            assert s == snaps[0], f"seed {seed}: device {i} differs from device 0"
        try:
            from oplog.statehash import StateHash

            hashes = {StateHash.of(d.store.ws).hexdigest() for d in self.devices}
            assert len(hashes) == 1, f"seed {seed}: state hashes differ"
        except ImportError:
            pass
        seen: set[int] = set()
        d0 = self.devices[0].store
        for device_id in d0.device_ids():
            log = d0.device_log(device_id)
            assert log is not None
            seen.update(e.req_id for e in log.read())
        for dev in self.devices:
            for entry in list_archive(dev.store.data_dir):
                seen.update(e.req_id for e in archived_events(dev.store.data_dir, entry))
        lost = {r for r, _ in self.acked} - seen
        assert not lost, f"seed {seed}: lost requests {sorted(lost)}"
        assert not self.dropped, f"seed {seed}: archived instead of rebased: {self.dropped}"
        assert not self.snapshot_checks.get(MISMATCH), f"seed {seed}: a remote snapshot did not match a fold"
        # The state a device serves equals a fresh fold of its own logs (whatever base it started from).
        from oplog.replay import replay

        for i, dev in enumerate(self.devices):
            fresh = replay(dev.store._logs).state_hash.hexdigest()
            assert fresh == dev.store.state_hash.hexdigest(), (
                f"seed {seed}: device {i} differs from its own fold"
            )
        from oplog.segment import verify_segment
        from oplog.sync import Manifest

        # The shared remote verifies completely (everybody just synced with it). On the other remotes and
        # clouds a folder may hold a torn upload its device never came back to repair; the shared one may not.
        for path, data in self.remote.files.items():
            if path.endswith("/MANIFEST"):
                m = Manifest.decode(data)
                folder = path.rsplit("/", 1)[0]
                for e in m.segments:
                    verify_segment(
                        self.remote.files[f"{folder}/{e.name}"], device_id=m.device_id, first_seq=e.first_seq
                    )


def _walk(node: Any) -> Any:
    yield node
    for child in node.children:
        yield from _walk(child)
