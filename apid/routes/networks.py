"""Networks (Docker's `bridge` driver through apid/network/) and volumes (`local` driver).

Networks: list (filters), inspect, create (Name, Driver bridge, IPAM
Subnet/Gateway, Internal, Attachable, Labels, Options; CheckDuplicate is
always on, as in API >= 1.44), remove (409 while containers are attached),
prune, connect/disconnect (a running container gets or loses the interface at
once). Routes only decode and call `daemon.network`. Volumes: create, list
(filters), inspect, remove (409 while in use), prune (anonymous ones unless
all=true).
"""

from __future__ import annotations

from typing import Any

from dockyard.apid.deps import DaemonDep, qbool
from dockyard.apid.events import parse_filters
from dockyard.apid.netns import path_for
from dockyard.apid.routes.system import _when
from dockyard.apid.views import _label_match
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from dockyard import errdefs

router = APIRouter(tags=["networks"])

_NETWORK_FILTERS = {"dangling", "driver", "id", "label", "name", "scope", "type"}
_BUILTIN_NAMES = ("bridge", "host", "none")


def _network_matches(net: dict[str, Any], flt: dict[str, list[str]], used: bool) -> bool:
    if flt.get("name") and not any(n in net["Name"] for n in flt["name"]):
        return False
    if flt.get("id") and not any(net["Id"].startswith(i) for i in flt["id"]):
        return False
    if flt.get("driver") and net["Driver"] not in flt["driver"]:
        return False
    if flt.get("scope") and "local" not in flt["scope"]:
        return False
    if flt.get("label") and not _label_match(net.get("Labels") or {}, flt["label"]):
        return False
    builtin = net["Name"] in _BUILTIN_NAMES
    for kind in flt.get("type", []):
        if kind not in ("custom", "builtin"):
            raise errdefs.InvalidArgument(f"invalid filter: 'type'='{kind}'")
        if (kind == "builtin") != builtin:
            return False
    if flt.get("dangling"):
        dangling = qbool(flt["dangling"][0])
        if dangling != (not used and not builtin):
            return False
    return True


@router.get("/networks")
async def list_networks(filters: str | None = None, *, daemon: DaemonDep) -> list[dict]:
    flt = parse_filters(filters, _NETWORK_FILTERS)
    out = []
    for net in daemon.network.networks():
        if _network_matches(net, flt, bool(net["Containers"]) or bool(
                daemon.network.attached(net["Id"]))):
            out.append(net)
    return out


@router.get("/networks/{ref}")
async def inspect_network(ref: str, *, daemon: DaemonDep) -> dict:
    return daemon.network.inspect(ref)


class NetworkCreate(BaseModel):
    model_config = ConfigDict(extra="allow")
    Name: str
    CheckDuplicate: bool | None = None
    Driver: str | None = None
    Scope: str | None = None
    Internal: bool | None = None
    Attachable: bool | None = None
    Ingress: bool | None = None
    EnableIPv6: bool | None = None
    EnableIPv4: bool | None = None
    IPAM: dict[str, Any] | None = None
    Options: dict[str, str] | None = None
    Labels: dict[str, str] | None = None


@router.post("/networks/create", status_code=201)
async def create_network(body: NetworkCreate, *, daemon: DaemonDep) -> JSONResponse:
    if body.Ingress:
        raise errdefs.PermissionDenied("ingress networks need swarm mode, which this engine "
                                       "does not have")
    nid, warning = await daemon.network.create_network(body.model_dump(exclude_none=True))
    return JSONResponse({"Id": nid, "Warning": warning}, status_code=201)


@router.delete("/networks/{ref}", status_code=204)
async def remove_network(ref: str, *, daemon: DaemonDep) -> Response:
    await daemon.network.remove_network(ref)
    return Response(status_code=204)


class NetworkConnect(BaseModel):
    model_config = ConfigDict(extra="allow")
    Container: str
    EndpointConfig: dict[str, Any] | None = None
    Force: bool | None = None


@router.post("/networks/{ref}/connect")
async def connect_network(ref: str, body: NetworkConnect, *, daemon: DaemonDep) -> Response:
    c = daemon.get(body.Container)
    ns = path_for(daemon.config.exec_root, c.id) if daemon.config.manage_netns else None
    await daemon.network.connect(ref, c, body.EndpointConfig, ns)
    return Response(status_code=200)


@router.post("/networks/{ref}/disconnect")
async def disconnect_network(ref: str, body: NetworkConnect, *, daemon: DaemonDep
                             ) -> Response:
    c = daemon.get(body.Container)
    await daemon.network.disconnect(ref, c, bool(body.Force))
    return Response(status_code=200)


@router.post("/networks/prune")
async def prune_networks(filters: str | None = None, *, daemon: DaemonDep) -> dict:
    flt = parse_filters(filters, {"label", "label!", "until"})
    until = _when(flt["until"][0]) if flt.get("until") else None

    def keep(net) -> bool:
        if until is not None and net.created >= until:
            return True
        if flt.get("label") and not _label_match(net.labels, flt["label"]):
            return True
        if flt.get("label!") and _label_match(net.labels, flt["label!"]):
            return True
        return False

    removed = await daemon.network.prune(keep)
    return {"NetworksDeleted": removed or None}


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
