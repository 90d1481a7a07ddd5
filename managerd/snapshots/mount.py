"""Mounts returned by snapshotters, and mounting them for callers (tasks, images).

``mount_all(mounts, target)`` mounts each with mount(2) directly (through the
shim's kernel-call layer, ``dockyard.shim._sys.syscalls``): the option words
are split the way util-linux's mount(8) does it — flag words (ro, nosuid,
bind, rbind, ...) become MS_* flags, propagation words a second call, the rest
the filesystem's data string — and a read-only bind is a bind followed by a
remount, as mount(8) does. Two cases still run mount(8) through subprocess
(fork+exec in C; managerd is threaded and never forks itself): overlay options
longer than a page, which need mount(8)'s working directory for relative
paths, and option words this module does not know (loop, x-*, ...).
``unmount(target)`` is umount2(2) until nothing is stacked on target;
``detach(target)`` frees the mount point at once and leaves the filesystem's
teardown (an overlay's sync of its upper filesystem) to a background thread.
A task's create and delete each saved a mount(8)/umount(8) process (10-30 ms
apiece under load) this way, and its delete the sync (3-100+ ms).
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from dataclasses import dataclass, field

from dockyard.managerd.atomic import BackgroundQueue

from dockyard.errdefs import InvalidArgument

__all__ = ["Mount", "mount_all", "unmount", "detach", "is_mountpoint"]

_OCTAL = re.compile(r"\\([0-7]{3})")  # mountinfo escapes space, tab, newline, backslash

# mount(2) flags (linux/mount.h)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_SYNCHRONOUS = 1, 2, 4, 8, 16
MS_REMOUNT, MS_MANDLOCK, MS_DIRSYNC, MS_NOATIME, MS_NODIRATIME = 32, 64, 128, 1024, 2048
MS_BIND, MS_REC = 4096, 16384
MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 1 << 17, 1 << 18, 1 << 19, 1 << 20
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
MNT_DETACH = 2

# option word -> (flags to set, flags to clear), as mount(8) reads them
_FLAG_WORDS: dict[str, tuple[int, int]] = {
    "defaults": (0, 0), "rw": (0, MS_RDONLY), "ro": (MS_RDONLY, 0),
    "suid": (0, MS_NOSUID), "nosuid": (MS_NOSUID, 0), "dev": (0, MS_NODEV),
    "nodev": (MS_NODEV, 0), "exec": (0, MS_NOEXEC), "noexec": (MS_NOEXEC, 0),
    "sync": (MS_SYNCHRONOUS, 0), "async": (0, MS_SYNCHRONOUS), "dirsync": (MS_DIRSYNC, 0),
    "mand": (MS_MANDLOCK, 0), "nomand": (0, MS_MANDLOCK), "atime": (0, MS_NOATIME),
    "noatime": (MS_NOATIME, 0), "diratime": (0, MS_NODIRATIME),
    "nodiratime": (MS_NODIRATIME, 0), "relatime": (MS_RELATIME, 0),
    "norelatime": (0, MS_RELATIME), "strictatime": (MS_STRICTATIME, 0),
    "nostrictatime": (0, MS_STRICTATIME), "bind": (MS_BIND, 0),
    "rbind": (MS_BIND | MS_REC, 0),
}
_PROPAGATION_WORDS = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
# data words of the filesystems snapshotters hand out (anything else: mount(8))
_DATA_TYPES = ("overlay", "tmpfs", "proc", "sysfs")


def _syscalls():
    from dockyard.shim._sys import syscalls  # the kernel-call layer (ctypes on libc)

    return syscalls.default()


@dataclass(frozen=True)
class Mount:
    type: str  # "overlay" or "bind"
    source: str
    options: tuple[str, ...] = field(default_factory=tuple)
    target: str = ""  # relative to the root being assembled; "" = the root


def mount_all(mounts: list[Mount], target: str) -> None:
    """Mount each mount at target (joined with mount.target); undoes them all on failure.

    Raises:
        OSError: a mount failed; the message names the mount and the kernel's (or
            mount(8)'s) reason.
    """
    done: list[str] = []
    try:
        for m in mounts:
            dest = os.path.abspath(os.path.join(target, m.target.lstrip("/"))
                                   if m.target else target)
            plan = _plan(m)
            if plan is None:
                _mount_cmd(m, dest)
            else:
                _mount_sys(m, dest, *plan)
            done.append(dest)
    except BaseException:
        for dest in reversed(done):
            try:
                unmount(dest)
            except OSError:
                unmount(dest, lazy=True)
        raise


def _plan(m: Mount) -> tuple[int, int, str] | None:
    """(flags, propagation flags, data) for mount(2), or None when mount(8) must do it."""
    flags, propagation, data = 0, 0, []
    bind = m.type == "bind"
    for word in m.options:
        if word in _FLAG_WORDS:
            on, off = _FLAG_WORDS[word]
            flags = (flags | on) & ~off
        elif word in _PROPAGATION_WORDS:
            propagation |= _PROPAGATION_WORDS[word]
        elif word and m.type in _DATA_TYPES:
            data.append(word)
        elif word:
            return None  # loop, x-*, remount, ...: mount(8) knows them
    if bind:
        flags |= MS_BIND
    if flags & MS_BIND:
        return (flags, propagation, "") if not data else None
    joined = ",".join(data)
    if len(joined) > MAX_OPTIONS:
        return None  # relative paths from a working directory: mount(8) (see below)
    return flags, propagation, joined


def _mount_sys(m: Mount, dest: str, flags: int, propagation: int, data: str) -> None:
    sc = _syscalls()
    try:
        if flags & MS_BIND:
            sc.mount(m.source, dest, None, flags & (MS_BIND | MS_REC))
        else:
            sc.mount(m.source or m.type, dest, m.type, flags, data or None)
        try:
            extra = flags & ~(MS_BIND | MS_REC) if flags & MS_BIND else 0
            if extra:  # a bind takes no other flags: remount it with them (as mount(8))
                sc.mount(None, dest, None, MS_REMOUNT | MS_BIND | extra)
            if propagation:
                sc.mount(None, dest, None, propagation)
        except OSError:
            # mounted but not as asked: undo it here, mount_all's rollback only
            # knows the mounts that completed
            sc.umount2(dest, MNT_DETACH)
            raise
    except OSError as err:
        raise OSError(err.errno, f"mount {m.type} `{m.source}` on `{dest}`: "
                                 f"{os.strerror(err.errno or 0)}") from None


def _mount_cmd(m: Mount, dest: str) -> None:
    """mount(8), for what _plan leaves to it."""
    opts, cwd = list(m.options), None
    args = ["mount"]
    if m.type == "bind" or "bind" in opts or "rbind" in opts:
        bind = "rbind" if "rbind" in opts else "bind"
        rest = [o for o in opts if o not in ("bind", "rbind")]
        args += [f"--{bind}"] + (["-o", ",".join(rest)] if rest else [])
    else:
        opts, cwd = _shorten_overlay(opts) if m.type == "overlay" else (opts, None)
        args += ["-t", m.type] + (["-o", ",".join(opts)] if opts else [])
    args += [m.source, dest]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise OSError(f"mount {m.type} `{m.source}` on `{dest}`: "
                      f"{proc.stderr.strip() or 'mount(8) failed'}")


# mount(2) takes at most one page of options; many layers of long paths overflow it
MAX_OPTIONS = 3072


def _shorten_overlay(opts: list[str]) -> tuple[list[str], str | None]:
    """Overlay options with dirs relative to their common parent, and that parent as the
    cwd for mount(8) (the kernel resolves them against it), when they are too long
    for one page (containerd does the same for images with many layers)."""
    if len(",".join(opts)) <= MAX_OPTIONS:
        return opts, None
    paths = []
    for o in opts:
        key, _, value = o.partition("=")
        if key in ("lowerdir", "upperdir", "workdir"):
            paths += value.split(":")
    if not paths or not all(os.path.isabs(p) for p in paths):
        return opts, None
    base = os.path.commonpath(paths)
    out = []
    for o in opts:
        key, _, value = o.partition("=")
        if key in ("lowerdir", "upperdir", "workdir"):
            o = f"{key}=" + ":".join(os.path.relpath(p, base) for p in value.split(":"))
        out.append(o)
    return out, base


def unmount(target: str, lazy: bool = False) -> None:
    """Unmount everything stacked on target; no error if nothing is mounted there.

    Raises:
        OSError: umount2(2) failed (e.g. EBUSY); the message names target.
    """
    sc = _syscalls()
    for _ in range(1000):  # a bound: each round removes one mount
        try:
            sc.umount2(target, MNT_DETACH if lazy else 0)
        except OSError as err:
            if err.errno == errno.EINVAL:  # not a mount point (any more)
                return
            if err.errno == errno.ENOENT:
                return
            raise OSError(err.errno, f"unmount `{target}`: "
                                     f"{os.strerror(err.errno or 0)}") from None
    raise OSError(errno.EBUSY, f"unmount `{target}`: still mounted after 1000 unmounts")


def detach(target: str) -> None:
    """Detach everything mounted on target (umount2 MNT_DETACH) and leave the kernel's
    teardown of those filesystems to a background thread; no error if nothing is
    mounted there.

    The last reference to an unmounted filesystem shuts its superblock down, and for an
    overlay that means syncing the whole upper filesystem (ovl_sync_fs): 3 ms on a quiet
    disk, 100 ms and more while other writers keep it busy, all inside umount2. Here an
    O_PATH descriptor holds each mount across its detach, so the detach returns at once
    and the teardown (with the sync) happens when the background thread closes the
    descriptor. The mount point is free when this returns; a mount still in use (EBUSY
    for a plain unmount) is detached all the same, as unmount(lazy=True) would.
    """
    sc = _syscalls()
    for _ in range(1000):
        try:
            fd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            sc.umount2(target, MNT_DETACH)
        except OSError as err:
            os.close(fd)  # a descriptor of the directory itself, no filesystem's last
            if err.errno in (errno.EINVAL, errno.ENOENT):
                return
            raise OSError(err.errno, f"unmount `{target}`: "
                                     f"{os.strerror(err.errno or 0)}") from None
        _teardowns.put(fd)
    raise OSError(errno.EBUSY, f"unmount `{target}`: still mounted after 1000 unmounts")


def wait_detached(timeout: float = 30.0) -> bool:
    """Wait until the teardowns detach() queued so far are done (False on timeout)."""
    return _teardowns.wait(timeout)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


# closes detach()'s descriptors: the filesystems' teardown runs in the thread that
# drops the last reference
_teardowns: BackgroundQueue[int] = BackgroundQueue("mount-teardown", _close_quietly)


def is_mountpoint(path: str) -> bool:
    """Whether path is a mount point in this mount namespace (from /proc/self/mountinfo)."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), line.split(" ")[4])
            if point == real:
                return True
    return False


def to_mount(type_: str, source: str, options: list[str], target: str = "") -> Mount:
    if not type_:
        raise InvalidArgument("mount: type is required")
    return Mount(type_, source, tuple(options), target)
