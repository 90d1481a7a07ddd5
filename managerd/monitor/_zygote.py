"""The monitor zygote: forks per-task monitors from one warm interpreter.

managerd starts one (``client.Zygote``) as ``python -I -S`` with the state dir as
its argument and a pipe as its stdin; it imports the monitor program once,
freezes the garbage collector, and forks a monitor per request. Forked monitors
start in ~1 ms instead of an interpreter's ~25 ms, and share the interpreter's
pages copy-on-write, so each costs a fraction of a fresh process (PSS).

It owns: listening on ``STATE/monitors.sock``, forking, and reaping the monitors
it forked (it is their parent). It must not: hold any task state, or outlive
managerd: EOF on stdin (managerd exited or was killed) ends it. Its monitors keep
running either way (they are in sessions of their own; init adopts them).

Request (one ``sendmsg`` per connection): the monitor's options NUL-separated
(``_process.parse`` syntax), with two fds in SCM_RIGHTS: the handshake pipe's
write end (becomes the monitor's fd 1) and its log (fd 2). Answer: the pid, as
decimal digits; the connection then closes. The handshake itself travels on the
pipe exactly as for a monitor started on its own.

Stdlib built-ins only, like the monitor.
"""

import _signal
import _socket
import gc
import os
import select
import sys

import _process  # noqa: E402  (sys.path holds this folder: see client._ZYGOTE_LAUNCH)

SOCKET = "monitors.sock"


def _child(argv: list[str], fds: list[int], close: list) -> None:
    """In the forked child: become a fresh monitor process, never return."""
    code = 1
    try:
        os.setsid()
        _signal.set_wakeup_fd(-1)
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        for obj in close:
            obj.close() if hasattr(obj, "close") else os.close(obj)
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in (null, *fds):
            if fd > 2:
                os.close(fd)
        try:
            with open("/proc/self/comm", "w") as f:
                f.write("dy-monitor")  # ps would show the zygote's command line otherwise
        except OSError:
            pass
        code = _process.main(argv)
    except BaseException as err:  # noqa: BLE001 - report, then leave without unwinding
        try:
            os.write(2, f"monitor: {type(err).__name__}: {err}\n".encode())
        except OSError:
            pass
    os._exit(code)


def main(argv: list[str]) -> int:
    os.chdir(argv[0])
    import ctypes  # noqa: F401  preloaded: every monitor uses it once (subreaper)
    import fcntl  # noqa: F401  preloaded: tty monitors resize their pty

    if os.path.lexists(SOCKET):
        os.unlink(SOCKET)
    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    listener.bind(SOCKET)
    listener.listen(64)
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    _signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    _signal.signal(_signal.SIGCHLD, lambda *_: None)
    gc.freeze()  # the collector must not write to pages the children share
    poller = select.poll()
    poller.register(0, select.POLLIN)
    poller.register(r, select.POLLIN)
    poller.register(listener.fileno(), select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == 0:
                if os.read(0, 512) == b"":  # managerd is gone
                    listener.close()
                    try:
                        os.unlink(SOCKET)
                    except OSError:
                        pass
                    return 0
            elif fd == r:
                try:
                    while os.read(r, 512):
                        pass
                except BlockingIOError:
                    pass
                while True:
                    try:
                        pid, _ = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
            else:
                _serve(listener, r, w)


def _serve(listener, r: int, w: int) -> None:
    try:
        fd, _ = listener._accept()
    except OSError:
        return
    conn = _socket.socket(fileno=fd)
    fds: list[int] = []
    try:
        conn.settimeout(10)
        data, anc, _, _ = conn.recvmsg(1 << 16, _socket.CMSG_SPACE(2 * 4))
        fds = [int.from_bytes(d[i:i + 4], sys.byteorder)
               for level, kind, d in anc
               if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
               for i in range(0, len(d) - len(d) % 4, 4)]
        argv = _process.unpack(data)
        if len(fds) != 2 or not argv:
            conn.sendall(b"error: expected the monitor's options and 2 fds")
            return
        pid = os.fork()
        if pid == 0:
            _child(argv, fds, [listener, conn, r, w])
        conn.sendall(b"%d" % pid)
    except OSError as err:
        try:
            conn.sendall(f"error: {err}".encode())
        except OSError:
            pass
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
