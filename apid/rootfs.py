"""A container's filesystem from apid's side: `docker cp` (archive) and `docker diff`.

Owns: reaching the container's root (a running container's `/proc/<pid>/root`,
which includes its bind mounts as dockerd's archive does; a stopped one's
snapshot mounted on a private temp dir), resolving paths inside it without
escaping it (symlinks are followed relative to the root, moby
`FollowSymlinkInScope`), the path stat in Go's `os.FileMode` bits for the
`X-Docker-Container-Path-Stat` header, tar in/out, and the overlay upper
dir walk behind `GET /containers/{id}/changes`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
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

from dockyard.apid.container import Container
from dockyard.apid.manager import Manager, Mount

from dockyard import errdefs, tarsafe

__all__ = ["container_root", "resolve_in_root", "path_stat", "stat_header", "tar_path",
           "extract_tar", "changes", "go_file_mode"]

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
    """Host path of `path` inside `root`, symlinks resolved without leaving root."""
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


def path_stat(root: str, path: str) -> dict[str, Any]:
    """Docker's PathStat of `path` (not following a final symlink), 404 when missing."""
    host = resolve_in_root(root, path, follow_last=False)
    try:
        st = os.lstat(host)
    except FileNotFoundError:
        raise errdefs.NotFound(f"Could not find the file {path} in container") from None
    link = os.readlink(host) if stat.S_ISLNK(st.st_mode) else ""
    mtime = datetime.fromtimestamp(st.st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    name = os.path.basename(path.rstrip("/")) or "/"
    return {"name": name, "size": st.st_size, "mode": go_file_mode(st.st_mode), "mtime": mtime,
            "linkTarget": link}


def stat_header(st: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(st).encode()).decode()


@contextlib.asynccontextmanager
async def container_root(manager: Manager, c: Container, volumes: bool = True
                         ) -> AsyncIterator[str]:
    """The container's root directory for the duration of the block (with its volumes and
    binds over it unless `volumes` is False: the image's own content)."""
    if c.state.status in ("running", "paused") and c.state.pid:
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
    cp` sees (and writes) the same files the container would (dockerd does the same)."""
    binds: list[tuple[str, str, bool]] = [
        (v["Source"], v["Destination"], not v.get("RW", True)) for v in c.volumes]
    for b in c.host_config.get("Binds") or []:
        parts = b.split(":")
        if len(parts) >= 2 and parts[0].startswith("/"):
            binds.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    for m in c.host_config.get("Mounts") or []:
        if m.get("Type") == "bind" and (m.get("Source") or "").startswith("/"):
            binds.append((m["Source"], m.get("Target") or "", bool(m.get("ReadOnly"))))
    for source, dest, ro in sorted(binds, key=lambda b: b[1].count("/")):
        mountpoint = resolve_in_root(target, dest)
        if not os.path.exists(source):
            continue
        if not os.path.exists(mountpoint):  # the runtime would create it at start, too
            try:
                if os.path.isdir(source):
                    os.makedirs(mountpoint, mode=0o755, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(mountpoint), mode=0o755, exist_ok=True)
                    open(mountpoint, "a").close()
            except OSError:
                continue
        subprocess.run(["mount", "--bind", source, mountpoint], check=False,
                       capture_output=True)
        if ro:
            subprocess.run(["mount", "-o", "remount,bind,ro", mountpoint], check=False,
                           capture_output=True)


def tar_path(root: str, path: str, out: IO[bytes]) -> None:
    """Write a tar of `path` (top entry named by its basename), like dockerd's archive."""
    host = resolve_in_root(root, path, follow_last=not path.endswith("/"))
    if not os.path.lexists(host):
        raise errdefs.NotFound(f"Could not find the file {path} in container")
    base = os.path.basename(path.rstrip("/")) or "."
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(host, arcname=base, recursive=True)


def extract_tar(root: str, path: str, src: IO[bytes], no_overwrite_dir_non_dir: bool = False,
                copy_uid_gid: bool = False) -> None:
    """Extract a tar into directory `path` of the container (which must exist).

    Every entry's path and hard-link target is resolved inside `root` (symlinks in
    the container or earlier in the tar followed as if `root` were `/`, as dockerd's
    chrootarchive does), and a non-directory in an entry's way is replaced, never
    written through: the kernel never follows a container's symlink to the host.
    """
    dest = resolve_in_root(root, path)
    if not os.path.isdir(dest):
        if os.path.exists(dest):
            raise errdefs.InvalidArgument(f"extraction point is not a directory: {path}")
        raise errdefs.NotFound(f"Could not find the file {path} in container")
    with tarfile.open(fileobj=src, mode="r|*") as tar:
        for member in tar:
            name = os.path.normpath(member.name).lstrip("/")
            if name.startswith(".."):
                raise errdefs.InvalidArgument(f"invalid tar entry: {member.name}")
            target = resolve_in_root(root, os.path.join(path, name), follow_last=False)
            if no_overwrite_dir_non_dir and os.path.lexists(target):
                if os.path.isdir(target) != member.isdir():
                    kind = "directory" if os.path.isdir(target) else "non-directory"
                    raise errdefs.InvalidArgument(
                        f"cannot overwrite {kind} \"{os.path.join(path, name)}\" with "
                        f"{'directory' if member.isdir() else 'non-directory'}")
            if target != dest and os.path.lexists(target) and not (
                    member.isdir() and os.path.isdir(target) and not os.path.islink(target)):
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                else:
                    os.unlink(target)
            member.name = os.path.relpath(target, root)
            if not copy_uid_gid:
                member.uid = member.gid = 0
                member.uname = member.gname = ""
            if member.islnk():
                link = os.path.normpath(member.linkname).lstrip("/")
                if link.startswith(".."):
                    raise errdefs.InvalidArgument(f"invalid hard link target in tar entry "
                                                  f"{name}: {member.linkname}")
                # followed to the end: os.link would follow a final symlink on the host
                link_target = resolve_in_root(root, os.path.join(path, link))
                if not os.path.lexists(link_target):
                    raise errdefs.InvalidArgument(f"hard link target {member.linkname} of tar "
                                                  f"entry {name} is not in the container")
                member.linkname = os.path.relpath(link_target, root)
            tarsafe.extract(tar, member, root, trusted=True, numeric_owner=True)


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
        return any(os.path.lexists(os.path.join(d, rel.lstrip("/"))) for d in lowers)

    for dirpath, dirnames, filenames in os.walk(upper):
        rel_dir = "/" + os.path.relpath(dirpath, upper) if dirpath != upper else "/"
        for entry in dirnames + filenames:
            full = os.path.join(dirpath, entry)
            rel = os.path.join(rel_dir, entry)
            if rel in hidden:
                continue
            st = os.lstat(full)
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
