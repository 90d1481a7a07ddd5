"""The container's network namespace: created, entered for netlink, removed — in-process.

Owns one persistent network namespace per container, bind-mounted at
`<exec-root>/netns/<id>` (what util-linux `unshare --net=FILE` does, and how
libnetwork keeps a sandbox per container); the OCI spec joins it by path.
`--net=host` containers get none. Removed with the container (detach, unlink).

No process is spawned: a short-lived thread of apid unshare(2)s CLONE_NEWNET
(network namespaces are per thread), bind-mounts `/proc/thread-self/ns/net`
at the path, sets `lo` up with an ioctl, and setns(2)es back before it ends. A netlink socket stays in the namespace it was opened in, so
`netlink_fd()` hands the event loop a socket it can drive with pyroute2's
`AsyncIPRoute(fileno=...)` (see `dockyard.apid.network.links`). The thread is
never reused: should the setns back fail, it dies instead of running other
work in the container's namespace.

Must not configure interfaces beyond `lo` (links.py does) nor decide Docker
semantics.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

from dockyard import errdefs

__all__ = ["path_for", "ensure", "remove", "is_mounted", "netlink_fd", "route_socket"]

_T = TypeVar("_T")
_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MNT_DETACH = 2
_SELF = "/proc/thread-self/ns/net"
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def path_for(exec_root: str, container_id: str) -> str:
    return os.path.join(exec_root, "netns", container_id)


def is_mounted(path: str) -> bool:
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


def _sys():
    from dockyard.shim._sys import syscalls  # the project's one libc layer

    return syscalls.default()


def route_socket() -> int:
    """A NETLINK_ROUTE socket in the calling thread's network namespace (its fd)."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0).detach()


def _in_fresh_thread(fn: Callable[[], _T]) -> _T:
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = err

    t = threading.Thread(target=run, name="dockyard-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def _lo_up() -> None:
    """`ip link set lo up` in the calling thread's namespace: SIOCGIFFLAGS/SIOCSIFFLAGS
    (netdevice(7)) on any socket, so the common path needs no netlink library."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _create(path: str) -> None:
    sys_ = _sys()
    home = os.open(_SELF, os.O_RDONLY | os.O_CLOEXEC)
    try:
        sys_.unshare(_CLONE_NEWNET)
        try:
            with open(path, "a"):
                pass
            sys_.mount(_SELF, path, None, _MS_BIND, None)
            _lo_up()
        finally:
            sys_.setns(home, _CLONE_NEWNET)
    finally:
        os.close(home)


def _enter(path: str) -> int:
    sys_ = _sys()
    home = os.open(_SELF, os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        sys_.setns(target, _CLONE_NEWNET)
        try:
            return route_socket()
        finally:
            sys_.setns(home, _CLONE_NEWNET)
    finally:
        os.close(target)
        os.close(home)


def netlink_fd(path: str) -> int:
    """A NETLINK_ROUTE socket (fd, caller closes) inside the namespace bound at path."""
    try:
        return _in_fresh_thread(lambda: _enter(path))
    except OSError as err:
        raise errdefs.FailedPrecondition(f"enter network namespace {path}: {err}") from err


async def ensure(path: str) -> None:
    """Create the namespace at path with lo up, unless it is there already."""
    if is_mounted(path):
        return
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    try:
        _in_fresh_thread(lambda: _create(path))
    except BaseException as err:
        await remove(path)
        if isinstance(err, OSError):
            raise errdefs.FailedPrecondition(f"create network namespace {path}: {err}") from err
        raise


async def remove(path: str) -> None:
    if is_mounted(path):
        with contextlib.suppress(OSError):
            _sys().umount2(path, _MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    await asyncio.sleep(0)
