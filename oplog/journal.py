"""The journal: the order in which this data directory stored events.

The change feed (``Subscribe``) numbers events 1, 2, 3… in this order. It is
kept as runs ``(device_id, first_seq, last_seq)``. Local appends never touch
the file: local events past the last recorded local run are an implied final
run, so an apply costs no extra write. Only when sync stores pulled events is
the file rewritten (tmp → fsync → rename), first closing the local run at the
local log's current end, then adding the pulled run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from oplog.errors import StorageError

__all__ = ["Journal", "Run", "JOURNAL_FILE"]

#: The journal's file in a data directory.
JOURNAL_FILE = "journal.json"


@dataclass(frozen=True, slots=True)
class Run:
    """Events ``first_seq..last_seq`` of one device, stored one after another."""

    device_id: str
    first_seq: int
    last_seq: int

    @property
    def count(self) -> int:
        """How many events the run holds."""
        return self.last_seq - self.first_seq + 1


class Journal:
    """Runs of stored events in storage order, with the local tail implied."""

    def __init__(self, path: Path, local_device_id: str) -> None:
        self.path = path
        self.local_device_id = local_device_id
        self.runs: list[Run] = self._load()

    def _load(self) -> list[Run]:
        if not self.path.exists():
            return []
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            runs = [Run(str(r[0]), int(r[1]), int(r[2])) for r in raw["runs"]]
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise StorageError(f"journal {self.path} is unreadable: {exc}") from exc
        return runs

    def _local_recorded(self) -> int:
        return max((r.last_seq for r in self.runs if r.device_id == self.local_device_id), default=0)

    def full_runs(self, local_last_seq: int) -> list[Run]:
        """Every run, the implied local tail included."""
        runs = list(self.runs)
        recorded = self._local_recorded()
        if local_last_seq > recorded:
            runs.append(Run(self.local_device_id, recorded + 1, local_last_seq))
        return runs

    def length(self, local_last_seq: int) -> int:
        """How many events the journal holds."""
        return sum(run.count for run in self.full_runs(local_last_seq))

    def stored_seq(self, device_id: str) -> int:
        """The highest seq of ``device_id`` the journal has recorded (local tail excluded)."""
        return max((r.last_seq for r in self.runs if r.device_id == device_id), default=0)

    def record(self, pulled: list[Run], local_last_seq: int) -> None:
        """Durably add pulled runs after closing the local run at ``local_last_seq``."""
        runs = self.full_runs(local_last_seq)
        for run in pulled:
            if runs and runs[-1].device_id == run.device_id and runs[-1].last_seq + 1 == run.first_seq:
                runs[-1] = Run(run.device_id, runs[-1].first_seq, run.last_seq)
            else:
                runs.append(run)
        self._write(runs)

    def clip(self, heads: dict[str, int]) -> None:
        """Durably keep only what the logs still hold: each run cut at its device's last seq in ``heads``.

        After sync archived events (they left their logs), runs past a
        device's new end shrink or go.
        """
        runs: list[Run] = []
        for run in self.runs:
            last = min(run.last_seq, heads.get(run.device_id, 0))
            if last >= run.first_seq:
                runs.append(Run(run.device_id, run.first_seq, last))
        self._write(runs)

    def _write(self, runs: list[Run]) -> None:
        """The journal's one encoding, written tmp → fsync → rename."""
        from oplog.fsutil import atomic_write

        body = json.dumps({"runs": [[r.device_id, r.first_seq, r.last_seq] for r in runs]})
        atomic_write(self.path, body.encode("utf-8"))
        self.runs = runs

    def entries(self, from_position: int, local_last_seq: int) -> Iterator[tuple[int, Run, int]]:
        """Yield ``(position, run, seq)`` for each event after ``from_position``, in storage order."""
        position = 0
        for run in self.full_runs(local_last_seq):
            if position + run.count <= from_position:
                position += run.count
                continue
            skip = max(0, from_position - position)
            for offset in range(skip, run.count):
                yield position + offset + 1, run, run.first_seq + offset
            position += run.count
