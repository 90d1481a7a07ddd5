"""Events service: Publish into the bus, Subscribe to a filtered stream of it."""

from __future__ import annotations

from dockyard.managerd.api._meta import namespace, ts
from dockyard.managerd.api.errors import rpc, stream_rpc
from dockyard.protos.services.events.v1 import events_pb2 as pb
from dockyard.protos.services.events.v1 import events_pb2_grpc as pb_grpc
from google.protobuf.any_pb2 import Any
from google.protobuf.empty_pb2 import Empty

from dockyard.errdefs import Unavailable


def envelope(ev) -> pb.Envelope:
    payload = ev.event
    if payload is not None and not isinstance(payload, Any):
        packed = Any()
        packed.Pack(payload, type_url_prefix="types.dockyard.io/")
        payload = packed
    return pb.Envelope(timestamp=ts(ev.timestamp), namespace=ev.namespace, topic=ev.topic,
                       event=payload)


class EventsService(pb_grpc.EventsServicer):
    def __init__(self, ctx) -> None:
        self.bus = ctx.events

    @rpc
    def Publish(self, request, context):
        event = Any()
        event.CopyFrom(request.event)
        self.bus.publish(namespace(context), request.topic, event)
        return Empty()

    @stream_rpc
    def Subscribe(self, request, context):
        sub = self.bus.subscribe(list(request.filters))
        context.add_callback(sub.close)  # client gone: end the loop below
        try:
            while context.is_active():
                ev = sub.get(timeout=1.0)
                if ev is None:
                    if sub.reason:  # ended by the daemon: tell the client to reconnect
                        raise Unavailable(f"event stream ended: {sub.reason}")
                    if sub.closed:
                        return
                    continue
                yield envelope(ev)
        finally:
            sub.close()


def register(ctx, server) -> list[str]:
    pb_grpc.add_EventsServicer_to_server(EventsService(ctx), server)
    return [pb.DESCRIPTOR.services_by_name["Events"].full_name]
