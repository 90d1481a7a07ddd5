"""What v1 and v2 managers share: the Manager interface, path rules, file I/O.

Must stay cheap to import (os and posixpath only).
"""

from __future__ import annotations

import errno
import os
import posixpath
import time

from dockyard.errdefs import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["FREEZING", "FROZEN", "THAWED", "Manager", "manager_from_dict", "resolve_path"]

# Freezer states, as v1's freezer.state spells them.
FROZEN = "FROZEN"
THAWED = "THAWED"
FREEZING = "FREEZING"

# How long destroy() retries rmdir on EBUSY (the kernel frees a cgroup a moment
# after its last task has been reaped) and freeze() waits for FROZEN.
RMDIR_TIMEOUT = 1.0
FREEZE_TIMEOUT = 5.0


def resolve_path(cgroups_path: str | None, container_id: str) -> str:
    """Validate OCI `cgroupsPath`; returns it normalised (absolute or relative).

    Raises:
        InvalidArgument: systemd `slice:prefix:name` syntax or `..` components.
    """
    path = cgroups_path or container_id
    if not path or "\0" in path:
        raise InvalidArgument(f"invalid cgroupsPath {cgroups_path!r}")
    if ":" in path and not path.startswith("/"):
        raise InvalidArgument(
            f"cgroupsPath {path!r}: systemd cgroup paths (slice:prefix:name) are not "
            "supported; use a cgroupfs path such as /dockyard/<id>")
    if ".." in path.split("/"):
        raise InvalidArgument(f"cgroupsPath {path!r} must not contain '..'")
    norm = posixpath.normpath(path)
    if norm in ("/", "."):
        raise InvalidArgument(f"cgroupsPath {path!r} names the root cgroup")
    return norm


def own_cgroups(pid: int | str = "self") -> dict[str, str]:
    """Parse /proc/<pid>/cgroup: hierarchy key ('memory', 'cpu,cpuacct',
    'name=systemd', '' for v2) -> path inside that hierarchy."""
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            out[ctrls] = path
    return out


def write_file(path: str, value: str) -> None:
    """Write one value to a cgroup control file (which must exist)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise OSError(err.errno, f"cgroup file {path} does not exist "
                          "(controller not mounted or not enabled?)") from err
        raise OSError(err.errno, f"open cgroup file {path}: {err.strerror}") from err
    try:
        os.write(fd, value.encode())
    except OSError as err:
        raise OSError(err.errno, f"write `{value}` to {path}: {err.strerror}") from err
    finally:
        os.close(fd)


def read_file(path: str) -> str:
    with open(path) as f:
        return f.read()


def read_int(path: str, default: int = 0) -> int:
    """An integer control file; 'max' reads as the v1 'unlimited' value 2**64-1."""
    try:
        text = read_file(path).strip()
    except FileNotFoundError:
        return default
    if text == "max":
        return 0xFFFFFFFFFFFFFFFF
    try:
        return int(text)
    except ValueError:
        return default


def read_keyed(path: str) -> dict[str, int]:
    """A flat-keyed file ('key value' per line: memory.stat, cpu.stat, memory.events)."""
    out: dict[str, int] = {}
    try:
        text = read_file(path)
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def read_pids(directory: str, recursive: bool = True) -> list[int]:
    """Pids in cgroup.procs of `directory` (and of its sub-cgroups)."""
    pids: list[int] = []
    for dirpath, dirnames, _ in os.walk(directory) if recursive else [(directory, [], [])]:
        try:
            text = read_file(os.path.join(dirpath, "cgroup.procs"))
        except FileNotFoundError:
            continue
        pids.extend(int(p) for p in text.split())
        dirnames.sort()
    return pids


def remove_tree(directory: str, timeout: float = RMDIR_TIMEOUT) -> None:
    """rmdir a cgroup and its sub-cgroups bottom-up, retrying briefly on EBUSY.

    Only directories are removed: cgroupfs control files cannot (and need
    not) be unlinked. A missing directory is not an error.
    """
    if not os.path.isdir(directory):
        return
    for dirpath, _, _ in sorted(os.walk(directory), key=lambda w: -len(w[0])):
        _rmdir_retry(dirpath, timeout)


def _rmdir_retry(path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    cleared = False
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno == errno.ENOTEMPTY and not cleared:
                # cgroupfs answers EBUSY, never ENOTEMPTY: this is a fake tree
                # (unit tests) whose control files are plain files.
                _remove_plain_files(path)
                cleared = True
                continue
            if err.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                raise OSError(err.errno, f"remove cgroup {path}: {err.strerror}") from err
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _remove_plain_files(path: str) -> None:
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)


class Manager:
    """One container's cgroup(s). Subclasses: V1Manager, V2Manager."""

    version: int = 0

    @property
    def paths(self) -> dict[str, str]:
        """Hierarchy name -> absolute directory ('' for the v2 unified one)."""
        raise NotImplementedError

    def create(self) -> None:
        """Make the cgroup directories (idempotent)."""
        raise NotImplementedError

    def add(self, pid: int) -> None:
        """Move a process into the container's cgroup(s), every controller."""
        raise NotImplementedError

    def set(self, resources: dict[str, Any]) -> None:
        """Apply OCI `linux.resources` (also used by `update`)."""
        raise NotImplementedError

    def freeze(self) -> None:
        """Freeze every task; returns once the kernel reports FROZEN."""
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def state(self) -> str:
        """FROZEN, FREEZING or THAWED."""
        raise NotImplementedError

    def pids(self) -> list[int]:
        """Every pid in the cgroup and its sub-cgroups."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """The `data` object of `runc events --stats`."""
        raise NotImplementedError

    def oom_count(self) -> int:
        """How many processes the OOM killer has killed in this cgroup."""
        raise NotImplementedError

    def exists(self) -> bool:
        raise NotImplementedError

    def destroy(self) -> None:
        """Remove the cgroup directories (tasks must be gone; not an error if absent)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Serialisable form for the shim's state.json (paths only)."""
        raise NotImplementedError

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Manager:
        return manager_from_dict(data)


def manager_from_dict(data: dict[str, Any]) -> Manager:
    """Rebuild a manager saved with `to_dict()`."""
    version = data.get("version")
    if version == 1:
        from dockyard.shim.cgroups.v1 import V1Manager
        return V1Manager(data["root"], dict(data["paths"]))
    if version == 2:
        from dockyard.shim.cgroups.v2 import V2Manager
        return V2Manager(data["root"], data["path"])
    raise InvalidArgument(f"unknown cgroup manager state {data!r}")
