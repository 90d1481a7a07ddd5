"""Push: an image's blobs, then its manifest(s), to a registry.

Owns the order of a push and its economies: children before parents (layers
and config, then each platform manifest, then the index), a HEAD per blob to
skip what the registry has, a cross-repository mount when the blob came
from another repository of the same registry (the image's other names
tell), and the tag last. Blobs are read from the content store; a layer
whose blob is not there (an image loaded from an archive that carried only
uncompressed layers is stored with them, so this is rare) fails the push
with an error naming it. Progress: preparing, pushing (bytes), mounted,
layer already exists, pushed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dockyard.errdefs import InvalidArgument, NotFound

from . import mediatypes
from . import reference as refs
from .auth import Credentials
from .manifest import Descriptor, parse_index, parse_manifest
from .progress import (
    LAYER_EXISTS,
    MOUNTED,
    PREPARING,
    PUSHED,
    PUSHING,
    Progress,
    ProgressFn,
    discard,
    short_id,
)

__all__ = ["PushResult", "push"]

log = logging.getLogger(__name__)

CHUNKED_ABOVE = 64 << 20  # blobs bigger than this go up in PATCH chunks of this size


@dataclass
class PushResult:
    reference: str
    digest: str
    size: int
    tag: str


def push(svc, ns: str, name: str, reference: str = "", *,
         credentials: Credentials | None = None, progress: ProgressFn = discard,
         chunk_size: int | None = None) -> PushResult:
    """Push the image `name` (a name or ID) to `reference` (default: its own name).

    Raises:
        NotFound: no such image, or a blob missing from the store.
        InvalidArgument: a reference without a repository to push to.
        PermissionDenied, Unavailable: from the registry.
    """
    img = svc.resolve(ns, name)
    if reference:
        dest = refs.parse(reference)
    else:
        try:
            dest = refs.parse(name)
        except InvalidArgument:
            raise InvalidArgument(f"push {name}: give a repository name to push an image "
                                  "ID to") from None
    endpoint = svc.registry.endpoint(dest.domain, credentials)
    repo = dest.path
    # other repositories of the same registry holding this image: mount sources
    sources = []
    for other in img.names:
        try:
            r = refs.parse(other)
        except InvalidArgument:
            continue
        if r.domain == dest.domain and r.path != repo and r.path not in sources:
            sources.append(r.path)
    target = img.target
    manifests: list[Descriptor] = []
    if target.media_type in mediatypes.INDEXES:
        for child in parse_index(svc.content.read_all(ns, target.digest)):
            d = Descriptor.from_dict(child, f"index {target.digest}")
            if svc.content_exists(ns, d.digest):
                manifests.append(d)
        if len(manifests) != len(parse_index(svc.content.read_all(ns, target.digest))):
            # a partial index (only this platform pulled) cannot be pushed as is
            target = img.manifest
            manifests = [img.manifest]
    else:
        manifests = [target]
    pushed: set[str] = set()
    for man in manifests:
        image = parse_manifest(svc.content.read_all(ns, man.digest), man.media_type,
                               f"manifest {man.digest}")
        for desc in [*image.layers, image.config]:
            if desc.digest in pushed:
                continue
            _push_blob(svc, ns, endpoint, repo, desc, sources, progress, chunk_size,
                       is_layer=desc is not image.config)
            pushed.add(desc.digest)
        if man.digest != target.digest:
            endpoint.put_manifest(repo, man.digest, man.media_type,
                                  svc.content.read_all(ns, man.digest))
    tag = dest.tag if dest.tag and not dest.digest else (dest.digest or "latest")
    data = svc.content.read_all(ns, target.digest)
    digest = endpoint.put_manifest(repo, tag, target.media_type, data)
    return PushResult(str(dest), digest, len(data), dest.tag or "")


def _push_blob(svc, ns, endpoint, repo: str, desc: Descriptor, sources: list[str],
               progress: ProgressFn, chunk_size: int | None, is_layer: bool) -> None:
    sid = short_id(desc.digest)
    report = progress if is_layer else discard
    report(Progress(sid, PREPARING))
    if endpoint.blob_exists(repo, desc.digest):
        report(Progress(sid, LAYER_EXISTS))
        return
    for src in sources:
        if endpoint.mount_blob(repo, desc.digest, src):
            report(Progress(sid, MOUNTED, detail=src))
            return
    if not svc.content_exists(ns, desc.digest):
        raise NotFound(f"push: blob {desc.digest} is not in the content store")
    if chunk_size is None and desc.size > CHUNKED_ABOVE:
        chunk_size = CHUNKED_ABOVE

    def on_bytes(n: int) -> None:
        report(Progress(sid, PUSHING, n, desc.size))

    endpoint.upload_blob(repo, desc.digest, desc.size, svc.content.read(ns, desc.digest),
                         on_bytes=on_bytes, chunk_size=chunk_size)
    report(Progress(sid, PUSHED, desc.size, desc.size))
