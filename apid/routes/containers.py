"""Container routes (docker-api-flow.md §4-5, §8-9). Thin: parse, call the Daemon, render."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from dockyard.apid import attach as attach_mod
from dockyard.apid import stats as stats_mod
from dockyard.apid import views
from dockyard.apid.app import version_tuple
from dockyard.apid.daemon import Daemon
from dockyard.apid.deps import DaemonDep, api_version, qbool
from dockyard.apid.events import parse_filters
from dockyard.apid.hijack import hijack
from dockyard.apid.streams import frame, read_log
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

from dockyard import errdefs

router = APIRouter(tags=["containers"])


class HealthConfigModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    Test: list[str] | None = None
    Interval: int | None = None
    Timeout: int | None = None
    Retries: int | None = None
    StartPeriod: int | None = None
    StartInterval: int | None = None


class RestartPolicyModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    Name: str | None = None
    MaximumRetryCount: int | None = None


class HostConfigModel(BaseModel):
    """HostConfig fields apid reads (typed so wrong types are a 400); others pass through."""

    model_config = ConfigDict(extra="allow")
    Binds: list[str] | None = None
    NetworkMode: str | None = None
    RestartPolicy: RestartPolicyModel | None = None
    AutoRemove: bool | None = None
    CapAdd: list[str] | None = None
    CapDrop: list[str] | None = None
    Dns: list[str] | None = None
    DnsOptions: list[str] | None = None
    DnsSearch: list[str] | None = None
    ExtraHosts: list[str] | None = None
    GroupAdd: list[str] | None = None
    OomScoreAdj: int | None = None
    Privileged: bool | None = None
    ReadonlyRootfs: bool | None = None
    SecurityOpt: list[str] | None = None
    ShmSize: int | None = None
    CpuShares: int | None = None
    Memory: int | None = None
    NanoCpus: int | None = None
    CpuPeriod: int | None = None
    CpuQuota: int | None = None
    CpusetCpus: str | None = None
    CpusetMems: str | None = None
    MemoryReservation: int | None = None
    MemorySwap: int | None = None
    MemorySwappiness: int | None = None
    PidsLimit: int | None = None
    Ulimits: list[dict[str, Any]] | None = None
    Mounts: list[dict[str, Any]] | None = None
    Tmpfs: dict[str, str] | None = None
    Sysctls: dict[str, str] | None = None
    Init: bool | None = None
    Devices: list[dict[str, Any]] | None = None
    DeviceCgroupRules: list[str] | None = None
    DeviceRequests: list[dict[str, Any]] | None = None
    IpcMode: str | None = None
    PidMode: str | None = None
    UTSMode: str | None = None


class ContainerCreate(BaseModel):
    """POST /containers/create body: Config fields at top level + HostConfig + NetworkingConfig."""

    model_config = ConfigDict(extra="allow")
    Image: str = ""
    Hostname: str | None = None
    Domainname: str | None = None
    User: str | None = None
    AttachStdin: bool | None = None
    AttachStdout: bool | None = None
    AttachStderr: bool | None = None
    ExposedPorts: dict[str, Any] | None = None
    Tty: bool | None = None
    OpenStdin: bool | None = None
    StdinOnce: bool | None = None
    Env: list[str] | None = None
    Cmd: list[str] | None = None
    Entrypoint: list[str] | None = None
    WorkingDir: str | None = None
    Labels: dict[str, str] | None = None
    Healthcheck: HealthConfigModel | None = None
    StopSignal: str | None = None
    StopTimeout: int | None = None
    Volumes: dict[str, Any] | None = None
    HostConfig: HostConfigModel | None = None
    NetworkingConfig: dict[str, Any] | None = None


def _body(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(exclude_none=True)


def _cmd_field(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


@router.post("/containers/create", status_code=201)
async def create(request: Request, name: str | None = None, platform: str | None = None,
                 *, daemon: DaemonDep) -> JSONResponse:
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except ValueError as err:
        raise errdefs.InvalidArgument(f"invalid JSON: {err}") from err
    if not isinstance(data, dict):
        raise errdefs.InvalidArgument("invalid JSON: the body must be a JSON object")
    for key in ("Cmd", "Entrypoint"):  # Docker accepts a bare string as a one-item list
        if key in data:
            data[key] = _cmd_field(data[key])
    try:
        body = _body(ContainerCreate.model_validate(data))
    except ValueError as err:
        raise errdefs.InvalidArgument(f"invalid create body: {err}") from err
    if platform and platform.split("/")[0] not in ("linux", ""):
        raise errdefs.InvalidArgument(f"image operating system \"{platform}\" cannot be used "
                                      "on this platform")
    container_id, warnings = await daemon.create(body, name)
    return JSONResponse({"Id": container_id, "Warnings": warnings}, status_code=201)


# OpenAPI: document the create body that the route parses itself (leniently, see above)
router.routes[-1].openapi_extra = {"requestBody": {"content": {"application/json": {
    "schema": ContainerCreate.model_json_schema()}}, "required": True}}


@router.get("/containers/json", response_model=list[dict[str, Any]])
async def list_containers(all: str | None = None, limit: int | None = None,
                          size: str | None = None, filters: str | None = None, *,
                          daemon: DaemonDep) -> Response:
    flt = parse_filters(filters, views.CONTAINER_FILTERS)
    by_ref: dict[str, Any] = {}
    if "before" in flt or "since" in flt:
        for c in daemon.containers.values():
            by_ref.update({c.id: c, c.name.lstrip("/"): c, c.id[:12]: c})
    show_all = qbool(all) or bool(limit and limit > 0) or "status" in flt or "exited" in flt
    now = time.time()
    out = []
    for c in sorted(daemon.containers.values(), key=lambda c: c.created, reverse=True):
        if not show_all and c.state.status not in ("running", "paused", "restarting"):
            continue
        if flt and not views.match_container(c, flt, by_ref):
            continue
        size_rw = None
        if qbool(size):
            with contextlib.suppress(errdefs.EngineError):
                size_rw = await daemon.manager.snapshot_usage(c.snapshot_key)
        entry = views.container_summary(c, size_rw, now)
        daemon.network.summary(c, entry)  # Ports and Networks of bridged containers
        out.append(entry)
        if limit and limit > 0 and len(out) >= limit:
            break
    # serialised here: FastAPI's response validation costs more than building the list
    return Response(json.dumps(out, separators=(",", ":")), media_type="application/json")


@router.get("/containers/{ref}/json")
async def inspect(ref: str, size: str | None = None,
                  *, daemon: DaemonDep) -> dict:
    c = daemon.get(ref)
    size_rw = None
    if qbool(size):
        with contextlib.suppress(errdefs.EngineError):
            size_rw = await daemon.manager.snapshot_usage(c.snapshot_key)
    out = views.container_inspect(c, size_rw)
    settings = daemon.network.settings(c)  # bridged containers: addresses, ports
    if settings is not None:
        out["NetworkSettings"] = settings
    return out


@router.post("/containers/{ref}/start", status_code=204)
async def start(ref: str, *, daemon: DaemonDep) -> Response:
    await daemon.start(ref)
    return Response(status_code=204)


def _timeout(t: str | None) -> int | None:
    if t in (None, ""):
        return None
    try:
        return int(t)
    except ValueError as err:
        raise errdefs.InvalidArgument(f"invalid value for t: {t}") from err


@router.post("/containers/{ref}/stop", status_code=204)
async def stop(ref: str, t: str | None = None, signal: str | None = None,
               *, daemon: DaemonDep) -> Response:
    await daemon.stop(ref, _timeout(t), signal)
    return Response(status_code=204)


@router.post("/containers/{ref}/restart", status_code=204)
async def restart(ref: str, t: str | None = None, signal: str | None = None,
                  *, daemon: DaemonDep) -> Response:
    await daemon.restart(ref, _timeout(t), signal)
    return Response(status_code=204)


@router.post("/containers/{ref}/kill", status_code=204)
async def kill(ref: str, signal: str | None = None,
               *, daemon: DaemonDep) -> Response:
    await daemon.kill(ref, signal or None)
    return Response(status_code=204)


@router.post("/containers/{ref}/wait")
async def wait(ref: str, condition: str | None = None,
               *, daemon: DaemonDep) -> Response:
    fut = daemon.wait_future(ref, condition or "")

    async def body():
        # headers go out now (the CLI starts the container after seeing them)
        yield b""
        try:
            code = await fut
            yield json.dumps({"Error": None, "StatusCode": code}).encode() + b"\n"
        except asyncio.CancelledError:
            fut.cancel()
            raise

    return StreamingResponse(body(), media_type="application/json")


@router.delete("/containers/{ref}", status_code=204)
async def remove(ref: str, force: str | None = None, v: str | None = None,
                 link: str | None = None, *, daemon: DaemonDep) -> Response:
    if qbool(link):
        raise errdefs.InvalidArgument("Conflict, cannot remove the default link name of the "
                                      "container")
    await daemon.remove(ref, force=qbool(force), volumes=qbool(v))
    return Response(status_code=204)


def _since(value: str | None) -> float:
    if value in (None, "", "0"):
        return 0.0
    try:
        return float(value)
    except ValueError as err:
        raise errdefs.InvalidArgument(f"invalid value for since/until: {value}") from err


@router.get("/containers/{ref}/logs")
async def logs(ref: str, follow: str | None = None, stdout: str | None = None,
               stderr: str | None = None, since: str | None = None, until: str | None = None,
               timestamps: str | None = None, tail: str | None = None,
               *, daemon: DaemonDep) -> Response:
    c = daemon.get(ref)
    out, err = qbool(stdout), qbool(stderr)
    if not (out or err):
        raise errdefs.InvalidArgument("Bad parameters: you must choose at least one stream")
    n = -1
    if tail not in (None, "", "all"):
        try:
            n = int(tail)
        except ValueError:
            n = -1
        n = -1 if n < 0 else n
    tty = c.tty
    cid = c.id

    def running() -> bool:
        cur = daemon.containers.get(cid)
        return bool(cur and cur.state.status in ("running", "paused", "restarting"))

    async def body():
        async for stream_id, data in read_log(
                c.log_path, stdout=out, stderr=err, since=_since(since), until=_since(until),
                tail=n, timestamps=qbool(timestamps), follow=qbool(follow), is_running=running):
            yield data if tty else frame(stream_id, data)

    media = "application/vnd.docker.raw-stream" if tty else \
        "application/vnd.docker.multiplexed-stream"
    return StreamingResponse(body(), media_type=media)


def _upgrade_requested(request: Request) -> bool:
    conn = request.headers.get("connection", "").lower()
    return "upgrade" in conn and request.headers.get("upgrade", "").lower() == "tcp"


def stream_content_type(tty: bool, version: str) -> bytes:
    if not tty and version_tuple(version) >= (1, 42):
        return b"application/vnd.docker.multiplexed-stream"
    return b"application/vnd.docker.raw-stream"


@router.post("/containers/{ref}/attach")
async def attach(request: Request, ref: str, stream: str | None = None,
                 stdin: str | None = None, stdout: str | None = None, stderr: str | None = None,
                 logs: str | None = None, detachKeys: str | None = None,
                 *, daemon: DaemonDep) -> Response:
    c = daemon.get(ref)
    if c.state.status == "paused":
        raise errdefs.FailedPrecondition(f"container {ref} is paused, unpause the container "
                                         "before attach")
    keys = attach_mod.parse_detach_keys(detachKeys)
    want_in, want_out, want_err = qbool(stdin), qbool(stdout), qbool(stderr)
    gate = None
    if qbool(stream) and c.state.status not in ("running",):
        gate = daemon.attach_gate(c)
    raw = await hijack(request.scope, [(b"content-type", stream_content_type(
        c.tty, api_version(request)))], _upgrade_requested(request))
    try:
        if qbool(logs):
            async for stream_id, data in read_log(c.log_path, stdout=want_out,
                                                  stderr=want_err):
                await raw.write(data if c.tty else frame(stream_id, data))
        if not qbool(stream):
            return Response()
        if gate is not None:
            created, ready = gate
            await _wait_created(daemon, c.id, created)
            if c.id not in daemon.containers:
                ready.set()
                return Response()
        try:
            session = await daemon.manager.attach(c.id, "", stdin=want_in, stdout=want_out,
                                                  stderr=want_err)
        finally:
            if gate is not None:
                gate[1].set()
        daemon.emit(c, "attach")
        detached = await attach_mod.pump(raw, session, tty=c.tty, stdin=want_in,
                                         stdin_once=bool(c.config.get("StdinOnce")),
                                         detach_keys=keys)
        if detached:
            daemon.emit(c, "detach")
    except errdefs.EngineError:
        pass
    finally:
        await raw.close()
    return Response()


async def _wait_created(daemon: Daemon, container_id: str, created: asyncio.Event) -> None:
    """Until start created the task (a failed start fires the gate too) or the container
    is removed."""
    while not created.is_set() and container_id in daemon.containers:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(created.wait(), 0.5)


@router.post("/containers/{ref}/resize")
async def resize(ref: str, h: int = 0, w: int = 0,
                 *, daemon: DaemonDep) -> Response:
    c = daemon.get(ref)
    if c.state.status not in ("running", "paused"):
        raise errdefs.FailedPrecondition(f"Container {c.id} is not running")
    await daemon.manager.resize(c.id, "", w, h)
    daemon.emit(c, "resize", height=str(h), width=str(w))
    return Response(status_code=200)


@router.get("/containers/{ref}/top")
async def top(ref: str, ps_args: str | None = None,
              *, daemon: DaemonDep) -> dict:
    return await daemon.top(ref, ps_args or "-ef")


@router.get("/containers/{ref}/stats")
async def stats(ref: str, stream: str | None = None, one_shot: str | None = Query(
        None, alias="one-shot"), *, daemon: DaemonDep) -> Response:
    c = daemon.get(ref)
    streaming = qbool(stream, default=True)

    async def sample(prev: dict | None) -> dict:
        return await stats_mod.sample(daemon, c, prev)

    if not streaming:
        first = await sample(None)
        if not qbool(one_shot):
            await asyncio.sleep(0.5 if c.state.running else 0)
            first = await sample(first)
        return JSONResponse(first)

    async def body():
        prev = None
        while True:
            cur = await sample(prev)
            yield json.dumps(cur).encode() + b"\n"
            if not c.state.running and prev is not None:
                return
            prev = cur
            await asyncio.sleep(1)

    return StreamingResponse(body(), media_type="application/json")


@router.post("/containers/{ref}/rename", status_code=204)
async def rename(ref: str, name: str = "", *, daemon: DaemonDep) -> Response:
    await daemon.rename(ref, name)
    return Response(status_code=204)


@router.post("/containers/{ref}/pause", status_code=204)
async def pause(ref: str, *, daemon: DaemonDep) -> Response:
    await daemon.pause(ref)
    return Response(status_code=204)


@router.post("/containers/{ref}/unpause", status_code=204)
async def unpause(ref: str, *, daemon: DaemonDep) -> Response:
    await daemon.unpause(ref)
    return Response(status_code=204)


class UpdateBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    Memory: int | None = None
    MemorySwap: int | None = None
    MemoryReservation: int | None = None
    NanoCpus: int | None = None
    CpuShares: int | None = None
    CpuPeriod: int | None = None
    CpuQuota: int | None = None
    CpusetCpus: str | None = None
    CpusetMems: str | None = None
    PidsLimit: int | None = None
    BlkioWeight: int | None = None
    RestartPolicy: RestartPolicyModel | None = None


@router.post("/containers/{ref}/update")
async def update(ref: str, body: UpdateBody,
                 *, daemon: DaemonDep) -> dict:
    warnings = await daemon.update(ref, body.model_dump(exclude_none=True))
    return {"Warnings": warnings}


@router.post("/containers/prune")
async def prune(filters: str | None = None, *, daemon: DaemonDep) -> dict:
    flt = parse_filters(filters, {"until", "label", "label!"})
    deleted, reclaimed = [], 0
    until = None
    if flt.get("until"):
        from dockyard.apid.routes.system import _when

        until = _when(flt["until"][0])
    for c in list(daemon.containers.values()):
        if c.state.status not in ("exited", "created", "dead"):
            continue
        if until is not None and c.created >= until:
            continue
        labels = c.config.get("Labels") or {}
        if flt.get("label") and not views._label_match(labels, flt["label"]):
            continue
        if flt.get("label!") and views._label_match(labels, flt["label!"]):
            continue
        with contextlib.suppress(errdefs.EngineError):
            reclaimed += await daemon.manager.snapshot_usage(c.snapshot_key)
        await daemon.remove(c.id)
        deleted.append(c.id)
    daemon.events.publish("container", "prune", "", {"reclaimed": str(reclaimed)})
    return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}
