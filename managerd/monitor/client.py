"""managerd's side of the per-task monitor: start one, and talk to it on its socket.

This module owns spawning the monitor process (``_process.py`` under
``python -I -S``, in a session of its own, or forked by the ``Zygote``), and
the client end of its wire protocol (described in ``_process.py``'s docstring). It holds no task state:
``dockyard.managerd.tasks`` decides what to ask. It must not fork managerd:
the monitor is started with subprocess (vfork/exec), never os.fork.
"""

from __future__ import annotations

import array
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dockyard.managerd.monitor import _process as wire

from dockyard import errdefs

__all__ = ["ProcState", "Handshake", "MonitorClient", "AttachStream", "Zygote", "spawn",
           "read_exit_file", "INIT"]

log = logging.getLogger(__name__)

PROCESS = str(Path(wire.__file__).resolve())
# Import the monitor rather than run it as a script: an import uses the cached
# bytecode, a script is compiled at every start (that costs ~2 MB of RSS for good).
_LAUNCH = (f"import sys; sys.path.insert(0, {os.path.dirname(PROCESS)!r}); "
           "import _process; sys.exit(_process.main())")
_ZYGOTE_LAUNCH = (f"import sys; sys.path.insert(0, {os.path.dirname(PROCESS)!r}); "
                  "import _zygote; sys.exit(_zygote.main(sys.argv[1:]))")
_ZYGOTE_SOCKET = "monitors.sock"
INIT = wire.INIT


@dataclass(frozen=True)
class ProcState:
    """One process as the monitor sees it."""

    id: str  # "" for the init
    pid: int
    status: int | None  # exit status once reaped; -1: its runtime exec failed
    exited_ns: int


@dataclass(frozen=True)
class Handshake:
    """Result of starting a monitor: the init pid, or how create failed."""

    ok: bool
    pid: int = 0
    runtime_rc: int | None = None  # set when the runtime's create exited non-zero
    message: str = ""
    monitor_pid: int = 0
    popen: subprocess.Popen | None = None


def spawn(state_dir: str, create_argv: list[str], pid_file: str, log_path: str = "",
          stdin: bool = False, terminal: bool = False, timeout: float = 60.0,
          log_max_size: int = 0, log_max_files: int = 1, zygote: Zygote | None = None,
          defer: bool = False) -> Handshake:
    """Start a monitor that runs ``create_argv`` (the runtime's create) and supervises it.

    Args:
        state_dir: the task's state directory (the monitor's cwd, socket and exit file).
        create_argv: the runtime's full create argv, container id last; the monitor adds
            ``--console-socket`` for a terminal.
        pid_file: where the runtime writes the init's pid (same as in create_argv).
        log_path: the json-file log to append to ("" for none).
        stdin: give the init a stdin pipe (else /dev/null).
        terminal: the init gets a pty (the spec's process.terminal must agree).
        timeout: seconds to wait for the create to finish.
        log_max_size: rotate the log beyond this many bytes (0: never), keeping
            log_max_files files (Docker's json-file max-size and max-file).
        zygote: fork the monitor from this warm zygote (a fresh interpreter when None,
            or when the zygote fails).
        defer: run nothing yet (create_argv is ignored; the handshake's pid is 0): the
            init comes with ``MonitorClient.run``, the runtime's ``run --detach``.

    Returns:
        The handshake. A monitor started as our own child has ``popen`` set (reap it
        after ``shutdown``); a zygote's child is reaped by the zygote.
    """
    options = ["--dir", state_dir, "--pid-file", pid_file]
    if log_path:
        options += ["--log", log_path]
        if log_max_size > 0:
            options += ["--log-max-size", str(log_max_size), "--log-max-files",
                        str(max(1, log_max_files))]
    if stdin:
        options.append("--stdin")
    if terminal:
        options.append("--terminal")
    if defer:
        options += ["--defer", "--"]
    else:
        options += ["--", *create_argv]
    log_file = os.path.join(state_dir, "monitor.log")
    if zygote is not None:
        r, w = os.pipe()
        try:
            with open(log_file, "ab") as errf:
                try:
                    pid = zygote.fork(options, w, errf.fileno())
                except (OSError, errdefs.EngineError) as err:
                    log.warning("monitor zygote failed, starting a fresh monitor err=%s", err)
                    pid = 0
            os.close(w)
            w = -1
            if pid:
                try:
                    line = _read_line(r, timeout)
                except BaseException:
                    _kill(pid)
                    raise
                return _handshake(line, pid, None, log_file)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
    with open(log_file, "ab") as errf:
        popen = subprocess.Popen([sys.executable, "-I", "-S", "-c", _LAUNCH, *options],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=errf, cwd=state_dir, start_new_session=True,
                                 close_fds=True)
    try:
        line = _read_line(popen.stdout.fileno(), timeout)
    except BaseException:
        popen.kill()
        popen.wait()
        raise
    finally:
        popen.stdout.close()
    return _handshake(line, popen.pid, popen, log_file)


