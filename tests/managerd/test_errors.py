"""errdefs <-> gRPC status mapping, both directions (no daemon needed)."""

from __future__ import annotations

import grpc
import pytest
from dockyard.managerd.api import errors

from dockyard import errdefs


class _Aborted(Exception):
    pass


class FakeContext:
    def __init__(self):
        self.code = self.details = None
        self.trailers = ()

    def set_trailing_metadata(self, md):
        self.trailers = md

    def abort(self, code, details):
        self.code, self.details = code, details
        raise _Aborted()


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details, trailers=()):
        self._code, self._details, self._trailers = code, details, trailers

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailers


@pytest.mark.parametrize("err,code", [
    (errdefs.NotFound("container x: not found"), grpc.StatusCode.NOT_FOUND),
    (errdefs.AlreadyExists("image y: already exists"), grpc.StatusCode.ALREADY_EXISTS),
    (errdefs.FailedPrecondition("snapshot z: has 1 children"),
     grpc.StatusCode.FAILED_PRECONDITION),
    (errdefs.InvalidArgument("bad digest"), grpc.StatusCode.INVALID_ARGUMENT),
    (errdefs.Unavailable("ref locked"), grpc.StatusCode.UNAVAILABLE),
    (errdefs.NotModified("already running"), grpc.StatusCode.FAILED_PRECONDITION),
])
def test_roundtrip(err, code):
    ctx = FakeContext()
    with pytest.raises(_Aborted), errors.mapped(ctx):
        raise err
    assert (ctx.code, ctx.details) == (code, str(err))
    back = errors.from_rpc_error(FakeRpcError(ctx.code, ctx.details, ctx.trailers))
    assert type(back) is type(err) and str(back) == str(err)


def test_unexpected_exception_is_internal_with_short_message(caplog):
    ctx = FakeContext()
    with pytest.raises(_Aborted), errors.mapped(ctx, "Containers.Get"):
        raise KeyError("boom")
    assert ctx.code == grpc.StatusCode.INTERNAL
    assert "Traceback" not in ctx.details and "Containers.Get" in ctx.details
    assert "Traceback" in caplog.text or caplog.records[0].exc_info


def test_from_code_without_trailer():
    err = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connect failed"))
    assert isinstance(err, errdefs.Unavailable)
    err = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.INTERNAL, "oops"))
    assert type(err) is errdefs.EngineError and "oops" in str(err)


def test_client_maps_errors_for_calls_and_futures(managerd, ns):
    from dockyard.protos.services.containers.v1 import containers_pb2 as cpb
    with managerd.client(ns) as c:
        with pytest.raises(errdefs.NotFound, match="container ghost"):
            c.containers.Get(cpb.GetContainerRequest(id="ghost"), timeout=5)
        fut = c.containers.Get.future(cpb.GetContainerRequest(id="ghost"), timeout=5)
        assert isinstance(fut.exception(), errdefs.NotFound)
        with pytest.raises(errdefs.NotFound):
            fut.result()
        resp, call = c.containers.List.with_call(cpb.ListContainersRequest(), timeout=5)
        assert list(resp.containers) == [] and call.code() == grpc.StatusCode.OK
