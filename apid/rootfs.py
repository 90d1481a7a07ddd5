"""A container's filesystem from apid's side: `docker cp` (archive) and `docker diff`.

Owns: reaching the container's root (a running container's `/proc/<pid>/root`,
which includes its bind mounts as dockerd's archive does; a stopped one's
snapshot mounted on a private temp dir, its volumes bound over it), the path
stat in Go's `os.FileMode` bits for the `X-Docker-Container-Path-Stat` header,
tar in/out, and the overlay upper dir walk behind `GET /containers/{id}/changes`.

docker cp works on an fd of the root only (`open_root`): paths are resolved by
`_inroot` (openat2 RESOLVE_IN_ROOT, or an fd-by-fd walk), every tar entry is
read or created relative to its directory's fd with O_NOFOLLOW, never through a
host path a running container could swap a symlink into (CVE-2018-15664).
Must not: open a container path by its host path while the container runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import IO, Any

from dockyard.apid import _inroot
from dockyard.apid.container import Container
from dockyard.apid.manager import Manager, Mount

from dockyard import errdefs

__all__ = ["container_root", "open_root", "resolve_in_root", "path_stat", "stat_header",
           "tar_path", "extract_tar", "changes", "go_file_mode"]

# Go os.FileMode type bits
_DIR, _SYMLINK, _DEVICE, _PIPE, _SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
_SETUID, _SETGID, _CHARDEV, _STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


def go_file_mode(st_mode: int) -> int:
    """st_mode -> Go's os.FileMode (permission bits | type bits)."""
    mode = st_mode & 0o777
    if stat.S_ISDIR(st_mode):
        mode |= _DIR
    elif stat.S_ISLNK(st_mode):
        mode |= _SYMLINK
    elif stat.S_ISBLK(st_mode):
        mode |= _DEVICE
    elif stat.S_ISCHR(st_mode):
        mode |= _DEVICE | _CHARDEV
    elif stat.S_ISFIFO(st_mode):
        mode |= _PIPE
    elif stat.S_ISSOCK(st_mode):
        mode |= _SOCKET
    if st_mode & stat.S_ISUID:
        mode |= _SETUID
    if st_mode & stat.S_ISGID:
        mode |= _SETGID
    if st_mode & stat.S_ISVTX:
        mode |= _STICKY
    return mode


