"""The container's root filesystem: mounts, devices, pivot_root, masked paths.

Owns everything the init does inside its new mount namespace, in runc's
order (libcontainer `rootfs_linux.go`): root propagation, the rootfs bind,
`mounts[]`, default devices and `linux.devices`, the /dev symlinks,
pivot_root (or MS_MOVE + chroot), then, inside the new root, masked and
read-only paths and a read-only root. Every mount destination is resolved
inside the rootfs (`secure_join`): a symlink in the image can never send a
mount out of it.

Kernel calls go through a `Syscalls` object (tests pass a recording fake);
plain file operations (mkdir, lstat, symlink) use `os` directly. It must
not fork, setns or touch cgroups.
"""

from __future__ import annotations

import errno
import os
import stat

from dockyard.shim._sys.consts import (
    MNT_DETACH,
    MS_BIND,
    MS_DIRSYNC,
    MS_LAZYTIME,
    MS_MANDLOCK,
    MS_MOVE,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_NOSYMFOLLOW,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SILENT,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    MS_UNBINDABLE,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.shim._sys.syscalls import Syscalls

__all__ = ["parse_options", "secure_join", "set_propagation", "bind_rootfs", "mount_all",
           "create_devices", "dev_symlinks", "pivot_root", "move_root", "mask_paths",
           "readonly_paths", "readonly_root", "write_sysctls", "DEFAULT_DEVICES",
           "MountError"]

# option -> (clears the flag?, flag) (mount(8), runc `parseMountOptions`)
_FLAGS = {
    "ro": (False, MS_RDONLY), "rw": (True, MS_RDONLY),
    "nosuid": (False, MS_NOSUID), "suid": (True, MS_NOSUID),
    "nodev": (False, MS_NODEV), "dev": (True, MS_NODEV),
    "noexec": (False, MS_NOEXEC), "exec": (True, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS), "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC),
    "remount": (False, MS_REMOUNT),
    "mand": (False, MS_MANDLOCK), "nomand": (True, MS_MANDLOCK),
    "atime": (True, MS_NOATIME), "noatime": (False, MS_NOATIME),
    "diratime": (True, MS_NODIRATIME), "nodiratime": (False, MS_NODIRATIME),
    "relatime": (False, MS_RELATIME), "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME), "nostrictatime": (True, MS_STRICTATIME),
    "lazytime": (False, MS_LAZYTIME), "nolazytime": (True, MS_LAZYTIME),
    "symfollow": (True, MS_NOSYMFOLLOW), "nosymfollow": (False, MS_NOSYMFOLLOW),
    "silent": (False, MS_SILENT), "loud": (True, MS_SILENT),
    "bind": (False, MS_BIND), "rbind": (False, MS_BIND | MS_REC),
    "defaults": (False, 0),
}

PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}

# statvfs f_flag bits equal the MS_* bits for these (linux/statfs.h ST_*)
_KEEP_ON_REMOUNT = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME
_ST_RELATIME = 4096

# (path, major, minor): what every container gets (runtime-spec config-linux.md)
DEFAULT_DEVICES = (("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
                   ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0))

_DEV_LINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
              ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"))


class MountError(OSError):
    """A mount step failed; str() is the whole message (crun style)."""

    def __str__(self) -> str:
        return self.strerror or ""


def _fail(err: OSError, what: str) -> MountError:
    reason = (err.strerror or str(err)).lower() if err.errno else str(err)
    return MountError(err.errno or errno.EINVAL, f"{what}: {reason}")


def parse_options(options: list[str] | None) -> tuple[int, list[int], str]:
    """Split OCI mount options into (flags, propagation flags, data string)."""
    flags = 0
    prop: list[int] = []
    data: list[str] = []
    for opt in options or ():
        known = _FLAGS.get(opt)
        if known is not None:
            clear, flag = known
            flags = flags & ~flag if clear else flags | flag
        elif opt in PROPAGATION:
            prop.append(PROPAGATION[opt])
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


