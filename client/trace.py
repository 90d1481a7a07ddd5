"""`--trace`: one W3C trace for a command, and the tree of spans the engine recorded.

Owns: the `traceparent` header the client sends on every request of a traced
command (`00-<trace id>-<the CLI's span id>-01`), and, after the command,
fetching `GET /v1/traces/{trace_id}` from apid and printing the spans as an
indented tree with their times, under a root span for the CLI itself. Must
not: record spans on disk (apid, managerd and the shim append them to
<exec-root>/trace/<trace-id>.jsonl; the format is documented in apid/trace.py:
trace_id, span_id, parent_id, name, service, start and duration in ns, attrs).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

__all__ = ["Tracer", "render_tree"]

_HIDDEN_ATTRS = ("http.method", "http.target")  # already in the span's name


def _ms(span: dict[str, Any]) -> float | None:
    if span.get("duration") is not None:
        return float(span["duration"]) / 1e6
    if span.get("duration_ms") is not None:
        return float(span["duration_ms"])
    return None


def render_tree(spans: list[dict[str, Any]]) -> str:
    """Spans as a tree: children under their parent, ordered by start, with their times.

    A span whose parent is not in the list is a root (the CLI's own span normally
    is the only one).
    """
    ids = {s.get("span_id") for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:
        parent = s.get("parent_id") or None
        children.setdefault(parent if parent in ids else None, []).append(s)
    t0 = min((s.get("start") or 0 for s in spans), default=0)
    lines: list[str] = []

    def label(s: dict[str, Any]) -> str:
        attrs = s.get("attrs") or s.get("attributes") or {}
        detail = " ".join(f"{k}={v}" for k, v in attrs.items()
                          if k not in _HIDDEN_ATTRS and k != "error"
                          and not isinstance(v, dict | list))
        text = f"{s.get('service', '?')}: {s.get('name', '?')}"
        if detail:
            text += f"  [{detail}]"
        if attrs.get("error"):
            text += f"  ERROR {attrs['error']}"
        # 64-hex ids and digests are unreadable in a tree: docker's 12-digit short form
        return re.sub(r"\b([0-9a-f]{12})[0-9a-f]{52}\b", r"\1", text)

    def walk(parent: str | None, prefix: str, top: bool) -> None:
        kids = sorted(children.get(parent, []), key=lambda s: s.get("start") or 0)
        for i, s in enumerate(kids):
            last = i == len(kids) - 1
            ms = _ms(s)
            at = ((s.get("start") or t0) - t0) / 1e6
            took = f"{ms:8.1f} ms" if ms is not None else " " * 11
            branch = "" if top else ("└─ " if last else "├─ ")
            lines.append(f"{took}  +{at:7.1f}  {prefix}{branch}{label(s)}")
            walk(s.get("span_id"), prefix + ("" if top else ("   " if last else "│  ")), False)

    walk(None, "", True)
    return "\n".join(lines) + ("\n" if lines else "")


class Tracer:
    """The trace of one command: its ids, its header, and the report printed after it."""

    def __init__(self) -> None:
        self.trace_id = os.urandom(16).hex()
        self.span_id = os.urandom(8).hex()
        self.traceparent = f"00-{self.trace_id}-{self.span_id}-01"
        self.start_ns = time.time_ns()

    def _fetch(self, ctx: Any) -> list[dict[str, Any]]:
        from dockyard.client import api

        try:
            data = ctx.client.request("GET", f"/v1/traces/{self.trace_id}").json()
        except api.APIError as e:
            if e.status == 404:
                return []
            raise
        if isinstance(data, dict):
            data = data.get("spans") or []
        return [s for s in data or [] if isinstance(s, dict)]

    def report(self, ctx: Any) -> None:
        """Print the tree to stderr; spans written after apid answered get a moment to land."""
        from dockyard.client import api

        end_ns = time.time_ns()
        ctx.client.extra_headers.pop("traceparent", None)  # do not trace the fetch itself
        spans: list[dict[str, Any]] = []
        try:
            for _ in range(6):
                got = self._fetch(ctx)
                if got and len(got) == len(spans):
                    break
                spans = got
                time.sleep(0.1)
        except api.DaemonUnreachable:
            return  # the command itself already said the daemon is not there
        except (api.APIError, OSError, ValueError) as e:
            ctx.err.write(f"trace {self.trace_id}: cannot fetch its spans: {e}\n")
            return
        root = {"trace_id": self.trace_id, "span_id": self.span_id, "parent_id": "",
                "name": f"dockyard {ctx.verb}", "service": "cli", "start": self.start_ns,
                "duration": end_ns - self.start_ns, "attrs": {}}
        ctx.err.write(f"\ntrace {self.trace_id}\n")
        ctx.err.write(render_tree([root, *spans]))
        if not spans:
            ctx.err.write("  (the engine recorded no spans: does this apid trace requests?)\n")
