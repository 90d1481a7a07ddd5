"""Version service: which managerd answers (no namespace needed)."""

from __future__ import annotations

from dockyard.managerd.api.errors import rpc
from dockyard.protos.services.version.v1 import version_pb2, version_pb2_grpc

from dockyard import __version__


class VersionService(version_pb2_grpc.VersionServicer):
    def __init__(self, ctx) -> None:
        self.ctx = ctx

    @rpc
    def Version(self, request, context):
        return version_pb2.VersionResponse(version=__version__, revision="",
                                           schema_version=self.ctx.db.version)


def register(ctx, server) -> list[str]:
    version_pb2_grpc.add_VersionServicer_to_server(VersionService(ctx), server)
    return [version_pb2.DESCRIPTOR.services_by_name["Version"].full_name]
