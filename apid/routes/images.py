"""Image routes over managerd's Transfer service (docker-api-flow.md §7).

list, inspect, history, pull and import (POST /images/create), push, tag,
remove, prune, save (GET /images/get, /images/{name}/get), load and commit.
Progress streams are Docker's JSON lines; an error after the stream began is
sent in-stream as `{"errorDetail": {"message"}, "error"}`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fnmatch
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from dockyard.apid import views
from dockyard.apid.deps import DaemonDep, qbool
from dockyard.apid.events import parse_filters
from dockyard.apid.streams import json_line
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from dockyard import errdefs

router = APIRouter(tags=["images"])

ListQuery = Annotated[list[str] | None, Query()]

IMAGE_FILTERS = {"dangling", "label", "before", "since", "reference", "until"}


def registry_auth(request: Request) -> dict:
    """X-Registry-Auth: base64url JSON {username, password, serveraddress, ...} or {}."""
    header = request.headers.get("x-registry-auth")
    if not header:
        return {}
    try:
        padded = header + "=" * (-len(header) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}


def _no_such_image(name: str):
    return errdefs.NotFound(f"No such image: {name}")


async def _stream(first_source: AsyncIterator[dict], on_done=None) -> Response:
    """Await the first progress object (so early errors are a normal 4xx), then stream."""
    try:
        first = await anext(first_source)
    except StopAsyncIteration:
        first = None

    async def body():
        if first is not None:
            yield json_line(first)
        try:
            async for msg in first_source:
                yield json_line(msg)
        except errdefs.EngineError as err:
            yield json_line({"errorDetail": {"message": str(err)}, "error": str(err)})
            return
        if on_done:
            on_done()

    return StreamingResponse(body(), media_type="application/json")


def _ref_match(pattern: str, name: str) -> bool:
    repo = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    return fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(repo, pattern)


@router.get("/images/json")
async def list_images(all: str | None = None, filters: str | None = None,
                      digests: str | None = None, *, daemon: DaemonDep) -> list[dict]:
    flt = parse_filters(filters, IMAGE_FILTERS)
    dangling = qbool(flt["dangling"][0]) if flt.get("dangling") else None
    try:
        images = await daemon.manager.image_summaries(qbool(all) or dangling is True)
    except errdefs.Unavailable:
        images = await _summaries_from_records(daemon)
    by_ref = {}
    for img in images:
        for t in img["RepoTags"]:
            by_ref[t] = img
        by_ref[img["Id"]] = img
    out = []
    for img in images:
        img["Containers"] = sum(1 for c in daemon.containers.values()
                                if c.image_id == img["Id"])
        if flt.get("reference") and not any(_ref_match(p, t) for p in flt["reference"]
                                            for t in img["RepoTags"]):
            continue
        if flt.get("label") and not views._label_match(img["Labels"] or {}, flt["label"]):
            continue
        if dangling is not None and bool(img["RepoTags"]) == dangling:
            continue
        if flt.get("until"):
            from dockyard.apid.routes.system import _when

            limit = _when(flt["until"][0])
            if limit is not None and img["Created"] >= limit:
                continue
        skip = False
        for key in ("before", "since"):
            for v in flt.get(key, []):
                other = by_ref.get(v) or by_ref.get(f"{v}:latest")
                if other is None:
                    raise _no_such_image(v)
                older = img["Created"] < other["Created"]
                if older != (key == "before"):
                    skip = True
        if not skip:
            out.append(img)
    out.sort(key=lambda s: s["Created"], reverse=True)
    return out


@router.get("/images/get")
async def save_many(names: ListQuery = None, *,
                    daemon: DaemonDep) -> Response:
    return await _save(daemon, names or [])


async def _save(daemon, names: list[str]) -> Response:
    if not names:
        raise errdefs.InvalidArgument("no image names given")
    source = daemon.manager.save(names)
    try:
        first = await anext(source)
    except StopAsyncIteration:
        first = b""
    except errdefs.NotFound:
        raise _no_such_image(names[0]) from None

    async def body():
        yield first
        async for data in source:
            yield data

    return StreamingResponse(body(), media_type="application/x-tar")


@router.post("/images/load")
async def load(request: Request, quiet: str | None = None, *, daemon: DaemonDep) -> Response:
    return await _stream(daemon.manager.load(request.stream()))


# OpenAPI: a `docker save` tar is the body
router.routes[-1].openapi_extra = {"requestBody": {"content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}}


@router.post("/images/prune")
async def prune(filters: str | None = None, *, daemon: DaemonDep) -> dict:
    flt = parse_filters(filters, {"dangling", "until", "label", "label!"})
    all_images = bool(flt.get("dangling")) and not qbool(flt["dangling"][0])
    items, reclaimed = await daemon.manager.prune_images(all_images)
    daemon.events.publish("image", "prune", "", {"reclaimed": str(reclaimed)})
    return {"ImagesDeleted": items or None, "SpaceReclaimed": reclaimed}


@router.post("/images/create")
async def create_image(request: Request, fromImage: str | None = None, tag: str | None = None,
                       fromSrc: str | None = None, repo: str | None = None,
                       message: str | None = None, platform: str | None = None,
                       changes: ListQuery = None, *,
                       daemon: DaemonDep) -> Response:
    if fromImage:
        ref = fromImage
        if tag:
            ref = f"{fromImage}@{tag}" if tag.startswith("sha256:") else f"{fromImage}:{tag}"
        return await _stream(daemon.manager.pull(ref, registry_auth(request), platform or ""),
                             lambda: daemon.events.publish("image", "pull", ref, {"name": ref}))
    if fromSrc:
        if fromSrc != "-":
            raise errdefs.InvalidArgument("importing from a URL is not supported (no network): "
                                          "use fromSrc=- with the tar as the body")
        reference = ""
        if repo:
            has_tag = ":" in repo.rsplit("/", 1)[-1] or "@" in repo
            reference = repo if has_tag and not tag else f"{repo}:{tag or 'latest'}"
        result = await daemon.manager.import_image(request.stream(), reference, changes or [],
                                                   message or "", platform or "")
        daemon.events.publish("image", "import", result["id"], {"name": result.get("name", "")})
        return Response(json_line({"status": result["id"]}), media_type="application/json")
    raise errdefs.InvalidArgument("fromImage or fromSrc is required")


async def _summaries_from_records(daemon) -> list[dict]:
    """Image list from managerd's Images records (when Transfer is not available)."""
    groups: dict[str, list] = {}
    for img in await daemon.manager.list_images():
        groups.setdefault(img.config_digest, []).append(img)
    return [views.image_summary(imgs[0], [i.name for i in imgs]) for imgs in groups.values()]


