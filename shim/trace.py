"""The shim's spans when its caller traces a request (TRACEPARENT in its environment).

Loaded by cli.py only when ``TRACEPARENT`` (W3C: ``00-<trace id>-<parent
span id>-<flags>``) is set, so an untraced shim pays nothing. The verb
becomes one span (``shim create``, parent: the caller's span); its steps
are child spans opened with ``begin()`` and closed with ``end()``. Other
modules reach this one through ``sys.modules.get("dockyard.shim.trace")``
(None when untraced) and never import it themselves.

Spans are appended to ``$DOCKYARD_TRACE_DIR/<trace id>.jsonl`` (default
/run/dockyard/trace), one JSON line per span written with one O_APPEND
``write()``: the format apid/trace.py documents (service ``shim``,
start/duration in ns). The file is opened once, before any fork, with
O_CLOEXEC: the forked init or exec child writes its own spans (namespaces,
rootfs, process setup) to the inherited descriptor — after pivot_root the
host path is out of reach — and the descriptor disappears at the user
program's execve. A child writes each span before it reports to the parent,
so every span is in the file when the verb returns.

Must not: fail or slow down the verb (write errors are ignored), import
anything beyond what the shim has loaded already.
"""

from __future__ import annotations

import os
import time

from dockyard.oci import _json

__all__ = ["Span", "Tracer", "TRACER", "start", "begin", "end", "abort", "wait_exec",
           "run_verb", "parse"]

DEFAULT_DIR = "/run/dockyard/trace"
_HEX = frozenset("0123456789abcdef")


def parse(traceparent: str) -> tuple[str, str] | None:
    """(trace id, parent span id) of a valid version-00 traceparent, else None."""
    parts = traceparent.strip().lower().split("-")
    if len(parts) != 4 or parts[0] != "00" or len(parts[1]) != 32 or len(parts[2]) != 16 \
            or len(parts[3]) != 2 or not _HEX.issuperset("".join(parts)):
        return None
    if parts[1] == "0" * 32 or parts[2] == "0" * 16:
        return None
    return parts[1], parts[2]


class Span:
    """One step of the verb; written by ``Tracer.end``."""

    __slots__ = ("span_id", "parent_id", "name", "start", "attrs", "pid")

    def __init__(self, span_id: str, parent_id: str, name: str, attrs: dict) -> None:
        self.span_id = span_id
        self.parent_id = parent_id
        self.name = name
        self.start = time.time_ns()
        self.attrs = attrs
        self.pid = os.getpid()  # a forked child writes only the spans it opened


class Tracer:
    """The open span file and the stack of open spans (the top is the current parent)."""

    __slots__ = ("trace_id", "parent_id", "fd", "stack")

    def __init__(self, trace_id: str, parent_id: str, fd: int) -> None:
        self.trace_id = trace_id
        self.parent_id = parent_id  # the caller's span: parent of the verb's span
        self.fd = fd
        self.stack: list[Span] = []

    def begin(self, name: str, **attrs: object) -> Span:
        """Open a span under the current one."""
        parent = self.stack[-1].span_id if self.stack else self.parent_id
        s = Span(os.urandom(8).hex(), parent, name, attrs)
        self.stack.append(s)
        return s

    def end(self, s: Span, **attrs: object) -> None:
        """Close a span and write it; spans still open inside it (a step that raised)
        are written too, with its error if it has one."""
        now = time.time_ns()
        if s in self.stack:
            inner = self.stack[self.stack.index(s) + 1:]
            del self.stack[self.stack.index(s):]
            for child in reversed(inner):
                child.attrs["error"] = attrs.get("error") or "unfinished"
                self.write(child, now)
        s.attrs.update(attrs)
        self.write(s, now)

    def abort(self, error: str) -> None:
        """A forked child is about to die: write the spans it opened, with the error."""
        now = time.time_ns()
        pid = os.getpid()
        for s in reversed(self.stack):
            if s.pid == pid:
                s.attrs["error"] = error
                self.write(s, now)
        self.stack = [s for s in self.stack if s.pid != pid]

    def write(self, s: Span, end_ns: int) -> None:
        line = _json.dumps({"trace_id": self.trace_id, "span_id": s.span_id,
                            "parent_id": s.parent_id, "name": s.name, "service": "shim",
                            "start": s.start, "duration": end_ns - s.start,
                            "attrs": s.attrs}) + "\n"
        try:
            os.write(self.fd, line.encode())
        except OSError:
            pass  # tracing never fails the verb


TRACER: Tracer | None = None


def start(traceparent: str, directory: str | None = None) -> Tracer | None:
    """Open the span file of this trace and make it the process's tracer (None if invalid
    or the file cannot be opened: the verb then runs untraced)."""
    global TRACER
    ctx = parse(traceparent)
    if ctx is None:
        return None
    directory = directory or os.environ.get("DOCKYARD_TRACE_DIR") or DEFAULT_DIR
    try:
        os.makedirs(directory, 0o700, exist_ok=True)
        fd = os.open(os.path.join(directory, ctx[0] + ".jsonl"),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    TRACER = Tracer(ctx[0], ctx[1], fd)
    return TRACER


def begin(name: str, **attrs: object) -> Span | None:
    """A child span of the current one (None when not tracing)."""
    return TRACER.begin(name, **attrs) if TRACER is not None else None


def end(s: Span | None, **attrs: object) -> None:
    if s is not None and TRACER is not None:
        TRACER.end(s, **attrs)


def abort(error: str) -> None:
    if TRACER is not None:
        TRACER.abort(error)


def _comm(pid: int | str) -> str | None:
    """The command name of a process (a zombie's too), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.index(b"(") + 1:data.rindex(b")")].decode(errors="replace")


def wait_exec(fd: int, pid: int, timeout: float = 10.0, **attrs: object) -> None:
    """Time the init's execve from `start`: the init holds the exec fifo (``fd``, our
    read end) open until close-on-exec closes it, so end-of-file marks the exec — or
    its death: a process that still has the shim's command name never exec'd."""
    if TRACER is None:
        return
    import select

    s = TRACER.begin("exec", **attrs)
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(int(left * 1000) + 1):
            TRACER.end(s, error=f"no exec seen within {timeout:g} s")
            return
        try:
            if not os.read(fd, 4096):
                break
        except BlockingIOError:
            continue
    comm = _comm(pid)
    if comm is not None and comm == _comm("self"):
        TRACER.end(s, error="the process exited instead (its exec failed)")
    else:
        TRACER.end(s, pid=pid)


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    return str(err) or type(err).__name__


def run_verb(traceparent: str, verb: str, container_id: str, call) -> int:  # noqa: ANN001
    """Run ``call()`` (the verb) inside its span; returns its exit code."""
    tracer = start(traceparent)
    if tracer is None:
        return call()
    attrs: dict[str, object] = {"pid": os.getpid()}
    if container_id:
        attrs["container"] = container_id
    s = tracer.begin(f"shim {verb}", **attrs)
    try:
        code = call()
    except BaseException as err:
        tracer.end(s, error=_describe(err))
        raise
    tracer.end(s, **({"exit_code": code} if code else {}))
    return code
