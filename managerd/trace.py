"""managerd's part of request tracing: a span per traced gRPC call, and the runtime's context.

A gRPC call that carries the metadata ``traceparent`` (W3C trace context,
``00-<trace id>-<parent span id>-<flags>``, sent by apid) is traced: the
server interceptor records one span for it (``grpc Tasks.Create``, parent:
apid's span for the call) and makes it the current span of the handler's
thread while the handler runs. Runtime invocations then take part:

- ``runtime_call(verb, id)``: a child span for one runtime run by managerd
  itself (start, kill, delete, ...); it yields the runtime's environment,
  with ``TRACEPARENT`` naming that span and ``DOCKYARD_TRACE_DIR`` the span
  directory, so the shim's spans nest under it.
- ``env_argv(verb, id)``: the same two variables as ``NAME=VALUE`` words
  put in front of a runtime argv that the task monitor runs (create, exec);
  the monitor moves them into the runtime's environment. They name a
  ``runtime <verb>`` span that ends with the call (the monitor, not
  managerd, sees the runtime exit): its start shows what came before (the
  bundle), the gap to the shim's own span the monitor and interpreter start.

Spans go to ``<trace dir>/<trace id>.jsonl``, the file apid reads; the
format (one JSON object per line, one O_APPEND write each) is documented in
apid/trace.py. Calls without ``traceparent`` record nothing and create no
file. The server removes old span files (``dockyard.tracefiles.Sweeper``, flags
``--trace-max-age/-files/-bytes``: at start and periodically). Owns: the
interceptor, the current-span context and span writing.
Must not: fail a call because a span could not be written (it is logged).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

__all__ = ["Span", "Tracer", "TraceInterceptor", "current", "span", "runtime_call",
           "runtime_env", "env_argv", "parse_traceparent"]

log = logging.getLogger(__name__)

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace id, parent span id) of a valid W3C traceparent (version 00), else None."""
    if not value:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if not m or m.group(1) == "0" * 32 or m.group(2) == "0" * 16:
        return None
    return m.group(1), m.group(2)


def _new_id() -> str:
    return os.urandom(8).hex()


@dataclass
class Span:
    """One timed operation; written when it ends."""

    tracer: Tracer
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    start: int = field(default_factory=time.time_ns)
    attrs: dict[str, Any] = field(default_factory=dict)
    # children with no end of their own (a runtime run by the monitor): they end with us
    pending: list[Span] = field(default_factory=list)

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"

    def child(self, name: str, **attrs: Any) -> Span:
        return Span(self.tracer, self.trace_id, _new_id(), self.span_id, name, attrs=attrs)

    def end(self) -> None:
        now = time.time_ns()
        for child in self.pending:
            self.tracer.record(child, now)
        self.pending.clear()
        self.tracer.record(self, now)


class Tracer:
    """Appends managerd's spans to ``<directory>/<trace id>.jsonl``."""

    def __init__(self, directory: str, service: str = "managerd") -> None:
        self.directory = directory
        self.service = service

    def path(self, trace_id: str) -> str:
        return os.path.join(self.directory, f"{trace_id}.jsonl")

    def record(self, s: Span, end: int | None = None) -> None:
        """Write one span (a single O_APPEND write: concurrent writers never interleave)."""
        line = json.dumps({"trace_id": s.trace_id, "span_id": s.span_id,
                           "parent_id": s.parent_id, "name": s.name, "service": self.service,
                           "start": s.start, "duration": (end or time.time_ns()) - s.start,
                           "attrs": s.attrs}, separators=(",", ":"), default=str) + "\n"
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(self.path(s.trace_id),
                         os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as err:
            log.warning("cannot record span trace_id=%s name=%r: %s", s.trace_id, s.name, err)

    def start(self, traceparent: str | None, name: str, **attrs: Any) -> Span | None:
        """A span whose parent comes from a W3C traceparent; None when it is absent/invalid."""
        ctx = parse_traceparent(traceparent)
        if ctx is None:
            return None
        return Span(self, ctx[0], _new_id(), ctx[1], name, attrs=attrs)


_current: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "dockyard_managerd_span", default=None)


def current() -> Span | None:
    """The span of the traced call this thread is serving (None when untraced)."""
    return _current.get()


