"""Deterministic multi-device simulation: random edits, faulty remote, interrupted and forced syncs.

``OPLOG_SYNC_SEEDS=10000`` runs more seeds; ``OPLOG_SYNC_SEED=n`` runs only seed n.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from tests.sync_sim import Simulation

_ONE = os.environ.get("OPLOG_SYNC_SEED")
SEEDS = [int(_ONE)] if _ONE else list(range(int(os.environ.get("OPLOG_SYNC_SEEDS", "200"))))


@pytest.mark.parametrize("seed", SEEDS)
def test_devices_converge_without_loss(tmp_path: Path, seed: int) -> None:
    """After a quiet round every device has the same state, nothing acknowledged is lost, the remote verifies."""
    print(f"sync simulation seed {seed} (rerun with OPLOG_SYNC_SEED={seed})")
    warnings.simplefilter("ignore")
    sim = Simulation(tmp_path, seed)
    try:
        sim.run(12)
        sim.settle()
        sim.check()
    finally:
        sim.close()


@pytest.mark.parametrize("seed", range(5))
def test_longer_runs_converge(tmp_path: Path, seed: int) -> None:
    """Longer schedules with more forces."""
    warnings.simplefilter("ignore")
    sim = Simulation(tmp_path, 100_000 + seed, devices=4)
    try:
        sim.run(40)
        sim.settle()
        sim.check()
    finally:
        sim.close()
