"""Encryption cost: push and initial pull of a history, encrypted next to plain, in one run (target <= 1.3x).

Usage: python bench/crypt.py [--mb 100] [--dir DIR] [--json FILE] [--seed N]

Everything is real: a data directory holding one device's ~``--mb`` MB log
(the synthetic events of bench/replay.py), ``LocalDirRemote`` folders, the real
sync (``run_sync``), the real sealing layer (``SealedRemote`` with ``os.urandom``
and the default scrypt cost). Measured in one run:

1. scrypt at the default cost (the time a process pays once per cloud key);
2. push: one store pushes its whole history to fresh remotes in the order
   plain, encrypted, encrypted+zlib, encrypted+zlib, encrypted, plain; the best
   of each kind is reported (the order evens out the machine's phases);
3. initial pull: a fresh device pulls the plain remote, then the encrypted one,
   then the encrypted+zlib one; the whole sync and its transfer part (the sync
   less the fold of the pulled events, which is the same for both) are reported;
4. what zlib level 1 does to the segments: ratio and MB/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.replay import _Device  # noqa: E402
from bench.sync import CountingRemote, _time_after_pull, open_store, write_device_history  # noqa: E402
from oplog.cloudkey import DEFAULT_KDF  # noqa: E402
from oplog.remote import LocalDirRemote  # noqa: E402
from oplog.sealed import Keyring, SealedRemote, seal  # noqa: E402
from oplog.syncrunner import run_sync  # noqa: E402

PASSPHRASE = b"bench passphrase"
#: Bytes per synthetic event in a segment, measured (bench/sync.py's 100 MB remote: 346,112 events).
BYTES_PER_EVENT = 290


def _remote(root: Path, kind: str, keyring: Keyring) -> Any:
    inner = LocalDirRemote(root)
    if kind == "plain":
        return inner
    return _ZlibSealedRemote(inner, keyring) if kind == "encrypted+zlib" else SealedRemote(inner, keyring)


class _ZlibSealedRemote(SealedRemote):
    """Sealing with zlib before encryption: measured here only (the sealing layer does not write it)."""

    def _sealed(self, path: str, data: bytes) -> bytes:
        cloud, rel = path.split("/", 1)
        key = self._key(cloud, create=True)
        assert key is not None
        return seal(key, rel, data, self.keyring.random_bytes, compress=True)


def kdf_seconds() -> float:
    """One scrypt derivation at the default cost."""
    start = time.perf_counter()
    DEFAULT_KDF.derive(PASSPHRASE, os.urandom(16))
    return time.perf_counter() - start


def push(folder: Path, data_dir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The whole history pushed to fresh remotes, plain and encrypted, interleaved; best time per kind."""
    store = open_store(data_dir)
    keyring = Keyring(PASSPHRASE, os.urandom)
    times: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    roots: dict[str, Path] = {}
    try:
        order = ["plain", "encrypted", "encrypted+zlib", "encrypted+zlib", "encrypted", "plain"]
        for i, kind in enumerate(order):
            root = folder / f"push-{i}-{kind}"
            remote = CountingRemote(_remote(root, kind, keyring))  # type: ignore[arg-type]
            start = time.perf_counter()
            result = run_sync(store, remote, store._clock, cloud_name="main")
            times.setdefault(kind, []).append(time.perf_counter() - start)
            assert result.pushed_segments > 0
            sizes[kind] = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
            if kind in roots:
                shutil.rmtree(roots[kind])
            roots[kind] = root  # the last remote of each kind is kept for the pulls
    finally:
        store.close()
    return {"seconds": {k: min(v) for k, v in times.items()}, "all": times, "remote_bytes": sizes}, roots


def pull(folder: Path, kind: str, remote_root: Path) -> dict[str, Any]:
    """A fresh device pulls ``remote_root``; whole sync and transfer (less the fold) seconds."""
    store = open_store(folder / f"fresh-{kind}")
    applying = _time_after_pull(store)
    keyring = Keyring(PASSPHRASE, os.urandom)
    remote = _remote(remote_root, kind, keyring)
    try:
        start = time.perf_counter()
        result = run_sync(store, remote, store._clock, cloud_name="main")
        seconds = time.perf_counter() - start
        assert not result.refused, result.refused
        events = result.pulled_events
    finally:
        store.close()
    shutil.rmtree(folder / f"fresh-{kind}")
    return {"seconds": seconds, "transfer_s": seconds - sum(applying), "events": events}


