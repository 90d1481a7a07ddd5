"""GC service: run a garbage collection now."""

from __future__ import annotations

from dockyard.managerd.api.errors import rpc
from dockyard.protos.services.gc.v1 import gc_pb2 as pb
from dockyard.protos.services.gc.v1 import gc_pb2_grpc as pb_grpc


class GCService(pb_grpc.GCServicer):
    def __init__(self, ctx) -> None:
        self.gc = ctx.gc

    @rpc
    def Collect(self, request, context):
        r = self.gc.collect(immediate=request.immediate)
        return pb.CollectResponse(content_removed=r.content_removed,
                                  snapshots_removed=r.snapshots_removed,
                                  leases_removed=r.leases_removed, blobs_deleted=r.blobs_deleted)


def register(ctx, server) -> list[str]:
    ctx.on_shutdown(ctx.gc.close)
    pb_grpc.add_GCServicer_to_server(GCService(ctx), server)
    return [pb.DESCRIPTOR.services_by_name["GC"].full_name]
