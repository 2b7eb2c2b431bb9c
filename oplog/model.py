"""Plain data shared across the core: block specs, block types, ids and stamps."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = [
    "BlockSpec",
    "BLOCK_TYPES",
    "CONTAINER_TYPES",
    "ID_RE",
    "is_block_id",
    "id_time",
    "stamp_from_ms",
]

#: SiYuan block types (SPEC §2).
BLOCK_TYPES = frozenset(
    {
        "d",
        "h",
        "p",
        "l",
        "i",
        "b",
        "s",
        "c",
        "m",
        "t",
        "tb",
        "html",
        "av",
        "query_embed",
        "widget",
        "iframe",
        "video",
        "audio",
    }
)

#: Types whose children are blocks.
CONTAINER_TYPES = frozenset({"d", "l", "i", "b", "s"})

#: A SiYuan block id: creation time, a dash, seven characters.
ID_RE = re.compile(r"^\d{14}-[0-9a-z]{7}$")


def is_block_id(value: object) -> bool:
    """Tell whether ``value`` is a well-formed SiYuan block id."""
    return isinstance(value, str) and ID_RE.match(value) is not None


def id_time(block_id: str) -> str:
    """The creation stamp ``YYYYMMDDHHMMSS`` carried by a block id."""
    return block_id[:14]


def stamp_from_ms(time_ms: int) -> str:
    """Format milliseconds since the epoch (UTC) as SiYuan's ``YYYYMMDDHHMMSS``."""
    return _stamp_of_second(time_ms // 1000)


@lru_cache(maxsize=8)
def _stamp_of_second(second: int) -> str:
    # Every request formats its stamp; requests of the same second share one strftime.
    return datetime.datetime.fromtimestamp(second, tz=datetime.UTC).strftime("%Y%m%d%H%M%S")


@dataclass(slots=True)
class BlockSpec:
    """A parsed block before it is placed: what Markdown or DOM parsing yields.

    ``markdown`` is the block's own Markdown (a leaf's text, a list item's
    marker, empty for other containers); ``attrs`` are the IAL attributes
    (``id`` excluded: it lives in ``id``, empty when the source gave none).
    """

    type: str
    subtype: str = ""
    markdown: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[BlockSpec] = field(default_factory=list)
    id: str = ""
