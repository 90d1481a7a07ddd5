"""Crash-safe file operations managerd uses for state on disk (runc/containerd style)."""

from __future__ import annotations

import os
import shutil

__all__ = ["atomic_delete", "fsync_dir", "write_atomic"]


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Temp file in the same directory, fsync, rename over `path`."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def atomic_delete(path: str) -> None:
    """Rename to a hidden name, then remove (containerd's atomicDelete): a crash never
    leaves a half-deleted directory under its real name. Missing path: no error."""
    parent, name = os.path.split(path.rstrip("/"))
    hidden = os.path.join(parent, f".del-{name}-{os.urandom(4).hex()}")
    try:
        os.rename(path, hidden)
    except FileNotFoundError:
        return
    shutil.rmtree(hidden, ignore_errors=True)
