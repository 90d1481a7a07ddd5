"""Parent/child synchronisation of the shim: one socketpair carrying JSON lines.

`create`/`run` and `exec` fork a child that builds (or joins) the container
and finally execs the user's program. The two talk over an AF_UNIX
socketpair, one JSON object per line; the child's end is close-on-exec, so
a successful execve shows up in the parent as end-of-file (runc `sync.go`,
youki `message.rs`).

| step | sender | message | what happens next | on error |
| --- | --- | --- | --- | --- |
| 0 | — | — | right after fork the child already works: it unshares every namespace but cgroup, mounts, makes devices, and (unless a cgroup mount or a create hook needs the join first) pivots and masks paths; the parent meanwhile makes the cgroup and moves the child's host pid into it | — |
| 1 | parent | `{"type": "proceed"}` | the child is in the container's cgroup: the child unshares its cgroup namespace, mounts cgroupfs, finishes; an exec child waits for it only right before execve | child: reads EOF (parent died) and exits 1 |
| 1a | child (init) | `{"type": "hooks"}` | only with prestart/createRuntime/createContainer hooks (then the join comes first): sent before pivot_root; the parent runs prestart and createRuntime (state `creating`, host pid) and answers `proceed`; the child runs createContainer itself (in the container's namespaces) and pivots | a failing hook: the parent kills the child and undoes everything |
| 2 | child (init) | `{"type": "ready"}` | rootfs, devices, hostname, sysctls, masked/readonly paths, user, caps done; the parent applies `linux.resources` (already done after step 1 when the device nodes existed before the join), writes state.json and the pid file, and exits (`create`) or opens the exec fifo (`run`) | — |
| 3 | child (init) | — | blocks opening the exec fifo for writing until `start` opens it for reading, writes `0`, runs startContainer hooks, installs seccomp, execve()s | — |
| 4 | child | EOF | execve succeeded (close-on-exec closed the socket), or the child died: the parent tells them apart by the child's PF_FORKNOEXEC flag (container.py `_never_execd`) | a child that died before its exec is a failure, with its signal or exit status |
| any | child | `{"type": "error", "msg": "..."}` | the child exits right after (127/126 for exec failures); the parent kills and reaps it, undoes everything (cgroup, state dir) and reports `msg` as the one error line | — |
| 1' | child (exec) | — | `exec` has no `ready`: the child joins every namespace, sets up the process, waits for `proceed`, and goes straight to step 4 | as above |

Message types live in `Msg` (strings, not `enum`: the shim avoids enum's
import cost). The console socket is separate: see `console.py`.
"""

from __future__ import annotations

import _socket

from dockyard.oci import _json

__all__ = ["Msg", "Channel"]

_MSG_NOSIGNAL = 0x4000


class Msg:
    """The message types of the exchange above."""

    PROCEED = "proceed"
    HOOKS = "hooks"
    READY = "ready"
    ERROR = "error"


class Channel:
    """One end of the socketpair, reading and writing whole JSON lines."""

    __slots__ = ("sock", "_buf")

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self._buf = b""

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        """(parent end, child end); both close-on-exec."""
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        return cls(a), cls(b)

    def send(self, kind: str, **fields: object) -> None:
        fields["type"] = kind
        # MSG_NOSIGNAL: a parent that already exited must not kill us with SIGPIPE
        self.sock.sendall(_json.dumps(fields).encode() + b"\n", _MSG_NOSIGNAL)

    def recv(self) -> dict | None:
        """The next message, or None once the peer's end is gone (it exec'd or died).

        A reset counts as end-of-file: the kernel reports ECONNRESET instead of
        EOF when the peer's end was released with our message still unread in
        it (unix_release_sock), i.e. the child died before reading `proceed`.
        It says nothing more than EOF does; whoever expects an exec must check
        that the child really exec'd (container.py `_never_execd`)."""
        while b"\n" not in self._buf:
            try:
                chunk = self.sock.recv(65536)
            except InterruptedError:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        msg = _json.loads(line)
        return msg if isinstance(msg, dict) else None

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()
