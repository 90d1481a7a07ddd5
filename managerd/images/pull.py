"""Pull: reference -> manifest (platform chosen) -> config -> verified blobs ->
unpacked snapshots keyed by chain ID -> an image record.

Owns the order of a pull and what it promises: every blob is verified
against its digest and size as it streams into the content store; every
layer is unpacked into a fresh `extract-<uuid>` snapshot, its uncompressed
stream hashed and compared with the config's diff_id, and only then
committed as `sha256:<chainid>`; the image record is written last. All of it
happens under a lease, so a failed or killed pull leaves nothing that
garbage collection will not remove, and a later pull resumes partial
downloads. Downloads run in parallel (fetch.Fetcher); unpacking is in layer
order and starts while the first layer still downloads.

A pull is cancelled through its `CancelToken` (the Transfer RPC cancels it when
the client goes away): every wait of the pull wakes with `PullCancelled`, its
downloads stop (unless another pull still wants them), half-unpacked snapshots
and staging dirs are removed, no image record is written, and its lease is
deleted with a synchronous collection. By design the bytes downloaded so far
stay as resumable ingests (content/ingest/, as containerd keeps them): the next
pull of the same blob continues from there with a Range request.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass, field

from dockyard.managerd.metadata.leases import Resource

from dockyard.errdefs import AlreadyExists, InvalidArgument, NotFound, Unavailable

from . import mediatypes, platforms
from . import reference as refs
from .apply import (
    COPY_CHUNK,
    OVERLAY_OPAQUE_XATTR,
    ApplyResult,
    ChunkReader,
    LayerError,
    NeedsParents,
    apply_layer,
    inherit_dir_attrs,
)
from .auth import Credentials
from .fetch import OVERFLOW, Tap
from .manifest import (
    SIZE_LABEL,
    Descriptor,
    chain_ids,
    parse_config,
    parse_index,
    parse_manifest,
)
from .progress import (
    DONE,
    EXISTS,
    EXTRACTING,
    RESOLVED,
    RESOLVING,
    WAITING,
    Progress,
    ProgressFn,
    discard,
    short_id,
)

__all__ = ["PullResult", "pull", "CancelToken", "PullCancelled"]

log = logging.getLogger(__name__)

LEASE_TTL_NS = 3600 * 10**9
STAGE_WORKERS = 2  # layers unpacked at once ahead of their parents (overlayfs)


@dataclass
class PullResult:
    name: str  # the image record's name (canonical reference)
    target: Descriptor  # what the name points at (index or manifest)
    manifest: Descriptor  # the platform's manifest
    config: Descriptor
    up_to_date: bool = False
    layers: list[str] = field(default_factory=list)  # chain ids


class PullCancelled(Unavailable):
    """The pull was cancelled (its client went away); nothing of it was kept."""


class CancelToken:
    """Cancels a running pull from another thread: `cancel()` once, callbacks run then."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self._cancelled = False

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn()

    def is_cancelled(self) -> bool:
        return self._cancelled

    def on_cancel(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Run fn at cancellation (now if already cancelled); returns an unregister."""
        with self._lock:
            if not self._cancelled:
                self._callbacks.append(fn)
                return lambda: self._discard(fn)
        fn()
        return lambda: None

    def _discard(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if fn in self._callbacks:
                self._callbacks.remove(fn)


def _follow(fut: Future) -> Future:
    """A future of this pull's own that completes with `fut` (or is failed at
    cancellation while a download shared with another pull goes on)."""
    out: Future = Future()

    def done(f: Future) -> None:
        try:
            err = f.exception()
            if err is not None:
                out.set_exception(err)
            else:
                out.set_result(f.result())
        except InvalidStateError:
            pass  # cancelled first

    fut.add_done_callback(done)
    return out


def _layer_chunks(tap: Tap | None, future, open_blob):
    """The blob's bytes for unpacking: from the live download, else from the store."""
    consumed = 0
    if tap is not None:
        while True:
            item = tap.get()
            if item is None:
                return
            if item is OVERFLOW:
                break
            consumed += len(item)
            yield item
    future.result()
    with open_blob() as f:
        f.seek(consumed)
        while chunk := f.read(COPY_CHUNK):
            yield chunk


