"""Networks (read-only until bridge networking exists) and volumes (`local` driver).

`docker network ls/inspect` see the three built-in networks (bridge = a
private namespace with `lo` only for now, host, none); creating a network is
refused with a 501 naming what is missing. Volumes: create, list (filters),
inspect, remove (409 while in use), prune (anonymous ones unless all=true).
"""

from __future__ import annotations

import hashlib

from dockyard.apid.container import rfc3339
from dockyard.apid.deps import DaemonDep, qbool
from dockyard.apid.events import parse_filters
from dockyard.apid.views import _label_match
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

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
async def list_volumes(filters: str | None = None, *, daemon: DaemonDep) -> dict:
    flt = parse_filters(filters, {"dangling", "driver", "label", "name"})
    out = []
    for vol in daemon.volumes.list():
        users = daemon.volume_users(vol.name)
        if flt.get("dangling") and qbool(flt["dangling"][0]) == bool(users):
            continue
        if flt.get("name") and not any(n in vol.name for n in flt["name"]):
            continue
        if flt.get("driver") and "local" not in flt["driver"]:
            continue
        if flt.get("label") and not _label_match(vol.labels, flt["label"]):
            continue
        out.append(vol.to_docker())
    return {"Volumes": out, "Warnings": None}


class VolumeCreate(BaseModel):
    model_config = ConfigDict(extra="allow")
    Name: str | None = None
    Driver: str | None = None
    DriverOpts: dict[str, str] | None = None
    Labels: dict[str, str] | None = None


@router.post("/volumes/create", status_code=201)
async def create_volume(body: VolumeCreate, *, daemon: DaemonDep) -> JSONResponse:
    if body.Driver not in (None, "", "local"):
        raise errdefs.NotFound(f"error looking up volume plugin {body.Driver}: plugin "
                               f"\"{body.Driver}\" not found")
    vol = daemon.volumes.create(body.Name or "", body.Labels, body.DriverOpts)
    daemon.events.publish("volume", "create", vol.name, {"driver": "local"})
    return JSONResponse(vol.to_docker(), status_code=201)


@router.get("/volumes/{name}")
async def inspect_volume(name: str, *, daemon: DaemonDep) -> dict:
    return daemon.volumes.get(name).to_docker()


@router.delete("/volumes/{name}", status_code=204)
async def remove_volume(name: str, force: str | None = None, *, daemon: DaemonDep) -> Response:
    daemon.volumes.get(name)
    users = daemon.volume_users(name)
    if users:
        raise errdefs.AlreadyExists(f"remove {name}: volume is in use - [{', '.join(users)}]")
    daemon.volumes.remove(name)
    daemon.events.publish("volume", "destroy", name, {"driver": "local"})
    return Response(status_code=204)


@router.post("/volumes/prune")
async def prune_volumes(filters: str | None = None, *, daemon: DaemonDep) -> dict:
    flt = parse_filters(filters, {"label", "label!", "all"})
    everything = bool(flt.get("all")) and qbool(flt["all"][0])
    deleted, reclaimed = [], 0
    for vol in daemon.volumes.list():
        if daemon.volume_users(vol.name) or (not everything and not vol.anonymous):
            continue  # API >= 1.42: only anonymous volumes unless all=true
        if flt.get("label") and not _label_match(vol.labels, flt["label"]):
            continue
        if flt.get("label!") and _label_match(vol.labels, flt["label!"]):
            continue
        reclaimed += daemon.volumes.size(vol.name)
        daemon.volumes.remove(vol.name)
        daemon.events.publish("volume", "destroy", vol.name, {"driver": "local"})
        deleted.append(vol.name)
    return {"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed}
