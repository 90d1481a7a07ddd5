"""Terminals: the pty of a `process.terminal` container and its hand-off.

Owns the console-socket protocol of runc (docs/terminals.md, go-runc
`console.go`): the caller listens on an AF_UNIX stream socket and passes
its path as `--console-socket`; the shim connects before forking, and the
child, once inside the container, opens a pty from the container's devpts,
sends the master as one SCM_RIGHTS fd with the payload `/dev/ptmx`, and
makes the slave its stdio and controlling terminal. It must not copy any
I/O: whoever receives the master owns it.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import struct

__all__ = ["connect", "setup_terminal", "receive_master", "proxy"]

_TIOCSCTTY = 0x540E
_TIOCSWINSZ = 0x5414
_TIOCGWINSZ = 0x5413


def connect(path: str) -> _socket.socket:
    """Connect to the caller's console socket (in the host's mount namespace)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as err:
        sock.close()
        raise OSError(err.errno, f"connect to console socket {path}: "
                                 f"{(err.strerror or '').lower()}") from None
    return sock


def setup_terminal(sock: _socket.socket, size: dict | None = None) -> str:
    """Open a pty in the current root, send its master over `sock`, make the
    slave stdin/stdout/stderr and the controlling tty; returns the slave's path
    (for the /dev/console bind). The caller must already be a session leader."""
    try:
        master, slave = os.openpty()
    except OSError as err:
        raise OSError(err.errno, f"open a pty (/dev/ptmx) for process.terminal: "
                                 f"{(err.strerror or '').lower()}") from None
    try:
        name = os.ttyname(slave)
        if size:
            fcntl.ioctl(master, _TIOCSWINSZ,
                        struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0))
        sock.sendmsg([b"/dev/ptmx"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                       struct.pack("i", master))])
    finally:
        os.close(master)
        sock.close()
    fcntl.ioctl(slave, _TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
    return name


def receive_master(sock: _socket.socket) -> tuple[int, bytes]:
    """The receiving side (tests, managerd): (master fd, payload) of one message."""
    data, anc, _, _ = sock.recvmsg(4096, _socket.CMSG_SPACE(4))
    for level, kind, raw in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            return struct.unpack("i", raw[:4])[0], data
    raise OSError("console socket message carried no file descriptor")


def _copy_size(src: int, dst: int) -> None:
    try:
        fcntl.ioctl(dst, _TIOCSWINSZ, fcntl.ioctl(src, _TIOCGWINSZ, b"\0" * 8))
    except OSError:
        pass


def proxy(master: int, stdin: int = 0, stdout: int = 1) -> None:
    """Attached `run` with a terminal: copy our stdin to the pty master and the
    master to our stdout until the container side closes (runc's tty proxy).
    A terminal on our stdin is put in raw mode (restored after) and its size
    follows SIGWINCH."""
    import _signal
    import select
    import termios
    import tty

    saved = None
    if os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
        _copy_size(stdin, master)
        _signal.signal(_signal.SIGWINCH, lambda *_: _copy_size(stdin, master))
    reading = [master, stdin]
    try:
        while True:
            try:
                ready, _, _ = select.select(reading, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave fd is closed, the container is done
                    data = b""
                if not data:
                    break
                os.write(stdout, data)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if data:
                    os.write(master, data)
                else:
                    reading.remove(stdin)  # our input ended; keep showing output
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(master)