def secure_join(root: str, unsafe: str) -> str:
    """`root`/`unsafe` with every symlink resolved as if `root` were `/`.

    Like filepath-securejoin: `..` and absolute symlink targets stop at
    root, so the result is always inside it. Missing components are kept
    as they are (the caller creates them).
    """
    root = root.rstrip("/") or "/"
    todo = [p for p in unsafe.split("/") if p]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        path = root + "/" + "/".join(done + [part])
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            done.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            done.append(part)
            continue
        links += 1
        if links > 255:
            raise MountError(errno.ELOOP, f"resolve {unsafe} in {root}: too many levels of "
                                          "symbolic links")
        target = os.readlink(path)
        if target.startswith("/"):
            done = []
        todo[:0] = [p for p in target.split("/") if p]
    return root + "/" + "/".join(done) if done else root


def set_propagation(sc: Syscalls, propagation: str | None) -> None:
    """Make `/` rslave (runc's default) or what `rootfsPropagation` says, so
    nothing the container mounts leaks back to the host."""
    flag = PROPAGATION.get(propagation or "rslave", MS_SLAVE | MS_REC)
    try:
        sc.mount(None, "/", None, flag)
    except OSError as err:
        raise _fail(err, f"make / {propagation or 'rslave'}") from err


def bind_rootfs(sc: Syscalls, rootfs: str) -> None:
    """pivot_root needs the new root to be a mount point."""
    try:
        sc.mount(rootfs, rootfs, None, MS_BIND | MS_REC)
    except OSError as err:
        raise _fail(err, f"bind rootfs `{rootfs}` onto itself") from err


def _mkdirs(path: str) -> None:
    try:
        os.makedirs(path, 0o755, exist_ok=True)
    except FileExistsError:
        pass  # a file or dangling link: mount(2) reports the real problem


def _ensure_file(path: str) -> None:
    _mkdirs(os.path.dirname(path))
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def mount_all(sc: Syscalls, rootfs: str, bundle: str, mounts: list[dict],
              cgroup: CgroupView | None = None) -> None:
    """Apply `mounts[]` in order; relative bind sources are relative to the bundle."""
    for m in mounts:
        mount_one(sc, rootfs, bundle, m, cgroup)


def mount_one(sc: Syscalls, rootfs: str, bundle: str, m: dict,
              cgroup: CgroupView | None = None) -> None:
    flags, prop, data = parse_options(m.get("options"))
    kind = m.get("type") or ""
    source = m.get("source") or kind or "none"
    dest = secure_join(rootfs, m["destination"])
    try:
        if kind == "bind" or flags & MS_BIND:
            if not source.startswith("/"):
                source = os.path.join(bundle, source)
            try:
                st = os.stat(source)
            except OSError as err:
                raise _fail(err, f"mount source `{source}` for {m['destination']}") from err
            if stat.S_ISDIR(st.st_mode):
                _mkdirs(dest)
            else:
                _ensure_file(dest)
            sc.mount(source, dest, None, MS_BIND | (flags & MS_REC))
            extra = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
            if extra:
                # bind ignores the other flags: a second, remounting call applies them
                sc.mount(None, dest, None, MS_BIND | MS_REMOUNT | extra)
        elif kind == "cgroup":
            _mkdirs(dest)
            mount_cgroup(sc, dest, flags, cgroup or CgroupView())
        else:
            _mkdirs(dest)
            sc.mount(source, dest, kind, flags, data or None)
        for p in prop:
            sc.mount(None, dest, None, p)
    except MountError:
        raise
    except OSError as err:
        raise _fail(err, f"mount `{source}` on `{m['destination']}`"
                    f"{f' (type {kind})' if kind else ''}") from err


