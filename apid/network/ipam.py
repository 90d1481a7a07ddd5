"""IPv4 address management for bridge networks. Pure: no I/O.

Owns the rules dockerd's default IPAM applies: a network's subnet (given, or
the first of the default pools 172.17-31.0.0/16 then 192.168.N.0/20 that
overlaps nothing in use), its gateway (given, or the first host address),
addresses handed out lowest-free-first, never the network, broadcast or gateway
address, and the MAC address `02:42:` + the four address bytes (moby 20.10).
Errors use dockerd's wording.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from dockyard import errdefs

__all__ = ["Pool", "parse_subnet", "parse_address", "default_pools", "pick_subnet",
           "mac_for"]

IPv4Net = ipaddress.IPv4Network


def parse_subnet(text: str) -> IPv4Net:
    """A CIDR like 10.9.0.0/24 (host bits must be zero); 400 in dockerd's words."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid CIDR address: {text}") from None
    if net.version != 4:
        raise errdefs.InvalidArgument(f"IPv6 subnets are not supported by this engine: {text}")
    if net.prefixlen > 30:
        raise errdefs.InvalidArgument(f"invalid subnet {text}: too small (at most /30)")
    return net


def parse_address(text: str, what: str = "address") -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid {what}: {text}") from None
    if addr.version != 4:
        raise errdefs.InvalidArgument(f"IPv6 addresses are not supported by this engine: "
                                      f"{text}")
    return addr


def _is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def default_pools() -> Iterator[IPv4Net]:
    """dockerd's default address pools, in order."""
    for second in range(17, 32):
        yield ipaddress.IPv4Network(f"172.{second}.0.0/16")
    for third in range(0, 256, 16):
        yield ipaddress.IPv4Network(f"192.168.{third}.0/20")


def pick_subnet(in_use: Iterable[IPv4Net], candidates: Iterable[IPv4Net] | None = None
                ) -> IPv4Net:
    """The first candidate pool that overlaps none of in_use."""
    used = list(in_use)
    for cand in candidates if candidates is not None else default_pools():
        if not any(cand.overlaps(u) for u in used):
            return cand
    raise errdefs.InvalidArgument("could not find an available, non-overlapping IPv4 address "
                                  "pool among the defaults to assign to the network")


def mac_for(ip: str) -> str:
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


@dataclass
class Pool:
    """One network's subnet, gateway and the addresses handed out."""

    subnet: str
    gateway: str
    allocated: set[str] = field(default_factory=set)
    ip_range: str = ""  # --ip-range: containers' addresses come from here only
    aux: list[str] = field(default_factory=list)  # --aux-address: never handed out

    @classmethod
    def create(cls, subnet: str, gateway: str | None = None, ip_range: str | None = None,
               aux: dict[str, str] | None = None) -> Pool:
        net = parse_subnet(subnet)
        if gateway:
            gw = parse_address(gateway, "gateway")
            if gw not in net or gw in (net.network_address, net.broadcast_address):
                raise errdefs.InvalidArgument(f"no matching subnet for gateway {gateway}")
        else:
            gw = net.network_address + 1
        rng = ""
        if ip_range:
            sub = ipaddress.ip_network(ip_range, strict=False) if _is_cidr(ip_range) else None
            if sub is None or sub.version != 4 or not sub.subnet_of(net):
                raise errdefs.InvalidArgument(f"invalid ip-range {ip_range}: not a subnet of "
                                              f"{net}")
            rng = str(sub)
        reserved = []
        for name, addr in (aux or {}).items():
            a = parse_address(addr, f"auxiliary address {name}")
            if a not in net:
                raise errdefs.InvalidArgument(f"no matching subnet for aux-address {addr}")
            reserved.append(str(a))
        return cls(subnet=str(net), gateway=str(gw), ip_range=rng, aux=reserved)

    @property
    def network(self) -> IPv4Net:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    def allocate(self, requested: str | None = None) -> str:
        """Hand out requested (400/409 when not possible) or the lowest free address."""
        net = self.network
        reserved = {str(net.network_address), str(net.broadcast_address), self.gateway,
                    *self.aux}
        if requested:
            addr = parse_address(requested, "IPv4 address")
            if addr not in net:
                raise errdefs.InvalidArgument(
                    f"no available IPv4 addresses on this network's address pools: "
                    f"{requested} is not in {self.subnet}")
            if str(addr) in reserved or str(addr) in self.allocated:
                raise errdefs.FailedPrecondition(f"Address already in use: {requested}")
            self.allocated.add(str(addr))
            return str(addr)
        for host in (ipaddress.IPv4Network(self.ip_range) if self.ip_range else net).hosts():
            text = str(host)
            if text not in reserved and text not in self.allocated:
                self.allocated.add(text)
                return text
        raise errdefs.FailedPrecondition(f"no available IPv4 addresses on this network's "
                                         f"address pools: {self.subnet}")

    def release(self, ip: str) -> None:
        self.allocated.discard(ip)
