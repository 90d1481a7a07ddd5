"""The in-process event bus: publish after commit, fan out to subscribers.

Every store publishes through one EventBus (tasks and images too); the Events
gRPC service streams it. Topics are "/<object>/<verb>"; payloads are
protobuf messages from dockyard/protos/events/ (packed in an Any on the wire).
A subscriber that falls ``MAX_QUEUE`` events behind is dropped (its stream
ends) rather than letting it grow memory without bound.

Must not block publishers on slow subscribers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dockyard.managerd import filters as _filters

from dockyard.errdefs import InvalidArgument

log = logging.getLogger(__name__)

__all__ = ["Event", "EventBus", "Subscription"]

MAX_QUEUE = 10000


@dataclass(frozen=True)
class Event:
    timestamp: int  # ns
    namespace: str
    topic: str
    event: Any  # a protobuf message, or a google.protobuf.Any (published over gRPC)

    def field(self, path: list[str]) -> str | None:
        if path == ["topic"]:
            return self.topic
        if path == ["namespace"]:
            return self.namespace
        return None


class Subscription:
    """Iterate to receive events; close() (or the bus) ends the iteration."""

    _END = object()

    def __init__(self, bus: EventBus, filters: list[_filters.Filter]) -> None:
        self._bus, self._filters = bus, filters
        self._queue: queue.Queue = queue.Queue()
        self.closed = False
        self.reason = ""  # why the bus ended it ("" = the subscriber closed it)

    def _offer(self, event: Event) -> None:
        if self.closed or not _filters.match_any(self._filters, event.field):
            return
        if self._queue.qsize() >= MAX_QUEUE:
            log.warning("dropping slow event subscriber queued=%d", MAX_QUEUE)
            self.close(f"subscriber fell {MAX_QUEUE} events behind and was dropped")
            return
        self._queue.put(event)

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None on timeout or when closed."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is self._END:
            self._queue.put(self._END)  # keep later get() calls returning
            return None
        return item

    def __iter__(self) -> Iterator[Event]:
        while True:
            item = self._queue.get()
            if item is self._END:
                self._queue.put(self._END)
                return
            yield item

    def close(self, reason: str = "") -> None:
        if not self.closed:
            self.closed, self.reason = True, reason
            self._bus._remove(self)
            self._queue.put(self._END)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()

    def publish(self, namespace: str, topic: str, event: Any) -> None:
        """Deliver to every matching subscriber; call after the change is committed."""
        if not topic.startswith("/") or len(topic) < 2:
            raise InvalidArgument(f"event topic {topic!r}: must look like /<object>/<verb>")
        ev = Event(time.time_ns(), namespace, topic, event)
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub._offer(ev)

    def subscribe(self, filters: Sequence[str] = ()) -> Subscription:
        sub = Subscription(self, _filters.compile_all(filters))
        with self._lock:
            self._subs.append(sub)
        return sub

    def subscriber_count(self) -> int:
        """How many subscriptions are open (tasks waits for one before publishing the
        exits it recovered after a restart)."""
        with self._lock:
            return len(self._subs)

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def close(self) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.close("managerd is shutting down")
