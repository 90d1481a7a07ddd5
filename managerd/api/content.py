"""Content service over content/local.py (reads and writes are streams)."""

from __future__ import annotations

from dockyard.managerd.api._meta import lease, namespace, paths, ts
from dockyard.managerd.api.errors import rpc, stream_rpc
from dockyard.protos.services.content.v1 import content_pb2 as pb
from dockyard.protos.services.content.v1 import content_pb2_grpc as pb_grpc
from google.protobuf.empty_pb2 import Empty

from dockyard.errdefs import InvalidArgument

BATCH = 100


def _info(i) -> pb.Info:
    return pb.Info(digest=i.digest, size=i.size, labels=i.labels, created_at=ts(i.created_at),
                   updated_at=ts(i.updated_at))


def _status(s) -> pb.Status:
    return pb.Status(ref=s.ref, offset=s.offset, total=s.total, expected=s.expected,
                     started_at=ts(s.started_at), updated_at=ts(s.updated_at))


class ContentService(pb_grpc.ContentServicer):
    def __init__(self, ctx) -> None:
        self.content = ctx.content

    @rpc
    def Info(self, request, context):
        return pb.InfoResponse(info=_info(self.content.info(namespace(context), request.digest)))

    @rpc
    def Update(self, request, context):
        info = self.content.update(namespace(context), request.info.digest,
                                   dict(request.info.labels), paths(request.update_mask))
        return pb.UpdateResponse(info=_info(info))

    @stream_rpc
    def List(self, request, context):
        items = self.content.list(namespace(context), list(request.filters))
        for i in range(0, len(items), BATCH):
            yield pb.ListContentResponse(info=[_info(x) for x in items[i:i + BATCH]])

    @rpc
    def Delete(self, request, context):
        self.content.delete(namespace(context), request.digest)
        return Empty()

    @stream_rpc
    def Read(self, request, context):
        offset = request.offset
        for chunk in self.content.read(namespace(context), request.digest, request.offset,
                                       request.size):
            yield pb.ReadContentResponse(offset=offset, data=chunk)
            offset += len(chunk)

    @rpc
    def Status(self, request, context):
        return pb.StatusResponse(status=_status(self.content.status(namespace(context),
                                                                    request.ref)))

    @rpc
    def ListStatuses(self, request, context):
        items = self.content.statuses(namespace(context), list(request.filters))
        return pb.ListStatusesResponse(statuses=[_status(s) for s in items])

    @rpc
    def Abort(self, request, context):
        self.content.abort(namespace(context), request.ref)
        return Empty()

    @stream_rpc
    def Write(self, request_iterator, context):
        ns, held = namespace(context), lease(context)
        writer = None
        try:
            for req in request_iterator:
                if writer is None:
                    if not req.ref:
                        raise InvalidArgument("write content: the first message must carry ref")
                    writer = self.content.writer(ns, req.ref, req.expected or None,
                                                 req.total or None, held)
                if req.action in (pb.WRITE, pb.COMMIT) and req.data:
                    if req.offset != writer.offset:
                        if req.offset != 0:
                            raise InvalidArgument(
                                f"write content {req.ref}: offset {req.offset} does not match "
                                f"the ingest's offset {writer.offset}")
                        writer.truncate(0)  # a client restarting from scratch
                    writer.write(req.data)
                resp = pb.WriteContentResponse(action=req.action, offset=writer.offset,
                                               total=writer.total,
                                               started_at=ts(writer.started_at))
                if req.action == pb.COMMIT:
                    info = writer.commit(req.total, req.expected or None, dict(req.labels))
                    resp.digest, resp.offset = info.digest, info.size
                    yield resp
                    return
                yield resp
        finally:
            if writer is not None:
                writer.close()


def register(ctx, server) -> list[str]:
    pb_grpc.add_ContentServicer_to_server(ContentService(ctx), server)
    return [pb.DESCRIPTOR.services_by_name["Content"].full_name]
