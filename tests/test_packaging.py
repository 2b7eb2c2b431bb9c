"""The wheel installs oplog, oplog.server and oplog.tools and every module imports from it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
    )
    (found,) = out.glob("oplog-*.whl")
    return found


def _source_modules() -> set[str]:
    names = set()
    for folder, package in (("oplog", "oplog"), ("server", "oplog.server"), ("tools", "oplog.tools")):
        for path in (REPO / folder).rglob("*.py"):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            names.add(".".join([package, *parts]))
    return names


def test_wheel_holds_every_module(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        files = archive.namelist()
    in_wheel = {
        name[:-3].replace("/", ".").removesuffix(".__init__") for name in files if name.endswith(".py")
    }
    missing = _source_modules() - in_wheel
    assert not missing, f"add these packages to [tool.setuptools] packages: {sorted(missing)}"
    assert not any(name.startswith(("server/", "tools/")) for name in files), "generic top-level names leaked"
    assert "oplog/py.typed" in files


def test_every_module_imports_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    modules = sorted(_source_modules())
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    subprocess.run(
        [sys.executable, "-c", code, *modules],
        cwd=tmp_path,
        check=True,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    )
