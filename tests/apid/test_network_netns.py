"""Kernel tests of apid/netns.py and apid/network/links.py: a namespace made in-process
(lo up, nothing spawned, the calling thread's namespace untouched) and a veth wired
into it from a `dy` bridge; every object removed again, also on failure."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid

import pytest
from dockyard.apid import netns
from dockyard.apid.network.links import Links

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]


def _in_ns(path: str, *cmd: str) -> str:
    return subprocess.run(["nsenter", f"--net={path}", *cmd], capture_output=True,
                          text=True).stdout


def test_namespace_created_with_lo_up_and_removed(tmp_path):
    path = str(tmp_path / "netns" / f"dy{uuid.uuid4().hex[:8]}")
    own = os.stat("/proc/thread-self/ns/net").st_ino
    try:
        asyncio.run(netns.ensure(path))
        assert netns.is_mounted(path)
        assert os.stat(path).st_ino != own
        assert "UP" in _in_ns(path, "ip", "-o", "link", "show", "lo")
        assert os.stat("/proc/thread-self/ns/net").st_ino == own
        asyncio.run(netns.ensure(path))  # idempotent
    finally:
        asyncio.run(netns.remove(path))
    assert not netns.is_mounted(path) and not os.path.exists(path)


def test_veth_from_a_bridge_into_the_namespace(tmp_path):
    bridge = f"dy{uuid.uuid4().hex[:8]}"
    veth = f"veth{uuid.uuid4().hex[:7]}"
    path = str(tmp_path / "netns" / f"dy{uuid.uuid4().hex[:8]}")

    async def main() -> None:
        links = Links()
        try:
            await netns.ensure(path)
            await links.ensure_bridge(bridge, "10.254.77.1", 24)
            await links.attach(bridge, path, veth, "eth0", "10.254.77.2", 24,
                               "02:42:0a:fe:4d:02", "10.254.77.1")
            assert await links.has_ports(bridge)
            addr = _in_ns(path, "ip", "-o", "-4", "addr", "show", "eth0")
            assert "10.254.77.2/24" in addr
            assert "default via 10.254.77.1 dev eth0" in _in_ns(path, "ip", "route")
            assert "02:42:0a:fe:4d:02" in _in_ns(path, "ip", "-o", "link", "show", "eth0")
            await links.delete(veth)
            assert not await links.has_ports(bridge)
            assert "eth0" not in _in_ns(path, "ip", "-o", "link")
        finally:
            await links.delete(veth)
            await links.delete(bridge)
            links.close()
            await netns.remove(path)

    asyncio.run(main())
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert bridge not in out and veth not in out