def resolve(svc, ns: str, ref: refs.Reference, endpoint, want: platforms.Platform,
            lease: str, progress: ProgressFn):
    """Fetch and store the manifest (through an index if need be); returns
    (target descriptor, manifest descriptor, ImageManifest)."""
    repo = ref.path
    top = endpoint.get_manifest(repo, ref.object)
    if ref.digest and top.digest != ref.digest:
        raise InvalidArgument(f"pull {ref}: registry returned {top.digest}")
    progress(Progress(str(ref), RESOLVED, detail=top.digest))
    target = Descriptor(top.media_type, top.digest, len(top.data))
    man = top
    index_children: list[dict] = []
    if top.media_type in mediatypes.INDEXES:
        index_children = parse_index(top.data, f"index {top.digest}")
        chosen = platforms.select(index_children, want)
        man = endpoint.get_manifest(repo, chosen["digest"])
        if man.media_type not in mediatypes.MANIFESTS:
            raise InvalidArgument(f"pull {ref}: {chosen['digest']} is a {man.media_type}, "
                                  "not an image manifest")
    image = parse_manifest(man.data, man.media_type, f"manifest {man.digest}")
    man_desc = Descriptor(man.media_type, man.digest, len(man.data))
    # gc.py follows manifests, indexes and configs by their JSON: no labels needed
    svc.content.write_blob(ns, f"manifest-{man.digest}", man.data, man.digest, None, lease)
    if man is not top:
        svc.content.write_blob(ns, f"index-{top.digest}", top.data, top.digest, None, lease)
    return target, man_desc, image


