"""`--trace`: one W3C trace id for a command, and the tree of spans the engine recorded.

Owns: making the `traceparent` header the client sends on every request of a
traced command, and after the command fetching `GET /v1/traces/{trace_id}` from
apid and printing its spans as an indented tree with durations. Must not:
record spans itself (apid, managerd and the shim do).
"""

from __future__ import annotations

import os
import time
from typing import Any

__all__ = ["Tracer", "render_tree"]


def _ms(span: dict[str, Any]) -> float | None:
    if span.get("duration_ms") is not None:
        return float(span["duration_ms"])
    start, end = span.get("start"), span.get("end")
    if isinstance(start, int | float) and isinstance(end, int | float):
        scale = 1e-6 if start > 1e15 else 1e3  # nanoseconds or seconds
        return (end - start) * scale
    return None


def _start(span: dict[str, Any]) -> float:
    start = span.get("start") or span.get("start_ns") or 0
    return float(start) if isinstance(start, int | float) else 0.0


def render_tree(spans: list[dict[str, Any]]) -> str:
    """Spans ({span_id, parent_id, name, start, end|duration_ms, attributes}) as a tree."""
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    ids = {s.get("span_id") for s in spans}
    for span in spans:
        parent = span.get("parent_id")
        by_parent.setdefault(parent if parent in ids else None, []).append(span)
    lines: list[str] = []

    def walk(parent: str | None, prefix: str) -> None:
        children = sorted(by_parent.get(parent, []), key=_start)
        for i, span in enumerate(children):
            last = i == len(children) - 1
            ms = _ms(span)
            took = f"{ms:9.1f} ms" if ms is not None else " " * 12
            service = span.get("service") or span.get("process") or ""
            attrs = span.get("attributes") or {}
            detail = " ".join(f"{k}={v}" for k, v in attrs.items()
                              if not isinstance(v, dict | list))
            label = f"{service}: " if service else ""
            branch = "" if parent is None and not prefix else ("└─ " if last else "├─ ")
            lines.append(f"{took}  {prefix}{branch}{label}{span.get('name', '?')}"
                         + (f"  [{detail}]" if detail else "")
                         + ("  ERROR: " + str(span["error"]) if span.get("error") else ""))
            child_prefix = prefix + ("" if parent is None and not prefix else
                                     ("   " if last else "│  "))
            walk(span.get("span_id"), child_prefix)

    walk(None, "")
    return "\n".join(lines) + ("\n" if lines else "")


class Tracer:
    """The trace of one command: its ids, its header, and the report printed after it."""

    def __init__(self) -> None:
        self.trace_id = os.urandom(16).hex()
        self.span_id = os.urandom(8).hex()
        self.traceparent = f"00-{self.trace_id}-{self.span_id}-01"
        self.started = time.monotonic()

    def report(self, ctx: Any) -> None:
        """Fetch the spans (waiting briefly for late writers) and print the tree to stderr."""
        from dockyard.client import api

        total = (time.monotonic() - self.started) * 1000
        spans: list[dict[str, Any]] = []
        for _ in range(5):
            try:
                resp = ctx.client.request("GET", f"/v1/traces/{self.trace_id}")
                data = resp.json()
            except api.APIError as e:
                if e.status == 404 and not spans:
                    time.sleep(0.1)
                    continue
                ctx.err.write(f"trace {self.trace_id}: {e.message}\n")
                return
            except (api.DaemonUnreachable, OSError, ValueError) as e:
                ctx.err.write(f"trace {self.trace_id}: cannot fetch spans: {e}\n")
                return
            spans = data.get("spans", data) if isinstance(data, dict) else data or []
            break
        ctx.err.write(f"\ntrace {self.trace_id}  (dockyard {ctx.verb}: {total:.1f} ms "
                      "end to end)\n")
        if not spans:
            ctx.err.write("  no spans recorded (does this apid record traces?)\n")
            return
        ctx.err.write(render_tree([s for s in spans if isinstance(s, dict)]))
