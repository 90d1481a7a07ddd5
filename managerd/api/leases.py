"""Leases service over metadata/leases.py."""

from __future__ import annotations

from dockyard.managerd.api._meta import from_ts, namespace, ts
from dockyard.managerd.api.errors import rpc
from dockyard.managerd.metadata.leases import Resource
from dockyard.protos.services.leases.v1 import leases_pb2 as pb
from dockyard.protos.services.leases.v1 import leases_pb2_grpc as pb_grpc
from google.protobuf.empty_pb2 import Empty


def _lease(le) -> pb.Lease:
    return pb.Lease(id=le.id, labels=le.labels, created_at=ts(le.created_at),
                    expires_at=ts(le.expires_at))


class LeasesService(pb_grpc.LeasesServicer):
    def __init__(self, ctx) -> None:
        self.leases = ctx.leases

    @rpc
    def Create(self, r, context):
        le = self.leases.create(namespace(context), r.id, dict(r.labels),
                                from_ts(r.expires_at, r.HasField("expires_at")))
        return pb.CreateLeaseResponse(lease=_lease(le))

    @rpc
    def Delete(self, r, context):
        self.leases.delete(namespace(context), r.id, sync=r.sync)
        return Empty()

    @rpc
    def List(self, r, context):
        return pb.ListLeasesResponse(
            leases=[_lease(le) for le in self.leases.list(namespace(context), list(r.filters))])

    @rpc
    def AddResource(self, r, context):
        self.leases.add_resource(namespace(context), r.id,
                                 Resource(r.resource.id, r.resource.type))
        return Empty()

    @rpc
    def DeleteResource(self, r, context):
        self.leases.delete_resource(namespace(context), r.id,
                                    Resource(r.resource.id, r.resource.type))
        return Empty()

    @rpc
    def ListResources(self, r, context):
        res = self.leases.list_resources(namespace(context), r.id)
        return pb.ListResourcesResponse(
            resources=[pb.Resource(id=x.id, type=x.type) for x in res])


def register(ctx, server) -> list[str]:
    pb_grpc.add_LeasesServicer_to_server(LeasesService(ctx), server)
    return [pb.DESCRIPTOR.services_by_name["Leases"].full_name]