def pull(svc, ns: str, text: str, *, platform: str = "", credentials: Credentials | None = None,
         progress: ProgressFn = discard, snapshotter: str | None = None,
         cancel_token: CancelToken | None = None) -> PullResult:
    """Pull an image into namespace ns (see the module docstring).

    Args:
        svc: the images service (service.ImageService): content, snapshots, images,
            leases, registry client, fetcher.
        text: the reference as the user typed it.
        platform: `os/arch[/variant]`; empty = this host.
        cancel_token: cancelling it makes the pull raise PullCancelled promptly.

    Raises:
        PullCancelled: the token was cancelled (nothing kept but resumable ingests).
        InvalidArgument: bad reference or platform; a blob or layer that fails
            verification (LayerError names it).
        NotFound: unknown repository, tag, or no manifest for the platform.
        PermissionDenied, Unavailable: from the registry.
    """
    ref = refs.parse(text)
    want = platforms.parse(platform) if platform else platforms.host()
    snapshotter = snapshotter or svc.snapshotter
    endpoint = svc.registry.endpoint(ref.domain, credentials)
    progress(Progress(str(ref), RESOLVING))
    lease = svc.leases.create(ns, labels={"dockyard.images/pull": str(ref)[:200]},
                              expires_at=time.time_ns() + LEASE_TTL_NS).id
    jobs = []
    staged: dict = {}  # layer index -> Future[_Staged]
    cancel = threading.Event()  # set when the pull fails: staging workers stop early
    ok = False
    taps: dict[int, Tap] = {}
    futures: dict[int, Future] = {}
    cancelled = PullCancelled(f"pull {ref}: cancelled")

    def on_cancel() -> None:
        # wake every wait of this pull: its taps, its download futures, its stagers
        cancel.set()
        for tap in list(taps.values()):
            tap.finish(cancelled)
        for fut in list(futures.values()):
            try:
                fut.set_exception(cancelled)
            except InvalidStateError:
                pass  # already done

    def check() -> None:
        if cancel_token is not None and cancel_token.is_cancelled():
            raise cancelled

    unregister = cancel_token.on_cancel(on_cancel) if cancel_token else (lambda: None)
    try:
        target, man_desc, image = resolve(svc, ns, ref, endpoint, want, lease, progress)
        check()
        config_data = svc.fetch_small(ns, endpoint, ref.path, image.config, lease)
        check()
        config = parse_config(config_data, len(image.layers), f"config {image.config.digest}")
        diff_ids = config["rootfs"]["diff_ids"]
        chains = chain_ids(diff_ids)
        # which layers need what
        have_snap = [svc.snapshot_exists(ns, snapshotter, c) for c in chains]
        top_present = max((i for i, h in enumerate(have_snap) if h), default=-1)
        # every blob we use on our own lease, also one another pull downloads or has
        # just downloaded: its lease may go (a failed or cancelled pull) before our record
        for layer in image.layers:
            svc.leases.add_resource(ns, lease, Resource(layer.digest, "content"))
        for i, layer in enumerate(image.layers):
            sid = short_id(layer.digest)
            need_unpack = i > top_present
            if svc.content_exists(ns, layer.digest):
                if not need_unpack:
                    progress(Progress(sid, EXISTS))
                continue
            progress(Progress(sid, WAITING))
            tap = Tap() if need_unpack else None
            fut, job, started = svc.fetcher.fetch(ns, endpoint, ref.path, layer, lease, progress,
                                                  tap)
            jobs.append(job)
            futures[i] = _follow(fut)
            if started and tap:
                taps[i] = tap
        if cancel_token is not None and cancel_token.is_cancelled():
            on_cancel()  # cancelled while the downloads were being set up
            raise cancelled
        # overlayfs layers do not need their parents' files to be unpacked: unpack
        # them side by side into staging dirs, then move each into its snapshot in
        # order (dockerd and containerd unpack one layer after the other)
        if snapshotter == "overlayfs" and svc.staging_root:
            stager = ThreadPoolExecutor(STAGE_WORKERS, thread_name_prefix="unpack")
            for i, layer in enumerate(image.layers):
                if i > top_present:
                    staged[i] = stager.submit(_stage, svc, ns, layer, taps.get(i),
                                              futures.get(i), progress, cancel)
            stager.shutdown(wait=False)
        for i, layer in enumerate(image.layers):
            sid = short_id(layer.digest)
            if i <= top_present:
                if i in futures:
                    futures[i].result()
                    progress(Progress(sid, EXISTS))
                continue
            parent = chains[i - 1] if i else ""
            stage = None
            if i in staged:
                try:
                    stage = staged[i].result()
                except NeedsParents:  # a hard link into a lower layer: unpack in place
                    stage = None
            if svc.snapshot_exists(ns, snapshotter, chains[i]):  # a concurrent pull did it
                progress(Progress(sid, EXISTS))
                continue
            if stage is None or not _place(svc, ns, snapshotter, stage, layer, diff_ids[i],
                                           chains[i], parent, lease):
                _unpack(svc, ns, snapshotter, layer, diff_ids[i], chains[i], parent, lease,
                        None if i in staged else taps.get(i), futures.get(i), progress)
            progress(Progress(sid, DONE))
            check()
        for fut in futures.values():
            fut.result()
        check()
        # pinned by digest, Docker keeps the tag only for display: the name is repo@digest
        name = str(ref.with_digest(ref.digest)) if ref.digest else str(ref)
        up_to_date = svc.set_image(ns, name, target)
        ok = True
        return PullResult(name, target, man_desc, image.config, up_to_date, chains)
    except Exception as err:
        if cancel_token is not None and cancel_token.is_cancelled() and err is not cancelled:
            # woken by the cancellation in whatever wait it was (a stager's LayerError...)
            raise cancelled from err
        raise
    finally:
        unregister()
        if not ok:
            cancel.set()
        for fut in staged.values():
            fut.cancel()
            if not fut.cancelled():
                try:
                    shutil.rmtree(fut.result(timeout=600).dir, ignore_errors=True)
                except Exception:  # noqa: BLE001 (its error is reported by the loop above)
                    pass
        for job in jobs:
            svc.fetcher.release(job)
        # downloads another pull still wants go on writing under our lease (their
        # ingest and blob record name it): it ends when they do, in the background
        shared = [job for job in jobs if not ok and not job.cancel.is_set()
                  and not job.future.done()]
        if not ok:
            for job in jobs:
                if job in shared:
                    continue
                try:
                    job.future.exception(timeout=60)
                except Exception:  # noqa: BLE001 (cancelled or still running: gc handles it)
                    pass
        if shared:
            threading.Thread(target=_end_lease_after, args=(svc, ns, lease, shared),
                             name="pull-lease", daemon=True).start()
        else:
            svc.end_lease(ns, lease, collect=not ok)


