"""Verify an encrypted cloud folder: the key opens with the passphrase, and every object opens.

Design. ``oplog.verify_remote`` already reads ``EPOCH``, every ``MANIFEST`` and
every segment they list — through a ``SealedRemote`` each of those reads also
opens the object, and one that does not is reported there ("cannot be read").
What it does not read are objects nothing lists (a segment a manifest dropped,
snapshots, objects of a device whose manifest is gone). This module walks the
whole cloud folder by name and opens each object not read yet, so every object
is opened exactly once. A walk needs no layout knowledge: a name whose listing
is non-empty is a folder, anything else is read as an object.
"""

from __future__ import annotations

from oplog.cloudkey import KEY_FILE
from oplog.errors import DamagedRemoteObject, OplogError
from oplog.sealed import SealedRemote
from oplog.verify import DAMAGE, VerifyReport

__all__ = ["verify_sealed_objects"]


def _walk(remote: SealedRemote, folder: str) -> list[str]:
    """Every path under ``folder`` whose listing is empty (objects), depth first, sorted."""
    out: list[str] = []
    for name in remote.list(folder):
        path = f"{folder}/{name}"
        inside = remote.list(path)
        if inside:
            out.extend(_walk(remote, path))
        else:
            out.append(path)
    return out


def verify_sealed_objects(
    remote: SealedRemote, cloud: str, *, label: str = "<remote>", report: VerifyReport | None = None
) -> VerifyReport:
    """Open every object of ``cloud`` not already read through ``remote``; each that does not open is damage.

    The key itself is checked first (``CloudKeyError`` for a wrong passphrase:
    nothing else can be checked then, so it is raised, not reported).
    """
    report = report if report is not None else VerifyReport()
    remote.check_key(cloud)
    for path in _walk(remote, cloud):
        if path == f"{cloud}/{KEY_FILE}" or path in remote.read_paths:
            continue
        try:
            remote.read(path)
        except DamagedRemoteObject as exc:
            report.add(DAMAGE, "remote-object", f"{label}/{path}", str(exc))
        except OplogError as exc:
            # An empty folder reads as an error, not an object: only name it if it is not a folder.
            if remote.list(path) == [] and "directory" not in str(exc).lower():
                report.add(DAMAGE, "remote-object", f"{label}/{path}", f"cannot be read: {exc}")
    return report
