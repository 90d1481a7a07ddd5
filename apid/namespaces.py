"""The host side of `--ipc` and `--pid container:<name|id>`: join paths and shm mounts.

Owns two kinds of kernel objects, both named after the container that uses them:

* `<exec-root>/nsjoin/<id>/{ipc,pid}`: a bind mount of the donor init's
  `/proc/<pid>/ns/<kind>` that exists only while the joiner's task is created
  (the runtime setns()es into it then; afterwards the joiner's processes hold
  the namespace). It lets the OCI spec written at create time name a stable path
  where dockerd writes `/proc/<pid>/ns/<kind>` into a spec it regenerates at
  every start.
* `<data-root>/containers/<id>/mounts/shm`: the host-side tmpfs of a
  `shareable` IPC container (moby setupIPCDirs, mode 1777, size ShmSize),
  bound at /dev/shm into it and into every `container:` joiner; mounted at
  start, unmounted when the container stops or is removed, as dockerd does.

Must not decide Docker semantics (which donor, the error rules): daemon.py does.
Mounts go through mount(8)/umount(8) like netns.py's unshare(8) (apid has no
syscall module of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from dockyard import errdefs

__all__ = ["join_path", "shm_path", "is_mounted", "bind_namespace", "release_join",
           "release_stale_joins", "mount_shm", "unmount_shm"]

JOIN_KINDS = ("ipc", "pid")


def join_path(exec_root: str, container_id: str, kind: str) -> str:
    return os.path.join(exec_root, "nsjoin", container_id, kind)


def shm_path(container_root: str) -> str:
    """The host-side /dev/shm of a shareable-IPC container whose directory is container_root."""
    return os.path.join(container_root, "mounts", "shm")


def is_mounted(path: str) -> bool:
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise errdefs.EngineError(f"{' '.join(argv)}: {err.decode().strip()}")


async def bind_namespace(pid: int, kind: str, path: str) -> None:
    """Bind /proc/<pid>/ns/<kind> at path (a 500 in Docker's terms when it fails)."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    if is_mounted(path):
        await release_join(path)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "a"):
        pass
    try:
        await _run("mount", "--bind", f"/proc/{pid}/ns/{kind}", path)
    except BaseException:
        await release_join(path)
        raise


async def release_join(path: str) -> None:
    """Unmount and remove a join path and its directory once empty (missing is fine)."""
    while is_mounted(path):
        try:
            await _run("umount", path)
        except errdefs.EngineError:
            await _run("umount", "-l", path)
            break
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))


async def release_stale_joins(exec_root: str) -> int:
    """Remove every join path under exec_root (left by an apid that died while a task was
    being created; none is in use when apid starts). Returns how many were removed."""
    base = os.path.join(exec_root, "nsjoin")
    count = 0
    with contextlib.suppress(FileNotFoundError):
        for container_id in os.listdir(base):
            for kind in JOIN_KINDS:
                path = join_path(exec_root, container_id, kind)
                if os.path.lexists(path):
                    await release_join(path)
                    count += 1
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(base, container_id))
    return count


async def mount_shm(path: str, size: int) -> None:
    """Mount the shareable container's shm tmpfs at path, unless it is there already."""
    if is_mounted(path):
        return
    os.makedirs(path, mode=0o700, exist_ok=True)
    await _run("mount", "-t", "tmpfs", "-o", f"mode=1777,size={int(size)},nosuid,nodev,noexec",
               "shm", path)


async def unmount_shm(path: str) -> None:
    """Unmount a shareable container's shm tmpfs (no-op when it is not mounted)."""
    while is_mounted(path):
        try:
            await _run("umount", path)
        except errdefs.EngineError:
            await _run("umount", "-l", path)
            break
