"""Many reads from a remote over a bounded pool of concurrent requests (segment downloads).

An initial pull from an object store is latency-bound: one GET at a time
leaves the link idle between replies. ``read_many`` keeps up to ``workers``
reads in flight and hands the results back in the order asked, holding at
most ``2 × workers`` results in memory, so a caller that verifies and stores
segment by segment still sees them in log order. It takes the read function
rather than a remote so the caller's retry wrapper (sync's ``_call``, with
its back-off and ``syncRetry`` events) applies to each read. Every backend's
``read`` is safe to call from several threads (boto3 clients and httpx
clients are; the folder needs no shared state; the fake holds a lock).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["read_many", "DEFAULT_WORKERS"]

#: Reads in flight by default: enough to hide a WAN round trip, few enough for any server's rate limit.
DEFAULT_WORKERS = 8


def read_many(
    read: Callable[[str], bytes | None], paths: Iterable[str], *, workers: int = DEFAULT_WORKERS
) -> Iterator[tuple[str, bytes | None]]:
    """``(path, read(path))`` for each path, in order, with at most ``workers`` reads running at once.

    An error raises when its path's turn comes; reads not yet started are cancelled.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    todo = iter(paths)
    window: deque[tuple[str, Future[bytes | None]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="remote-read") as pool:
        try:
            for path in todo:
                window.append((path, pool.submit(read, path)))
                if len(window) >= 2 * workers:
                    done_path, future = window.popleft()
                    yield done_path, future.result()
            while window:
                done_path, future = window.popleft()
                yield done_path, future.result()
        finally:
            for _, future in window:
                future.cancel()
