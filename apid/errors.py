"""errdefs -> HTTP, in Docker's shape: `{"message": "..."}` with moby's status codes.

Owns apid's exception handlers (errdefs, request validation, malformed JSON,
gRPC errors that escaped the manager client, anything else) so a client never
sees a traceback. Mapping follows moby `api/server/httpstatus/status.go`.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from dockyard import errdefs

__all__ = ["install", "status_for", "error_response"]

log = logging.getLogger(__name__)

_STATUS = [
    (errdefs.NotModified, 304),
    (errdefs.NotFound, 404),
    (errdefs.AlreadyExists, 409),
    (errdefs.FailedPrecondition, 409),
    (errdefs.InvalidArgument, 400),
    (errdefs.PermissionDenied, 403),
    (errdefs.Unavailable, 503),
]


def status_for(err: BaseException) -> int:
    for kind, status in _STATUS:
        if isinstance(err, kind):
            return status
    return 500


def error_response(status: int, message: str) -> Response:
    if status == 304:
        return Response(status_code=304)
    return JSONResponse({"message": message}, status_code=status)


def _validation_message(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
        if e.get("type") == "json_invalid":
            return f"invalid JSON: {e.get('ctx', {}).get('error', e.get('msg'))}"
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return "invalid request: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    """Register the handlers on the app."""

    @app.exception_handler(errdefs.EngineError)
    async def engine_error(_: Request, err: errdefs.EngineError) -> Response:
        return error_response(status_for(err), str(err))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> Response:
        return error_response(400, _validation_message(err))

    @app.exception_handler(json.JSONDecodeError)
    async def json_error(_: Request, err: json.JSONDecodeError) -> Response:
        return error_response(400, f"invalid JSON: {err}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> Response:
        if err.status_code == 404:
            return error_response(404, "page not found")
        if err.status_code == 405:
            return error_response(405, "method not allowed")
        return error_response(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> Response:
        log.exception("unhandled error method=%s path=%s", request.method, request.url.path)
        return error_response(500, f"{type(err).__name__}: {err}")