def _end_lease_after(svc, ns: str, lease: str, jobs: list) -> None:
    for job in jobs:
        try:
            job.future.exception(timeout=LEASE_TTL_NS / 1e9)
        except Exception:  # noqa: BLE001 (still running after the lease's TTL: it expires)
            pass
    try:
        svc.end_lease(ns, lease, collect=True)
    except Exception as err:  # noqa: BLE001 (closing down: the lease expires on its own)
        log.warning("end lease after shared downloads lease=%s: %s", lease, err)


@dataclass
class _Staged:
    dir: str
    result: ApplyResult


def _stage(svc, ns: str, layer: Descriptor, tap: Tap | None, future,
           progress: ProgressFn, cancel: threading.Event | None = None) -> _Staged:
    """Unpack a layer (overlay form) into a fresh staging dir; its blob verified too."""
    d = tempfile.mkdtemp(prefix="layer-", dir=svc.staging_root)
    try:
        os.chmod(d, 0o755)
        fut = future if future is not None else _Done()
        reader = ChunkReader(_layer_chunks(tap, fut, lambda: svc.content.open(ns, layer.digest)))
        sid = short_id(layer.digest)
        progress(Progress(sid, EXTRACTING, 0, layer.size))
        result = apply_layer(_Counting(reader, sid, layer.size, progress, cancel), d,
                             compression=mediatypes.compression(layer.media_type), overlay=True,
                             layer=layer.digest, standalone=True, empty_root=True)
        fut.result()
        progress(Progress(sid, EXTRACTING, layer.size, layer.size))
        return _Staged(d, result)
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise


def _place(svc, ns: str, snapshotter: str, stage: _Staged, layer: Descriptor, diff_id: str,
           chain: str, parent: str, lease: str) -> bool:
    """Move a staged layer into a new snapshot on its parent and commit it.

    Returns False (nothing done) when the staging dir is on another filesystem.
    """
    try:
        if stage.result.diff_id != diff_id:
            raise LayerError(f"layer {layer.digest}: unpacked content has diff_id "
                             f"{stage.result.diff_id}, but the image config says {diff_id}")
        key = f"extract-{uuid.uuid4().hex}-{chain}"
        mounts = svc.snapshots.prepare(ns, snapshotter, key, parent, lease=lease)
        committed = False
        try:
            root, lowers, _ = _target(mounts, snapshotter)
            try:
                for name in os.listdir(stage.dir):
                    os.rename(os.path.join(stage.dir, name), os.path.join(root, name))
            except OSError as err:
                if err.errno == errno.EXDEV:
                    return False
                raise
            try:
                os.setxattr(root, OVERLAY_OPAQUE_XATTR,
                            os.getxattr(stage.dir, OVERLAY_OPAQUE_XATTR))
            except OSError:
                pass  # no opaque marker at the layer's root (the usual case)
            inherit_dir_attrs(root, stage.result.implicit_dirs, lowers)
            try:
                svc.snapshots.commit(ns, snapshotter, chain, key,
                                     labels={SIZE_LABEL: str(stage.result.size)}, lease=lease)
                committed = True
            except AlreadyExists:
                pass  # another pull committed the same chain first: ours goes
        finally:
            if not committed:
                try:
                    svc.snapshots.remove(ns, snapshotter, key)
                except NotFound:
                    pass
        return True
    finally:
        shutil.rmtree(stage.dir, ignore_errors=True)