def zlib_figures(segments: list[Path]) -> dict[str, float]:
    """zlib level 1 over the segments: ratio, compress and decompress MB/s."""
    raw = comp = 0
    c_s = d_s = 0.0
    for path in segments:
        data = path.read_bytes()
        start = time.perf_counter()
        packed = zlib.compress(data, 1)
        c_s += time.perf_counter() - start
        start = time.perf_counter()
        zlib.decompress(packed)
        d_s += time.perf_counter() - start
        raw += len(data)
        comp += len(packed)
    return {"ratio": comp / raw, "compress_mb_s": raw / 1e6 / c_s, "decompress_mb_s": raw / 1e6 / d_s}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures and the ratios to plain."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="history size in MB (default 100)")
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one, removed)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args(argv)
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="oplog-bench-crypt-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        out: dict[str, Any] = {"kdf_s": kdf_seconds(), "kdf": vars(DEFAULT_KDF)}
        data_dir = folder / "src"
        events = int(args.mb * 1e6 / BYTES_PER_EVENT)
        t = time.perf_counter()
        out["history_bytes"] = write_device_history(data_dir, _Device(0, random.Random(args.seed)), events)
        out["events"] = events
        out["build_s"] = time.perf_counter() - t
        segments = sorted((data_dir / "devices").rglob("*.seg"))
        out["zlib"] = zlib_figures(segments)
        out["push"], remotes = push(folder, data_dir)
        out["pull"] = {
            kind: pull(folder, kind, remotes[kind]) for kind in ("plain", "encrypted", "encrypted+zlib")
        }
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)
    print_figures(out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


def print_figures(out: dict[str, Any]) -> None:
    """The figures as the docs quote them."""
    mb = out["history_bytes"] / 1e6
    kdf = out["kdf"]
    print(f"scrypt N=2^{kdf['n'].bit_length() - 1}, r={kdf['r']}, p={kdf['p']}: {out['kdf_s']:.3f} s")
    z = out["zlib"]
    print(
        f"zlib level 1 on the segments: {z['ratio']:.1%} of the size, "
        f"{z['compress_mb_s']:.0f} MB/s compress, {z['decompress_mb_s']:.0f} MB/s decompress"
    )
    print(f"history: {mb:.1f} MB, {out['events']:,} events, one device")
    p = out["push"]["seconds"]
    sizes = out["push"]["remote_bytes"]
    for kind in ("plain", "encrypted", "encrypted+zlib"):
        ratio = p[kind] / p["plain"]
        print(
            f"  push {kind:15s} {p[kind]:7.2f} s  {mb / p[kind]:7.1f} MB/s  x{ratio:.2f} "
            f"(remote {sizes[kind] / 1e6:.1f} MB)"
            + ("" if kind == "plain" else f"  target <= 1.3: {'met' if ratio <= 1.3 else 'MISSED'}")
        )
    less = p["encrypted"] - out["kdf_s"]
    print(
        f"  push encrypted less its one scrypt ({out['kdf_s']:.2f} s, a new cloud key): {less:.2f} s "
        f"x{less / p['plain']:.2f}"
    )
    q = out["pull"]
    for kind in ("plain", "encrypted", "encrypted+zlib"):
        ratio = q[kind]["seconds"] / q["plain"]["seconds"]
        tratio = q[kind]["transfer_s"] / q["plain"]["transfer_s"]
        print(
            f"  initial pull {kind:15s} {q[kind]['seconds']:7.2f} s x{ratio:.2f}; "
            f"transfer (less the fold) {q[kind]['transfer_s']:6.2f} s x{tratio:.2f}"
            + ("" if kind == "plain" else f"  target <= 1.3: {'met' if ratio <= 1.3 else 'MISSED'}")
        )
    for kind in ("encrypted", "encrypted+zlib"):
        both = p[kind] + q[kind]["seconds"]
        plain = p["plain"] + q["plain"]["seconds"]
        print(
            f"  push + initial pull {kind:15s} {both:7.2f} s vs plain {plain:.2f} s: x{both / plain:.2f}  "
            f"target <= 1.3: {'met' if both / plain <= 1.3 else 'MISSED'}"
        )


if __name__ == "__main__":
    sys.exit(main())
