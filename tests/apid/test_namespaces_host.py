"""apid/namespaces.py against the kernel: join bind mounts and the shareable shm tmpfs."""

from __future__ import annotations

import asyncio
import os

import pytest
from dockyard.apid import namespaces

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]


@pytest.fixture
def root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounts need root")
    yield tmp_path
    with open("/proc/self/mountinfo") as f:  # cleanup even when a test failed
        for line in f:
            if line.split()[4].startswith(str(tmp_path)):
                os.system(f"umount -l {line.split()[4]}")


def test_bind_and_release_a_namespace(root):
    path = namespaces.join_path(str(root), "dy-c1", "ipc")
    asyncio.run(namespaces.bind_namespace(os.getpid(), "ipc", path))
    assert namespaces.is_mounted(path)
    assert os.stat(path).st_ino == os.stat("/proc/self/ns/ipc").st_ino
    asyncio.run(namespaces.bind_namespace(os.getpid(), "ipc", path))  # again: replaced
    asyncio.run(namespaces.release_join(path))
    assert not namespaces.is_mounted(path) and not os.path.exists(os.path.dirname(path))


def test_stale_joins_released(root):
    for cid, kind in (("dy-a", "ipc"), ("dy-a", "pid"), ("dy-b", "pid")):
        asyncio.run(namespaces.bind_namespace(os.getpid(), kind,
                                              namespaces.join_path(str(root), cid, kind)))
    assert asyncio.run(namespaces.release_stale_joins(str(root))) == 3
    assert os.listdir(root / "nsjoin") == []
    assert asyncio.run(namespaces.release_stale_joins(str(root / "none"))) == 0


def test_bind_of_a_gone_process_fails_cleanly(root):
    path = namespaces.join_path(str(root), "dy-c2", "pid")
    with pytest.raises(Exception, match="mount"):
        asyncio.run(namespaces.bind_namespace(2 ** 22 + 1, "pid", path))
    assert not os.path.exists(path)


def test_shm_tmpfs(root):
    path = namespaces.shm_path(str(root / "c"))
    asyncio.run(namespaces.mount_shm(path, 1 << 20))
    asyncio.run(namespaces.mount_shm(path, 1 << 20))  # idempotent
    assert namespaces.is_mounted(path)
    st = os.statvfs(path)
    assert st.f_blocks * st.f_frsize == 1 << 20
    assert oct(os.stat(path).st_mode & 0o7777) == "0o1777"
    asyncio.run(namespaces.unmount_shm(path))
    asyncio.run(namespaces.unmount_shm(path))
    assert not namespaces.is_mounted(path)
