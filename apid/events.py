"""Docker-shaped events: a bounded in-memory log with live subscribers.

Owns the `/events` feed: every action apid performs publishes one message in
dockerd's shape (`Type`, `Action`, `Actor{ID, Attributes}`, `time`,
`timeNano`, plus the legacy `status`/`id`/`from` for containers and images).
Keeps the last 1024 messages so `since` can replay them (dockerd's
`events.Events` ring buffer). Filters follow moby `daemon/events/filter.go`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from typing import Any

from dockyard.errdefs import InvalidArgument

__all__ = ["EventBus", "parse_filters", "FILTER_KEYS"]

FILTER_KEYS = {"container", "event", "image", "label", "type", "volume", "network", "daemon",
               "plugin", "node", "service", "secret", "config", "scope"}


def parse_filters(raw: str | None, allowed: set[str]) -> dict[str, list[str]]:
    """`{"k":{"v":true}}` or the old `{"k":["v"]}` -> {k: [v...]}; 400 on unknown keys."""
    import json

    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise InvalidArgument(f"invalid filter: {err}") from err
    if not isinstance(data, dict):
        raise InvalidArgument("invalid filter: must be a JSON object")
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        if isinstance(value, dict):
            out[key] = [k for k, v in value.items() if v]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return out


def _matches(msg: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    actor = msg.get("Actor", {})
    attrs = actor.get("Attributes", {})

    def one_of(key: str, values: list[str]) -> bool:
        return key not in filters or any(v in values for v in filters[key])

    kind = msg.get("Type", "")
    if not one_of("type", [kind]):
        return False
    action = msg.get("Action", "")
    if "event" in filters and not any(action == e or action.split(":")[0] == e
                                      for e in filters["event"]):
        return False
    if "container" in filters:
        if kind != "container":
            return False
        name = attrs.get("name", "")
        if not any(actor.get("ID", "").startswith(v) or v == name for v in filters["container"]):
            return False
    if "image" in filters:
        image = attrs.get("image", "") if kind == "container" else actor.get("ID", "")
        if not any(v == image or v == attrs.get("name") or image.startswith(v)
                   for v in filters["image"]):
            return False
    if "label" in filters:
        for want in filters["label"]:
            k, sep, v = want.partition("=")
            if k not in attrs or (sep and attrs[k] != v):
                return False
    if "network" in filters and kind == "network":
        if not any(actor.get("ID", "").startswith(v) or attrs.get("name") == v
                   for v in filters["network"]):
            return False
    return True


class EventBus:
    """publish() from the daemon, subscribe() from GET /events."""

    def __init__(self, keep: int = 1024) -> None:
        self._log: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(
            maxlen=keep)
        self._subs: set[asyncio.Queue] = set()
        self._seq = 0

    def publish(self, kind: str, action: str, actor_id: str,
                attributes: dict[str, str] | None = None) -> dict[str, Any]:
        now = time.time_ns()
        msg: dict[str, Any] = {"Type": kind, "Action": action,
                               "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
                               "scope": "local", "time": now // 1_000_000_000, "timeNano": now}
        if kind in ("container", "image"):
            msg = {"status": action, "id": actor_id,
                   **({"from": attributes.get("image", "")} if kind == "container" and attributes
                      else {}), **msg}
        self._seq += 1
        self._log.append((self._seq, msg))
        for queue in list(self._subs):
            queue.put_nowait((self._seq, msg))
        return msg

    async def subscribe(self, since: float | None, until: float | None,
                        filters: dict[str, list[str]]) -> AsyncIterator[dict[str, Any]]:
        """Past events since `since`, then live ones until `until` (or forever)."""
        queue: asyncio.Queue = asyncio.Queue()
        self._subs.add(queue)
        last = 0  # replayed up to this sequence number: live copies of those are skipped
        try:
            now = time.time()
            if since is not None:
                for seq, msg in list(self._log):
                    t = msg["timeNano"] / 1e9
                    last = seq
                    if t >= since and (until is None or t <= until) and _matches(msg, filters):
                        yield msg
            if until is not None and until <= now:
                return
            while True:
                timeout = None if until is None else max(0.0, until - time.time())
                try:
                    seq, msg = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    return
                if seq <= last:
                    continue
                if since is not None and msg["timeNano"] / 1e9 < since:
                    continue
                if _matches(msg, filters):
                    yield msg
        finally:
            self._subs.discard(queue)
