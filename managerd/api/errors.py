"""errdefs <-> gRPC status codes, once per boundary (httpx map_httpcore_exceptions style).

Servicers wrap every RPC in ``errors.mapped(context)``: an EngineError becomes
its status code with the error's message (which names the object), plus a
trailing metadata entry ``dockyard-error: <class name>`` so clients recover
the exact class (NotModified has no gRPC code of its own). Anything else is
logged with its traceback and answered INTERNAL with a short message: never
UNKNOWN with a traceback. client.py maps back with ``from_rpc_error``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator

import grpc

from dockyard import errdefs

log = logging.getLogger(__name__)

__all__ = ["TO_CODE", "mapped", "rpc", "stream_rpc", "from_rpc_error", "ERROR_KEY"]

ERROR_KEY = "dockyard-error"

TO_CODE: dict[type[errdefs.EngineError], grpc.StatusCode] = {
    errdefs.NotFound: grpc.StatusCode.NOT_FOUND,
    errdefs.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errdefs.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errdefs.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errdefs.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errdefs.NotModified: grpc.StatusCode.FAILED_PRECONDITION,
    errdefs.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}

FROM_CODE: dict[grpc.StatusCode, type[errdefs.EngineError]] = {
    grpc.StatusCode.NOT_FOUND: errdefs.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errdefs.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errdefs.FailedPrecondition,
    grpc.StatusCode.INVALID_ARGUMENT: errdefs.InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: errdefs.InvalidArgument,
    grpc.StatusCode.UNAVAILABLE: errdefs.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errdefs.Unavailable,
    grpc.StatusCode.PERMISSION_DENIED: errdefs.PermissionDenied,
}

_BY_NAME = {cls.__name__: cls for cls in (*TO_CODE, errdefs.EngineError)}


def _code_for(err: errdefs.EngineError) -> grpc.StatusCode:
    for cls in type(err).__mro__:
        if cls in TO_CODE:
            return TO_CODE[cls]
    return grpc.StatusCode.INTERNAL


@contextlib.contextmanager
def mapped(context: grpc.ServicerContext, what: str = "") -> Iterator[None]:
    """Abort the RPC with the status matching an error raised in the block."""
    try:
        yield
    except errdefs.EngineError as err:
        name = next((c.__name__ for c in type(err).__mro__ if c.__name__ in _BY_NAME),
                    "EngineError")
        context.set_trailing_metadata(((ERROR_KEY, name),))
        context.abort(_code_for(err), str(err) or type(err).__name__)
    except Exception as err:
        if _is_abort(err):
            raise
        log.exception("internal error in %s", what or "rpc")
        context.abort(grpc.StatusCode.INTERNAL,
                      f"{what or 'request'} failed: internal error ({type(err).__name__}: "
                      f"{str(err)[:200]})")


def _is_abort(err: Exception) -> bool:
    # sync grpc's context.abort() raises a bare `Exception()`: let it through
    return type(err) is Exception and not err.args


def rpc(fn: Callable) -> Callable:
    """Decorator for unary servicer methods: ``def Get(self, request, context)``."""
    @functools.wraps(fn)
    def wrapper(self, request, context):
        with mapped(context, f"{type(self).__name__}.{fn.__name__}"):
            return fn(self, request, context)
    return wrapper


def stream_rpc(fn: Callable) -> Callable:
    """Decorator for response-streaming servicer methods (generators)."""
    @functools.wraps(fn)
    def wrapper(self, request, context):
        with mapped(context, f"{type(self).__name__}.{fn.__name__}"):
            yield from fn(self, request, context)
    return wrapper


def from_rpc_error(err: grpc.RpcError) -> Exception:
    """The errdefs error an RpcError stands for (Unavailable for transport failures)."""
    code = err.code() if hasattr(err, "code") else None
    details = (err.details() if hasattr(err, "details") else None) or str(code)
    cls = None
    trailing = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == ERROR_KEY:
            cls = _BY_NAME.get(value)
    if cls is None:
        cls = FROM_CODE.get(code)
    if cls is None:
        return errdefs.EngineError(f"{details} ({code.name if code else 'unknown'})")
    return cls(details)
