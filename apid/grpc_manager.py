"""The Manager interface over managerd's gRPC services (grpc.aio).

Owns apid's client side of protos/: one channel to managerd's unix socket,
every call in the "moby" namespace (`dockyard-namespace` metadata), the
W3C `traceparent` forwarded when the request carries one, and gRPC status
codes mapped back to errdefs once, here. Image resolution follows
containerd's client: record -> (index ->) manifest -> config -> chain ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import platform
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
from dockyard.apid import trace
from dockyard.apid.manager import (
    NAMESPACE,
    ContainerInfo,
    ExitStatus,
    ImageInfo,
    Mount,
    ProcessIO,
    TaskInfo,
)
from dockyard.protos.events import task_pb2 as task_events
from dockyard.protos.services.containers.v1 import containers_pb2 as cpb
from dockyard.protos.services.containers.v1 import containers_pb2_grpc as cgrpc
from dockyard.protos.services.content.v1 import content_pb2 as ctpb
from dockyard.protos.services.content.v1 import content_pb2_grpc as ctgrpc
from dockyard.protos.services.events.v1 import events_pb2 as epb
from dockyard.protos.services.events.v1 import events_pb2_grpc as egrpc
from dockyard.protos.services.images.v1 import images_pb2 as ipb
from dockyard.protos.services.images.v1 import images_pb2_grpc as igrpc
from dockyard.protos.services.snapshots.v1 import snapshots_pb2 as spb
from dockyard.protos.services.snapshots.v1 import snapshots_pb2_grpc as sgrpc
from dockyard.protos.services.tasks.v1 import tasks_pb2 as tpb
from dockyard.protos.services.tasks.v1 import tasks_pb2_grpc as tgrpc
from dockyard.protos.services.transfer.v1 import transfer_pb2 as xpb
from dockyard.protos.services.transfer.v1 import transfer_pb2_grpc as xgrpc
from google.protobuf import field_mask_pb2

from dockyard import errdefs
from dockyard.paths import unix_path

__all__ = ["GrpcManager", "normalize_ref"]

_FROM_CODE = {
    grpc.StatusCode.NOT_FOUND: errdefs.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errdefs.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errdefs.FailedPrecondition,
    grpc.StatusCode.INVALID_ARGUMENT: errdefs.InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: errdefs.InvalidArgument,
    grpc.StatusCode.UNAVAILABLE: errdefs.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errdefs.Unavailable,
    grpc.StatusCode.PERMISSION_DENIED: errdefs.PermissionDenied,
}

_MANIFESTS = {"application/vnd.oci.image.manifest.v1+json",
              "application/vnd.docker.distribution.manifest.v2+json"}
_INDEXES = {"application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json"}
_STATUS = {tpb.CREATED: "created", tpb.RUNNING: "running", tpb.STOPPED: "stopped",
           tpb.PAUSED: "paused"}

@contextlib.contextmanager
def _mapped(what: str) -> Iterator[None]:
    """Map gRPC errors to errdefs once; a trace span per call when the request is traced."""
    with trace.span(f"grpc {what}"), _map_errors(what):
        yield


@contextlib.contextmanager
def _map_errors(what: str) -> Iterator[None]:
    try:
        yield
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.UNIMPLEMENTED:
            raise errdefs.Unavailable(f"{what}: managerd does not implement this call yet "
                                      f"({err.details()})") from None
        kind = _FROM_CODE.get(err.code(), errdefs.EngineError)
        raise kind(err.details() or f"{what}: {err.code().name}") from None


async def _rendered(call: Any, what: str, renderer: Any) -> AsyncIterator[dict[str, Any]]:
    """A transfer stream's messages as Docker progress objects. The call is cancelled
    however the stream ends early (the HTTP client went away, an error): managerd then
    stops the pull or push instead of finishing it for nobody."""
    try:
        with _mapped(what):
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    return
                for obj in renderer.render(msg):
                    yield obj
    finally:
        call.cancel()


def normalize_ref(ref: str) -> str:
    """Docker's reference normalisation: `busybox` -> `docker.io/library/busybox:latest`."""
    name, digest = ref, ""
    if "@" in ref:
        name, digest = ref.split("@", 1)
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        domain, path = "docker.io", name
    else:
        domain, path = first, rest
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    if digest:
        return f"{domain}/{path}@{digest}"
    last = path.rsplit("/", 1)[-1]
    if ":" not in last:
        path += ":latest"
    return f"{domain}/{path}"


