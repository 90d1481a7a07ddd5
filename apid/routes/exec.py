"""Exec routes: create, start (hijacked unless Detach), resize, inspect."""

from __future__ import annotations

import asyncio
import contextlib

from dockyard.apid import attach as attach_mod
from dockyard.apid.deps import DaemonDep, api_version
from dockyard.apid.hijack import hijack
from dockyard.apid.routes.containers import _upgrade_requested, stream_content_type
from dockyard.apid.streams import STDERR, frame
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from dockyard import errdefs

router = APIRouter(tags=["exec"])


class ExecConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    AttachStdin: bool | None = None
    AttachStdout: bool | None = None
    AttachStderr: bool | None = None
    DetachKeys: str | None = None
    Tty: bool | None = None
    Env: list[str] | None = None
    Cmd: list[str] | None = None
    Privileged: bool | None = None
    User: str | None = None
    WorkingDir: str | None = None
    ConsoleSize: list[int] | None = None


class ExecStart(BaseModel):
    model_config = ConfigDict(extra="allow")
    Detach: bool | None = None
    Tty: bool | None = None
    ConsoleSize: list[int] | None = None


# execs still being waited for after their request ended (detached, or the client went
# away or detached from an attached one): the loop keeps only weak references to tasks
_waiting: set[asyncio.Task] = set()


def _keep(task: asyncio.Task) -> None:
    _waiting.add(task)
    task.add_done_callback(_waiting.discard)


@router.post("/containers/{ref}/exec", status_code=201)
async def exec_create(ref: str, body: ExecConfig, *, daemon: DaemonDep) -> JSONResponse:
    exec_id = daemon.exec_create(ref, body.model_dump(exclude_none=True))
    return JSONResponse({"Id": exec_id}, status_code=201)


@router.post("/exec/{exec_id}/start")
async def exec_start(request: Request, exec_id: str, *, daemon: DaemonDep) -> Response:
    raw_body = await request.body()
    body = ExecStart.model_validate_json(raw_body) if raw_body.strip() else ExecStart()
    rec, c = await daemon.exec_prepare(exec_id)
    cfg = rec.config
    tty = bool(cfg.get("Tty"))
    if body.Detach:
        # started before the answer, as dockerd does: start errors reach the client, and
        # a client that stops or removes the container right after cannot race the start
        await daemon.exec_begin(rec, c)

        async def finish() -> None:
            with contextlib.suppress(errdefs.EngineError):
                await daemon.exec_finish(rec, c)
        _keep(asyncio.get_running_loop().create_task(finish()))
        return Response(status_code=200)
    want_in = bool(cfg.get("AttachStdin"))
    session = await daemon.manager.attach(c.id, rec.id, stdin=want_in,
                                          stdout=bool(cfg.get("AttachStdout", True)),
                                          stderr=bool(cfg.get("AttachStderr", True)))
    # hijack first, then start (as dockerd does): a client reading the 101 with a buffered
    # reader (docker-py) must not get output in the same read as the headers
    try:
        raw = await hijack(request.scope, [(b"content-type", stream_content_type(
            tty, api_version(request)))], _upgrade_requested(request))
    except BaseException:
        await session.close()
        raise
    try:
        try:
            await daemon.exec_begin(rec, c)
        except errdefs.EngineError as err:
            await session.close()
            message = f"OCI runtime exec failed: {err}\r\n".encode()
            await raw.write(message if tty else frame(STDERR, message))
            return Response()
        runner = asyncio.get_running_loop().create_task(daemon.exec_finish(rec, c))
        _keep(runner)  # it outlives this request when the stream ends first
        await attach_mod.pump(raw, session, tty=tty, stdin=want_in, stdin_once=True,
                              detach_keys=attach_mod.parse_detach_keys(cfg.get("DetachKeys")),
                              close=False)
        # the CLI reads ExitCode as soon as the stream ends: record the exit first
        with contextlib.suppress(errdefs.EngineError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(runner), 5)
    finally:
        await raw.close()
    return Response()


# OpenAPI: the body this route reads itself
router.routes[-1].openapi_extra = {"requestBody": {"content": {"application/json": {
    "schema": ExecStart.model_json_schema()}}}}


@router.post("/exec/{exec_id}/resize")
async def exec_resize(exec_id: str, h: int = 0, w: int = 0, *, daemon: DaemonDep) -> Response:
    rec = daemon.get_exec(exec_id)
    if not rec.running:
        raise errdefs.FailedPrecondition(f"Exec {exec_id} is not running")
    await daemon.manager.resize(rec.container_id, exec_id, w, h)
    return Response(status_code=200)


@router.get("/exec/{exec_id}/json")
async def exec_inspect(exec_id: str, *, daemon: DaemonDep) -> dict:
    return daemon.get_exec(exec_id).to_docker()
