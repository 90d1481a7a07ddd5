"""Containers service over metadata/containers.py."""

from __future__ import annotations

from dockyard.managerd.api._meta import namespace, paths, ts
from dockyard.managerd.api.errors import rpc
from dockyard.managerd.metadata.containers import Container, Runtime
from dockyard.protos.services.containers.v1 import containers_pb2 as pb
from dockyard.protos.services.containers.v1 import containers_pb2_grpc as pb_grpc
from google.protobuf.empty_pb2 import Empty


def to_pb(c: Container) -> pb.Container:
    return pb.Container(
        id=c.id, labels=c.labels, image=c.image,
        runtime=pb.Runtime(name=c.runtime.name, options=c.runtime.options), spec=c.spec,
        snapshotter=c.snapshotter, snapshot_key=c.snapshot_key, extensions=c.extensions,
        created_at=ts(c.created_at), updated_at=ts(c.updated_at))


def from_pb(m: pb.Container) -> Container:
    return Container(id=m.id, runtime=Runtime(m.runtime.name, m.runtime.options), spec=m.spec,
                     labels=dict(m.labels), image=m.image, snapshotter=m.snapshotter,
                     snapshot_key=m.snapshot_key, extensions=dict(m.extensions))


class ContainersService(pb_grpc.ContainersServicer):
    def __init__(self, ctx) -> None:
        self.store = ctx.containers

    @rpc
    def Get(self, request, context):
        return pb.GetContainerResponse(
            container=to_pb(self.store.get(namespace(context), request.id)))

    @rpc
    def List(self, request, context):
        items = self.store.list(namespace(context), list(request.filters))
        return pb.ListContainersResponse(containers=[to_pb(c) for c in items])

    @rpc
    def Create(self, request, context):
        c = self.store.create(namespace(context), from_pb(request.container))
        return pb.CreateContainerResponse(container=to_pb(c))

    @rpc
    def Update(self, request, context):
        c = self.store.update(namespace(context), from_pb(request.container),
                              paths(request.update_mask))
        return pb.UpdateContainerResponse(container=to_pb(c))

    @rpc
    def Delete(self, request, context):
        self.store.delete(namespace(context), request.id)
        return Empty()


def register(ctx, server) -> list[str]:
    pb_grpc.add_ContainersServicer_to_server(ContainersService(ctx), server)
    return [pb.DESCRIPTOR.services_by_name["Containers"].full_name]
