"""Transfer gRPC service: thin wrappers over images/service.py (the local layer).

Decode the request, call the ImageService, map errors (api/errors.py),
encode. Long operations (pull, push, load) run in a worker thread and their
progress is streamed as it happens; the final message carries the result.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator

from dockyard.managerd.api._meta import namespace
from dockyard.managerd.api.errors import rpc, stream_rpc
from dockyard.managerd.images import archive, commit, pull, push
from dockyard.managerd.images.auth import Credentials
from dockyard.managerd.images.progress import Progress
from dockyard.managerd.images.service import DANGLING, ImageService
from dockyard.protos.services.transfer.v1 import transfer_pb2 as pb
from dockyard.protos.services.transfer.v1 import transfer_pb2_grpc as pb_grpc

from dockyard.errdefs import InvalidArgument

__all__ = ["TransferService", "register"]

CHUNK = 1 << 20
_END = object()


def _creds(c: pb.Credentials) -> Credentials | None:
    creds = Credentials(c.username, c.password, c.identity_token, c.registry_token)
    return creds if creds else None


def _progress_pb(p: Progress) -> pb.Progress:
    return pb.Progress(id=p.id, status=p.status, current=p.current, total=p.total,
                       detail=p.detail)


def _streamed(work: Callable[[Callable[[Progress], None]], pb.Progress],
              context) -> Iterator[pb.Progress]:
    """Run work(progress) in a thread; yield its progress, then its final message."""
    q: queue.Queue = queue.Queue()
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = work(q.put)
        except BaseException as err:  # re-raised in the RPC thread, mapped there
            box["error"] = err
        finally:
            q.put(_END)

    threading.Thread(target=run, name="transfer", daemon=True).start()
    while True:
        item = q.get()
        if item is _END:
            break
        if context.is_active():
            yield _progress_pb(item)
    if "error" in box:
        raise box["error"]
    yield box["result"]


def _items(items: list[dict]) -> list[pb.RemovedItem]:
    return [pb.RemovedItem(untagged=i.get("Untagged", ""), deleted=i.get("Deleted", ""))
            for i in items]


class _ChunkReader:
    """A file object over a request stream of Chunk/ImportRequest messages."""

    def __init__(self, it: Iterator, first: bytes = b""):
        self._it = it
        self._buf = first

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                msg = next(self._it)
            except StopIteration:
                break
            self._buf += msg.data
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


def _chunks(it: Iterator[bytes]) -> Iterator[pb.Chunk]:
    for data in it:
        if data:
            yield pb.Chunk(data=data)


class TransferService(pb_grpc.TransferServicer):
    def __init__(self, svc: ImageService) -> None:
        self.svc = svc

    @stream_rpc
    def Pull(self, request, context):
        ns = namespace(context)
        if not request.reference:
            raise InvalidArgument("pull: reference is required")
        # a cancelled call (client gone, deadline) stops the pull: downloads, unpacking,
        # lease (called at every end of the RPC: after a finished pull it is a no-op)
        token = pull.CancelToken()
        if not context.add_callback(token.cancel):
            token.cancel()

        def work(progress):
            res = pull.pull(self.svc, ns, request.reference, platform=request.platform,
                            credentials=_creds(request.credentials), progress=progress,
                            snapshotter=request.snapshotter or None, cancel_token=token)
            return pb.Progress(id=res.name, status="done", pulled=pb.PullResult(
                name=res.name, digest=res.target.digest, id=res.config.digest,
                up_to_date=res.up_to_date))
        yield from _streamed(work, context)

    @stream_rpc
    def Push(self, request, context):
        ns = namespace(context)
        if not request.name:
            raise InvalidArgument("push: name is required")

        def work(progress):
            res = push.push(self.svc, ns, request.name, request.reference,
                            credentials=_creds(request.credentials), progress=progress)
            return pb.Progress(id=res.reference, status="done", pushed=pb.PushResult(
                digest=res.digest, size=res.size, tag=res.tag))
        yield from _streamed(work, context)

    @rpc
    def Tag(self, request, context):
        return pb.TagResponse(name=self.svc.tag(namespace(context), request.source,
                                                request.target))

    @rpc
    def List(self, request, context):
        ns = namespace(context)
        out = []
        for img in self.svc.list_images(ns):
            if not request.all and all(n.startswith(DANGLING) for n in img.names):
                continue
            s = self.svc.summary(ns, img)
            out.append(pb.ImageSummary(id=s["Id"], repo_tags=s["RepoTags"],
                                       repo_digests=s["RepoDigests"], created=s["Created"],
                                       size=s["Size"], labels=s["Labels"] or {},
                                       containers=s["Containers"]))
        return pb.ListImagesResponse(images=out)

    @rpc
    def Inspect(self, request, context):
        data = self.svc.inspect(namespace(context), request.name)
        return pb.InspectResponse(json=json.dumps(data).encode())

    @rpc
    def History(self, request, context):
        entries = self.svc.history(namespace(context), request.name)
        return pb.HistoryResponse(entries=[pb.HistoryEntry(
            id=e["Id"], created=e["Created"], created_by=e["CreatedBy"], tags=e["Tags"] or [],
            size=e["Size"], comment=e["Comment"]) for e in entries])

    @rpc
    def Remove(self, request, context):
        items = self.svc.remove(namespace(context), request.name, force=request.force)
        return pb.RemoveResponse(items=_items(items))

    @rpc
    def Prune(self, request, context):
        items, reclaimed = self.svc.prune(namespace(context), all_unused=request.all)
        return pb.PruneResponse(items=_items(items), space_reclaimed=reclaimed)

    @stream_rpc
    def Save(self, request, context):
        ns = namespace(context)
        yield from _chunks(archive.save(self.svc, ns, list(request.names),
                                        request.format or "docker"))

    @stream_rpc
    def Load(self, request_iterator, context):
        ns = namespace(context)
        reader = _ChunkReader(request_iterator)

        def work(progress):
            res = archive.load(self.svc, ns, reader, progress=progress)
            return pb.Progress(id="", status="done",
                               loaded=pb.LoadResult(names=res.names, ids=res.ids))
        yield from _streamed(work, context)

    @rpc
    def Import(self, request_iterator, context):
        ns = namespace(context)
        first = next(request_iterator, None)
        if first is None:
            raise InvalidArgument("import: empty request stream")
        reader = _ChunkReader(request_iterator, first.data)
        img_id, name = commit.import_rootfs(self.svc, ns, reader, reference=first.reference,
                                            changes=list(first.changes), message=first.message,
                                            platform=first.platform)
        return pb.ImportResponse(id=img_id, name=name)

    @stream_rpc
    def Export(self, request, context):
        ns = namespace(context)
        yield from _chunks(commit.export_container(self.svc, ns, request.container_id))

    @rpc
    def Commit(self, request, context):
        ns = namespace(context)
        config = json.loads(request.config_json) if request.config_json else None
        img_id, name = commit.commit_container(
            self.svc, ns, request.container_id, reference=request.reference,
            author=request.author, comment=request.comment, changes=list(request.changes),
            config=config)
        return pb.CommitResponse(id=img_id, name=name)


def register(ctx, server) -> list[str]:
    """Build the images service, expose it as ctx.extras["images"], add the servicer."""
    svc = ImageService.from_context(ctx)
    ctx.extras["images"] = svc
    ctx.on_shutdown(svc.close)
    pb_grpc.add_TransferServicer_to_server(TransferService(svc), server)
    return [pb.DESCRIPTOR.services_by_name["Transfer"].full_name]