class CgroupView:
    """What the cgroup mount needs to know about the host and the container.

    hierarchies: (mount point basename, fstype, super options) of each host
    cgroup mount under /sys/fs/cgroup; paths: hierarchy basename -> the
    container's cgroup directory on the host; namespaced: whether the
    container has its own cgroup namespace (then fresh mounts show only its
    own subtree; without one, the container's directories are bound).
    """

    __slots__ = ("hierarchies", "paths", "namespaced")

    def __init__(self, hierarchies: list[tuple[str, str, str]] | None = None,
                 paths: dict[str, str] | None = None, namespaced: bool = True) -> None:
        self.hierarchies = hierarchies or []
        self.paths = paths or {}
        self.namespaced = namespaced

    @classmethod
    def from_host(cls, paths: dict[str, str], namespaced: bool,
                  mountinfo: str = "/proc/self/mountinfo", base: str = "/sys/fs/cgroup"
                  ) -> CgroupView:
        found = []
        with open(mountinfo) as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                point, fstype, opts = fields[4], fields[sep + 1], fields[sep + 3]
                if fstype not in ("cgroup", "cgroup2"):
                    continue
                if point == base:
                    found.append(("", fstype, opts))
                elif point.startswith(base + "/"):
                    found.append((point[len(base) + 1:], fstype, opts))
        return cls(found, paths, namespaced)


def mount_cgroup(sc: Syscalls, dest: str, flags: int, view: CgroupView) -> None:
    """The `cgroup` mount type: cgroup2 on a v2 host; on v1 a tmpfs holding one
    mount per hierarchy (runc `mountCgroupV1`)."""
    ro = flags & MS_RDONLY
    base_flags = flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME)
    unified = [h for h in view.hierarchies if h[0] == "" and h[1] == "cgroup2"]
    if unified:
        if view.namespaced:
            sc.mount("cgroup2", dest, "cgroup2", flags)
        else:
            _bind(sc, view.paths.get("", "/sys/fs/cgroup"), dest, ro)
        return
    sc.mount("tmpfs", dest, "tmpfs", base_flags, "mode=755")
    for name, fstype, opts in view.hierarchies:
        if fstype != "cgroup" or "/" in name:
            continue
        target = os.path.join(dest, name)
        _mkdirs(target)
        if view.namespaced:
            subsystems = ",".join(o for o in opts.split(",") if o not in ("rw", "ro"))
            sc.mount("cgroup", target, "cgroup", base_flags | ro, subsystems)
        else:
            _bind(sc, view.paths.get(name, f"/sys/fs/cgroup/{name}"), target, ro)
        if "," in name:
            # co-mounted controllers (cpu,cpuacct): runc links each name to the pair
            for alias in name.split(","):
                link = os.path.join(dest, alias)
                if not os.path.lexists(link):
                    os.symlink(name, link)
    if ro:
        sc.mount(None, dest, None, MS_REMOUNT | MS_RDONLY | base_flags, "mode=755")


def _bind(sc: Syscalls, source: str, dest: str, ro: int) -> None:
    sc.mount(source, dest, None, MS_BIND | MS_REC)
    if ro:
        sc.mount(None, dest, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def create_devices(sc: Syscalls, rootfs: str, devices: list[dict],
                   defaults: bool = True) -> None:
    """mknod the default devices and `linux.devices` under rootfs/dev; where
    mknod is refused (EPERM), bind the host's node instead."""
    wanted = []
    if defaults:
        wanted = [{"path": p, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666,
                   "uid": 0, "gid": 0} for p, ma, mi in DEFAULT_DEVICES]
    wanted.extend(devices)
    for dev in wanted:
        path = secure_join(rootfs, dev["path"])
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK,
                "p": stat.S_IFIFO}[dev.get("type", "c")]
        mode = dev.get("fileMode")
        mode = 0o666 if mode is None else mode & 0o7777
        number = os.makedev(dev.get("major", 0), dev.get("minor", 0)) if kind != stat.S_IFIFO \
            else 0
        _mkdirs(os.path.dirname(path))
        if os.path.lexists(path):
            os.unlink(path)
        try:
            sc.mknod(path, kind | mode, number)
        except PermissionError:
            _ensure_file(path)
            try:
                sc.mount(dev["path"], path, None, MS_BIND)
            except OSError as err:
                raise _fail(err, f"bind device {dev['path']}") from err
            continue
        except OSError as err:
            raise _fail(err, f"mknod {dev['path']}") from err
        os.chmod(path, mode)
        uid, gid = dev.get("uid"), dev.get("gid")
        if uid is not None or gid is not None:
            os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)


