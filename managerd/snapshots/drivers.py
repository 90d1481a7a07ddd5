"""Snapshotter drivers: how a snapshot's directories are laid out and mounted.

Each snapshot owns ``<root>/<id>/`` (id from the metadata database):
``fs/`` holds its own layer, ``work/`` is overlayfs' workdir. Parents are
passed nearest first. Drivers do file work only; snapshots/service.py keeps
the metadata and decides what may happen.

- overlayfs: an active snapshot is ``overlay`` with upperdir=its fs and
  lowerdir=the parents' fs dirs (a bind of its fs when it has no parent); a
  view is a read-only bind of its single parent, or a lowerdir-only overlay.
  Committed layers are shared by every child, never copied.
- native: plain directories; prepare copies the parent's fs (cp -a, so
  owners, modes, devices, xattrs and hard links survive); mounts are binds.
  For hosts (or upper filesystems) where overlayfs is unavailable.
"""

from __future__ import annotations

import functools
import os
import subprocess

from dockyard.managerd.snapshots.mount import Mount

__all__ = ["Driver", "Overlay", "Native", "usage", "overlay_supported"]


class Driver:
    name = ""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, mode=0o700, exist_ok=True)

    def dir(self, sid: int) -> str:
        return os.path.join(self.root, str(sid))

    def fs(self, sid: int) -> str:
        return os.path.join(self.root, str(sid), "fs")

    def create(self, sid: int, parents: list[int], view: bool) -> None:
        raise NotImplementedError

    def mounts(self, sid: int, parents: list[int], view: bool) -> list[Mount]:
        raise NotImplementedError


class Overlay(Driver):
    name = "overlayfs"

    def create(self, sid: int, parents: list[int], view: bool) -> None:
        os.makedirs(self.fs(sid), mode=0o755)
        if not view:
            os.makedirs(os.path.join(self.dir(sid), "work"), mode=0o700)

    def mounts(self, sid: int, parents: list[int], view: bool) -> list[Mount]:
        if not parents:
            return [Mount("bind", self.fs(sid), ("ro" if view else "rw", "rbind"))]
        lower = ":".join(self.fs(p) for p in parents)
        if view:
            if len(parents) == 1:
                return [Mount("bind", self.fs(parents[0]), ("ro", "rbind"))]
            return [Mount("overlay", "overlay", (f"lowerdir={lower}",))]
        return [Mount("overlay", "overlay", (
            f"workdir={os.path.join(self.dir(sid), 'work')}",
            f"upperdir={self.fs(sid)}", f"lowerdir={lower}"))]


class Native(Driver):
    name = "native"

    def create(self, sid: int, parents: list[int], view: bool) -> None:
        os.makedirs(self.dir(sid), mode=0o700, exist_ok=True)
        if not parents:
            os.makedirs(self.fs(sid), mode=0o755)
            return
        proc = subprocess.run(["cp", "-a", "--reflink=auto", self.fs(parents[0]), self.fs(sid)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise OSError(f"copy snapshot `{self.fs(parents[0])}` to `{self.fs(sid)}`: "
                          f"{proc.stderr.strip()}")

    def mounts(self, sid: int, parents: list[int], view: bool) -> list[Mount]:
        return [Mount("bind", self.fs(sid), ("ro" if view else "rw", "rbind"))]


def usage(path: str) -> tuple[int, int]:
    """(bytes, inodes) used under path, like du: st_blocks*512 of each distinct inode."""
    seen: set[tuple[int, int]] = set()
    size = 0

    def visit(st: os.stat_result) -> None:
        nonlocal size
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            size += st.st_blocks * 512

    visit(os.lstat(path))
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                visit(os.lstat(os.path.join(dirpath, name)))
            except FileNotFoundError:
                continue
    return size, len(seen)


def overlay_supported(workdir: str) -> bool:
    """Whether an overlay with two lower dirs mounts in `workdir` (on the filesystem that
    will hold the snapshots: overlayfs cannot use another overlayfs as upper layer)."""
    import shutil
    import tempfile

    from dockyard.managerd.snapshots.mount import mount_all, unmount

    os.makedirs(workdir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".check-", dir=workdir)
    try:
        for d in ("l1", "l2", "u", "w", "m"):
            os.mkdir(os.path.join(tmp, d))
        j = functools.partial(os.path.join, tmp)
        mount_all([Mount("overlay", "overlay", (
            f"lowerdir={j('l1')}:{j('l2')}", f"upperdir={j('u')}", f"workdir={j('w')}"))], j("m"))
        unmount(j("m"))
        return True
    except OSError:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
