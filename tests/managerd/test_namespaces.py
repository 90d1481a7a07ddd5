"""Namespaces service: explicit and implicit creation, labels, delete only when empty."""

from __future__ import annotations

import pytest
from dockyard.protos.services.containers.v1 import containers_pb2 as cpb
from dockyard.protos.services.namespaces.v1 import namespaces_pb2 as pb

from dockyard import errdefs

pytestmark = pytest.mark.timeout(60)


def test_create_get_update_list_delete(client, ns):
    created = client.namespaces.Create(pb.CreateNamespaceRequest(
        namespace=pb.Namespace(name=ns, labels={"a": "1"})), timeout=5).namespace
    assert created.labels == {"a": "1"}
    with pytest.raises(errdefs.AlreadyExists, match=ns):
        client.namespaces.Create(pb.CreateNamespaceRequest(namespace=pb.Namespace(name=ns)),
                                 timeout=5)
    upd = client.namespaces.Update(pb.UpdateNamespaceRequest(
        namespace=pb.Namespace(name=ns, labels={"b": "2"}), update_mask={"paths": ["labels.b"]}),
        timeout=5).namespace
    assert upd.labels == {"a": "1", "b": "2"}
    names = [n.name for n in client.namespaces.List(pb.ListNamespacesRequest(
        filters=[f"name=={ns}"]), timeout=5).namespaces]
    assert names == [ns]
    client.namespaces.Delete(pb.DeleteNamespaceRequest(name=ns), timeout=5)
    with pytest.raises(errdefs.NotFound, match=f"namespace {ns}"):
        client.namespaces.Get(pb.GetNamespaceRequest(name=ns), timeout=5)


def test_implicit_creation_and_delete_non_empty(client, ns):
    client.containers.Create(cpb.CreateContainerRequest(container=cpb.Container(
        id="c", runtime=cpb.Runtime(name="runc"), spec=b"{}")), timeout=5)
    assert client.namespaces.Get(pb.GetNamespaceRequest(name=ns), timeout=5).namespace.name == ns
    with pytest.raises(errdefs.FailedPrecondition, match="not empty"):
        client.namespaces.Delete(pb.DeleteNamespaceRequest(name=ns), timeout=5)
    client.containers.Delete(cpb.DeleteContainerRequest(id="c"), timeout=5)
    client.namespaces.Delete(pb.DeleteNamespaceRequest(name=ns), timeout=5)


@pytest.mark.parametrize("name", ["", "a/b", "-x", "x" * 77, "a..b"])
def test_invalid_names(client, name):
    with pytest.raises(errdefs.InvalidArgument, match="namespace"):
        client.namespaces.Create(pb.CreateNamespaceRequest(namespace=pb.Namespace(name=name)),
                                 timeout=5)
