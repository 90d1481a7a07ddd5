"""The daemon itself: socket, health, reflection, version, namespace metadata, SIGTERM."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import grpc
import pytest
from dockyard.protos.services.containers.v1 import containers_pb2 as cpb
from google.protobuf.empty_pb2 import Empty
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from dockyard import errdefs

pytestmark = pytest.mark.timeout(60)

SERVICES = {
    "dockyard.services.version.v1.Version",
    "dockyard.services.namespaces.v1.Namespaces",
    "dockyard.services.content.v1.Content",
    "dockyard.services.images.v1.Images",
    "dockyard.services.snapshots.v1.Snapshots",
    "dockyard.services.containers.v1.Containers",
    "dockyard.services.events.v1.Events",
    "dockyard.services.leases.v1.Leases",
    "dockyard.services.gc.v1.GC",
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
}


def _reflect(channel, request):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    return next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))


def test_reflection_lists_every_service(managerd):
    with managerd.client() as c:
        resp = _reflect(c.channel, reflection_pb2.ServerReflectionRequest(list_services=""))
        names = {s.name for s in resp.list_services_response.service}
        assert SERVICES <= names
        # every listed service can be described (grpcurl's `describe`)
        for name in names:
            r = _reflect(c.channel, reflection_pb2.ServerReflectionRequest(
                file_containing_symbol=name))
            assert r.file_descriptor_response.file_descriptor_proto, name


def test_health_serving_for_every_service(managerd):
    with managerd.client() as c:
        for name in ["", *sorted(SERVICES - {"grpc.health.v1.Health",
                                             "grpc.reflection.v1alpha.ServerReflection"})]:
            resp = c.health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING, name


def test_version(managerd):
    with managerd.client() as c:
        v = c.version.Version(Empty(), timeout=5)
    assert v.version and v.schema_version >= 1


def test_socket_mode_0660(managerd):
    st = os.stat(managerd.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660


def test_missing_namespace_is_invalid_argument(managerd):
    channel = grpc.insecure_channel(f"unix:{managerd.socket}")
    try:
        from dockyard.protos.services.containers.v1 import containers_pb2_grpc
        stub = containers_pb2_grpc.ContainersStub(channel)
        with pytest.raises(grpc.RpcError) as exc:
            stub.List(cpb.ListContainersRequest(), timeout=5)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "dockyard-namespace" in exc.value.details()
    finally:
        channel.close()


def test_bad_namespace_name_is_invalid_argument(managerd):
    with managerd.client("no/slashes") as c, pytest.raises(errdefs.InvalidArgument):
        c.containers.List(cpb.ListContainersRequest(), timeout=5)


def test_sigterm_clean_shutdown_removes_socket(managerd_factory):
    m = managerd_factory()
    assert m.socket.exists()
    assert m.stop(signal.SIGTERM) == 0
    assert not m.socket.exists()


def test_restart_after_kill_reuses_stale_socket_and_keeps_data(managerd_factory, ns):
    m = managerd_factory()
    with m.client(ns) as c:
        c.containers.Create(cpb.CreateContainerRequest(container=cpb.Container(
            id="keep", runtime=cpb.Runtime(name="runc"), spec=b"{}")), timeout=5)
    m.kill()
    assert m.socket.exists()  # left behind by SIGKILL
    m.start()
    with m.client(ns) as c:
        assert c.containers.Get(cpb.GetContainerRequest(id="keep"), timeout=5).container.id == "keep"


def test_second_daemon_on_same_socket_refused(managerd, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dockyard.managerd", "--root", str(tmp_path / "root"),
         "--state", str(tmp_path / "state"), "--address", managerd.address],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "another daemon" in proc.stderr
    assert managerd.socket.exists()
    with managerd.client() as c:
        c.version.Version(Empty(), timeout=5)


def test_sigterm_with_open_event_stream(managerd_factory):
    from dockyard.protos.services.events.v1 import events_pb2
    m = managerd_factory()
    c = m.client("default")
    stream = c.events.Subscribe(events_pb2.SubscribeRequest())
    import time
    time.sleep(0.3)  # let the subscription reach the server
    t0 = time.monotonic()
    assert m.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 8
    assert not m.socket.exists()
    with pytest.raises(errdefs.EngineError):
        list(stream)
    c.close()
