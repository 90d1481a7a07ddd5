"""Networks and volumes, read-only until bridge networking and volumes exist.

`docker network ls/inspect` see the three built-in networks (bridge = a
private namespace with `lo` only for now, host, none); `docker volume ls`
sees none. Creating either is refused with a 501-class message naming what
is missing, so scripts and compose fail clearly instead of half-working.
"""

from __future__ import annotations

import hashlib

from dockyard.apid.container import rfc3339
from dockyard.apid.deps import DaemonDep
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from dockyard import errdefs

router = APIRouter(tags=["networks"])

_BUILTIN = {"bridge": "bridge", "host": "host", "none": "null"}


def _network(name: str, daemon) -> dict:
    nid = hashlib.sha256(f"dockyard-network-{name}".encode()).hexdigest()
    containers = {}
    for c in daemon.containers.values():
        mode = c.host_config.get("NetworkMode") or "default"
        if (mode == "default" and name == "bridge" or mode == name) and c.state.running:
            containers[c.id] = {"Name": c.name.lstrip("/"), "EndpointID": "", "MacAddress": "",
                                "IPv4Address": "", "IPv6Address": ""}
    return {"Name": name, "Id": nid, "Created": rfc3339(0), "Scope": "local",
            "Driver": _BUILTIN[name], "EnableIPv4": name == "bridge", "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": []}, "Internal": False,
            "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": containers, "Options": {}, "Labels": {}}


@router.get("/networks")
async def list_networks(*, daemon: DaemonDep) -> list[dict]:
    return [_network(n, daemon) for n in _BUILTIN]


@router.get("/networks/{ref}")
async def inspect_network(ref: str, *, daemon: DaemonDep) -> dict:
    for name in _BUILTIN:
        net = _network(name, daemon)
        if ref == name or (len(ref) >= 3 and net["Id"].startswith(ref)):
            return net
    raise errdefs.NotFound(f"network {ref} not found")


@router.post("/networks/create")
async def create_network() -> JSONResponse:
    return JSONResponse({"message": "user-defined networks are not supported by this engine "
                                    "yet (bridge networking is missing)"}, status_code=501)


@router.post("/networks/prune")
async def prune_networks() -> dict:
    return {"NetworksDeleted": None}


@router.get("/volumes")
async def list_volumes() -> dict:
    return {"Volumes": [], "Warnings": None}


@router.post("/volumes/create")
async def create_volume() -> JSONResponse:
    return JSONResponse({"message": "named volumes are not supported by this engine yet; "
                                    "use bind mounts or tmpfs"}, status_code=501)


@router.get("/volumes/{name}")
async def inspect_volume(name: str) -> dict:
    raise errdefs.NotFound(f"get {name}: no such volume")


@router.post("/volumes/prune")
async def prune_volumes() -> dict:
    return {"VolumesDeleted": None, "SpaceReclaimed": 0}
