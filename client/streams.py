"""Interactive I/O over a hijacked attach/exec connection.

Owns: demultiplexing docker's stdcopy frames, copying local stdin to the
container (half-close at EOF), putting the local terminal in raw mode and
restoring it, detach keys (Ctrl-P Ctrl-Q), window-size propagation on
SIGWINCH, and forwarding signals to the container (--sig-proxy).
Must not: decide which API calls a verb makes (commands/container.py does).

Threads: the caller's thread reads the connection and writes stdout/stderr;
one daemon thread copies stdin. Signal handlers run in the main thread and
hand API calls to short-lived threads, so a handler never blocks on I/O.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from dockyard.client.api import Hijacked

__all__ = ["Demux", "RawTerminal", "pump", "watch_resize", "proxy_signals", "DEFAULT_DETACH"]

DEFAULT_DETACH = b"\x10\x11"  # ctrl-p, ctrl-q


class Demux:
    """Incremental stdcopy decoder: feed bytes, get (stream, payload) frames.

    Frames may be split across reads or several may arrive in one read.
    """

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        self.buf += data
        while len(self.buf) >= 8:
            stream = self.buf[0]
            (size,) = struct.unpack(">I", self.buf[4:8])
            if len(self.buf) < 8 + size:
                return
            payload, self.buf = self.buf[8:8 + size], self.buf[8 + size:]
            yield stream, payload


def write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class RawTerminal:
    """Context manager: the terminal on fd in raw mode, restored on exit (even on errors)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.saved: Any = None

    def __enter__(self) -> RawTerminal:
        import termios
        import tty

        try:
            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd, termios.TCSANOW)
        except termios.error:
            self.saved = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


class _Stdin(threading.Thread):
    """Copies stdin to the connection; watches for the detach sequence; half-closes at EOF."""

    def __init__(self, conn: Hijacked, fd: int, detach_keys: bytes | None,
                 on_detach: Callable[[], None]):
        super().__init__(daemon=True, name="dockyard-stdin")
        self.conn = conn
        self.fd = fd
        self.detach_keys = detach_keys
        self.on_detach = on_detach
        self.detached = False

    def run(self) -> None:
        matched = b""
        try:
            while True:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    data = b""
                if not data:
                    break
                if self.detach_keys:
                    out = bytearray()
                    for byte in data:
                        b = bytes([byte])
                        if self.detach_keys.startswith(matched + b):
                            matched += b
                            if matched == self.detach_keys:
                                # the daemon watches for the same keys (moby and apid do):
                                # send them so it detaches instead of reading a bare EOF,
                                # which would close a StdinOnce container's stdin
                                self.detached = True
                                try:
                                    self.conn.sendall(bytes(out) + matched)
                                except OSError:
                                    pass
                                self.on_detach()
                                return
                            continue
                        # not the sequence after all: send what was held back
                        out += matched + b
                        matched = b""
                    data = bytes(out)
                if data:
                    self.conn.sendall(data)
        except OSError:
            return
        self.conn.close_write()


def pump(conn: Hijacked, *, tty: bool, stdin_fd: int | None, stdout_fd: int = 1,
         stderr_fd: int = 2, detach_keys: bytes | None = DEFAULT_DETACH) -> bool:
    """Copy the streams until the daemon closes the connection; True if the user detached.

    Args:
        conn: the hijacked connection.
        tty: raw bytes (True) or stdcopy frames (False) come back.
        stdin_fd: local fd to send as the container's stdin, or None (half-close at once).
        detach_keys: the sequence that detaches (only watched on a terminal).
    """
    detached = threading.Event()

    def on_detach() -> None:
        detached.set()
        try:
            conn.sock.shutdown(2)  # wakes the reader below
        except OSError:
            pass

    reader: _Stdin | None = None
    if stdin_fd is not None:
        watch = detach_keys if (detach_keys and os.isatty(stdin_fd)) else None
        reader = _Stdin(conn, stdin_fd, watch, on_detach)
        reader.start()
    else:
        conn.close_write()
    demux = None if tty else Demux()
    try:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                break
            if not data:
                break
            if demux is None:
                write_fd(stdout_fd, data)
            else:
                for stream, payload in demux.feed(data):
                    write_fd(stderr_fd if stream in (2, 3) else stdout_fd, payload)
    finally:
        conn.close()
    return detached.is_set()


def terminal_size(fd: int) -> tuple[int, int] | None:
    """(height, width) of the terminal on fd, or None."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


def watch_resize(fd: int, resize: Callable[[int, int], None]) -> Callable[[], None]:
    """Send the size now and on every SIGWINCH; returns a function that stops watching."""

    def send() -> None:
        size = terminal_size(fd)
        if size:
            try:
                resize(*size)
            except Exception:  # noqa: BLE001 -- a failed resize must not end the session
                pass

    def handler(signum: int, frame: Any) -> None:
        threading.Thread(target=send, daemon=True).start()

    send()
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = signal.signal(signal.SIGWINCH, handler)
    return lambda: signal.signal(signal.SIGWINCH, old)


# Every catchable signal but the ones a terminal program must handle itself (docker's
# ForwardAllSignals skips SIGCHLD, SIGPIPE, SIGURG and SIGWINCH too).
_PROXIED = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM",
            "SIGCONT", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGXCPU", "SIGXFSZ", "SIGVTALRM",
            "SIGPROF", "SIGIO", "SIGPWR", "SIGSYS", "SIGTRAP", "SIGABRT")


def proxy_signals(kill: Callable[[str], None]) -> Callable[[], None]:
    """Forward the signals this process gets to the container; returns the undo function."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    saved: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        threading.Thread(target=_safe, args=(kill, name), daemon=True).start()

    for name in _PROXIED:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            saved[sig] = signal.signal(sig, handler)
        except (OSError, ValueError):
            pass

    def undo() -> None:
        for sig, old in saved.items():
            signal.signal(sig, old)

    return undo


def _safe(fn: Callable[[str], None], arg: str) -> None:
    try:
        fn(arg)
    except Exception as e:  # noqa: BLE001 -- report and keep the session alive
        sys.stderr.write(f"dockyard: forwarding {arg} failed: {e}\n")
