"""``transactions`` messages on ``/ws`` from the store's change feed, whoever applied the request.

A SiYuan frontend redraws from the ``transactions`` messages the kernel pushes
after each applied request. In oplog a request may arrive over HTTP, over gRPC
(``oplog apply --server``) or from another device through sync, so the
messages are taken from the one place all of them pass: the change feed
(``Store.subscribe``). Events of one request are grouped (``tx_index`` /
``tx_count``) into one message whose ``data`` is its transactions, with the
request's ``app`` and ``session`` as ``app``/``sid``; the sender's own session
is skipped, as the kernel's ``PushModeBroadcastExcludeSelf`` does.

The kernel pushes a request's ``transactions`` message before it replies, so
a client that reads its reply and then its own ``pushMsg`` sees them in that
order on ``/ws``. The bridge keeps that order: :meth:`FeedBridge.wait_published`
lets ``/api/transactions`` wait (bounded, and only while someone listens) until
the message for its request is queued, before the reply goes out.

The bridge is one thread holding one subscription. If the feed is rewritten by
a sync (``ChangeFeedRewritten``) it resubscribes where the error says; if it
falls behind (``SubscriberTooSlow``, a WebSocket client can never slow the
store) it resumes from the current end — those messages are lost to the
frontends, which reload, and the log is untouched.
"""

from __future__ import annotations

import logging
import threading

from oplog import wire
from oplog.errors import ChangeFeedRewritten, OplogError, SubscriberTooSlow
from oplog.server.http_ws import Hub, push_message
from oplog.server.service import StoreLike, SubscriptionLike
from oplog.v1 import oplog_pb2 as pb

__all__ = ["FeedBridge", "EXCLUDE_SELF"]

log = logging.getLogger("oplog.server.http")

#: The longest an apply waits for its ``transactions`` message to be queued (seconds). The
#: bridge is normally microseconds behind; this bound only matters on a starved machine.
WAIT_LIMIT = 5.0

#: The kernel's PushModeBroadcastExcludeSelf.
EXCLUDE_SELF = 2


class FeedBridge:
    """Pushes a ``transactions`` message to ``hub`` for each request the store commits from now on."""

    def __init__(self, store: StoreLike, hub: Hub) -> None:
        self.store = store
        self.hub = hub
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._subscription: SubscriptionLike | None = None
        self._thread = threading.Thread(target=self._run, name="oplog-http-feed", daemon=True)
        self._position = store.journal_length()
        #: Notified each time ``_position`` moves (``wait_published`` waits on it).
        self._moved = threading.Condition()

    def start(self) -> None:
        """Start following the feed from its current end."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following; returns once the thread has ended (or ``timeout`` passed)."""
        self._stop.set()
        with self._moved:
            self._moved.notify_all()
        with self._lock:
            subscription = self._subscription
        if subscription is not None:
            subscription.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_published(self, position: int, timeout: float = WAIT_LIMIT) -> bool:
        """Wait until every request up to journal ``position`` has been pushed to the hub; False on timeout.

        Returns at once when nobody listens on ``/ws`` or the bridge is not running: an
        apply is never held up for a message no one will read.
        """
        if not self.hub.count or not self._thread.is_alive():
            return True
        with self._moved:
            return self._moved.wait_for(
                lambda: self._position >= position or self._stop.is_set() or not self._thread.is_alive(),
                timeout,
            )

    def _moved_to(self, position: int) -> None:
        with self._moved:
            self._position = position
            self._moved.notify_all()

    def _publish(self, events: list[pb.Event]) -> None:
        if not self.hub.count:
            # Nobody listens: building the message would only take CPU (and the GIL) from requests.
            return
        first = events[0]
        data = [wire.transaction_to_json(event.transaction) for event in events]
        message = push_message(
            "transactions", data=data, app=first.app, sid=first.session, push_mode=EXCLUDE_SELF
        )
        self.hub.publish(message, exclude_sid=first.session)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                subscription = self.store.subscribe(self._position)
            except OplogError as exc:
                log.warning("the /ws transactions feed cannot subscribe: %s", exc)
                self._stop.wait(1.0)
                continue
            with self._lock:
                self._subscription = subscription
            if self._stop.is_set():
                subscription.close()
                return
            try:
                self._follow(subscription)
            except ChangeFeedRewritten as exc:
                self._moved_to(exc.resume_from)
            except SubscriberTooSlow:
                self._moved_to(self.store.journal_length())
            except OplogError as exc:
                log.warning("the /ws transactions feed ended: %s", exc)
                self._stop.wait(1.0)
            finally:
                subscription.close()

    def _follow(self, subscription: SubscriptionLike) -> None:
        pending: list[pb.Event] = []
        for committed in subscription:
            event = committed.event
            pending.append(event)
            if event.tx_index + 1 >= event.tx_count:
                try:
                    self._publish(pending)
                except Exception:  # noqa: BLE001 - a bad message must not end the feed
                    log.exception("a transactions message could not be built")
                pending = []
            # Moved after the publish: a waiter released here finds its message queued.
            self._moved_to(committed.position)
