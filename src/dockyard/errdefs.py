"""One error vocabulary for every layer.

Lower layers raise these (or OSError); each boundary translates them once:
managerd servicers to gRPC status codes, apid's manager client back from
them, apid's exception handler to HTTP status codes, the shim to exit 1 and
a log record. Messages name the object and the operation.
"""

from __future__ import annotations

__all__ = [
    "EngineError",
    "NotFound",
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidArgument",
    "Unavailable",
    "NotModified",
    "PermissionDenied",
]


class EngineError(Exception):
    """Root of every error dockyard raises on purpose."""


class NotFound(EngineError):
    """The named object does not exist (gRPC NOT_FOUND, HTTP 404)."""


class AlreadyExists(EngineError):
    """An object with that name or id exists (gRPC ALREADY_EXISTS, HTTP 409)."""


class FailedPrecondition(EngineError):
    """The object is in the wrong state for this verb (gRPC FAILED_PRECONDITION, HTTP 409)."""


class InvalidArgument(EngineError):
    """The caller's input is wrong (gRPC INVALID_ARGUMENT, HTTP 400)."""


class Unavailable(EngineError):
    """A daemon or registry cannot be reached (gRPC UNAVAILABLE, HTTP 503)."""


class NotModified(EngineError):
    """Nothing to do: start of a running container, stop of a stopped one (HTTP 304)."""


class PermissionDenied(EngineError):
    """The caller may not do this (gRPC PERMISSION_DENIED, HTTP 403)."""
