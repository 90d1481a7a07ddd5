"""System routes: /_ping, /version, /info, /events, /system/df, /auth."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import time
from datetime import datetime

from dockyard.apid import events as ev
from dockyard.apid.app import API_VERSION, MIN_API_VERSION
from dockyard.apid.container import parse_time
from dockyard.apid.deps import DaemonDep
from dockyard.apid.streams import json_line
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

from dockyard import __version__, errdefs
from dockyard.errdefs import InvalidArgument

router = APIRouter(tags=["system"])

_PING_HEADERS = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
                 "Builder-Version": "1", "Swarm": "inactive"}


# async: FastAPI runs a plain-def endpoint in its thread pool (a thread hop per request);
# every docker CLI command starts with a ping
@router.get("/_ping", response_class=PlainTextResponse)
async def ping() -> Response:
    return PlainTextResponse("OK", headers=_PING_HEADERS)


@router.head("/_ping")
async def ping_head() -> Response:
    return Response(b"", media_type="text/plain; charset=utf-8", headers=_PING_HEADERS)


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


@router.get("/version")
def version() -> dict:
    details = {"ApiVersion": API_VERSION, "Arch": _arch(), "BuildTime": "", "Experimental": "false",
               "GitCommit": "", "GoVersion": "", "KernelVersion": platform.release(),
               "MinAPIVersion": MIN_API_VERSION, "Os": "linux"}
    return {
        "Platform": {"Name": "dockyard"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "", "GoVersion": f"python{platform.python_version()}", "Os": "linux",
        "Arch": _arch(), "KernelVersion": platform.release(), "BuildTime": "",
    }


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


@router.get("/info")
async def info(*, daemon: DaemonDep) -> dict:
    states = [c.state.status for c in daemon.containers.values()]
    try:
        images = len(await daemon.manager.list_images())
    except Exception:  # noqa: BLE001 - info must answer even when managerd is down
        images = 0
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    return {
        "ID": "", "Containers": len(states), "ContainersRunning": states.count("running"),
        "ContainersPaused": states.count("paused"),
        "ContainersStopped": len(states) - states.count("running") - states.count("paused"),
        "Images": images, "Driver": "overlay2", "DriverStatus": [],
        "Plugins": {"Volume": [], "Network": ["bridge", "host", "none"], "Authorization": None,
                    "Log": ["json-file"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "CPUShares": True, "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": True,
        "Debug": False, "NFd": len(os.listdir("/proc/self/fd")), "OomKillDisable": True,
        "NGoroutines": 0, "SystemTime": _now(), "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs", "CgroupVersion": _cgroup_version(), "NEventsListener": 0,
        "KernelVersion": platform.release(), "OperatingSystem": "dockyard", "OSVersion": "",
        "OSType": "linux", "Architecture": platform.machine(), "IndexServerAddress":
            "https://index.docker.io/v1/", "RegistryConfig": {"InsecureRegistryCIDRs":
                                                              ["127.0.0.0/8"],
                                                              "IndexConfigs": {},
                                                              "Mirrors": []},
        "NCPU": os.cpu_count() or 1, "MemTotal": mem, "DockerRootDir": daemon.config.data_root,
        "Name": platform.node(), "Labels": [], "ExperimentalBuild": False,
        "ServerVersion": __version__, "Runtimes": {"runc": {"path": "dockyard-shim"}},
        "DefaultRuntime": "runc", "Swarm": {"LocalNodeState": "inactive"},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "docker-init",
        "SecurityOptions": ["name=seccomp,profile=builtin"], "Warnings": [],
    }


def _now() -> str:
    from dockyard.apid.container import rfc3339

    return rfc3339(time.time())


_GO_PART = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)"
_GO_DURATION = re.compile(rf"[-+]?(?:{_GO_PART})+")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _when(value: str | None, now: float | None = None) -> float | None:
    """`since`/`until` as dockerd reads them (moby timetypes.GetTimestamp): a Go
    duration back from now (`10m`, `1h30m`), unix seconds (may be fractional), or an
    RFC3339/ISO date-time (no zone: local time, as dockerd)."""
    if value in (None, ""):
        return None
    if _GO_DURATION.fullmatch(value):
        seconds = sum(float(n) * _GO_UNITS[u] for n, u in re.findall(_GO_PART, value))
        return (time.time() if now is None else now) - (-seconds if value[0] == "-" else seconds)
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        pass
    try:
        return parse_time(value)
    except ValueError as err:
        raise InvalidArgument(f"invalid timestamp: {value}") from err


@router.get("/events")
async def events(request: Request, since: str | None = None, until: str | None = None,
                 filters: str | None = None, *, daemon: DaemonDep) -> Response:
    flt = ev.parse_filters(filters, ev.FILTER_KEYS)
    start, end = _when(since), _when(until)

    async def body():
        async for msg in daemon.events.subscribe(start, end, flt):
            yield json_line(msg).rstrip(b"\r\n") + b"\n"

    return StreamingResponse(body(), media_type="application/json")


class AuthConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    username: str | None = None
    password: str | None = None
    serveraddress: str | None = None
    email: str | None = None
    identitytoken: str | None = None


@router.post("/auth")
async def auth(body: AuthConfig) -> Response:
    from dockyard.apid.registry_auth import Unauthorized, login

    try:
        token = await login(body.model_dump())
    except Unauthorized as err:
        return JSONResponse({"message": str(err)}, status_code=401)
    return JSONResponse({"Status": "Login Succeeded", "IdentityToken": token})


@router.get("/system/df")
async def system_df(*, daemon: DaemonDep) -> JSONResponse:
    from dockyard.apid import views

    imgs: list[dict] = []
    try:
        imgs = await daemon.manager.image_summaries(True)
    except errdefs.EngineError:
        with contextlib.suppress(errdefs.EngineError):
            for img in await daemon.manager.list_images():
                imgs.append(views.image_summary(img, [img.name]))
    for img in imgs:
        img["Containers"] = sum(1 for c in daemon.containers.values() if c.image_id == img["Id"])
    containers = []
    for c in daemon.containers.values():
        size = 0
        with contextlib.suppress(errdefs.EngineError):
            size = await daemon.manager.snapshot_usage(c.snapshot_key)
        containers.append(views.container_summary(c, size))
    volumes = []
    for vol in daemon.volumes.list():
        entry = vol.to_docker(len(daemon.volume_users(vol.name)))
        entry["UsageData"]["Size"] = daemon.volumes.size(vol.name)
        volumes.append(entry)
    return JSONResponse({"LayersSize": sum(i["Size"] for i in imgs), "Images": imgs,
                         "Containers": containers, "Volumes": volumes, "BuildCache": []})


@router.get("/traces/{trace_id}")
async def get_trace(trace_id: str, request: Request) -> list[dict]:
    """Spans of a traced request (native API; see apid/trace.py for the format)."""
    from dockyard.apid.trace import read_trace

    return read_trace(request.app.state.tracer.directory, trace_id)
