"""`docker cp`, `docker diff`, `docker export`: archive HEAD/GET/PUT, changes, export."""

from __future__ import annotations

import asyncio
import tempfile

from dockyard.apid import rootfs
from dockyard.apid.deps import DaemonDep, qbool
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from dockyard import errdefs

router = APIRouter(tags=["containers"])

_STAT_HEADER = "X-Docker-Container-Path-Stat"


def _need_path(path: str | None) -> str:
    if not path:
        raise errdefs.InvalidArgument("Bad parameter: path cannot be empty")
    return path if path.startswith("/") else "/" + path


@router.head("/containers/{ref}/archive")
async def archive_stat(ref: str, path: str | None = None, *, daemon: DaemonDep) -> Response:
    c = daemon.get(ref)
    async with rootfs.open_root(daemon.manager, c) as root:
        st = await asyncio.to_thread(rootfs.path_stat, root, _need_path(path))
    return Response(status_code=200, headers={_STAT_HEADER: rootfs.stat_header(st)})


@router.get("/containers/{ref}/archive")
async def archive_get(ref: str, path: str | None = None, *, daemon: DaemonDep) -> Response:
    c = daemon.get(ref)
    p = _need_path(path)
    spool = tempfile.TemporaryFile()
    try:
        async with rootfs.open_root(daemon.manager, c) as root:
            st = await asyncio.to_thread(rootfs.path_stat, root, p)
            await asyncio.to_thread(rootfs.tar_path, root, p, spool)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)

    async def body():
        try:
            while True:
                data = await asyncio.to_thread(spool.read, 1 << 20)
                if not data:
                    return
                yield data
        finally:
            spool.close()

    return StreamingResponse(body(), media_type="application/x-tar",
                             headers={_STAT_HEADER: rootfs.stat_header(st)})


@router.put("/containers/{ref}/archive")
async def archive_put(request: Request, ref: str, path: str | None = None,
                      noOverwriteDirNonDir: str | None = None, copyUIDGID: str | None = None,
                      *, daemon: DaemonDep) -> Response:
    c = daemon.get(ref)
    p = _need_path(path)
    if c.host_config.get("ReadonlyRootfs"):
        raise errdefs.PermissionDenied("container rootfs is marked read-only")
    with tempfile.TemporaryFile() as spool:
        async for chunk in request.stream():
            spool.write(chunk)
        spool.seek(0)
        async with rootfs.open_root(daemon.manager, c) as root:
            await asyncio.to_thread(rootfs.extract_tar, root, p, spool,
                                    qbool(noOverwriteDirNonDir), qbool(copyUIDGID))
    daemon.emit(c, "extract-to-dir")
    return Response(status_code=200)


# OpenAPI: a tar stream is the body
router.routes[-1].openapi_extra = {"requestBody": {"content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}}


@router.get("/containers/{ref}/changes")
async def container_changes(ref: str, *, daemon: DaemonDep) -> list[dict] | None:
    c = daemon.get(ref)
    mounts = await daemon.manager.snapshot_mounts(c.snapshot_key)
    result = await asyncio.to_thread(rootfs.changes, mounts)
    return result or None


@router.get("/containers/{ref}/export")
async def export(ref: str, *, daemon: DaemonDep) -> Response:
    c = daemon.get(ref)
    source = daemon.manager.export(c.id)
    first = await anext(source, b"")

    async def body():
        yield first
        async for data in source:
            yield data

    daemon.emit(c, "export")
    return StreamingResponse(body(), media_type="application/x-tar")
