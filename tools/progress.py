"""The one progress adapter of the CLI: a tqdm bar on stderr that every long command feeds.

The library reports progress in a few shapes — a total then a count of events
(replay, scans), a total that grows as work is planned plus increments (verify,
in bytes), ``(done, total)`` pairs (archive restore), sync steps with a
message — and ``ProgressBar`` accepts each of them, so there is one place that
knows tqdm. The bar is only made when it helps: on a terminal, never with
``--json``, and only once the total reaches ``min_total`` (a bar for a
thousand events is flicker). tqdm is imported when a bar is actually made.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["ProgressBar", "progress_bar", "wanted"]


def wanted(args: argparse.Namespace) -> bool:
    """Whether a command's progress should be shown: stderr is a terminal and the output is not JSON."""
    return sys.stderr.isatty() and not getattr(args, "json", False)


class ProgressBar:
    """A lazily made tqdm bar on stderr; every method is a no-op until there is a bar."""

    def __init__(self, *, desc: str | None = None, unit: str = "ev", min_total: int = 0) -> None:
        self.desc = desc
        self.unit = unit
        self.min_total = min_total
        self._bar: Any = None

    def _make(self, total: int) -> Any:
        if self._bar is None and total >= self.min_total:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, unit=self.unit, unit_scale=True, file=sys.stderr, leave=False, desc=self.desc
            )
        return self._bar

    def set_total(self, total: int) -> None:
        """The amount of work, known before it starts (no bar under ``min_total``)."""
        bar = self._make(total)
        if bar is not None:
            bar.total = total
            bar.refresh()

    def add_total(self, n: int) -> None:
        """More planned work (verify's total grows as it lists files)."""
        bar = self._make(max(n, self.min_total))
        if bar is not None:
            bar.total = (bar.total or 0) + n
            bar.refresh()

    def update_to(self, done: int) -> None:
        """How much is done so far (never past the total)."""
        bar = self._bar
        if bar is not None:
            done = min(done, bar.total) if bar.total else done
            bar.update(done - bar.n)

    def advance(self, n: int) -> None:
        """``n`` more units done."""
        if self._bar is not None:
            self._bar.update(n)

    def report(self, done: int, total: int) -> None:
        """A ``(done, total)`` pair: the bar is made at the first report."""
        if self._bar is None:
            self.set_total(total)
        self.update_to(done)

    def step(self, current: int, total: int, message: str) -> None:
        """A step of a multi-step task with its message (sync's progress events)."""
        bar = self._make(max(total, self.min_total))
        if bar is not None:
            bar.total = max(bar.total or 0, total)
            bar.n = current
            bar.set_postfix_str(message[:40])

    def write(self, message: str) -> None:
        """A line above the bar (or on stderr without one)."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextmanager
def progress_bar(
    enabled: bool, *, desc: str | None = None, unit: str = "ev", min_total: int = 10_000
) -> Iterator[ProgressBar | None]:
    """A ``ProgressBar`` while the block runs (``None`` when disabled), closed afterwards."""
    if not enabled:
        yield None
        return
    bar = ProgressBar(desc=desc, unit=unit, min_total=min_total)
    try:
        yield bar
    finally:
        bar.close()
