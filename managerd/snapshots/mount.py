"""Mounts returned by snapshotters, and mounting them for callers (tasks, images).

``mount_all(mounts, target)`` runs mount(8) once per mount, which parses
option strings (bind/rbind/ro, overlay lowerdir=...) the way the kernel and
util-linux agree on; managerd is threaded, so it never forks itself: mount(8)
runs through subprocess (fork+exec in C). ``unmount(target)`` undoes it.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field

from dockyard.errdefs import InvalidArgument

__all__ = ["Mount", "mount_all", "unmount", "is_mountpoint"]

_OCTAL = re.compile(r"\\([0-7]{3})")  # mountinfo escapes space, tab, newline, backslash


@dataclass(frozen=True)
class Mount:
    type: str  # "overlay" or "bind"
    source: str
    options: tuple[str, ...] = field(default_factory=tuple)
    target: str = ""  # relative to the root being assembled; "" = the root


def mount_all(mounts: list[Mount], target: str) -> None:
    """Mount each mount at target (joined with mount.target); undoes them all on failure.

    Raises:
        OSError: mount(8) failed; the message carries its stderr.
    """
    done: list[str] = []
    try:
        for m in mounts:
            dest = os.path.join(target, m.target.lstrip("/")) if m.target else target
            opts, cwd = list(m.options), None
            args = ["mount"]
            if m.type == "bind" or "bind" in opts or "rbind" in opts:
                bind = "rbind" if "rbind" in opts else "bind"
                rest = [o for o in opts if o not in ("bind", "rbind")]
                args += [f"--{bind}"] + (["-o", ",".join(rest)] if rest else [])
            else:
                opts, cwd = _shorten_overlay(opts) if m.type == "overlay" else (opts, None)
                args += ["-t", m.type] + (["-o", ",".join(opts)] if opts else [])
            args += [m.source, os.path.abspath(dest)]
            proc = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
            if proc.returncode != 0:
                raise OSError(f"mount {m.type} `{m.source}` on `{dest}`: "
                              f"{proc.stderr.strip() or 'mount(8) failed'}")
            done.append(dest)
    except BaseException:
        for dest in reversed(done):
            subprocess.run(["umount", dest], capture_output=True)
        raise


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
        OSError: umount(8) failed (e.g. busy); the message carries its stderr.
    """
    while is_mountpoint(target):
        args = ["umount"] + (["-l"] if lazy else []) + [target]
        proc = subprocess.run(args, capture_output=True, text=True)
        if proc.returncode != 0:
            raise OSError(f"unmount `{target}`: {proc.stderr.strip() or 'umount(8) failed'}")


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