def _console(io: ProcessIO) -> tpb.ConsoleSize | None:
    if io.terminal and io.console_size and all(io.console_size):
        return tpb.ConsoleSize(height=io.console_size[0], width=io.console_size[1])
    return None


def _ts(pb) -> float:
    return pb.seconds + pb.nanos / 1e9 if pb is not None else 0.0


class _Session:
    """AttachSession over the Tasks.Attach bidirectional stream (read/write API)."""

    def __init__(self, call) -> None:
        self._call = call
        self._closed = False
        self._writing = True

    async def frames(self) -> AsyncIterator[tuple[int, bytes]]:
        with _mapped("attach"):
            try:
                while True:
                    resp = await self._call.read()
                    if resp is grpc.aio.EOF:
                        return
                    if resp.data:
                        yield (2 if resp.stream == tpb.STDERR else 1), resp.data
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.CANCELLED:
                    return
                raise

    async def write(self, data: bytes) -> None:
        if self._writing and not self._closed:
            with _mapped("attach stdin"):
                await self._call.write(tpb.AttachRequest(stdin=data))

    async def close_stdin(self) -> None:
        if self._writing and not self._closed:
            self._writing = False
            with _mapped("attach close stdin"):
                await self._call.write(tpb.AttachRequest(close_stdin=True))
                await self._call.done_writing()  # half-close: output keeps flowing

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._call.cancel()


