"""Images service over metadata/images.py."""

from __future__ import annotations

from dockyard.managerd.api._meta import namespace, paths, ts
from dockyard.managerd.api.errors import rpc
from dockyard.managerd.metadata.images import Descriptor, Image
from dockyard.protos.services.images.v1 import images_pb2 as pb
from dockyard.protos.services.images.v1 import images_pb2_grpc as pb_grpc
from dockyard.protos.types import descriptor_pb2
from google.protobuf.empty_pb2 import Empty


def to_pb(i: Image) -> pb.Image:
    t = i.target
    return pb.Image(name=i.name, labels=i.labels, created_at=ts(i.created_at),
                    updated_at=ts(i.updated_at),
                    target=descriptor_pb2.Descriptor(media_type=t.media_type, digest=t.digest,
                                                     size=t.size, annotations=t.annotations))


def from_pb(m: pb.Image) -> Image:
    t = m.target
    return Image(m.name, Descriptor(t.media_type, t.digest, t.size, dict(t.annotations)),
                 dict(m.labels))


class ImagesService(pb_grpc.ImagesServicer):
    def __init__(self, ctx) -> None:
        self.store = ctx.images

    @rpc
    def Get(self, request, context):
        return pb.GetImageResponse(image=to_pb(self.store.get(namespace(context), request.name)))

    @rpc
    def List(self, request, context):
        items = self.store.list(namespace(context), list(request.filters))
        return pb.ListImagesResponse(images=[to_pb(i) for i in items])

    @rpc
    def Create(self, request, context):
        return pb.CreateImageResponse(
            image=to_pb(self.store.create(namespace(context), from_pb(request.image))))

    @rpc
    def Update(self, request, context):
        img = self.store.update(namespace(context), from_pb(request.image),
                                paths(request.update_mask))
        return pb.UpdateImageResponse(image=to_pb(img))

    @rpc
    def Delete(self, request, context):
        self.store.delete(namespace(context), request.name, sync=request.sync)
        return Empty()


def register(ctx, server) -> list[str]:
    pb_grpc.add_ImagesServicer_to_server(ImagesService(ctx), server)
    return [pb.DESCRIPTOR.services_by_name["Images"].full_name]