def resolve_in_root(root: str, path: str, follow_last: bool = True) -> str:
    """Host path of `path` inside `root`, symlinks resolved without leaving root.

    Only for a tree nothing else changes meanwhile (a created container's snapshot:
    volume copy-up); the result is a path, re-resolved by whoever opens it.
    """
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate) and (parts or follow_last):
            hops += 1
            if hops > 255:
                raise errdefs.InvalidArgument(f"too many levels of symbolic links: {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def stat_header(st: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(st).encode()).decode()


@contextlib.asynccontextmanager
async def container_root(manager: Manager, c: Container, volumes: bool = True,
                         live: bool = True) -> AsyncIterator[str]:
    """The container's root directory for the duration of the block (with its volumes and
    binds over it unless `volumes` is False: the image's own content); `live` False: its
    snapshot mounted even if it runs (a /proc/<pid>/root path is not trusted)."""
    if live and c.state.status in ("running", "paused") and c.state.pid:
        root = f"/proc/{c.state.pid}/root"
        if os.path.isdir(root):
            yield root
            return
    mounts = await manager.snapshot_mounts(c.snapshot_key)
    target = tempfile.mkdtemp(prefix="dockyard-cp-")
    try:
        await asyncio.to_thread(_mount_all, mounts, target)
        try:
            if volumes:
                await asyncio.to_thread(_mount_volumes, c, target)
            yield target
        finally:
            # MNT_DETACH of the top also detaches the volume binds below it
            await asyncio.to_thread(subprocess.run, ["umount", "-l", target],
                                    capture_output=True)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(target)


def _mount_all(mounts: list[Mount], target: str) -> None:
    for m in mounts:
        opts = [o for o in m.options if o]
        if m.type == "bind" or "bind" in opts or "rbind" in opts:
            cmd = ["mount", "--bind", m.source, target]
        else:
            cmd = ["mount", "-t", m.type, m.source or m.type, target]
            if opts:
                cmd += ["-o", ",".join(opts)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise errdefs.FailedPrecondition(
                f"mount container filesystem on {target}: {proc.stderr.strip()}")


def _mount_volumes(c: Container, target: str) -> None:
    """Volumes and bind mounts of a stopped container over its mounted rootfs, so `docker
    cp` sees (and writes) the same files the container would (dockerd does the same).

    Each mount point is resolved and created inside the root (a volume another,
    running container shares may hold symlinks) and mounted on through its fd
    (/proc/self/fd/N, `--no-canonicalize`: mount(8) must not turn it back into a path).
    """
    binds: list[tuple[str, str, bool]] = [
        (v["Source"], v["Destination"], not v.get("RW", True)) for v in c.volumes]
    for b in c.host_config.get("Binds") or []:
        parts = b.split(":")
        if len(parts) >= 2 and parts[0].startswith("/"):
            binds.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    for m in c.host_config.get("Mounts") or []:
        if m.get("Type") == "bind" and (m.get("Source") or "").startswith("/"):
            binds.append((m["Source"], m.get("Target") or "", bool(m.get("ReadOnly"))))
    rootfd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for source, dest, ro in sorted(binds, key=lambda b: b[1].count("/")):
            if not os.path.exists(source):
                continue
            try:  # the runtime would create a missing mount point at start, too
                fd = _mount_point(rootfd, dest, os.path.isdir(source))
            except OSError:
                continue
            try:
                _mount_fd(["--bind", source], fd)
            finally:
                os.close(fd)
            if ro:
                try:
                    fd = _inroot.resolve(rootfd, dest)  # now the bind mount's root
                except OSError:
                    continue
                try:
                    _mount_fd(["-o", "remount,bind,ro"], fd)
                finally:
                    os.close(fd)
    finally:
        os.close(rootfd)


def _mount_fd(args: list[str], fd: int) -> None:
    subprocess.run(["mount", "--no-canonicalize", *args, f"/proc/self/fd/{fd}"], check=False,
                   capture_output=True, pass_fds=(fd,))


def _mount_point(rootfd: int, dest: str, directory: bool) -> int:
    """An O_PATH fd of mount point `dest` in the root, created (mode 0755) if missing."""
    try:
        return _inroot.resolve(rootfd, dest)
    except FileNotFoundError:
        pass
    head, base = _inroot.split(dest.rstrip("/") or "/")
    if not base or base == "..":
        raise FileNotFoundError(errno.ENOENT, "no such mount point", dest)
    parent = _open_dir(rootfd, head, create=True)
    try:
        if directory:
            with contextlib.suppress(FileExistsError):
                os.mkdir(base, 0o755, dir_fd=parent)
        else:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o644, dir_fd=parent))
        return os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    finally:
        os.close(parent)


# --- docker cp: everything relative to the root's fd (see _inroot) --------------------------

@contextlib.asynccontextmanager
async def open_root(manager: Manager, c: Container) -> AsyncIterator[int]:
    """An O_PATH fd of the container's root (volumes and binds included) for the block.

    A running container's root is its init's `/proc/<pid>/root`, taken through a
    /proc/<pid> fd after checking that pid is still in the container's cgroup (a
    reused pid would otherwise hand us a host process's root).
    """
    if c.state.status in ("running", "paused") and c.state.pid:
        fd = await asyncio.to_thread(_proc_root, c.state.pid, c.id)
        if fd is not None:
            try:
                yield fd
            finally:
                os.close(fd)
            return
    async with container_root(manager, c, live=False) as root:
        fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)


