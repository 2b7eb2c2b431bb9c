"""Shared fixtures with plain names, and the ``soak`` marker: real files, real processes, no network.

Everything the suite needs lives in this repository (request bodies in ``tests/fixtures``, the
specification's own examples copied into ``tests/fixtures/spec-examples``), so a plain clone runs it
and nothing outside the repository is read.

Long randomized or crash runs carry ``@pytest.mark.soak`` and are skipped unless ``OPLOG_SOAK=1``;
each such test has a short version that always runs. ``soak_scale`` is the one switch for tests that
run longer rather than separately under ``OPLOG_SOAK=1``, and the hypothesis profile follows it too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from oplog.engine import Engine
from oplog.server.app import RunningServer, start_server
from oplog.server.client import Client
from oplog.server.service import Limits
from oplog.v1 import oplog_pb2 as pb
from tests.engine_helpers import new_engine, with_doc
from tests.fixtures import REQUESTS
from tests.log_helpers import DEVICE
from tests.serve_helpers import ServeProcess
from tests.server_helpers import open_store, setup_request

REPO = Path(__file__).resolve().parents[1]

#: True when the long runs are wanted (``OPLOG_SOAK=1``).
SOAK = os.environ.get("OPLOG_SOAK") == "1"


# Property tests: the default run is derandomized (the same examples every run, so a failure is not
# a matter of luck, and the example database is not consulted), never held to a per-example deadline
# (a loaded 2-core machine is not a bug); the soak run draws fresh examples each time.
settings.register_profile("oplog", deadline=None, derandomize=True, print_blob=True)
settings.register_profile("oplog-soak", deadline=None, print_blob=True)
settings.load_profile("oplog-soak" if SOAK else "oplog")


def soak_scale(default: int, soak: int) -> int:
    """``soak`` under ``OPLOG_SOAK=1``, else ``default`` (iterations, seeds, rounds)."""
    return soak if SOAK else default


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``soak``-marked tests unless ``OPLOG_SOAK=1``."""
    if SOAK:
        return
    skip = pytest.mark.skip(reason="soak test: set OPLOG_SOAK=1")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def examples_dir() -> Path:
    """The request bodies 00…05 in tests/fixtures/requests (see its README for the states)."""
    return REQUESTS


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty folder to use as a data directory."""
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def log_folder(tmp_path: Path) -> str:
    """The folder of the test device's log (tests/log_helpers.py) in a fresh data directory, not yet created."""
    return str(tmp_path / "data" / "devices" / DEVICE)


@pytest.fixture
def engine_body() -> str:
    """The Markdown body of ``engine``'s document (a module overrides this fixture to choose its own)."""
    return ""


@pytest.fixture
def engine(engine_body: str) -> Engine:
    """A fresh engine (fake clock, seeded ids) whose workspace holds one document with ``engine_body``."""
    e = new_engine()
    with_doc(e, engine_body)
    return e


@pytest.fixture
def serve_factory() -> Iterator[list[ServeProcess]]:
    """Started ``oplog serve`` children (append them), killed at the end if a test left them running."""
    started: list[ServeProcess] = []
    yield started
    for child in started:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.communicate(timeout=30)


@pytest.fixture
def tmp_store(tmp_path: Path) -> Iterator[Any]:
    """An open store in a temporary data directory."""
    store = open_store(tmp_path / "data")
    yield store
    store.close()


@pytest.fixture
def grpc_server(tmp_store: Any) -> Iterator[RunningServer]:
    """A server on 127.0.0.1, a free port, no auth, over ``tmp_store``."""
    running = start_server(tmp_store, listen="127.0.0.1:0", limits=Limits(max_request_bytes=256 * 1024))
    yield running
    running.stop(grace=2)


@pytest.fixture
def client(grpc_server: RunningServer) -> Iterator[Client]:
    """A client of ``grpc_server``."""
    with Client(grpc_server.address) as c:
        yield c


@pytest.fixture
def seeded(client: Client) -> pb.ApplyResponse:
    """``client``'s server after tests/fixtures/requests/00-setup.json."""
    reply: pb.ApplyResponse = client.stub.Apply(setup_request(), timeout=30)
    return reply
