"""oplog: an event-sourced block store that speaks SiYuan Note's transaction and sync API."""

from __future__ import annotations

from oplog.errors import OplogError

__all__ = ["OplogError", "__version__"]

__version__ = "0.1.0"
