"""Paths inside a directory fd that a running container may be changing under us.

Owns resolution and opening of container paths relative to the container's
root directory fd, so that no lookup ever leaves it (CVE-2018-15664: a
container swapping a path component for a symlink between a check and a use
made dockerd read and write host files):

- `openat2(2)` with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS (Linux >= 5.6): the
  kernel resolves the whole path with the fd as `/` — absolute symlinks and
  `..` stay in, procfs magic links are refused. EAGAIN (a rename or mount
  raced with a `..` step) is retried.
- Without openat2 (ENOSYS, or a seccomp policy refusing it): a walk one
  component at a time, each opened with O_PATH | O_NOFOLLOW relative to the fd
  of the directory before it; a symlink's text (read from the link's own fd)
  is resolved again from the root fd or the current directory fd, `..` pops
  the stack of directory fds. Every fd was reached downwards from the root,
  so the walk is as confined as openat2 (what it yields may be stale, never
  outside); magic links are just text here. This is also what computes the
  in-container path a symlink resolves to (`resolve_path`).

Everything returned is an O_PATH fd; `reopen` turns one into a readable or
writable fd through /proc/self/fd (our own procfs: the same inode, no lookup).
Must not: accept a host path below the root, or hold policy (callers decide
what to open and how to name errors beyond ENOENT/ENOTDIR/ELOOP).
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

__all__ = ["HAVE_OPENAT2", "resolve", "resolve_path", "reopen", "split", "components",
           "use_openat2", "is_pseudo_fs"]

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
_SYS_OPENAT2 = 437  # the same number on every architecture Linux added it for (5.6)
_MAX_HOPS = 40  # Linux's MAXSYMLINKS
_EAGAIN_RETRIES = 64


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# statfs(2) f_type of the kernel's own filesystems a container mounts (proc, sysfs,
# cgroup, devpts, mqueue, ...): views of the kernel, not content of the container
_PSEUDO_FS = {0x9FA0, 0x62656572, 0x27E0EB, 0x63677270, 0x1CD1, 0x19800202, 0x64626720,
              0x73636673, 0x74726163, 0xCAFE4A11, 0x6165676C, 0x62656570, 0x65735543,
              0x42494E4D}


def _openat2(dirfd: int, path: str, flags: int, resolve_flags: int) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, 0, resolve_flags)
    for _ in range(_EAGAIN_RETRIES):
        ret = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd),
                            ctypes.c_char_p(os.fsencode(path)), ctypes.byref(how),
                            ctypes.c_size_t(ctypes.sizeof(how)))
        if ret >= 0:
            return int(ret)
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, "path resolution kept racing with renames", path)


def _probe() -> bool:
    try:
        os.close(_openat2(-100, "/", os.O_PATH | os.O_DIRECTORY, RESOLVE_IN_ROOT))
        return True
    except OSError:
        return False  # ENOSYS (old kernel), EPERM (seccomp): the walk below is just as safe


HAVE_OPENAT2 = _probe()
_use_openat2 = HAVE_OPENAT2


def use_openat2(enabled: bool) -> bool:
    """Turn openat2 use on or off (tests exercise the walk); returns the old setting."""
    global _use_openat2
    old = _use_openat2
    _use_openat2 = enabled and HAVE_OPENAT2
    return old


def components(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def split(path: str) -> tuple[str, str]:
    """Container path -> (directory part, last component); "" last for `/`, `x/` and `x/.`
    (moby's SplitPathDirEntry: a trailing separator or `/.` means "the thing itself")."""
    if path.endswith("/") or path.endswith("/.") or path in ("", "."):
        return path, ""
    head, _, tail = path.rstrip("/").rpartition("/")
    if tail == "..":
        return path, ""
    return head or "/", tail


def resolve(rootfd: int, path: str, follow_last: bool = True) -> int:
    """An O_PATH fd of container path `path` (absolute or not: both from the root).

    A trailing `/` or `/.` names a directory (as for the kernel's own lookups): a
    file there is ENOTDIR, not the file.

    Raises:
        OSError: ENOENT, ENOTDIR, ELOOP (too many symlinks) as the lookup met them.
    """
    if path.endswith(("/", "/.")) and components(path):
        follow_last = True  # the kernel follows a final symlink before a trailing slash
        must_dir = os.O_DIRECTORY
    else:
        must_dir = 0
    if _use_openat2:
        flags = os.O_PATH | must_dir | (0 if follow_last else os.O_NOFOLLOW)
        return _openat2(rootfd, "/" + "/".join(components(path)), flags,
                        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = _walk(rootfd, path, follow_last)[0]
    if must_dir and not stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
    return fd


def resolve_path(rootfd: int, path: str, follow_last: bool = True) -> str:
    """The in-container absolute path that `path` resolves to (symlinks evaluated)."""
    fd, names = _walk(rootfd, path, follow_last)
    os.close(fd)
    return "/" + "/".join(names)


def _walk(rootfd: int, path: str, follow_last: bool) -> tuple[int, list[str]]:
    stack: list[int] = []  # O_PATH fds of the directories below the root, in order
    names: list[str] = []
    parts = components(path)
    hops = 0

    def top() -> int:
        return stack[-1] if stack else rootfd

    try:
        while parts:
            part = parts.pop(0)
            if part == "..":
                if stack:
                    os.close(stack.pop())
                    names.pop()
                continue
            fd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=top())
            target = None
            try:
                mode = os.fstat(fd).st_mode
                if stat.S_ISLNK(mode) and (parts or follow_last):
                    hops += 1
                    if hops > _MAX_HOPS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                    # the link's own text (empty path: the fd itself), never re-looked-up
                    target = os.readlink("", dir_fd=fd)
                elif parts and not stat.S_ISDIR(mode):
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            except BaseException:
                os.close(fd)
                raise
            if target is not None:
                os.close(fd)
                if target.startswith("/"):
                    while stack:
                        os.close(stack.pop())
                    names.clear()
                parts = components(target) + parts
                continue
            stack.append(fd)  # a directory, or the last component (a symlink not followed)
            names.append(part)
        result = stack.pop() if stack else os.dup(rootfd)
        return result, names
    finally:
        for fd in stack:
            os.close(fd)


def is_pseudo_fs(fd: int) -> bool:
    """Whether fd is on procfs, sysfs, cgroupfs and the like (fstatfs f_type)."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _libc.fstatfs(ctypes.c_int(fd), buf) != 0:
        return False
    return ctypes.c_long.from_buffer(buf).value in _PSEUDO_FS


def reopen(fd: int, flags: int) -> int:
    """A new fd with `flags` on the inode an O_PATH fd names (no path lookup: the
    magic link /proc/self/fd/N is our own)."""
    return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)