@router.get("/images/{name:path}/json")
async def inspect_image(name: str, *, daemon: DaemonDep) -> dict:
    try:
        return await daemon.manager.image_inspect(name)
    except errdefs.NotFound:
        raise _no_such_image(name) from None
    except errdefs.Unavailable:
        try:
            img = await daemon.manager.get_image(name)
        except errdefs.NotFound:
            raise _no_such_image(name) from None
        return views.image_inspect(img, [img.name])


@router.get("/images/{name:path}/history")
async def history(name: str, *, daemon: DaemonDep) -> list[dict]:
    try:
        return await daemon.manager.image_history(name)
    except errdefs.NotFound:
        raise _no_such_image(name) from None


@router.get("/images/{name:path}/get")
async def save_one(name: str, *, daemon: DaemonDep) -> Response:
    return await _save(daemon, [name])


@router.post("/images/{name:path}/push")
async def push(request: Request, name: str, tag: str | None = None, *,
               daemon: DaemonDep) -> Response:
    ref = f"{name}:{tag}" if tag else name
    return await _stream(daemon.manager.push(ref, "", registry_auth(request)),
                         lambda: daemon.events.publish("image", "push", ref, {"name": ref}))


@router.post("/images/{name:path}/tag", status_code=201)
async def tag_image(name: str, repo: str = "", tag: str | None = None, *,
                    daemon: DaemonDep) -> Response:
    if not repo:
        raise errdefs.InvalidArgument("repository name must have at least one component")
    target = f"{repo}:{tag or 'latest'}"
    try:
        created = await daemon.manager.tag_image(name, target)
    except errdefs.NotFound:
        raise _no_such_image(name) from None
    daemon.events.publish("image", "tag", name, {"name": created or target})
    return Response(status_code=201)


