"""Networks and endpoints on disk: `<data-root>/network/state.json`.

Schema (version 1), one JSON document written like runc's state.json (temp
file in the same directory, fsync when networks change, os.replace):

    {"version": 1,
     "networks":  {<network id>: Network},
     "endpoints": {<container id>: {<network id>: Endpoint}},
     "ports":     {<container id>: {"80/tcp": [{"HostIp", "HostPort"}]}}}

A Network carries its IPAM pool (subnet, gateway, addresses handed out), so
the addresses of running containers survive an apid restart. An Endpoint is a
container's membership of a network: what was asked for (aliases, IPv4
address) always, and, while the container runs, what it got (address, MAC,
host-side veth) and the host ports its proxies bound (re-bound after a restart).
Change the schema => add a migration => bump the version.
Must not touch the kernel.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from dockyard.apid.network.ipam import Pool

__all__ = ["Network", "Endpoint", "Store", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1


@dataclass
class Network:
    id: str
    name: str
    bridge: str  # the Linux bridge device
    pool: Pool
    driver: str = "bridge"
    created: float = 0.0
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    default: bool = False  # the daemon's `bridge` network (--bridge)
    ipam_config: list[dict[str, str]] = field(default_factory=list)  # as the client sent it
    owns_bridge: bool = True  # apid created the device: it deletes it when unused

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["pool"]["allocated"] = sorted(self.pool.allocated)
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Network:
        pool = raw.pop("pool")
        pool["allocated"] = set(pool.get("allocated") or [])
        known = set(cls.__dataclass_fields__)
        return cls(pool=Pool(**pool), **{k: v for k, v in raw.items() if k in known})


@dataclass
class Endpoint:
    network_id: str
    endpoint_id: str
    aliases: list[str] = field(default_factory=list)
    ipv4_request: str = ""  # IPAMConfig.IPv4Address
    mac_request: str = ""  # MacAddress (--mac-address)
    # while attached (the container runs):
    ip: str = ""
    mac: str = ""
    host_veth: str = ""
    ifname: str = ""


class Store:
    """The whole network state, loaded once and saved after every change."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = os.path.join(root, "state.json")
        self.networks: dict[str, Network] = {}
        self.endpoints: dict[str, dict[str, Endpoint]] = {}
        self.ports: dict[str, dict[str, list[dict[str, str]]]] = {}

    def load(self) -> None:
        try:
            with open(self.path) as f:
                raw = json.load(f)
        except FileNotFoundError:
            return
        if raw.get("version") != SCHEMA_VERSION:
            raise ValueError(f"{self.path}: unknown schema version {raw.get('version')}")
        self.networks = {k: Network.from_json(v) for k, v in raw.get("networks", {}).items()}
        self.endpoints = {cid: {nid: Endpoint(**ep) for nid, ep in eps.items()}
                          for cid, eps in raw.get("endpoints", {}).items()}
        self.ports = raw.get("ports") or {}

    def save(self, durable: bool = True) -> None:
        """Write the document; durable=False skips the fsync (address changes: they only
        matter while the kernel that holds the containers runs, and a start must not
        wait for the disk)."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        doc = {"version": SCHEMA_VERSION,
               "networks": {k: n.to_json() for k, n in self.networks.items()},
               "endpoints": {cid: {nid: asdict(ep) for nid, ep in eps.items()}
                             for cid, eps in self.endpoints.items() if eps},
               "ports": {cid: p for cid, p in self.ports.items() if p}}
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def by_name(self, name: str) -> Network | None:
        for net in self.networks.values():
            if net.name == name:
                return net
        return None
