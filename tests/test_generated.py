"""The committed generated code in oplog/v1 matches proto/ exactly."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    shutil.copytree(REPO / "proto", tmp_path / "proto")
    protos = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "proto").rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            "--python_out=.",
            "--pyi_out=.",
            "--grpc_python_out=.",
            *protos,
        ],
        cwd=tmp_path,
        check=True,
    )
    generated = sorted(p.name for p in (tmp_path / "oplog" / "v1").iterdir())
    committed = sorted(
        p.name
        for p in (REPO / "oplog" / "v1").iterdir()
        if p.name.endswith((".py", ".pyi")) and p.name != "__init__.py"
    )
    assert generated == committed
    stale = [
        name
        for name in generated
        if not filecmp.cmp(tmp_path / "oplog" / "v1" / name, REPO / "oplog" / "v1" / name, shallow=False)
    ]
    assert not stale, f"regenerate oplog/v1 from proto/ (stale: {stale}); see README"