def dev_symlinks(rootfs: str, terminal: bool = False) -> None:
    """/dev/fd, /dev/std{in,out,err} and /dev/ptmx -> pts/ptmx (runtime-linux.md)."""
    dev = secure_join(rootfs, "/dev")
    for target, link in _DEV_LINKS:
        path = dev + link[4:]
        if not os.path.lexists(path):
            os.symlink(target, path)
    ptmx = dev + "/ptmx"
    if os.path.isdir(dev + "/pts"):
        if os.path.lexists(ptmx) and not os.path.islink(ptmx):
            os.unlink(ptmx)
        if not os.path.lexists(ptmx):
            os.symlink("pts/ptmx", ptmx)
    if terminal:
        _ensure_file(dev + "/console")


def pivot_root(sc: Syscalls, rootfs: str) -> None:
    """Make rootfs `/` and detach the old root, with runc's pivot_root(".", ".")
    trick: no temporary directory is needed inside the image."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        try:
            sc.pivot_root(".", ".")
        except OSError as err:
            raise _fail(err, f"pivot_root {rootfs}") from err
        # the old root is now stacked on `/`: step into it, make it a slave
        # so the detach below does not propagate to the host, then drop it
        os.fchdir(old)
        sc.mount(None, ".", None, MS_SLAVE | MS_REC)
        sc.umount2(".", MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)


def move_root(sc: Syscalls, rootfs: str) -> None:
    """`--no-pivot`: move the rootfs mount over `/` and chroot into it."""
    os.chdir(rootfs)
    try:
        sc.mount(rootfs, "/", None, MS_MOVE)
        sc.chroot(".")
    except OSError as err:
        raise _fail(err, f"move rootfs {rootfs} to /") from err
    os.chdir("/")


def mask_paths(sc: Syscalls, paths: list[str]) -> None:
    """Hide files under /dev/null and directories under an empty read-only tmpfs."""
    for path in paths:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            if stat.S_ISDIR(st.st_mode):
                sc.mount("tmpfs", path, "tmpfs", MS_RDONLY)
            else:
                sc.mount("/dev/null", path, None, MS_BIND)
        except OSError as err:
            raise _fail(err, f"mask {path}") from err


def _mount_flags(path: str) -> int:
    f = os.statvfs(path).f_flag
    return (f & _KEEP_ON_REMOUNT) | (MS_RELATIME if f & _ST_RELATIME else 0)


def readonly_paths(sc: Syscalls, paths: list[str]) -> None:
    """Bind each path onto itself and remount it read-only, keeping nosuid etc."""
    for path in paths:
        # exists(), not lexists(): a dangling symlink is skipped like a missing path (runc)
        if not os.path.exists(path):
            continue
        try:
            sc.mount(path, path, None, MS_BIND | MS_REC)
            sc.mount(None, path, None,
                     MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | _mount_flags(path))
        except OSError as err:
            raise _fail(err, f"make {path} read-only") from err


def readonly_root(sc: Syscalls) -> None:
    """`root.readonly`: remount the new `/` read-only (after every other mount)."""
    try:
        sc.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | _mount_flags("/"))
    except OSError as err:
        raise _fail(err, "remount / read-only") from err


def write_sysctls(sysctl: dict[str, str], proc_sys: str = "/proc/sys") -> None:
    """Write `linux.sysctl` into the container's (namespaced) /proc/sys."""
    for name, value in sysctl.items():
        path = os.path.join(proc_sys, name.replace(".", "/"))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        except OSError as err:
            raise _fail(err, f"sysctl {name}={value}") from err
