"""The FastAPI application: API versions, Docker's headers, error shapes, routers.

Owns `create_app(daemon)` and the ASGI middleware that accepts the three path
forms of every route (docker-api-flow.md §1-2):

    /containers/json          unversioned: the daemon's current version
    /v1.41/containers/json    a Docker API version in [MIN_API_VERSION, API_VERSION]
    /v1/containers/json       dockyard's native prefix (= current version)

and adds `Api-Version`, `Docker-Experimental`, `Ostype` and `Server` to every
response. Routes see the negotiated version in `request.state.api_version`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from dockyard.apid import errors
from fastapi import FastAPI

from dockyard import __version__

__all__ = ["create_app", "API_VERSION", "MIN_API_VERSION", "api_headers", "version_tuple"]

API_VERSION = "1.51"  # newest Docker Engine API served (docker CLI 28 asks for 1.50)
MIN_API_VERSION = "1.24"  # oldest (what docker-py and the CLI fall back to)
MAX_JSON_BODY = 8 << 20  # larger JSON bodies are refused with 400

_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


def version_tuple(v: str) -> tuple[int, int]:
    major, _, minor = v.partition(".")
    return int(major), int(minor or 0)


def api_headers(version: str = API_VERSION) -> list[tuple[bytes, bytes]]:
    return [(b"api-version", version.encode()), (b"docker-experimental", b"false"),
            (b"ostype", b"linux"), (b"server", f"Dockyard/{__version__} (linux)".encode())]


class _DockerAPI:
    """Pure ASGI middleware: strips the version prefix and adds Docker's headers."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        version = API_VERSION
        m = _VERSIONED.match(path)
        if m:
            asked = f"{int(m.group(1))}.{int(m.group(2))}"
            if version_tuple(asked) > version_tuple(API_VERSION):
                await _plain(send, 400, json.dumps({"message": (
                    f"client version {asked} is too new. Maximum supported API version is "
                    f"{API_VERSION}")}).encode(), "application/json")
                return
            if version_tuple(asked) < version_tuple(MIN_API_VERSION):
                await _plain(send, 400, json.dumps({"message": (
                    f"client version {asked} is too old. Minimum supported API version is "
                    f"{MIN_API_VERSION}, please upgrade your client to a newer version")}).encode(),
                    "application/json")
                return
            version, path = asked, m.group(3)
        elif path.startswith("/v1/"):
            path = path[3:]
        scope = dict(scope, path=path, raw_path=path.encode())
        scope.setdefault("state", {})
        scope["state"] = dict(scope["state"], api_version=version)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        ctype = headers.get(b"content-type", b"")
        if length and length.isdigit() and int(length) > MAX_JSON_BODY and b"json" in ctype:
            await _plain(send, 400, json.dumps({"message": (
                f"request body too large: {int(length)} bytes, at most {MAX_JSON_BODY} "
                "accepted")}).encode(), "application/json")
            return
        extra = api_headers(version)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers") or []) + extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _plain(send: Any, status: int, body: bytes, ctype: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype.encode()),
                            (b"content-length", str(len(body)).encode())] + api_headers()})
    await send({"type": "http.response.body", "body": body})


def create_app(daemon: Any, *, images: Any = None, tracer: Any = None) -> Any:
    """The ASGI app serving the Docker Engine API on top of a Daemon.

    Returns:
        An ASGI callable (the FastAPI app wrapped in the version middleware);
        `.fastapi` on it gives the FastAPI object (OpenAPI, dependency overrides).
    """
    from dockyard.apid.routes import archive, containers, networks, system
    from dockyard.apid.routes import exec as exec_routes
    from dockyard.apid.routes import images as image_routes

    app = FastAPI(title="dockyard Engine API", version=API_VERSION,
                  description="The Docker Engine API served by dockyard-apid. Every path is "
                              "also served under /v1.NN/ (NN between "
                              f"{MIN_API_VERSION} and {API_VERSION}) and under /v1/.",
                  docs_url="/docs", openapi_url="/openapi.json", redoc_url=None)
    app.state.daemon = daemon
    app.state.manager = daemon.manager
    errors.install(app)
    app.include_router(system.router)
    app.include_router(containers.router)
    app.include_router(archive.router)
    app.include_router(exec_routes.router)
    app.include_router(image_routes.router)
    app.include_router(networks.router)
    from dockyard.apid.trace import TraceMiddleware, Tracer

    tracer = tracer or Tracer(f"{daemon.config.exec_root}/trace")
    app.state.tracer = tracer
    wrapped = _DockerAPI(TraceMiddleware(app, tracer))
    wrapped.fastapi = app  # type: ignore[attr-defined]
    return wrapped
