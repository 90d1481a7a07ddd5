"""Snapshots service over snapshots/service.py."""

from __future__ import annotations

from dockyard.managerd.api._meta import lease, namespace, paths, ts
from dockyard.managerd.api.errors import rpc, stream_rpc
from dockyard.protos.services.snapshots.v1 import snapshots_pb2 as pb
from dockyard.protos.services.snapshots.v1 import snapshots_pb2_grpc as pb_grpc
from dockyard.protos.types import mount_pb2
from google.protobuf.empty_pb2 import Empty

KIND = {"view": pb.VIEW, "active": pb.ACTIVE, "committed": pb.COMMITTED}
BATCH = 100


def mounts_pb(mounts) -> list[mount_pb2.Mount]:
    return [mount_pb2.Mount(type=m.type, source=m.source, target=m.target,
                            options=list(m.options)) for m in mounts]


def _info(i) -> pb.Info:
    return pb.Info(name=i.name, parent=i.parent, kind=KIND[i.kind], labels=i.labels,
                   created_at=ts(i.created_at), updated_at=ts(i.updated_at))


class SnapshotsService(pb_grpc.SnapshotsServicer):
    def __init__(self, ctx) -> None:
        self.snaps = ctx.snapshots

    @rpc
    def Prepare(self, r, context):
        m = self.snaps.prepare(namespace(context), r.snapshotter, r.key, r.parent,
                               dict(r.labels), lease(context))
        return pb.PrepareSnapshotResponse(mounts=mounts_pb(m))

    @rpc
    def View(self, r, context):
        m = self.snaps.view(namespace(context), r.snapshotter, r.key, r.parent, dict(r.labels),
                            lease(context))
        return pb.ViewSnapshotResponse(mounts=mounts_pb(m))

    @rpc
    def Mounts(self, r, context):
        return pb.MountsResponse(mounts=mounts_pb(
            self.snaps.mounts(namespace(context), r.snapshotter, r.key)))

    @rpc
    def Commit(self, r, context):
        self.snaps.commit(namespace(context), r.snapshotter, r.name, r.key, dict(r.labels),
                          lease(context))
        return Empty()

    @rpc
    def Remove(self, r, context):
        self.snaps.remove(namespace(context), r.snapshotter, r.key)
        return Empty()

    @rpc
    def Stat(self, r, context):
        return pb.StatSnapshotResponse(
            info=_info(self.snaps.stat(namespace(context), r.snapshotter, r.key)))

    @rpc
    def Update(self, r, context):
        info = self.snaps.update(namespace(context), r.snapshotter, r.info.name,
                                 dict(r.info.labels), paths(r.update_mask))
        return pb.UpdateSnapshotResponse(info=_info(info))

    @stream_rpc
    def List(self, r, context):
        items = self.snaps.list(namespace(context), r.snapshotter, list(r.filters))
        for i in range(0, len(items), BATCH):
            yield pb.ListSnapshotsResponse(info=[_info(x) for x in items[i:i + BATCH]])

    @rpc
    def Usage(self, r, context):
        size, inodes = self.snaps.usage(namespace(context), r.snapshotter, r.key)
        return pb.UsageResponse(size=size, inodes=inodes)


def register(ctx, server) -> list[str]:
    pb_grpc.add_SnapshotsServicer_to_server(SnapshotsService(ctx), server)
    return [pb.DESCRIPTOR.services_by_name["Snapshots"].full_name]
