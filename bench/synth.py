"""What the synthetic histories of the benchmarks share: block ids made from a serial number."""

from __future__ import annotations

__all__ = ["block_id"]

_ALPHA = "0123456789abcdefghijklmnopqrstuvwxyz"


def block_id(ms: int, n: int) -> str:
    """A SiYuan-shaped block id: the stamp of second ``ms // 1000`` (on 2024-07-21) and ``n`` in base 36."""
    suffix = ""
    for _ in range(7):
        n, r = divmod(n, 36)
        suffix += _ALPHA[r]
    return f"20240721{ms // 1000 % 1000000:06d}-{suffix}"