def _unpack(svc, ns: str, snapshotter: str, layer: Descriptor, diff_id: str, chain: str,
            parent: str, lease: str, tap: Tap | None, future, progress: ProgressFn) -> None:
    sid = short_id(layer.digest)
    key = f"extract-{uuid.uuid4().hex}-{chain}"
    mounts = svc.snapshots.prepare(ns, snapshotter, key, parent, lease=lease)
    committed = False
    try:
        root, lowers, overlay = _target(mounts, snapshotter)
        future_obj = future if future is not None else _Done()  # None: blob in the store
        reader = ChunkReader(_layer_chunks(tap, future_obj,
                                           lambda: svc.content.open(ns, layer.digest)))
        progress(Progress(sid, EXTRACTING, 0, layer.size))
        compression = mediatypes.compression(layer.media_type)
        result = apply_layer(_Counting(reader, sid, layer.size, progress), root,
                             compression=compression, overlay=overlay, parents=lowers,
                             layer=layer.digest)
        future_obj.result()  # the blob itself verified
        if result.diff_id != diff_id:
            raise LayerError(f"layer {layer.digest}: unpacked content has diff_id "
                             f"{result.diff_id}, but the image config says {diff_id}")
        progress(Progress(sid, EXTRACTING, layer.size, layer.size))
        try:
            svc.snapshots.commit(ns, snapshotter, chain, key,
                                 labels={SIZE_LABEL: str(result.size)}, lease=lease)
            committed = True
        except AlreadyExists:
            pass  # another pull committed the same chain first: ours goes
    finally:
        if not committed:
            try:
                svc.snapshots.remove(ns, snapshotter, key)
            except NotFound:
                pass


class _Done:
    def result(self, timeout=None):
        return None


class _Counting:
    """Reports extraction progress by compressed bytes read."""

    def __init__(self, src: ChunkReader, sid: str, total: int, progress: ProgressFn,
                 cancel: threading.Event | None = None):
        self.src, self.sid, self.total, self.progress = src, sid, total, progress
        self.cancel = cancel
        self._last = 0.0

    def read(self, n: int = -1) -> bytes:
        if self.cancel is not None and self.cancel.is_set():
            raise LayerError(f"layer {self.sid}: unpacking cancelled (the pull failed)")
        data = self.src.read(n)
        now = time.monotonic()
        if now - self._last > 0.1:
            self._last = now
            self.progress(Progress(self.sid, EXTRACTING, self.src.consumed, self.total))
        return data


def _target(mounts, snapshotter: str) -> tuple[str, list[str], bool]:
    """(directory to write, lower dirs topmost first, overlay whiteouts?) from mounts."""
    if len(mounts) != 1:
        raise InvalidArgument(f"unpack: cannot apply to {len(mounts)} mounts")
    m = mounts[0]
    if m.type == "bind":
        return m.source, [], snapshotter == "overlayfs"
    if m.type == "overlay":
        opts = dict(o.split("=", 1) for o in m.options if "=" in o)
        if "upperdir" not in opts:
            raise InvalidArgument("unpack: overlay mount without upperdir")
        lowers = opts.get("lowerdir", "").split(":") if opts.get("lowerdir") else []
        return opts["upperdir"], lowers, True
    raise InvalidArgument(f"unpack: unsupported mount type {m.type!r}")


def unpack_image(svc, ns: str, layers: list[Descriptor], diff_ids: list[str], lease: str,
                 progress: ProgressFn = discard, snapshotter: str | None = None) -> list[str]:
    """Unpack layers whose blobs are in the content store (load, import, commit).

    Existing chain IDs are skipped; every unpacked layer is checked against its
    diff_id. Returns the chain IDs.
    """
    snapshotter = snapshotter or svc.snapshotter
    if len(layers) != len(diff_ids):
        raise InvalidArgument(f"unpack: {len(layers)} layers but {len(diff_ids)} diff_ids")
    chains = chain_ids(diff_ids)
    for i, layer in enumerate(layers):
        if svc.snapshot_exists(ns, snapshotter, chains[i]):
            progress(Progress(short_id(layer.digest), EXISTS))
            continue
        _unpack(svc, ns, snapshotter, layer, diff_ids[i], chains[i],
                chains[i - 1] if i else "", lease, None, None, progress)
        progress(Progress(short_id(layer.digest), DONE))
    return chains
