"""Request metadata: the namespace and lease a call acts in, and proto conversions."""

from __future__ import annotations

import grpc
from dockyard.managerd.metadata.namespaces import validate_namespace
from google.protobuf.timestamp_pb2 import Timestamp

from dockyard.errdefs import InvalidArgument

NAMESPACE_KEY = "dockyard-namespace"
LEASE_KEY = "dockyard-lease"


def _get(context: grpc.ServicerContext, key: str) -> str | None:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v
    return None


def namespace(context: grpc.ServicerContext) -> str:
    """The namespace from metadata; missing is INVALID_ARGUMENT (no silent default)."""
    ns = _get(context, NAMESPACE_KEY)
    if not ns:
        raise InvalidArgument(f"namespace is required: set gRPC metadata {NAMESPACE_KEY!r}")
    return validate_namespace(ns)


def lease(context: grpc.ServicerContext) -> str | None:
    return _get(context, LEASE_KEY) or None


def ts(ns: int | None) -> Timestamp | None:
    if not ns:
        return None
    t = Timestamp()
    t.FromNanoseconds(ns)
    return t


def from_ts(t: Timestamp, present: bool) -> int | None:
    return t.ToNanoseconds() if present else None


def paths(mask) -> list[str]:
    return list(mask.paths) if mask is not None else []
