"""A thin, typed Python client for managerd (apid, images tools, tests).

    client = Client("unix:///run/dockyard/managerd.sock", namespace="docker")
    client.containers.Get(containers_pb2.GetContainerRequest(id=cid))
    tasks = client.stub(tasks_pb2_grpc.TasksStub)   # any other service

Every call carries ``dockyard-namespace`` (and ``dockyard-lease`` under
``client.with_lease(id)``) metadata; every gRPC error comes back as the
errdefs error it stands for (NotFound, AlreadyExists, FailedPrecondition,
InvalidArgument, Unavailable, ...; transport failures are Unavailable), with
the server's message. Streams returned by the stubs still support
``.cancel()``. One channel is shared by ``with_namespace``/``with_lease`` copies.

Owns the client side only; it must not import server modules.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator
from typing import TypeVar

import grpc
from dockyard.managerd.api.errors import from_rpc_error

from dockyard import paths

__all__ = ["Client", "NAMESPACE_KEY", "LEASE_KEY"]

NAMESPACE_KEY = "dockyard-namespace"
LEASE_KEY = "dockyard-lease"
T = TypeVar("T")


class _Stream:
    """A response stream whose errors come out as errdefs errors."""

    def __init__(self, call) -> None:
        self._call = call

    def __iter__(self) -> _Stream:
        return self

    def __next__(self):
        try:
            return next(self._call)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err

    def __getattr__(self, name: str):
        return getattr(self._call, name)


class _Outcome:
    """A unary call or future whose result() raises errdefs errors (future() stays async)."""

    def __init__(self, call) -> None:
        self._call = call

    def result(self, timeout: float | None = None):
        try:
            return self._call.result(timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err

    def exception(self, timeout: float | None = None):
        exc = self._call.exception(timeout)
        return from_rpc_error(exc) if isinstance(exc, grpc.RpcError) else exc

    def __getattr__(self, name: str):
        return getattr(self._call, name)


class _Interceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                   grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata

    def _details(self, details):
        md = list(details.metadata or ())
        keys = {k for k, _ in md}
        md += [(k, v) for k, v in self.metadata if k not in keys]
        return details._replace(metadata=md) if hasattr(details, "_replace") else \
            _Details(details.method, details.timeout, md, details.credentials,
                     details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return _Outcome(continuation(self._details(details), request))

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return _Outcome(continuation(self._details(details), request_iterator))

    def intercept_unary_stream(self, continuation, details, request):
        return _Stream(continuation(self._details(details), request))

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return _Stream(continuation(self._details(details), request_iterator))


class _Details(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method, self.timeout, self.metadata = method, timeout, metadata
        self.credentials, self.wait_for_ready = credentials, wait_for_ready
        self.compression = compression


class Client:
    """Stubs for every managerd service, bound to one namespace.

    Args:
        address: "unix:///path" or a bare socket path.
        namespace: sent with every call (required by every namespaced service).
        lease: optional lease id; objects created through this client join it.
    """

    def __init__(self, address: str = paths.MANAGER_ADDRESS, namespace: str = "default",
                 lease: str | None = None, *, _channel: grpc.Channel | None = None) -> None:
        self.address, self.namespace, self.lease = address, namespace, lease
        self.channel = _channel or grpc.insecure_channel(
            f"unix:{os.path.abspath(paths.unix_path(address))}",
            options=[("grpc.max_receive_message_length", 64 << 20),
                     ("grpc.max_send_message_length", 64 << 20)])
        self._owns_channel = _channel is None
        md = [(NAMESPACE_KEY, namespace)] + ([(LEASE_KEY, lease)] if lease else [])
        self._intercepted = grpc.intercept_channel(self.channel, _Interceptor(tuple(md)))

    def with_namespace(self, namespace: str) -> Client:
        return Client(self.address, namespace, self.lease, _channel=self.channel)

    def with_lease(self, lease: str | None) -> Client:
        return Client(self.address, self.namespace, lease, _channel=self.channel)

    def stub(self, stub_class: type[T]) -> T:
        """Any generated stub class on this client's channel (e.g. TasksStub)."""
        return stub_class(self._intercepted)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the daemon accepts connections; raises Unavailable."""
        from dockyard.errdefs import Unavailable
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise Unavailable(f"managerd at {self.address}: not reachable "
                              f"within {timeout}s") from None

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # stubs (generated modules are imported on first use)

    @functools.cached_property
    def version(self):
        from dockyard.protos.services.version.v1 import version_pb2_grpc
        return self.stub(version_pb2_grpc.VersionStub)

    @functools.cached_property
    def namespaces(self):
        from dockyard.protos.services.namespaces.v1 import namespaces_pb2_grpc
        return self.stub(namespaces_pb2_grpc.NamespacesStub)

    @functools.cached_property
    def content(self):
        from dockyard.protos.services.content.v1 import content_pb2_grpc
        return self.stub(content_pb2_grpc.ContentStub)

    @functools.cached_property
    def images(self):
        from dockyard.protos.services.images.v1 import images_pb2_grpc
        return self.stub(images_pb2_grpc.ImagesStub)

    @functools.cached_property
    def snapshots(self):
        from dockyard.protos.services.snapshots.v1 import snapshots_pb2_grpc
        return self.stub(snapshots_pb2_grpc.SnapshotsStub)

    @functools.cached_property
    def containers(self):
        from dockyard.protos.services.containers.v1 import containers_pb2_grpc
        return self.stub(containers_pb2_grpc.ContainersStub)

    @functools.cached_property
    def events(self):
        from dockyard.protos.services.events.v1 import events_pb2_grpc
        return self.stub(events_pb2_grpc.EventsStub)

    @functools.cached_property
    def leases(self):
        from dockyard.protos.services.leases.v1 import leases_pb2_grpc
        return self.stub(leases_pb2_grpc.LeasesStub)

    @functools.cached_property
    def gc(self):
        from dockyard.protos.services.gc.v1 import gc_pb2_grpc
        return self.stub(gc_pb2_grpc.GCStub)

    @functools.cached_property
    def health(self):
        from grpc_health.v1 import health_pb2_grpc
        return self.stub(health_pb2_grpc.HealthStub)

    # small helpers for the common multi-message calls

    def write_content(self, data: bytes, ref: str | None = None, expected: str | None = None,
                      labels: dict[str, str] | None = None, chunk: int = 1 << 20) -> str:
        """Write a whole blob; returns its digest. Already present is not an error."""
        from dockyard.protos.services.content.v1 import content_pb2 as pb

        from dockyard.errdefs import AlreadyExists
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        expected = expected or digest
        ref = ref or f"write-{expected}"

        def requests() -> Iterator[pb.WriteContentRequest]:
            yield pb.WriteContentRequest(action=pb.STAT, ref=ref, total=len(data),
                                         expected=expected)
            for off in range(0, len(data), chunk):
                yield pb.WriteContentRequest(action=pb.WRITE, ref=ref, offset=off,
                                             data=data[off:off + chunk])
            yield pb.WriteContentRequest(action=pb.COMMIT, ref=ref, total=len(data),
                                         expected=expected, labels=labels or {})
        try:
            out = ""
            for resp in self.content.Write(requests()):
                out = resp.digest or out
            return out
        except AlreadyExists:
            return expected

    def read_content(self, digest: str, offset: int = 0, size: int = 0) -> bytes:
        from dockyard.protos.services.content.v1 import content_pb2 as pb
        return b"".join(r.data for r in self.content.Read(
            pb.ReadContentRequest(digest=digest, offset=offset, size=size)))