@contextlib.contextmanager
def span(name: str, **attrs: Any) -> Iterator[Span | None]:
    """A child span of the current one for the block; a no-op when the call is not traced."""
    parent = _current.get()
    if parent is None:
        yield None
        return
    s = parent.child(name, **attrs)
    token = _current.set(s)
    try:
        yield s
    except BaseException as err:
        s.attrs["error"] = f"{type(err).__name__}: {err}"
        raise
    finally:
        _current.reset(token)
        s.end()


def runtime_env(s: Span | None = None) -> dict[str, str]:
    """What a runtime needs in its environment to join the trace ({} when untraced)."""
    s = s or _current.get()
    if s is None:
        return {}
    return {"TRACEPARENT": s.traceparent(), "DOCKYARD_TRACE_DIR": s.tracer.directory}


def env_argv(verb: str, container_id: str) -> list[str]:
    """The runtime's context as leading ``NAME=VALUE`` words of an argv the monitor runs
    ([] when untraced). It names a ``runtime <verb>`` span that starts now and ends with
    the call: managerd does not see the runtime exit, the monitor does."""
    cur = _current.get()
    if cur is None:
        return []
    child = cur.child(f"runtime {verb}", container=container_id, via="monitor")
    cur.pending.append(child)
    return [f"{k}={v}" for k, v in runtime_env(child).items()]


@contextlib.contextmanager
def runtime_call(verb: str, container_id: str) -> Iterator[dict[str, str] | None]:
    """A span for one runtime run by managerd; yields the runtime's whole environment
    (None when untraced: the runtime inherits managerd's environment as before)."""
    if _current.get() is None:
        yield None
        return
    with span(f"runtime {verb}", container=container_id) as s:
        yield {**os.environ, **runtime_env(s)}


def _method_name(method: str) -> str:
    """``/dockyard.services.tasks.v1.Tasks/Create`` -> ``Tasks.Create``."""
    service, _, rpc = method.lstrip("/").rpartition("/")
    return f"{service.rpartition('.')[2]}.{rpc}" if service else method


class TraceInterceptor(grpc.ServerInterceptor):
    """Records a span per gRPC call that carries ``traceparent`` metadata."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def intercept_service(self, continuation: Callable, details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        md = dict(details.invocation_metadata or ())
        header = md.get("traceparent")
        if not header or parse_traceparent(header) is None:
            return handler
        name = f"grpc {_method_name(details.method)}"
        attrs = {}
        if md.get("dockyard-namespace"):
            attrs["namespace"] = md["dockyard-namespace"]

        def begin() -> Span:
            s = self.tracer.start(header, name, **attrs)
            assert s is not None  # checked above
            return s

        kwargs = {"request_deserializer": handler.request_deserializer,
                  "response_serializer": handler.response_serializer}
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary, begin), **kwargs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _unary(handler.stream_unary, begin), **kwargs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream, begin), **kwargs)
        return grpc.stream_stream_rpc_method_handler(
            _streaming(handler.stream_stream, begin), **kwargs)


def _finish(s: Span, context: Any) -> None:
    code = None
    with contextlib.suppress(Exception):  # ServicerContext.code() is newer than some grpcios
        code = context.code()
    if code is not None and code != grpc.StatusCode.OK:
        s.attrs["grpc.status"] = getattr(code, "name", str(code))
        with contextlib.suppress(Exception):
            details = context.details()
            if isinstance(details, bytes):
                details = details.decode(errors="replace")
            if details:
                s.attrs["error"] = details
    s.end()


def _unary(behavior: Callable, begin: Callable[[], Span]) -> Callable:
    def traced(request: Any, context: Any) -> Any:
        s = begin()
        token = _current.set(s)
        try:
            return behavior(request, context)
        except BaseException as err:
            s.attrs.setdefault("error", f"{type(err).__name__}: {err}")
            raise
        finally:
            _current.reset(token)
            _finish(s, context)
    return traced


def _streaming(behavior: Callable, begin: Callable[[], Span]) -> Callable:
    def traced(request: Any, context: Any) -> Iterator[Any]:
        # the span is current while the handler runs, i.e. inside each next(): a
        # generator may be resumed (or closed) elsewhere, so never across a yield
        s = begin()
        try:
            token = _current.set(s)
            try:
                it = iter(behavior(request, context))
            finally:
                _current.reset(token)
            while True:
                token = _current.set(s)
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    _current.reset(token)
                yield item
        except BaseException as err:
            if not isinstance(err, GeneratorExit):
                s.attrs.setdefault("error", f"{type(err).__name__}: {err}")
            raise
        finally:
            _finish(s, context)
    return traced