def _proc_root(pid: int, container_id: str) -> int | None:
    try:
        procfd = os.open(f"/proc/{pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        with open(os.open("cgroup", os.O_RDONLY | os.O_CLOEXEC, dir_fd=procfd)) as f:
            if container_id not in f.read():
                return None
        return os.open("root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=procfd)
    except (FileNotFoundError, ProcessLookupError):
        return None  # exited meanwhile
    finally:
        os.close(procfd)


def _lookup_error(err: OSError, path: str, what: str = "") -> errdefs.EngineError:
    if err.errno in (errno.ENOENT, errno.ENOTDIR):
        return errdefs.NotFound(f"Could not find the file {path} in container")
    if err.errno == errno.ELOOP:
        return errdefs.InvalidArgument(f"too many levels of symbolic links: {path}")
    if err.errno == errno.EAGAIN:
        return errdefs.Unavailable(f"{path} in container: {err.strerror}")
    return errdefs.FailedPrecondition(f"{what or 'access'} {path} in container: "
                                      f"{err.strerror}")


def path_stat(rootfd: int, path: str) -> dict[str, Any]:
    """Docker's PathStat of container path `path` (a final symlink not followed; its
    `linkTarget` is the in-container path it resolves to, as dockerd reports it)."""
    head, base = _inroot.split(path)
    try:
        parent = _inroot.resolve(rootfd, head)
    except OSError as err:
        raise _lookup_error(err, path) from None
    try:
        st = os.stat(base, dir_fd=parent, follow_symlinks=False) if base else os.fstat(parent)
        link = ""
        if stat.S_ISLNK(st.st_mode):
            try:
                link = _inroot.resolve_path(rootfd, path)
            except OSError:  # dangling: its text is all there is
                link = os.readlink(base, dir_fd=parent)
    except OSError as err:
        raise _lookup_error(err, path) from None
    finally:
        os.close(parent)
    mtime = datetime.fromtimestamp(st.st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    name = os.path.basename(path.rstrip("/")) or "/"
    return {"name": name, "size": st.st_size, "mode": go_file_mode(st.st_mode), "mtime": mtime,
            "linkTarget": link}


class _Exact:
    """Exactly `size` bytes of an fd for a tar entry: a file the container shrinks
    meanwhile is padded with zeros, growth is cut (the header is already written)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.left = fd, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        if n <= 0:
            return b""
        data = os.read(self.fd, n) or b"\0" * n
        self.left -= len(data)
        return data


def _header(arcname: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(arcname)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid, ti.mtime = st.st_uid, st.st_gid, int(st.st_mtime)
    return ti


def tar_path(rootfd: int, path: str, out: IO[bytes]) -> None:
    """Write a tar of container path `path` (top entry named by its basename), like
    dockerd's archive: a final symlink is archived as the link unless the path ends
    in `/` or `/.`. Every entry is opened relative to its directory's fd with
    O_NOFOLLOW; file contents are read through the fd that was checked."""
    head, base = _inroot.split(path)
    try:
        parent = _inroot.resolve(rootfd, head)
    except OSError as err:
        raise _lookup_error(err, path) from None
    arc = os.path.basename(path.rstrip("/")) or "."
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            links: dict[tuple[int, int], str] = {}
            if base:
                try:
                    st = os.stat(base, dir_fd=parent, follow_symlinks=False)
                except OSError as err:
                    raise _lookup_error(err, path) from None
                _tar_tree(tar, parent, base, arc, st, links)
            else:
                st = os.fstat(parent)
                if stat.S_ISDIR(st.st_mode):
                    dfd = _inroot.reopen(parent, os.O_RDONLY | os.O_DIRECTORY)
                    _tar_children(tar, dfd, arc, links, _dir_header(arc, st))
                else:
                    _tar_tree(tar, parent, None, arc, st, links)
    finally:
        os.close(parent)


def _dir_header(arcname: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = _header(arcname.rstrip("/") + "/", st)
    ti.type = tarfile.DIRTYPE
    return ti


def _tar_tree(tar: tarfile.TarFile, dirfd: int, name: str | None, arcname: str,
              st: os.stat_result, links: dict[tuple[int, int], str]) -> None:
    """One entry `name` of directory fd `dirfd` (None: dirfd itself, an O_PATH fd)."""
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        try:
            dfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=dirfd) if name else _inroot.reopen(dirfd, os.O_RDONLY
                                                                    | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            return  # swapped or removed meanwhile: not a directory any more
        except OSError as err:
            if err.errno == errno.ELOOP:
                return  # replaced by a symlink meanwhile: never followed
            raise
        _tar_children(tar, dfd, arcname, links, None)
    else:
        _tar_leaf(tar, dirfd, name, arcname, st, links)


def _tar_children(tar: tarfile.TarFile, dfd: int, arcname: str,
                  links: dict[tuple[int, int], str], header: tarfile.TarInfo | None) -> None:
    """Directory fd `dfd` (consumed: closed here) as an entry (`header`, else from its
    fstat) and the tree below it, depth first, without recursion: a container can
    make its tree deeper than Python's stack."""
    stack: list[tuple[int, list[str], str]] = []
    try:
        tar.addfile(header or _dir_header(arcname, os.fstat(dfd)))
        stack.append((dfd, sorted(os.listdir(dfd), reverse=True), arcname))
    except BaseException:
        os.close(dfd)
        raise
    try:
        while stack:
            fd, names, prefix = stack[-1]
            if not names:
                os.close(fd)
                stack.pop()
                continue
            name = names.pop()
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we walked
            arc = f"{prefix.rstrip('/')}/{name}"
            if not stat.S_ISDIR(st.st_mode):
                _tar_leaf(tar, fd, name, arc, st, links)
                continue
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                | os.O_CLOEXEC, dir_fd=fd)
            except OSError as err:
                if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    continue  # swapped for something else meanwhile: never followed
                raise
            try:
                cst = os.fstat(child)
                tar.addfile(_dir_header(arc, cst))
                # a mount of proc, sysfs, cgroup... below: an empty directory, as dockerd's
                # archive (the rootfs and volumes, not the container's kernel mounts) has it
                if cst.st_dev != os.fstat(fd).st_dev and _inroot.is_pseudo_fs(child):
                    os.close(child)
                    continue
                names_below = sorted(os.listdir(child), reverse=True)
            except BaseException:
                os.close(child)
                raise
            stack.append((child, names_below, arc))
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _tar_leaf(tar: tarfile.TarFile, dirfd: int, name: str | None, arcname: str,
              st: os.stat_result, links: dict[tuple[int, int], str]) -> None:
    mode = st.st_mode
    ti = _header(arcname, st)
    if stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            ti.type, ti.linkname = tarfile.LNKTYPE, links[key]
            tar.addfile(ti)
            return
        try:
            pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=dirfd) if name else os.dup(dirfd)
        except FileNotFoundError:
            return
        try:
            fst = os.fstat(pfd)
            if not stat.S_ISREG(fst.st_mode):
                return  # swapped meanwhile (a symlink, a device): not read
            # reopened from the checked inode: no second lookup by name
            fd = _inroot.reopen(pfd, os.O_RDONLY | os.O_NOCTTY)
        finally:
            os.close(pfd)
        try:
            ti = _header(arcname, fst)
            ti.size = fst.st_size
            tar.addfile(ti, _Exact(fd, fst.st_size))
        finally:
            os.close(fd)
        if fst.st_nlink > 1:
            links[(fst.st_dev, fst.st_ino)] = arcname
        return
    if stat.S_ISLNK(mode):
        try:
            ti.linkname = os.readlink(name, dir_fd=dirfd) if name else ""
        except OSError:
            return  # swapped meanwhile
        ti.type = tarfile.SYMTYPE
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        ti.type = tarfile.FIFOTYPE
    else:
        return  # sockets have no tar form (dockerd skips them too)
    tar.addfile(ti)


def _open_dir(rootfd: int, path: str, create: bool = False) -> int:
    """An O_PATH fd of directory `path` in the root (symlinks followed inside it),
    its missing directories created (0755) when `create`."""
    for _ in range(8):
        try:
            fd = _inroot.resolve(rootfd, path)
        except FileNotFoundError:
            if not create:
                raise
            head, base = _inroot.split(path.rstrip("/") or "/")
            if not base or base == "..":
                raise
            parent = _open_dir(rootfd, head, create=True)
            try:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(base, 0o755, dir_fd=parent)
            finally:
                os.close(parent)
            continue
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        return fd
    raise OSError(errno.EAGAIN, "directory kept disappearing", path)


def extract_tar(rootfd: int, path: str, src: IO[bytes], no_overwrite_dir_non_dir: bool = False,
                copy_uid_gid: bool = False) -> None:
    """Extract a tar into directory `path` of the container (which must exist).

    Each entry's directory is resolved inside the root (symlinks in the container or
    earlier in the tar followed as if the root were `/`, as dockerd's chrootarchive
    does) into an fd, and the entry is created relative to that fd with O_EXCL /
    O_NOFOLLOW; a non-directory in the way is removed relative to it, never written
    through. Attributes are set through the created inode's fd (or AT_SYMLINK_NOFOLLOW
    for symlinks): nothing is looked up again by a host path.
    """
    try:
        dest = _inroot.resolve(rootfd, path)
    except OSError as err:
        raise _lookup_error(err, path) from None
    try:
        if not stat.S_ISDIR(os.fstat(dest).st_mode):
            raise errdefs.InvalidArgument(f"extraction point is not a directory: {path}")
    finally:
        os.close(dest)
    dir_times: list[tuple[str, int]] = []
    try:
        with tarfile.open(fileobj=src, mode="r|*") as tar:
            for member in tar:
                name = os.path.normpath(member.name).lstrip("/")
                if _escapes(name):
                    raise errdefs.InvalidArgument(f"invalid tar entry: {member.name}")
                if name in (".", ""):
                    continue  # the extraction point itself
                full = f"{path.rstrip('/')}/{name}"
                _extract_one(tar, member, rootfd, path, full, name, no_overwrite_dir_non_dir,
                             copy_uid_gid)
                if member.isdir():
                    dir_times.append((full, int(member.mtime)))
    except tarfile.TarError as err:
        raise errdefs.InvalidArgument(f"invalid tar stream: {err}") from err
    # directory times last: entries created in them changed them
    for full, mtime in reversed(dir_times):
        with contextlib.suppress(OSError):
            fd = _inroot.resolve(rootfd, full, follow_last=False)
            try:
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    dfd = _inroot.reopen(fd, os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        os.utime(dfd, (mtime, mtime))
                    finally:
                        os.close(dfd)
            finally:
                os.close(fd)


def _escapes(name: str) -> bool:
    """Whether a normalised relative tar name climbs above the extraction point (a
    `..` component: normpath leaves them only in front). `..foo` is a plain name, as
    for moby's archive breakout check (a `../` prefix)."""
    return name.split("/", 1)[0] == ".."


def _extract_one(tar: tarfile.TarFile, member: tarfile.TarInfo, rootfd: int, path: str,
                 full: str, name: str, no_overwrite_dir_non_dir: bool,
                 copy_uid_gid: bool) -> None:
    head, base = full.rsplit("/", 1)
    try:
        parent = _open_dir(rootfd, head or "/", create=True)
    except OSError as err:
        raise _lookup_error(err, head or "/", "create directory") from None
    try:
        try:
            existing = os.stat(base, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            is_dir = stat.S_ISDIR(existing.st_mode)
            if no_overwrite_dir_non_dir and is_dir != member.isdir():
                kind = "directory" if is_dir else "non-directory"
                raise errdefs.InvalidArgument(
                    f"cannot overwrite {kind} \"{full}\" with "
                    f"{'directory' if member.isdir() else 'non-directory'}")
            if not (is_dir and member.isdir()):
                if is_dir:
                    shutil.rmtree(base, dir_fd=parent)  # fd-based: never follows a link
                else:
                    os.unlink(base, dir_fd=parent)
        uid, gid = (member.uid, member.gid) if copy_uid_gid else (0, 0)
        mode = member.mode & 0o7777
        if member.isdir():
            with contextlib.suppress(FileExistsError):
                os.mkdir(base, 0o700, dir_fd=parent)
            _set_attrs(parent, base, stat.S_IFDIR, uid, gid, mode, None)
        elif member.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=parent)
            try:
                data = tar.extractfile(member)
                while chunk := data.read(1 << 20):
                    os.write(fd, chunk)
                os.fchown(fd, uid, gid)  # before the mode: chown clears set-id bits
                os.fchmod(fd, mode)
                os.utime(fd, (member.mtime, member.mtime))
            finally:
                os.close(fd)
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=parent)
            os.chown(base, uid, gid, dir_fd=parent, follow_symlinks=False)
            os.utime(base, (member.mtime, member.mtime), dir_fd=parent, follow_symlinks=False)
        elif member.islnk():
            link = os.path.normpath(member.linkname).lstrip("/")
            if _escapes(link):
                raise errdefs.InvalidArgument(f"invalid hard link target in tar entry "
                                              f"{name}: {member.linkname}")
            try:
                target = _inroot.resolve(rootfd, f"{path.rstrip('/')}/{link}",
                                         follow_last=False)
            except OSError:
                raise errdefs.InvalidArgument(f"hard link target {member.linkname} of tar "
                                              f"entry {name} is not in the container") from None
            try:
                # linkat through our own fd's magic link: the inode found inside the root
                os.link(f"/proc/self/fd/{target}", base, dst_dir_fd=parent,
                        follow_symlinks=True)
            finally:
                os.close(target)
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = (stat.S_IFCHR if member.ischr() else
                    stat.S_IFBLK if member.isblk() else stat.S_IFIFO)
            os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor)
                     if kind != stat.S_IFIFO else 0, dir_fd=parent)
            _set_attrs(parent, base, kind, uid, gid, mode, member.mtime)
        else:
            raise errdefs.InvalidArgument(f"tar entry {member.name}: unsupported type "
                                          f"{member.type!r}")
    except OSError as err:
        raise errdefs.FailedPrecondition(f"extract {full} in container: {err.strerror}"
                                         ) from err
    finally:
        os.close(parent)