def _handshake(line: str, monitor_pid: int, popen: subprocess.Popen | None,
               log_file: str) -> Handshake:
    word, _, rest = line.partition(" ")
    if word == "ok":
        return Handshake(True, pid=int(rest), monitor_pid=monitor_pid, popen=popen)
    if popen is not None:
        popen.wait(timeout=10)
    if word == "fail":
        return Handshake(False, runtime_rc=int(rest), message=f"runtime exited with {rest}")
    tail = _tail(log_file)
    code = f"monitor exited with {popen.returncode}" if popen is not None else "monitor failed"
    return Handshake(False, message=(rest or code) + (f": {tail}" if tail else ""))


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read_line(fd: int, timeout: float) -> str:
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise errdefs.Unavailable(f"monitor did not finish the runtime's create in {timeout:g} s")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    return buf.decode(errors="replace").strip()


class Zygote:
    """managerd's handle on the monitor zygote (``_zygote.py``): started on first use,
    restarted if it died, and ended with ``close()`` or with managerd (its stdin is a
    pipe only managerd holds)."""

    def __init__(self, state_dir: str, start_timeout: float = 10.0) -> None:
        self.dir = state_dir
        self.start_timeout = start_timeout
        self._lock = threading.Lock()
        self._popen: subprocess.Popen | None = None

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dirfd = os.open(self.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            sock.settimeout(10)
            sock.connect(f"/proc/self/fd/{dirfd}/{_ZYGOTE_SOCKET}")
        except OSError:
            sock.close()
            raise
        finally:
            os.close(dirfd)
        return sock

    def _ensure(self) -> None:
        if self._popen is not None and self._popen.poll() is None:
            return
        os.makedirs(self.dir, mode=0o711, exist_ok=True)
        with open(os.path.join(self.dir, "monitors.log"), "ab") as errf:
            self._popen = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _ZYGOTE_LAUNCH, self.dir],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errf,
                start_new_session=True, close_fds=True)
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self._connect().close()
                return
            except OSError as err:
                if self._popen.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise errdefs.Unavailable(f"monitor zygote did not start: {err}") from err
                time.sleep(0.01)

    def fork(self, options: list[str], handshake_fd: int, log_fd: int) -> int:
        """Fork a monitor with these options; returns its pid."""
        with self._lock:
            self._ensure()
        sock = self._connect()
        try:
            sock.sendmsg([wire.pack(*options)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                 array.array("i", [handshake_fd, log_fd]))])
            answer = b""
            while chunk := sock.recv(256):
                answer += chunk
        finally:
            sock.close()
        if not answer.isdigit():
            raise errdefs.Unavailable(f"monitor zygote: {answer.decode(errors='replace')}")
        return int(answer)

    def close(self) -> None:
        """End the zygote (the monitors it forked keep running)."""
        with self._lock:
            popen, self._popen = self._popen, None
        if popen is None:
            return
        popen.stdin.close()
        try:
            popen.wait(5)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


