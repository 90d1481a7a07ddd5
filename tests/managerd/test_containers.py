"""Containers: CRUD, label filters, field-mask updates, immutables, error codes."""

from __future__ import annotations

import json

import pytest
from dockyard.protos.services.containers.v1 import containers_pb2 as pb

from dockyard import errdefs

pytestmark = pytest.mark.timeout(60)

SPEC = json.dumps({"ociVersion": "1.0.2", "process": {"args": ["sh"]}}).encode()


def _ctr(cid: str, **kw) -> pb.Container:
    kw.setdefault("runtime", pb.Runtime(name="/usr/sbin/runc", options=b'{"x": 1}'))
    kw.setdefault("spec", SPEC)
    return pb.Container(id=cid, **kw)


def _create(c, cid, **kw):
    return c.containers.Create(pb.CreateContainerRequest(container=_ctr(cid, **kw)),
                               timeout=5).container


def test_create_get_roundtrip(client):
    made = _create(client, "c1", labels={"com.example.role": "web"}, image="busybox",
                   snapshotter="overlayfs", snapshot_key="c1-rootfs",
                   extensions={"docker": b"\x00\x01binary"})
    got = client.containers.Get(pb.GetContainerRequest(id="c1"), timeout=5).container
    assert got == made
    assert got.runtime.name == "/usr/sbin/runc" and got.runtime.options == b'{"x": 1}'
    assert json.loads(got.spec)["process"]["args"] == ["sh"]
    assert got.extensions["docker"] == b"\x00\x01binary"
    assert got.created_at.seconds > 0 and got.created_at == got.updated_at


def test_list_label_filters(client):
    _create(client, "web1", labels={"role": "web", "com.example.tier": "front"}, image="nginx")
    _create(client, "web2", labels={"role": "web"}, image="nginx")
    _create(client, "db1", labels={"role": "db"}, image="postgres")

    def ids(*filters):
        return sorted(c.id for c in client.containers.List(
            pb.ListContainersRequest(filters=list(filters)), timeout=5).containers)

    assert ids() == ["db1", "web1", "web2"]
    assert ids("labels.role==web") == ["web1", "web2"]
    assert ids('labels."com.example.tier"==front') == ["web1"]
    assert ids("labels.role==web,image==nginx", "id==db1") == ["db1", "web1", "web2"]
    assert ids("labels.role!=web") == ["db1"]
    assert ids("image~=^post") == ["db1"]
    assert ids("labels.com.example.tier") == ["web1"]  # presence, unquoted dots
    with pytest.raises(errdefs.InvalidArgument, match="filter"):
        ids("labels.role==web,,")


def test_update_field_mask(client):
    _create(client, "u1", labels={"a": "1", "b": "2"}, image="old",
            extensions={"e1": b"1", "e2": b"2"})
    upd = client.containers.Update(pb.UpdateContainerRequest(
        container=pb.Container(id="u1", labels={"a": "10"}, image="ignored",
                               extensions={"e3": b"3"}),
        update_mask={"paths": ["labels.a", "labels.b", "extensions.e3"]}), timeout=5).container
    assert upd.labels == {"a": "10"} and upd.image == "old"
    assert dict(upd.extensions) == {"e1": b"1", "e2": b"2", "e3": b"3"}
    assert upd.updated_at.ToNanoseconds() > upd.created_at.ToNanoseconds()
    upd = client.containers.Update(pb.UpdateContainerRequest(
        container=pb.Container(id="u1", image="new", snapshot_key="k2",
                               spec=b'{"ociVersion": "1.1.0"}'),
        update_mask={"paths": ["image", "snapshot_key", "spec"]}), timeout=5).container
    assert (upd.image, upd.snapshot_key, json.loads(upd.spec)) == (
        "new", "k2", {"ociVersion": "1.1.0"})
    for path in ("runtime", "snapshotter", "id"):
        with pytest.raises(errdefs.InvalidArgument, match="immutable"):
            client.containers.Update(pb.UpdateContainerRequest(
                container=pb.Container(id="u1"), update_mask={"paths": [path]}), timeout=5)
    with pytest.raises(errdefs.InvalidArgument, match="spec"):
        client.containers.Update(pb.UpdateContainerRequest(
            container=pb.Container(id="u1", spec=b"not json"), update_mask={"paths": ["spec"]}),
            timeout=5)
    with pytest.raises(errdefs.NotFound, match="container nope"):
        client.containers.Update(pb.UpdateContainerRequest(
            container=pb.Container(id="nope"), update_mask={"paths": ["labels"]}), timeout=5)


def test_delete(client):
    _create(client, "d1")
    client.containers.Delete(pb.DeleteContainerRequest(id="d1"), timeout=5)
    with pytest.raises(errdefs.NotFound, match="container d1"):
        client.containers.Get(pb.GetContainerRequest(id="d1"), timeout=5)
    with pytest.raises(errdefs.NotFound, match="container d1"):
        client.containers.Delete(pb.DeleteContainerRequest(id="d1"), timeout=5)


@pytest.mark.parametrize("bad,match", [
    (dict(id="../x"), "invalid container id"),
    (dict(id="ok", runtime=pb.Runtime()), "runtime"),
    (dict(id="ok", spec=b""), "spec is required"),
    (dict(id="ok", spec=b"[1]"), "JSON object"),
])
def test_create_invalid(client, bad, match):
    cid = bad.pop("id")
    with pytest.raises(errdefs.InvalidArgument, match=match):
        _create(client, cid, **bad)


def test_duplicate_is_already_exists(client):
    _create(client, "dup")
    with pytest.raises(errdefs.AlreadyExists, match="container dup"):
        _create(client, "dup")


def test_namespaces_isolate_containers(managerd, ns):
    with managerd.client(ns) as a, managerd.client(ns + "-b") as b:
        _create(a, "same")
        assert not b.containers.List(pb.ListContainersRequest(), timeout=5).containers
        with pytest.raises(errdefs.NotFound):
            b.containers.Get(pb.GetContainerRequest(id="same"), timeout=5)
        _create(b, "same")
        b.containers.Delete(pb.DeleteContainerRequest(id="same"), timeout=5)
        assert a.containers.Get(pb.GetContainerRequest(id="same"), timeout=5).container.id
