"""Image routes: list, inspect, pull (POST /images/create), tag, remove, history.

Pulls stream Docker's JSON progress lines; errors after the stream began are
sent in-stream as `{"errorDetail": {"message"}, "error"}` (docker-api-flow.md §7).
The work is done by managerd (images engineer's Transfer service) through the
Manager interface's `pull`, `tag_image`, `delete_image`.
"""

from __future__ import annotations

import base64
import json

from dockyard.apid import views
from dockyard.apid.deps import DaemonDep, qbool
from dockyard.apid.events import parse_filters
from dockyard.apid.streams import json_line
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from dockyard import errdefs

router = APIRouter(tags=["images"])


def _auth(request: Request) -> dict:
    header = request.headers.get("x-registry-auth")
    if not header:
        return {}
    try:
        padded = header + "=" * (-len(header) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}


async def _names_by_id(daemon) -> dict[str, list]:
    groups: dict[str, list] = {}
    for img in await daemon.manager.list_images():
        groups.setdefault(img.config_digest, []).append(img)
    return groups


@router.get("/images/json")
async def list_images(all: str | None = None, filters: str | None = None,
                      digests: str | None = None, *, daemon: DaemonDep) -> list[dict]:
    flt = parse_filters(filters, {"dangling", "label", "before", "since", "reference", "until"})
    out = []
    for image_id, imgs in (await _names_by_id(daemon)).items():
        names = [i.name for i in imgs]
        summary = views.image_summary(imgs[0], names, sum(
            1 for c in daemon.containers.values() if c.image_id == image_id))
        if flt.get("reference") and not any(
                _ref_match(p, views.familiar(n)) for p in flt["reference"] for n in names):
            continue
        if flt.get("label") and not views._label_match(summary["Labels"], flt["label"]):
            continue
        if flt.get("dangling") and qbool(flt["dangling"][0]) and summary["RepoTags"]:
            continue
        out.append(summary)
    out.sort(key=lambda s: s["Created"], reverse=True)
    return out


def _ref_match(pattern: str, name: str) -> bool:
    import fnmatch

    repo = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    return fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(repo, pattern)


@router.get("/images/{name:path}/json")
async def inspect_image(name: str, *, daemon: DaemonDep) -> dict:
    try:
        img = await daemon.manager.get_image(name)
    except errdefs.NotFound:
        raise errdefs.NotFound(f"No such image: {name}") from None
    names = [i.name for i in (await _names_by_id(daemon)).get(img.config_digest, [img])]
    return views.image_inspect(img, names)


@router.get("/images/{name:path}/history")
async def history(name: str, *, daemon: DaemonDep) -> list[dict]:
    try:
        img = await daemon.manager.get_image(name)
    except errdefs.NotFound:
        raise errdefs.NotFound(f"No such image: {name}") from None
    from dockyard.apid.container import parse_time

    out = []
    for h in reversed(img.config.get("history") or []):
        out.append({"Id": "<missing>", "Created": int(parse_time(
            (h.get("created") or "").replace("+00:00", "Z")) if h.get("created") else 0),
            "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": 0,
            "Comment": h.get("comment", "")})
    if out:
        out[0]["Id"] = img.config_digest
    return out


@router.post("/images/create")
async def create_image(request: Request, fromImage: str | None = None, tag: str | None = None,
                       fromSrc: str | None = None, platform: str | None = None,
                       repo: str | None = None, *, daemon: DaemonDep) -> Response:
    if not fromImage:
        raise errdefs.InvalidArgument("fromSrc (import) is not supported by this engine yet"
                                      if fromSrc else "fromImage is required")
    ref = fromImage
    if tag:
        ref = f"{fromImage}@{tag}" if tag.startswith("sha256:") else f"{fromImage}:{tag}"
    pull = getattr(daemon.manager, "pull", None)
    if pull is None:
        raise errdefs.Unavailable("pulling is not available: managerd has no Transfer service")
    progress = pull(ref, _auth(request), platform or "")
    # the first message (or error) decides between a 4xx/5xx and a 200 stream
    try:
        first = await anext(progress)
    except StopAsyncIteration:
        first = None

    async def body():
        if first is not None:
            yield json_line(first)
        try:
            async for msg in progress:
                yield json_line(msg)
        except errdefs.EngineError as err:
            yield json_line({"errorDetail": {"message": str(err)}, "error": str(err)})
        else:
            daemon.events.publish("image", "pull", ref, {"name": ref})

    return StreamingResponse(body(), media_type="application/json")


@router.post("/images/{name:path}/tag", status_code=201)
async def tag_image(name: str, repo: str = "", tag: str | None = None, *,
                    daemon: DaemonDep) -> Response:
    try:
        img = await daemon.manager.get_image(name)
    except errdefs.NotFound:
        raise errdefs.NotFound(f"No such image: {name}") from None
    if not repo:
        raise errdefs.InvalidArgument("repository name must have at least one component")
    target = f"{repo}:{tag or 'latest'}"
    await daemon.manager.tag_image(img, target)
    daemon.events.publish("image", "tag", img.config_digest, {"name": target})
    return Response(status_code=201)


@router.delete("/images/{name:path}")
async def remove_image(name: str, force: str | None = None, noprune: str | None = None, *,
                       daemon: DaemonDep) -> list[dict]:
    try:
        img = await daemon.manager.get_image(name)
    except errdefs.NotFound:
        raise errdefs.NotFound(f"No such image: {name}") from None
    users = [c for c in daemon.containers.values() if c.image_id == img.config_digest]
    if users and not qbool(force):
        c = users[0]
        raise errdefs.AlreadyExists(
            f"conflict: unable to remove repository reference \"{name}\" (must force) - "
            f"container {c.id[:12]} is using its referenced image {img.config_digest[7:19]}")
    await daemon.manager.delete_image(img.name)
    out = [{"Untagged": views.familiar(img.name)}]
    remaining = [i for i in await daemon.manager.list_images()
                 if i.config_digest == img.config_digest]
    if not remaining:
        out.append({"Deleted": img.config_digest})
        daemon.events.publish("image", "delete", img.config_digest, {"name": img.name})
    else:
        daemon.events.publish("image", "untag", img.config_digest, {"name": img.name})
    return out
