"""The container's network namespace while bridge networking is not there: `lo` only.

Owns one persistent network namespace per container, bind-mounted at
`<exec-root>/netns/<id>` (util-linux `unshare --net=FILE`), with `lo` brought up
(`nsenter --net=FILE ip link set lo up`), the way libnetwork keeps a sandbox
per container; the OCI spec joins it by path. `--net=host` containers get none.
Removed with the container (unmount, unlink).
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from dockyard import errdefs

__all__ = ["path_for", "ensure", "remove", "is_mounted"]


def path_for(exec_root: str, container_id: str) -> str:
    return os.path.join(exec_root, "netns", container_id)


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
        raise errdefs.FailedPrecondition(f"{' '.join(argv)}: {err.decode().strip()}")


async def ensure(path: str) -> None:
    """Create the namespace at path with lo up, unless it is there already."""
    if is_mounted(path):
        return
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    with open(path, "a"):
        pass
    try:
        await _run("unshare", f"--net={path}", "true")
        await _run("nsenter", f"--net={path}", "ip", "link", "set", "lo", "up")
    except BaseException:
        await remove(path)
        raise


async def remove(path: str) -> None:
    if is_mounted(path):
        with contextlib.suppress(errdefs.FailedPrecondition):
            await _run("umount", "-l", path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
