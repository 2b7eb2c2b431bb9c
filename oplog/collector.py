"""Pausing CPython's cyclic garbage collector while a big tree of live objects is built.

Loading a checkpoint or folding a long history creates hundreds of thousands
of nodes and dicts that all stay alive. The collector's passes walk that
growing heap again and again for no garbage: half of a 340k-block checkpoint
load, and 11 % of a 1M-event replay (68k events/s with it, 75.7k without,
``python bench/replay.py --events 1000000``). Reference counting still frees
everything a fold drops (a deleted leaf is cut from its parent), and what
cycles there are wait for the next pass after the pause.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]


@contextmanager
def collector_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block, restoring its previous state afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
