"""Shared fixtures: plain names, real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The project's shared/ folder (beside the repository, or $OPLOG_SHARED)."""
    override = os.environ.get("OPLOG_SHARED")
    return Path(override) if override else REPO.parent / "shared"


@pytest.fixture
def examples_dir() -> Path:
    """The SiYuan request bodies in shared/examples."""
    path = shared_dir() / "examples"
    if not path.is_dir():
        pytest.skip(f"shared examples not found at {path}")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty folder to use as a data directory."""
    path = tmp_path / "data"
    path.mkdir()
    return path
