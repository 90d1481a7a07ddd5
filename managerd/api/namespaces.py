"""Namespaces service over metadata/namespaces.py."""

from __future__ import annotations

from dockyard.managerd.api._meta import paths
from dockyard.managerd.api.errors import rpc
from dockyard.protos.services.namespaces.v1 import namespaces_pb2 as pb
from dockyard.protos.services.namespaces.v1 import namespaces_pb2_grpc as pb_grpc
from google.protobuf.empty_pb2 import Empty


def _pb(ns) -> pb.Namespace:
    return pb.Namespace(name=ns.name, labels=ns.labels)


class NamespacesService(pb_grpc.NamespacesServicer):
    def __init__(self, ctx) -> None:
        self.store = ctx.namespaces

    @rpc
    def Get(self, request, context):
        return pb.GetNamespaceResponse(namespace=_pb(self.store.get(request.name)))

    @rpc
    def List(self, request, context):
        return pb.ListNamespacesResponse(
            namespaces=[_pb(n) for n in self.store.list(list(request.filters))])

    @rpc
    def Create(self, request, context):
        ns = self.store.create(request.namespace.name, dict(request.namespace.labels))
        return pb.CreateNamespaceResponse(namespace=_pb(ns))

    @rpc
    def Update(self, request, context):
        ns = self.store.update(request.namespace.name, dict(request.namespace.labels),
                               paths(request.update_mask))
        return pb.UpdateNamespaceResponse(namespace=_pb(ns))

    @rpc
    def Delete(self, request, context):
        self.store.delete(request.name)
        return Empty()


def register(ctx, server) -> list[str]:
    pb_grpc.add_NamespacesServicer_to_server(NamespacesService(ctx), server)
    return [pb.DESCRIPTOR.services_by_name["Namespaces"].full_name]