@router.delete("/images/{name:path}")
async def remove_image(name: str, force: str | None = None, noprune: str | None = None, *,
                       daemon: DaemonDep) -> list[dict]:
    if not qbool(force):
        try:
            info = await daemon.manager.image_inspect(name)
        except errdefs.NotFound:
            raise _no_such_image(name) from None
        users = [c for c in daemon.containers.values() if c.image_id == info.get("Id")]
        if users:
            raise errdefs.AlreadyExists(
                f"conflict: unable to remove repository reference \"{name}\" (must force) - "
                f"container {users[0].id[:12]} is using its referenced image "
                f"{info['Id'][7:19]}")
    try:
        items = await daemon.manager.remove_image(name, qbool(force))
    except errdefs.NotFound:
        raise _no_such_image(name) from None
    for item in items:
        for action, value in item.items():
            daemon.events.publish("image", action.lower().replace("untagged", "untag")
                                  .replace("deleted", "delete"), value, {"name": value})
    return items


@router.post("/commit", status_code=201)
async def commit(request: Request, container: str = "", repo: str | None = None,
                 tag: str | None = None, comment: str | None = None, author: str | None = None,
                 pause: str | None = None, changes: ListQuery = None,
                 *, daemon: DaemonDep) -> JSONResponse:
    c = daemon.get(container)
    raw = await request.body()
    config = None
    if raw.strip():
        try:
            config = json.loads(raw)
        except ValueError as err:
            raise errdefs.InvalidArgument(f"invalid JSON: {err}") from err
    reference = f"{repo}:{tag or 'latest'}" if repo else ""
    async with _paused_for_commit(daemon, c.id, qbool(pause, default=True)):
        image_id = await daemon.manager.commit(c.id, reference, author or "", comment or "",
                                               changes or [], config)
    daemon.emit(c, "commit", comment=comment or "")
    return JSONResponse({"Id": image_id}, status_code=201)


@dataclass
class _CommitPause:
    """A pause taken by commits of one container: the first pauses, the last unpauses."""

    holders: int
    paused: asyncio.Task


# container id -> the pause its running commits share (per process: container ids are
# unique, and only this daemon's commits pause through it)
_commit_pauses: dict[str, _CommitPause] = {}
_thawing: set[asyncio.Task] = set()  # the event loop holds tasks weakly


@contextlib.asynccontextmanager
async def _paused_for_commit(daemon, container_id: str, pause: bool) -> AsyncIterator[None]:
    """Freeze a running container for the diff (dockerd's `pause=true`, the default) so
    the layer is a consistent snapshot, and thaw it afterwards, also on failure. A
    container paused by the user stays paused; `pause=false` leaves it running."""
    held = _commit_pauses.get(container_id)
    if not pause or (held is None and daemon.get(container_id).state.status != "running"):
        yield
        return
    if held is None:
        held = _CommitPause(0, asyncio.ensure_future(daemon.pause(container_id)))
        _commit_pauses[container_id] = held
    held.holders += 1
    try:
        try:
            await asyncio.shield(held.paused)
        except errdefs.FailedPrecondition:
            pass  # it stopped meanwhile: nothing to freeze, its files hold still anyway
        yield
    finally:
        held.holders -= 1
        if held.holders == 0:
            del _commit_pauses[container_id]
            # a task of its own: a cancelled request (client gone) must still thaw it
            task = asyncio.ensure_future(_thaw(daemon, container_id, held))
            _thawing.add(task)
            task.add_done_callback(_thawing.discard)
            await asyncio.shield(task)


async def _thaw(daemon, container_id: str, held: _CommitPause) -> None:
    try:
        await held.paused
    except errdefs.EngineError:
        return  # never paused
    # unpaused (or removed) by someone else meanwhile: nothing to undo
    with contextlib.suppress(errdefs.FailedPrecondition, errdefs.NotFound):
        await daemon.unpause(container_id)


# OpenAPI: an optional container Config is the body
router.routes[-1].openapi_extra = {"requestBody": {"required": False, "content": {
    "application/json": {"schema": {"type": "object", "description": "container Config "
                                    "fields (Cmd, Env, Labels, ...) for the new image"}}}}}
