"""The wheel installs oplog, oplog.server and oplog.tools, and every module imports from it on its own.

Importing every module in one process, in sorted order, hides import cycles:
a module that only works when another was imported first passes. So each
module is imported in a process of its own — a child forked from a bare
interpreter that has imported no project module, which is a fresh interpreter
as far as the project is concerned, at a fraction of the start-up cost (about
4 s for all ~75 modules on the 2-core test machine). Cycles closed by a function-local import do not fail
at import time; ``test_layering`` finds those in the source.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.module_map import source_modules

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
    return set(source_modules())


#: Run in a bare interpreter: fork one child per module (argv), import it there, report the failures.
_IMPORT_EACH = """
import importlib, os, sys, traceback
assert not [name for name in sys.modules if name.split(".")[0] == "oplog"]
failed = []
for module in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(module)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status):
        failed.append(module)
print(" ".join(failed))
"""


def import_each(modules: list[str], env: dict[str, str], cwd: Path) -> tuple[list[str], str]:
    """The modules that fail to import on their own (each in a fresh child), and the children's stderr."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, *modules],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split(), done.stderr


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
    env = {"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}
    failed, errors = import_each(sorted(_source_modules()), env, tmp_path)
    assert not failed, f"these modules do not import on their own: {failed}\n{errors[-4000:]}"


def test_a_module_that_needs_another_imported_first_is_caught(tmp_path: Path) -> None:
    """The check itself, on the shape of the old actions cycle: it passes in sorted order, not alone."""
    package = tmp_path / "cyc"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("HANDLERS = {}\nfrom cyc import b\nHANDLERS.update(b.HANDLERS)\n")
    (package / "b.py").write_text("from cyc.a import HANDLERS as _A\nHANDLERS = {'x': 1}\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    together = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    subprocess.run([sys.executable, "-c", together, "cyc.a", "cyc.b"], cwd=tmp_path, env=env, check=True)
    failed, errors = import_each(["cyc.a", "cyc.b"], env, tmp_path)
    assert failed == ["cyc.b"] and "partially initialized module" in errors
