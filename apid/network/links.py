"""The kernel side of bridge networking, with pyroute2's `AsyncIPRoute` (no spawns).

Owns bridges (create with the gateway address and up; delete), veth pairs
(host end on a bridge, peer moved into a container's namespace and renamed
there in the same RTM_NEWLINK, as `ip link set X netns N name eth0`), the
peer's MAC, address, `up` and default route, and reading the host's routes
so a new subnet collides with nothing. Host-side calls share one netlink
socket; inside a container's namespace a socket opened there
(`netns.netlink_fd`) is used once and closed. Must not decide names,
addresses or Docker semantics (the controller does).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket

from dockyard.apid import netns

from dockyard import errdefs

__all__ = ["Links", "preload"]

_ENODEV = 19
_EEXIST = 17
_RT_MAIN = 254


def preload() -> None:
    """Import pyroute2 (about half a second) before the first container needs it."""
    import pyroute2.iproute.linux  # noqa: F401


def _ipr(fileno: int | None = None):
    from pyroute2 import AsyncIPRoute

    return AsyncIPRoute(fileno=fileno) if fileno is not None else AsyncIPRoute()


def _code(err: BaseException) -> int | None:
    return getattr(err, "code", None)


class Links:
    """Netlink calls in the host's namespace (one socket) and in containers' ones."""

    def __init__(self) -> None:
        self._host = None
        self._lock = asyncio.Lock()

    async def _h(self):
        if self._host is None:
            await asyncio.to_thread(preload)
            self._host = _ipr()
        return self._host

    def close(self) -> None:
        if self._host is not None:
            self._host.close()
            self._host = None

    async def index(self, name: str) -> int | None:
        ipr = await self._h()
        try:
            msgs = await ipr.link("get", ifname=name)
        except Exception as err:  # noqa: BLE001 - NetlinkError; ENODEV means absent
            if _code(err) == _ENODEV:
                return None
            raise
        return msgs[0]["index"]

    async def ensure_bridge(self, name: str, gateway: str | None, prefixlen: int) -> bool:
        """The bridge `name` exists, carries gateway/prefixlen (if any) and is up.

        Returns whether it was created now. A device of that name that is not a bridge
        (eth0...) is refused untouched."""
        async with self._lock:
            ipr = await self._h()
            idx = await self.index(name)
            created = idx is None
            if idx is not None:
                msg = (await ipr.link("get", index=idx))[0]
                if msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") != "bridge":
                    raise errdefs.InvalidArgument(f"{name} exists and is not a bridge: "
                                                  "refusing to use it")
            if idx is None:
                try:
                    await ipr.link("add", ifname=name, kind="bridge")
                except Exception as err:  # noqa: BLE001
                    if _code(err) != _EEXIST:
                        raise errdefs.EngineError(f"create bridge {name}: {err}") from err
                idx = await self.index(name)
            if gateway:
                have = {m.get("address") async for m in await ipr.addr("dump", index=idx)
                        if m["family"] == socket.AF_INET}
                if gateway not in have:
                    await ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
            await ipr.link("set", index=idx, state="up")
            return created

    async def addresses(self, name: str) -> list[tuple[str, int]]:
        """IPv4 (address, prefixlen) of a device (none when it is absent)."""
        idx = await self.index(name)
        if idx is None:
            return []
        ipr = await self._h()
        return [(m.get("address"), m["prefixlen"]) async for m in
                await ipr.addr("dump", index=idx) if m["family"] == socket.AF_INET]

    async def delete(self, name: str) -> None:
        """Delete a link (bridge, or veth with its peer); absent is fine."""
        async with self._lock:
            ipr = await self._h()
            try:
                await ipr.link("del", ifname=name)
            except Exception as err:  # noqa: BLE001
                if _code(err) != _ENODEV:
                    raise errdefs.EngineError(f"delete link {name}: {err}") from err

    async def has_ports(self, bridge: str) -> bool:
        """Whether any link is enslaved to the bridge."""
        idx = await self.index(bridge)
        if idx is None:
            return False
        ipr = await self._h()
        async for m in await ipr.link("dump"):
            if m.get("master") == idx:
                return True
        return False

    async def attach(self, bridge: str, ns_path: str, host_veth: str, ifname: str, ip: str,
                     prefixlen: int, mac: str, gateway: str | None) -> None:
        """veth host_veth <-> ifname: host end on bridge, peer in the namespace at ns_path
        with mac, ip/prefixlen, up, and a default route via gateway (when given).

        The peer is created inside the namespace (IFLA_NET_NS_FD in the peer's info, as
        `ip link add X type veth peer name eth0 netns N`): moving an existing device
        between namespaces waits for an RCU grace period (10-30 ms here)."""
        async with self._lock:
            ipr = await self._h()
            br = await self.index(bridge)
            if br is None:
                raise errdefs.FailedPrecondition(f"bridge {bridge} does not exist")
            fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                await ipr.link("add", ifname=host_veth, kind="veth", master=br,
                               peer={"ifname": ifname, "net_ns_fd": fd, "address": mac})
            except Exception as err:  # noqa: BLE001 - NetlinkError
                raise errdefs.EngineError(f"create veth {host_veth} on {bridge}: {err}") \
                    from err
            finally:
                os.close(fd)
            try:
                await ipr.link("set", ifname=host_veth, state="up")
            except BaseException:
                await self._delete_quiet(ipr, host_veth)
                raise
        try:
            nl = _ipr(await asyncio.to_thread(netns.netlink_fd, ns_path))
            try:
                idx = (await nl.link("get", ifname=ifname))[0]["index"]
                await nl.addr("add", index=idx, address=ip, prefixlen=prefixlen)
                await nl.link("set", index=idx, state="up")
                if gateway:
                    # proto boot (3), as `ip route add` and dockerd's routes show
                    await nl.route("add", dst="0.0.0.0/0", gateway=gateway, proto=3)
            finally:
                nl.close()
        except BaseException as err:
            await self.delete(host_veth)
            if isinstance(err, Exception) and not isinstance(err, errdefs.EngineError):
                raise errdefs.EngineError(f"configure {ifname} in {ns_path}: {err}") from err
            raise

    @staticmethod
    async def _delete_quiet(ipr, name: str) -> None:
        try:
            await ipr.link("del", ifname=name)
        except Exception:  # noqa: BLE001 - already gone
            pass

    async def subnets_in_use(self) -> list[ipaddress.IPv4Network]:
        """IPv4 destinations of the host's main routing table, default route excepted."""
        ipr = await self._h()
        out = []
        async for m in await ipr.route("dump"):
            if m["family"] != socket.AF_INET or m["dst_len"] == 0:
                continue
            if (m.get("table") or m["table"]) != _RT_MAIN:
                continue
            dst = m.get("dst")
            if dst:
                out.append(ipaddress.IPv4Network(f"{dst}/{m['dst_len']}", strict=False))
        return out
