"""`--device`: read the host's device nodes a create body maps into the container.

Owns the host side of `HostConfig.Devices` (moby `oci.DevicesFromPath` over
containerd's `DeviceFromPath`): each `{PathOnHost, PathInContainer,
CgroupPermissions}` becomes one or more `ContainerDevice`s with the type,
major/minor, mode and owner read from the host node (a symlink is followed; a
directory contributes every device node below it, at the same relative path
under PathInContainer). translate.py turns them into `linux.devices` entries
and device cgroup allow rules; this module only reads the host and must not
build spec fragments.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dockyard import errdefs

__all__ = ["ContainerDevice", "NotADevice", "check_mappings", "device_from_path",
           "devices_from_mapping", "resolve"]

_MODE = re.compile(r"[rwm]{1,3}")


class NotADevice(OSError):
    """The path exists but is not a block, char or fifo node (containerd ErrNotADevice)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"not a device node: {path}")
        self.path = path

    def __str__(self) -> str:
        return "not a device node"


@dataclass(frozen=True)
class ContainerDevice:
    """One node to create in the container and the cgroup access it gets."""

    path: str  # in the container
    type: str  # "c", "b" or "p"
    major: int
    minor: int
    file_mode: int  # permission bits of the host node
    uid: int
    gid: int
    access: str  # cgroup permissions, a subset of "rwm"


def device_from_path(path: str, container_path: str, access: str) -> ContainerDevice:
    """The node at `path` (not followed if a symlink).

    Raises:
        NotADevice: a regular file, directory or other non-device.
        OSError: lstat failed (ENOENT, EACCES).
    """
    st = os.lstat(path)
    kind = {stat.S_IFCHR: "c", stat.S_IFBLK: "b", stat.S_IFIFO: "p"}.get(stat.S_IFMT(st.st_mode))
    if kind is None:
        raise NotADevice(path)
    number = st.st_rdev if kind != "p" else 0
    return ContainerDevice(path=container_path, type=kind, major=os.major(number),
                           minor=os.minor(number), file_mode=stat.S_IMODE(st.st_mode),
                           uid=st.st_uid, gid=st.st_gid, access=access)


def devices_from_mapping(path_on_host: str, path_in_container: str,
                         access: str) -> list[ContainerDevice]:
    """The devices one `--device` mapping names: a node, or every node under a directory.

    Raises:
        errdefs.EngineError: (a 500, as dockerd's spec errors are) in moby's wording,
            `error gathering device information while adding custom device "<path>": <why>`.
    """
    resolved = path_on_host
    if os.path.islink(path_on_host):
        resolved = os.path.realpath(path_on_host)
    try:
        return [device_from_path(resolved, path_in_container, access)]
    except NotADevice as err:
        cause: OSError = err
    except OSError as err:
        cause = err
    found: list[ContainerDevice] = []
    if isinstance(cause, NotADevice) and os.path.isdir(resolved):
        for dirpath, dirnames, filenames in os.walk(resolved):
            dirnames.sort()
            for entry in sorted(dirnames + filenames):
                full = os.path.join(dirpath, entry)
                inside = path_in_container.rstrip("/") + full[len(resolved.rstrip("/")):]
                try:
                    found.append(device_from_path(full, inside, access))
                except OSError:
                    continue  # not a node: skipped, as dockerd's walk does
    if found:
        return found
    why = str(cause) if isinstance(cause, NotADevice) else (
        (cause.strerror or str(cause)).lower())
    raise errdefs.EngineError(f"error gathering device information while adding custom "
                              f"device \"{path_on_host}\": {why}")


def check_mappings(mappings: Iterable[Any] | None) -> list[dict[str, str]]:
    """HostConfig.Devices in canonical form (PathInContainer defaults to PathOnHost,
    CgroupPermissions to rwm); 400 for malformed entries."""
    out = []
    for m in mappings or []:
        if not isinstance(m, dict):
            raise errdefs.InvalidArgument(f"invalid device mapping: {m!r}")
        host = m.get("PathOnHost") or ""
        inside = m.get("PathInContainer") or host
        access = m.get("CgroupPermissions") or "rwm"
        if not all(isinstance(v, str) for v in (host, inside, access)):
            raise errdefs.InvalidArgument(f"invalid device mapping: {m!r}")
        if not host:
            raise errdefs.InvalidArgument("invalid device mapping: PathOnHost is empty")
        if not inside.startswith("/"):
            raise errdefs.InvalidArgument(f"{inside} is not an absolute path")
        if ".." in inside.split("/"):
            raise errdefs.InvalidArgument(f"invalid device path in container: '{inside}'")
        if not _MODE.fullmatch(access):
            raise errdefs.InvalidArgument(f"bad mode specified: {access}")
        out.append({"PathOnHost": host, "PathInContainer": inside,
                    "CgroupPermissions": access})
    return out


def resolve(mappings: Iterable[Any] | None, privileged: bool = False) -> list[ContainerDevice]:
    """Every device of HostConfig.Devices, read from the host now.

    With `privileged` every node gets rwm (moby WithDevices: the cgroup allows all
    devices anyway). dockerd also skips mappings onto the same path there, because it
    gives a privileged container every host node; this engine does not, so it keeps them.
    """
    out: list[ContainerDevice] = []
    for m in check_mappings(mappings):
        out += devices_from_mapping(m["PathOnHost"], m["PathInContainer"],
                                    "rwm" if privileged else m["CgroupPermissions"])
    return out
