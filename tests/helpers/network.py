"""Host-side helpers for tests that give a daemon a bridge: free subnets, links, waits."""

from __future__ import annotations

import ipaddress
import subprocess
import time
import uuid
from collections.abc import Callable

__all__ = ["host_routes", "free_subnet", "links", "settled"]


def host_routes() -> list[ipaddress.IPv4Network]:
    """The host's IPv4 routes with a non-zero mask (from /proc/net/route)."""
    out = []
    with open("/proc/net/route") as f:
        for line in list(f)[1:]:
            fields = line.split()
            dst, mask = (ipaddress.IPv4Address(bytes.fromhex(x)[::-1]) for x in
                         (fields[1], fields[7]))
            if int(mask):
                out.append(ipaddress.IPv4Network(f"{dst}/{mask}", strict=False))
    return out


def free_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 no host route overlaps (parallel test daemons share a kernel)."""
    used = host_routes()
    rnd = uuid.uuid4().int
    for i in range(200):
        cand = ipaddress.IPv4Network(
            f"10.{100 + (rnd + i) % 150}.{((rnd >> 8) + i) % 250}.0/24")
        if not any(cand.overlaps(u) for u in used):
            return cand
    raise RuntimeError("no free 10.x.y.0/24")


def links() -> str:
    """`ip -o link` of the host."""
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def settled(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """check() turns true within timeout (veths are deleted just after the exit)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