def _set_attrs(parent: int, base: str, kind: int, uid: int, gid: int, mode: int,
               mtime: float | None) -> None:
    """Owner, mode (and time) of what we just created, through its own fd, after
    checking it still is of the kind created (not a symlink swapped in)."""
    fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        if stat.S_IFMT(os.fstat(fd).st_mode) != kind:
            raise OSError(errno.EEXIST, "replaced while being extracted", base)
        magic = f"/proc/self/fd/{fd}"
        os.chown(magic, uid, gid)
        os.chmod(magic, mode)
        if mtime is not None:
            os.utime(magic, (mtime, mtime))
    finally:
        os.close(fd)


def changes(mounts: list[Mount]) -> list[dict[str, Any]]:
    """`docker diff`: walk the overlay upper dir; whiteouts are deletions (Kind 2),
    paths present in a lower dir are changes (0), others additions (1)."""
    upper, lowers = "", []
    for m in mounts:
        for opt in m.options:
            if opt.startswith("upperdir="):
                upper = opt[9:]
            elif opt.startswith("lowerdir="):
                lowers = opt[9:].split(":")
    if not upper:
        return []
    out: dict[str, int] = {}
    # files dockerd bind-mounts over (their mount points are not changes)
    hidden = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/.dockerenv",
              "/sbin/docker-init"}

    def in_lower(rel: str) -> bool:
        # overlayfs looks a name up in each layer without following symlinks: neither
        # do we (a layer's symlink must not make us probe host paths)
        parts = rel.strip("/").split("/")
        for d in lowers:
            cur = d
            for i, part in enumerate(parts):
                cur = os.path.join(cur, part)
                try:
                    st = os.lstat(cur)
                except OSError:
                    break
                if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
                    break
            else:
                return True
        return False

    # fd-relative and never following a symlink: the running container changes the
    # upper dir while we walk it (os.walk would list a directory swapped for a link)
    for dirpath, dirnames, filenames, dirfd in os.fwalk(upper, follow_symlinks=False):
        rel_dir = "/" + os.path.relpath(dirpath, upper) if dirpath != upper else "/"
        for entry in dirnames + filenames:
            rel = os.path.join(rel_dir, entry)
            if rel in hidden:
                continue
            try:
                st = os.stat(entry, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we walked
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out[rel] = 2
                continue
            existed = in_lower(rel)
            if stat.S_ISDIR(st.st_mode) and existed:
                continue  # a copied-up directory counts only through what changed in it
            out[rel] = 0 if existed else 1
            # a changed file makes its parent directories "changed"
            parent = os.path.dirname(rel)
            while parent not in ("/", ""):
                out.setdefault(parent, 0 if in_lower(parent) else 1)
                parent = os.path.dirname(parent)
    return [{"Path": p, "Kind": k} for p, k in sorted(out.items())]
