"""Request tracing across apid, managerd and the shim (W3C trace context).

A client that sends a `traceparent` header (W3C: `00-<trace-id 32 hex>-<parent
span id 16 hex>-<flags 2 hex>`) gets its request traced: apid records a span
for the HTTP request and one per gRPC call it makes, and forwards the context
to managerd as gRPC metadata `traceparent` (same format, the gRPC call's span
as parent). Without the header nothing is recorded.

## The span file (the format every component appends to)

    <exec-root>/trace/<trace-id>.jsonl      (apid's --exec-root, default /run/dockyard)

One JSON object per line, appended with a single `write()` of the whole line
to a file opened with O_APPEND (so concurrent writers never interleave):

    {"trace_id": "<32 hex>",      the trace
     "span_id": "<16 hex>",       this span, random
     "parent_id": "<16 hex>",     the span that caused it ("" for a root)
     "name": "POST /containers/create",   what ran ("grpc Tasks.Create", "shim create")
     "service": "apid",           who recorded it: apid | managerd | shim | cli
     "start": 1764425000123456789,        unix time in nanoseconds
     "duration": 1234567,         nanoseconds
     "attrs": {"http.status": 201, ...}}   free-form string/number attributes

managerd finds the directory from its own config (`--trace-dir`, default
/run/dockyard/trace = apid's default exec-root) and hands the runtime the
context in the environment: `TRACEPARENT` (the same W3C string, naming
managerd's span) and `DOCKYARD_TRACE_DIR`.
`GET /v1/traces/{trace_id}` returns every span of the file sorted by start.
Span files are removed by retention (age, count, total size: apid and managerd
each run a `dockyard.tracefiles.Sweeper` on their directory; flags
`--trace-max-age/-files/-bytes`), so a trace is readable for a limited time.

Owns the span recording and the ASGI middleware; must not block the event loop
on anything but a small append.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Tracer", "Span", "span", "current_traceparent", "parse_traceparent",
           "TraceMiddleware", "read_trace"]

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    start: int = field(default_factory=time.time_ns)
    attrs: dict[str, Any] = field(default_factory=dict)

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"


_current: contextvars.ContextVar[tuple[Tracer, Span] | None] = contextvars.ContextVar(
    "dockyard_apid_span", default=None)


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace id, parent span id) of a valid W3C traceparent, else None."""
    if not value:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if not m or m.group(1) == "0" * 32 or m.group(2) == "0" * 16:
        return None
    return m.group(1), m.group(2)


class Tracer:
    """Writes spans under <exec-root>/trace/."""

    def __init__(self, directory: str, service: str = "apid") -> None:
        self.directory = directory
        self.service = service

    def path(self, trace_id: str) -> str:
        return os.path.join(self.directory, f"{trace_id}.jsonl")

    def record(self, s: Span, end: int | None = None) -> None:
        line = json.dumps({"trace_id": s.trace_id, "span_id": s.span_id,
                           "parent_id": s.parent_id, "name": s.name, "service": self.service,
                           "start": s.start, "duration": (end or time.time_ns()) - s.start,
                           "attrs": s.attrs}, separators=(",", ":")) + "\n"
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        fd = os.open(self.path(s.trace_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def _new_id() -> str:
    return os.urandom(8).hex()


@contextlib.contextmanager
def span(name: str, **attrs: Any) -> Iterator[Span | None]:
    """A child span of the current one (no-op when the request is not traced)."""
    cur = _current.get()
    if cur is None:
        yield None
        return
    tracer, parent = cur
    s = Span(parent.trace_id, _new_id(), parent.span_id, name, attrs=dict(attrs))
    token = _current.set((tracer, s))
    try:
        yield s
    except BaseException as err:
        s.attrs["error"] = f"{type(err).__name__}: {err}"
        raise
    finally:
        _current.reset(token)
        tracer.record(s)


def current_traceparent() -> str | None:
    cur = _current.get()
    return cur[1].traceparent() if cur else None


class TraceMiddleware:
    """ASGI middleware: a root span per request that carries `traceparent`."""

    def __init__(self, app: Any, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = None
        for k, v in scope.get("headers") or []:
            if k == b"traceparent":
                header = v.decode("latin-1")
        ctx = parse_traceparent(header)
        if ctx is None:
            await self.app(scope, receive, send)
            return
        s = Span(ctx[0], _new_id(), ctx[1], f"{scope['method']} {scope['path']}",
                 attrs={"http.method": scope["method"], "http.target": scope["path"]})
        token = _current.set((self.tracer, s))

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                s.attrs["http.status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            _current.reset(token)
            self.tracer.record(s)


def read_trace(directory: str, trace_id: str) -> list[dict[str, Any]]:
    """Every span of a trace, sorted by start (404 when there is none)."""
    from dockyard.errdefs import InvalidArgument, NotFound

    if not re.fullmatch(r"[0-9a-f]{32}", trace_id):
        raise InvalidArgument(f"invalid trace id: {trace_id}")
    spans = []
    try:
        with open(os.path.join(directory, f"{trace_id}.jsonl")) as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    spans.append(json.loads(line))
    except FileNotFoundError:
        raise NotFound(f"No such trace: {trace_id}") from None
    return sorted(spans, key=lambda s: s.get("start", 0))