def _tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def read_exit_file(state_dir: str) -> tuple[int, int] | None:
    """The init's (status, exit time in ns) the monitor recorded, or None."""
    try:
        with open(os.path.join(state_dir, "exit")) as f:
            status, ns = f.read().split()
        return int(status), int(ns)
    except (OSError, ValueError):
        return None


def _recv_frame(sock: socket.socket, buf: bytearray) -> tuple[int, bytes] | None:
    """Read one frame (blocking); None at EOF."""
    while True:
        if len(buf) >= 5:
            n = int.from_bytes(buf[1:5], "big")
            if len(buf) >= 5 + n:
                kind, payload = buf[0], bytes(buf[5:5 + n])
                del buf[:5 + n]
                return kind, payload
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk


class MonitorClient:
    """Requests to one task's monitor. Every request opens its own connection."""

    def __init__(self, state_dir: str, timeout: float = 30.0):
        self.state_dir = state_dir
        self.timeout = timeout

    def connect(self) -> socket.socket:
        """Connect to STATE/monitor.sock, whatever the length of STATE.

        sun_path holds 108 bytes; /proc/self/fd/N/monitor.sock is always short.

        Raises:
            Unavailable: the monitor is not listening (it exited, or never started).
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            dirfd = os.open(self.state_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                sock.connect(f"/proc/self/fd/{dirfd}/monitor.sock")
            finally:
                os.close(dirfd)
        except OSError as err:
            sock.close()
            raise errdefs.Unavailable(f"monitor of {self.state_dir}: {err.strerror}") from err
        sock.settimeout(self.timeout)
        return sock

    def request(self, *fields: object, timeout: float | None = None) -> list[str]:
        """Send one request and return the reply's fields.

        Raises:
            Unavailable: no monitor, or it hung up without answering.
            FailedPrecondition: the monitor refused (its message says why).
        """
        sock = self.connect()
        try:
            if timeout is not None:
                sock.settimeout(timeout)
            sock.sendall(wire.frame(wire.REQ, wire.pack(*fields)))
            reply = _recv_frame(sock, bytearray())
        except OSError as err:
            raise errdefs.Unavailable(f"monitor of {self.state_dir}: {err}") from err
        finally:
            sock.close()
        if reply is None:
            raise errdefs.Unavailable(f"monitor of {self.state_dir} hung up on {fields[0]}")
        kind, payload = reply
        if kind == wire.ERR:
            raise MonitorError(wire.unpack(payload))
        return wire.unpack(payload)

    def state(self) -> dict[str, ProcState]:
        """Every process of the task, by id ("" = init)."""
        out = {}
        for row in self.request("state"):
            pid_id, pid, status, ns = row.rsplit(":", 3)
            out[pid_id] = ProcState(pid_id, int(pid), int(status) if status else None,
                                    int(ns) if ns else 0)
        return out

    def exec_add(self, exec_id: str, stdin: bool, terminal: bool) -> None:
        self.request("exec-add", exec_id, int(stdin), int(terminal))

    def run(self, pid_file: str, argv: list[str], timeout: float = 60.0) -> int:
        """Run a deferred init (the runtime's ``run --detach``); return its pid.

        Raises:
            MonitorError: with ``runtime_rc`` set when the runtime exited non-zero.
        """
        return int(self.request("run", pid_file, *argv, timeout=timeout)[0])

    def exec_start(self, exec_id: str, pid_file: str, argv: list[str],
                   timeout: float = 60.0) -> int:
        """Run the runtime's exec; return the process's pid.

        Raises:
            MonitorError: with ``runtime_rc`` set when the runtime exited non-zero.
        """
        return int(self.request("exec-start", exec_id, pid_file, *argv, timeout=timeout)[0])

    def exec_delete(self, exec_id: str) -> None:
        self.request("exec-delete", exec_id)

    def signal(self, proc_id: str, signum: int) -> None:
        """Signal exec process proc_id (the monitor, its parent, knows it is not reaped).

        Raises:
            MonitorError: it exited (or never started, or is the init).
        """
        self.request("signal", proc_id, signum)

    def resize(self, proc_id: str, rows: int, cols: int) -> None:
        self.request("resize", proc_id, rows, cols)

    def close_stdin(self, proc_id: str) -> None:
        self.request("closeio", proc_id)

    def shutdown(self, force: bool = False) -> None:
        self.request("shutdown", *(["force"] if force else []))

    def subscribe(self) -> tuple[socket.socket, bytearray]:
        """A connection that receives an EVENT frame per process exit (past ones first).

        Returns:
            The socket, and bytes already read past the reply (the start of the events:
            keep reading frames into this buffer).
        """
        sock = self.connect()
        buf = bytearray()
        try:
            sock.sendall(wire.frame(wire.REQ, wire.pack("subscribe")))
            reply = _recv_frame(sock, buf)
        except OSError as err:
            sock.close()
            raise errdefs.Unavailable(f"monitor of {self.state_dir}: {err}") from err
        if reply is None or reply[0] != wire.REPLY:
            sock.close()
            raise errdefs.Unavailable(f"monitor of {self.state_dir} refused subscribe")
        sock.settimeout(None)
        return sock, buf

    def attach(self, proc_id: str, streams: str) -> AttachStream:
        """Attach to a process's stdio; streams is a subset of "ioe" (stdin/out/err)."""
        sock = self.connect()
        try:
            sock.sendall(wire.frame(wire.REQ, wire.pack("attach", proc_id, streams)))
            buf = bytearray()
            reply = _recv_frame(sock, buf)
        except OSError as err:
            sock.close()
            raise errdefs.Unavailable(f"monitor of {self.state_dir}: {err}") from err
        if reply is None:
            sock.close()
            raise errdefs.Unavailable(f"monitor of {self.state_dir} hung up on attach")
        if reply[0] == wire.ERR:
            sock.close()
            raise MonitorError(wire.unpack(reply[1]))
        sock.settimeout(None)
        return AttachStream(sock, buf)


class MonitorError(errdefs.FailedPrecondition):
    """The monitor refused a request; ``runtime_rc`` is set when the runtime failed."""

    def __init__(self, fields: list[str]):
        self.runtime_rc: int | None = None
        if fields[:1] == ["fail"] and len(fields) > 1:
            self.runtime_rc = int(fields[1])
            super().__init__(f"runtime exited with {fields[1]}")
        else:
            super().__init__(" ".join(f for f in fields if f not in ("error",)) or "refused")


class AttachStream:
    """One attach connection: output frames in, stdin/close/resize out.

    Thread-safe for one reader (``frames``) and any number of writers.
    """

    def __init__(self, sock: socket.socket, buf: bytearray):
        self.sock = sock
        self._buf = buf
        self._lock = threading.Lock()
        self.closed = False

    def frames(self) -> Iterator[tuple[str, bytes]]:
        """("stdout"|"stderr", data) until the process's output ends or close()."""
        try:
            while True:
                got = _recv_frame(self.sock, self._buf)
                if got is None or got[0] == wire.END:
                    return
                if got[0] in (wire.STDOUT, wire.STDERR):
                    yield ("stdout" if got[0] == wire.STDOUT else "stderr"), got[1]
        except OSError:
            if not self.closed:
                raise
        finally:
            self.close()

    def _send(self, data: bytes) -> None:
        with self._lock:
            if self.closed:
                return
            try:
                self.sock.sendall(data)
            except OSError as err:
                raise errdefs.Unavailable(f"attach connection lost: {err}") from err

    def write(self, data: bytes) -> None:
        for i in range(0, len(data), 1 << 20):
            self._send(wire.frame(wire.STDIN, data[i:i + (1 << 20)]))

    def close_stdin(self) -> None:
        self._send(wire.frame(wire.CLOSE_STDIN))

    def resize(self, rows: int, cols: int) -> None:
        self._send(wire.frame(wire.RESIZE, wire.pack(rows, cols)))

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.sock.close()
