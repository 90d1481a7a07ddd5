"""The OCI bundle of a task: ``<state>/tasks/<ns>/<id>/`` with config.json and rootfs/.

This module owns turning a container (its spec JSON and its snapshot's mounts)
into a bundle a runc-compatible runtime accepts, and taking it apart again:
the rootfs is mounted at ``<bundle>/rootfs`` and config.json gets that absolute
path as ``root.path``, plus the terminal settings of the task. The bundle
directory is also the task's state directory (the monitor's socket, pid and
exit files, the runtime's log.json, exec process specs).

Removing a bundle never deletes through a mount: the rootfs is unmounted and
checked before the directory goes.
"""

from __future__ import annotations

import copy
import json
import os

from dockyard.managerd.atomic import atomic_delete
from dockyard.managerd.snapshots.mount import (
    Mount,
    detach,
    is_mountpoint,
    mount_all,
    unmount,
)

from dockyard import errdefs

__all__ = ["prepare_spec", "create", "remove", "rootfs_path", "unmount_rootfs", "write_state"]


def write_state(path: str, data: bytes) -> None:
    """Replace a file of the task's state dir via a temp file and a rename.

    No fsync, unlike metadata under --root: the state dir is volatile (/run, tmpfs in
    production), so only process crashes matter, and the page cache survives those.
    """
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def rootfs_path(bundle: str) -> str:
    return os.path.join(bundle, "rootfs")


def prepare_spec(spec: dict, bundle: str, terminal: bool,
                 console_size: tuple[int, int] | None = None) -> dict:
    """A copy of spec with root.path = <bundle>/rootfs and process.terminal set.

    Raises:
        InvalidArgument: the spec has no process to run.
    """
    spec = copy.deepcopy(spec)
    process = spec.get("process")
    if not isinstance(process, dict) or not process.get("args"):
        raise errdefs.InvalidArgument("spec: process.args is required to run a task")
    root = spec.get("root")
    root = dict(root) if isinstance(root, dict) else {}
    root["path"] = rootfs_path(bundle)
    spec["root"] = root
    process["terminal"] = terminal
    if terminal and console_size and all(console_size):
        process["consoleSize"] = {"height": console_size[0], "width": console_size[1]}
    else:
        process.pop("consoleSize", None)
    return spec


def create(bundle: str, spec: dict, mounts: list[Mount], source_root: str = "") -> None:
    """Make the bundle: mount the rootfs, write config.json.

    Args:
        bundle: the (new, empty or absent) bundle directory.
        spec: the spec to write (from prepare_spec).
        mounts: the container snapshot's mounts; empty to bind-mount source_root.
        source_root: an existing root directory, used when there is no snapshot.

    Raises:
        InvalidArgument: neither mounts nor a usable source_root.
        OSError: mounting failed (nothing is left mounted).
    """
    rootfs = rootfs_path(bundle)
    os.makedirs(rootfs, mode=0o755, exist_ok=True)
    if not mounts:
        if not source_root or not os.path.isabs(source_root) or not os.path.isdir(source_root):
            raise errdefs.InvalidArgument(
                "container has no snapshot_key and its spec root.path "
                f"{source_root!r} is not an absolute directory")
        mounts = [Mount("bind", source_root, ("rbind",))]
    mount_all(mounts, rootfs)
    try:
        write_state(os.path.join(bundle, "config.json"), json.dumps(spec).encode())
    except BaseException:
        unmount(rootfs)
        raise


def unmount_rootfs(bundle: str) -> None:
    """Unmount the bundle's rootfs (no error if nothing is mounted); the filesystem's
    teardown (an overlay's sync) finishes in the background (snapshots.mount.detach).

    Raises:
        OSError: it cannot be unmounted.
    """
    detach(rootfs_path(bundle))


def remove(bundle: str) -> None:
    """Unmount the rootfs and delete the bundle directory (no error if absent): renamed
    away at once, its files removed in the background (atomic_delete).

    Raises:
        OSError: the rootfs stays mounted (busy); the directory is then kept.
    """
    rootfs = rootfs_path(bundle)
    if os.path.isdir(rootfs):
        try:
            detach(rootfs)  # returns once umount2 says rootfs is no mount point
        except OSError:
            if is_mountpoint(rootfs):
                raise OSError(f"rootfs `{rootfs}` is still mounted: not removing the "
                              "bundle") from None
    atomic_delete(bundle, background=True)