class GrpcManager:
    """Manager over a managerd address (unix:///run/dockyard/managerd.sock)."""

    def __init__(self, address: str, namespace: str = NAMESPACE, snapshotter: str = ""
                 ) -> None:
        target = "unix://" + unix_path(address) if not address.startswith("unix:") else address
        self.channel = grpc.aio.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20)])
        self.namespace = namespace
        self.snapshotter = snapshotter
        self.containers = cgrpc.ContainersStub(self.channel)
        self.images = igrpc.ImagesStub(self.channel)
        self.content = ctgrpc.ContentStub(self.channel)
        self.snapshots = sgrpc.SnapshotsStub(self.channel)
        self.tasks = tgrpc.TasksStub(self.channel)
        self.transfer = xgrpc.TransferStub(self.channel)
        self.events = egrpc.EventsStub(self.channel)
        self._configs: dict[str, tuple[str, dict, list[str], int]] = {}

    def md(self) -> list[tuple[str, str]]:
        out = [("dockyard-namespace", self.namespace)]
        tp = trace.current_traceparent()
        if tp:
            out.append(("traceparent", tp))
        return out

    async def close(self) -> None:
        await self.channel.close()

    # --- images -------------------------------------------------------------------------

    async def _read_blob(self, digest: str) -> bytes:
        chunks = []
        with _mapped(f"read {digest}"):
            async for resp in self.content.Read(ctpb.ReadContentRequest(digest=digest),
                                                metadata=self.md()):
                chunks.append(resp.data)
        return b"".join(chunks)

    async def _resolve(self, name: str, target) -> ImageInfo:
        digest = target.digest
        if digest not in self._configs:
            media, data = target.media_type, await self._read_blob(digest)
            doc = json.loads(data)
            media = media or doc.get("mediaType", "")
            if media in _INDEXES or "manifests" in doc:
                arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(),
                                                                    platform.machine())
                chosen = None
                for m in doc.get("manifests", []):
                    p = m.get("platform") or {}
                    if p.get("os", "linux") == "linux" and p.get("architecture") == arch:
                        chosen = m
                        break
                if chosen is None:
                    raise errdefs.NotFound(f"no matching manifest for linux/{arch} in the "
                                           f"manifest list entries: {name}")
                doc = json.loads(await self._read_blob(chosen["digest"]))
            cfg_digest = doc["config"]["digest"]
            config = json.loads(await self._read_blob(cfg_digest))
            size = sum(int(layer.get("size", 0)) for layer in doc.get("layers", []))
            diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
            self._configs[digest] = (cfg_digest, config, diff_ids, size)
        cfg_digest, config, diff_ids, size = self._configs[digest]
        chain = ""
        for d in diff_ids:
            chain = d if not chain else "sha256:" + hashlib.sha256(
                f"{chain} {d}".encode()).hexdigest()
        return ImageInfo(name=name, digest=digest, config_digest=cfg_digest, config=config,
                         chain_id=chain, size=size, layers=diff_ids)

    async def get_image(self, ref: str) -> ImageInfo:
        ref = ref.strip()
        if ref.startswith("sha256:") or (len(ref) >= 4 and all(
                ch in "0123456789abcdef" for ch in ref) and "/" not in ref):
            want = ref if ref.startswith("sha256:") else "sha256:" + ref
            hits = [i for i in await self.list_images() if i.config_digest.startswith(want)]
            if hits:
                return hits[0]
            if ref.startswith("sha256:"):
                raise errdefs.NotFound(f"No such image: {ref}")
        name = normalize_ref(ref)
        with _mapped(f"image {ref}"):
            resp = await self.images.Get(ipb.GetImageRequest(name=name), metadata=self.md())
        info = await self._resolve(resp.image.name, resp.image.target)
        info.created_at = _ts(resp.image.created_at)
        info.labels = dict(resp.image.labels)
        return info

    async def list_images(self) -> list[ImageInfo]:
        with _mapped("list images"):
            resp = await self.images.List(ipb.ListImagesRequest(), metadata=self.md())
        out = []
        for img in resp.images:
            try:
                info = await self._resolve(img.name, img.target)
            except (errdefs.EngineError, ValueError, KeyError):
                continue
            info.created_at = _ts(img.created_at)
            info.labels = dict(img.labels)
            out.append(info)
        return out

    async def read_image_file(self, image: ImageInfo, path: str) -> bytes | None:
        """Read one file from the image's committed layers (upper to lower, no mount)."""
        if not image.chain_id:
            return None
        key = f"apid-view-{hashlib.sha256(image.chain_id.encode()).hexdigest()[:16]}-" \
              f"{asyncio.get_running_loop().time():.6f}"
        with _mapped("view"):
            resp = await self.snapshots.View(spb.ViewSnapshotRequest(
                snapshotter=self.snapshotter, key=key, parent=image.chain_id),
                metadata=self.md())
        try:
            dirs: list[str] = []
            for m in resp.mounts:
                if m.type == "overlay":
                    for opt in m.options:
                        if opt.startswith("upperdir="):
                            dirs.insert(0, opt[9:])
                        elif opt.startswith("lowerdir="):
                            dirs += opt[9:].split(":")
                else:
                    dirs.append(m.source)
            for d in dirs:
                full = d.rstrip("/") + path
                try:
                    with open(full, "rb") as f:
                        return f.read()
                except OSError:
                    continue
            return None
        finally:
            with contextlib.suppress(errdefs.EngineError), _mapped("remove view"):
                await self.snapshots.Remove(spb.RemoveSnapshotRequest(
                    snapshotter=self.snapshotter, key=key), metadata=self.md())

    # --- containers ---------------------------------------------------------------------

    async def create_container(self, info: ContainerInfo) -> None:
        c = cpb.Container(id=info.id, image=info.image, labels=info.labels,
                          spec=json.dumps(info.spec).encode(), snapshotter=self.snapshotter,
                          snapshot_key=info.snapshot_key, extensions=info.extensions,
                          runtime=cpb.Runtime(name="dockyard-shim"))
        with _mapped(f"create container {info.id}"):
            await self.containers.Create(cpb.CreateContainerRequest(container=c),
                                         metadata=self.md())

    async def update_container(self, container_id: str, labels: dict[str, str],
                               extensions: dict[str, bytes]) -> None:
        c = cpb.Container(id=container_id, labels=labels, extensions=extensions)
        mask = field_mask_pb2.FieldMask(paths=["labels"] + [f"extensions.{k}"
                                                             for k in extensions])
        with _mapped(f"update container {container_id}"):
            await self.containers.Update(cpb.UpdateContainerRequest(container=c,
                                                                    update_mask=mask),
                                         metadata=self.md())

    async def delete_container(self, container_id: str) -> None:
        with _mapped(f"delete container {container_id}"):
            await self.containers.Delete(cpb.DeleteContainerRequest(id=container_id),
                                         metadata=self.md())

    async def list_containers(self) -> list[ContainerInfo]:
        with _mapped("list containers"):
            resp = await self.containers.List(cpb.ListContainersRequest(), metadata=self.md())
        return [ContainerInfo(id=c.id, image=c.image, spec={}, labels=dict(c.labels),
                              extensions=dict(c.extensions), snapshot_key=c.snapshot_key,
                              created_at=_ts(c.created_at)) for c in resp.containers]

    # --- snapshots ----------------------------------------------------------------------

    @staticmethod
    def _mounts(pbs) -> list[Mount]:
        return [Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))
                for m in pbs]

    async def prepare_snapshot(self, key: str, parent: str) -> list[Mount]:
        with _mapped(f"prepare snapshot {key}"):
            resp = await self.snapshots.Prepare(spb.PrepareSnapshotRequest(
                snapshotter=self.snapshotter, key=key, parent=parent), metadata=self.md())
        return self._mounts(resp.mounts)

    async def snapshot_mounts(self, key: str) -> list[Mount]:
        with _mapped(f"mounts of snapshot {key}"):
            resp = await self.snapshots.Mounts(spb.MountsRequest(
                snapshotter=self.snapshotter, key=key), metadata=self.md())
        return self._mounts(resp.mounts)

    async def remove_snapshot(self, key: str) -> None:
        with _mapped(f"remove snapshot {key}"):
            await self.snapshots.Remove(spb.RemoveSnapshotRequest(
                snapshotter=self.snapshotter, key=key), metadata=self.md())

    async def snapshot_usage(self, key: str) -> int:
        with _mapped(f"usage of snapshot {key}"):
            resp = await self.snapshots.Usage(spb.UsageRequest(
                snapshotter=self.snapshotter, key=key), metadata=self.md())
        return int(resp.size)

    # --- tasks --------------------------------------------------------------------------

    async def create_task(self, container_id: str, rootfs: list[Mount], io: ProcessIO) -> int:
        md = self.md()
        if io.defer_create:  # see managerd's TaskManager.create
            md.append(("dockyard-defer-create", "1"))
        with _mapped(f"create task {container_id}"):
            resp = await self.tasks.Create(tpb.CreateTaskRequest(
                container_id=container_id, stdin=io.stdin, terminal=io.terminal,
                log_path=io.log_path, console_size=_console(io)), metadata=md)
        return resp.pid

    async def start_task(self, container_id: str) -> int:
        return await self.start_process(container_id, "")

    async def get_task(self, container_id: str) -> TaskInfo:
        with _mapped(f"task {container_id}"):
            resp = await self.tasks.Get(tpb.GetRequest(container_id=container_id),
                                        metadata=self.md())
        p = resp.process
        return TaskInfo(id=container_id, pid=p.pid, status=_STATUS.get(p.status, "unknown"),
                        exit_status=p.exit_status, exited_at=_ts(p.exited_at))

    async def kill_task(self, container_id: str, signal: int, exec_id: str = "",
                        all_processes: bool = False) -> None:
        with _mapped(f"kill {container_id}"):
            await self.tasks.Kill(tpb.KillRequest(container_id=container_id, exec_id=exec_id,
                                                  signal=signal, all=all_processes),
                                  metadata=self.md())

    async def delete_task(self, container_id: str) -> ExitStatus:
        with _mapped(f"delete task {container_id}"):
            resp = await self.tasks.Delete(tpb.DeleteTaskRequest(
                container_id=container_id, force=True), metadata=self.md())
        return ExitStatus(code=resp.exit_status, exited_at=_ts(resp.exited_at))

    async def wait_task(self, container_id: str, exec_id: str = "") -> ExitStatus:
        with _mapped(f"wait {container_id}"):
            resp = await self.tasks.Wait(tpb.WaitRequest(container_id=container_id,
                                                         exec_id=exec_id), metadata=self.md())
        return ExitStatus(code=resp.exit_status, exited_at=_ts(resp.exited_at))

    async def exec_process(self, container_id: str, exec_id: str, process: dict[str, Any],
                           io: ProcessIO) -> None:
        with _mapped(f"exec in {container_id}"):
            await self.tasks.Exec(tpb.ExecProcessRequest(
                container_id=container_id, exec_id=exec_id, spec=json.dumps(process).encode(),
                terminal=io.terminal, stdin=io.stdin, console_size=_console(io)),
                metadata=self.md())

    async def start_process(self, container_id: str, exec_id: str) -> int:
        with _mapped(f"start {container_id}"):
            resp = await self.tasks.Start(tpb.StartRequest(container_id=container_id,
                                                           exec_id=exec_id), metadata=self.md())
        return resp.pid

    async def delete_process(self, container_id: str, exec_id: str) -> None:
        with _mapped(f"delete exec {exec_id}"):
            await self.tasks.Delete(tpb.DeleteTaskRequest(container_id=container_id,
                                                          exec_id=exec_id, force=True),
                                    metadata=self.md())

    async def pids(self, container_id: str) -> list[int]:
        with _mapped(f"pids of {container_id}"):
            resp = await self.tasks.ListPids(tpb.ListPidsRequest(container_id=container_id),
                                             metadata=self.md())
        return list(resp.pids)

    async def pause_task(self, container_id: str) -> None:
        with _mapped(f"pause {container_id}"):
            await self.tasks.Pause(tpb.PauseTaskRequest(container_id=container_id),
                                   metadata=self.md())

    async def resume_task(self, container_id: str) -> None:
        with _mapped(f"resume {container_id}"):
            await self.tasks.Resume(tpb.ResumeTaskRequest(container_id=container_id),
                                    metadata=self.md())

    async def update_task(self, container_id: str, resources: dict[str, Any]) -> None:
        with _mapped(f"update {container_id}"):
            await self.tasks.Update(tpb.UpdateTaskRequest(
                container_id=container_id, resources=json.dumps(resources).encode()),
                metadata=self.md())

    async def metrics(self, container_id: str) -> dict[str, Any]:
        with _mapped(f"metrics of {container_id}"):
            resp = await self.tasks.Metrics(tpb.MetricsRequest(container_id=container_id),
                                            metadata=self.md())
        return json.loads(resp.stats or b"{}")

    async def resize(self, container_id: str, exec_id: str, width: int, height: int) -> None:
        with _mapped(f"resize {container_id}"):
            await self.tasks.ResizePty(tpb.ResizePtyRequest(
                container_id=container_id, exec_id=exec_id, width=width, height=height),
                metadata=self.md())

    async def close_stdin(self, container_id: str, exec_id: str = "") -> None:
        with _mapped(f"close stdin of {container_id}"):
            await self.tasks.CloseIO(tpb.CloseIORequest(container_id=container_id,
                                                        exec_id=exec_id), metadata=self.md())

    async def attach(self, container_id: str, exec_id: str = "", *, stdin: bool = False,
                     stdout: bool = True, stderr: bool = True) -> _Session:
        call = self.tasks.Attach(metadata=self.md())
        try:
            with _mapped(f"attach {container_id}"):
                await call.write(tpb.AttachRequest(open=tpb.AttachOpen(
                    container_id=container_id, exec_id=exec_id, stdin=stdin, stdout=stdout,
                    stderr=stderr)))
                first = await call.read()
        except BaseException:
            call.cancel()
            raise
        if first is grpc.aio.EOF or not first.attached:
            call.cancel()
            raise errdefs.FailedPrecondition(f"attach to {container_id} was not accepted")
        return _Session(call)

    async def task_events(self) -> AsyncIterator[tuple[str, str]]:
        """(topic, container id) of /tasks/oom and /tasks/exit in this namespace, live."""
        call = self.events.Subscribe(epb.SubscribeRequest(filters=[
            f'namespace=={self.namespace},topic~=^/tasks/(oom|exit)$']), metadata=self.md())
        try:
            with _map_errors("subscribe"):
                while True:
                    env = await call.read()
                    if env is grpc.aio.EOF:
                        return
                    msg = task_events.TaskOOM() if env.topic == "/tasks/oom" else \
                        task_events.TaskExit()
                    env.event.Unpack(msg)
                    if env.topic == "/tasks/exit" and msg.exec_id:
                        continue
                    yield env.topic, msg.container_id
        finally:
            call.cancel()

    # --- transfer (images engineer's service) ------------------------------------------

    @staticmethod
    def _creds(auth: dict[str, Any]) -> xpb.Credentials:
        return xpb.Credentials(username=auth.get("username") or "",
                               password=auth.get("password") or "",
                               identity_token=auth.get("identitytoken") or "",
                               registry_token=auth.get("registrytoken") or "")

    async def pull(self, ref: str, auth: dict[str, Any], platform: str = ""
                   ) -> AsyncIterator[dict[str, Any]]:
        """Docker's pull progress objects (errors before the first one raise)."""
        from dockyard.apid.progress import PullRenderer

        renderer = PullRenderer(ref)
        call = self.transfer.Pull(xpb.PullRequest(reference=ref, platform=platform,
                                                  credentials=self._creds(auth)),
                                  metadata=self.md())
        async with contextlib.aclosing(_rendered(call, f"pull {ref}", renderer)) as objs:
            async for obj in objs:
                yield obj

    async def push(self, name: str, reference: str, auth: dict[str, Any]
                   ) -> AsyncIterator[dict[str, Any]]:
        from dockyard.apid.progress import PushRenderer

        renderer = PushRenderer(reference or name)
        call = self.transfer.Push(xpb.PushRequest(name=name, reference=reference,
                                                  credentials=self._creds(auth)),
                                  metadata=self.md())
        async with contextlib.aclosing(_rendered(call, f"push {name}", renderer)) as objs:
            async for obj in objs:
                yield obj

    async def image_summaries(self, all_images: bool = False) -> list[dict[str, Any]]:
        with _mapped("list images"):
            resp = await self.transfer.List(xpb.ListImagesRequest(all=all_images),
                                            metadata=self.md())
        return [{"Id": i.id, "ParentId": "", "RepoTags": list(i.repo_tags),
                 "RepoDigests": list(i.repo_digests), "Created": i.created, "Size": i.size,
                 "SharedSize": -1, "VirtualSize": i.size, "Labels": dict(i.labels),
                 "Containers": i.containers} for i in resp.images]

    async def image_inspect(self, name: str) -> dict[str, Any]:
        with _mapped(f"inspect {name}"):
            resp = await self.transfer.Inspect(xpb.InspectRequest(name=name), metadata=self.md())
        return json.loads(resp.json)

    async def image_history(self, name: str) -> list[dict[str, Any]]:
        with _mapped(f"history of {name}"):
            resp = await self.transfer.History(xpb.HistoryRequest(name=name), metadata=self.md())
        return [{"Id": e.id, "Created": e.created, "CreatedBy": e.created_by,
                 "Tags": list(e.tags) or None, "Size": e.size, "Comment": e.comment}
                for e in resp.entries]

    async def tag_image(self, source: str, target: str) -> str:
        with _mapped(f"tag {source}"):
            resp = await self.transfer.Tag(xpb.TagRequest(source=source, target=target),
                                           metadata=self.md())
        return resp.name

    async def remove_image(self, name: str, force: bool = False) -> list[dict[str, str]]:
        with _mapped(f"remove {name}"):
            resp = await self.transfer.Remove(xpb.RemoveRequest(name=name, force=force),
                                              metadata=self.md())
        return [{"Untagged": i.untagged} if i.untagged else {"Deleted": i.deleted}
                for i in resp.items]

    async def prune_images(self, all_images: bool = False) -> tuple[list[dict[str, str]], int]:
        with _mapped("prune images"):
            resp = await self.transfer.Prune(xpb.PruneRequest(all=all_images),
                                             metadata=self.md())
        items = [{"Untagged": i.untagged} if i.untagged else {"Deleted": i.deleted}
                 for i in resp.items]
        return items, int(resp.space_reclaimed)

    async def save(self, names: list[str]) -> AsyncIterator[bytes]:
        call = self.transfer.Save(xpb.SaveRequest(names=names), metadata=self.md())
        with _mapped("save"):
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    return
                yield msg.data

    async def load(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
        async def requests():
            async for data in chunks:
                yield xpb.Chunk(data=data)

        call = self.transfer.Load(requests(), metadata=self.md())
        with _mapped("load"):
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    return
                if msg.HasField("loaded"):
                    for name in msg.loaded.names:
                        yield {"stream": f"Loaded image: {name}\n"}
                    for image_id in msg.loaded.ids:
                        yield {"stream": f"Loaded image ID: {image_id}\n"}
                elif msg.id:
                    yield {"status": msg.status.capitalize(), "progressDetail": {},
                           "id": msg.id}

    async def import_image(self, chunks: AsyncIterator[bytes], reference: str,
                           changes: list[str], message: str, platform: str) -> dict[str, str]:
        async def requests():
            yield xpb.ImportRequest(reference=reference, changes=changes, message=message,
                                    platform=platform)
            async for data in chunks:
                yield xpb.ImportRequest(data=data)

        with _mapped("import"):
            resp = await self.transfer.Import(requests(), metadata=self.md())
        return {"id": resp.id, "name": resp.name}

    async def export(self, container_id: str) -> AsyncIterator[bytes]:
        call = self.transfer.Export(xpb.ExportRequest(container_id=container_id),
                                    metadata=self.md())
        with _mapped(f"export {container_id}"):
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    return
                yield msg.data

    async def commit(self, container_id: str, reference: str, author: str, comment: str,
                     changes: list[str], config: dict[str, Any] | None) -> str:
        with _mapped(f"commit {container_id}"):
            resp = await self.transfer.Commit(xpb.CommitRequest(
                container_id=container_id, reference=reference, author=author, comment=comment,
                changes=changes, config_json=json.dumps(config).encode() if config else b""),
                metadata=self.md())
        return resp.id
