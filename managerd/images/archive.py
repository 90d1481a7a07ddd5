"""save and load: images to and from `docker save` tars and OCI image layouts.

save writes an OCI image layout (oci-layout, index.json, blobs/sha256/*)
holding the blobs exactly as stored (so digests and RepoDigests survive a
round trip), plus, in the "docker" format, Docker's manifest.json and
repositories pointing into blobs/ (Docker 25+ writes the same shape; docker
load accepts compressed layer files). load reads either shape, and Docker's
legacy one (<id>/layer.tar, <config>.json): every file is streamed into the
content store (verified when its name is a digest), then each image's layers
are unpacked into snapshots, checked against the config's diff_ids, and its
names set. All under a lease: a bad archive leaves nothing behind.
"""

from __future__ import annotations

import json
import re
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from dockyard.errdefs import AlreadyExists, InvalidArgument

from . import mediatypes, platforms
from . import reference as refs
from .manifest import Descriptor, digest_of, parse_config, parse_index, parse_manifest
from .progress import LOADED, LOADING, Progress, ProgressFn, discard
from .pull import LEASE_TTL_NS, unpack_image
from .service import DANGLING, SOURCE_LABEL, ResolvedImage
from .tarstream import END, regular

__all__ = ["save", "load", "LoadResult"]

_BLOB = re.compile(r"^blobs/sha256/([a-f0-9]{64})$")
_CONFIG = re.compile(r"^([a-f0-9]{64})\.json$")
SMALL_MAX = 16 << 20
SMALL_NAMES = ("manifest.json", "repositories", "index.json", "oci-layout")
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass
class LoadResult:
    names: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)


# --- save ------------------------------------------------------------------------------------

def _json_entry(name: str, doc) -> Iterator[bytes]:
    data = json.dumps(doc, separators=(",", ":")).encode()
    return regular(name, len(data), [data])


def save(svc, ns: str, names: list[str], fmt: str = "docker") -> Iterator[bytes]:
    """The tar of the named images (names or IDs), as a stream of chunks.

    Raises:
        NotFound: an image does not exist (before any byte is produced).
        InvalidArgument: unknown format.
    """
    if fmt not in ("docker", "oci"):
        raise InvalidArgument(f"save: unknown format {fmt!r} (docker or oci)")
    if not names:
        raise InvalidArgument("save: no images named")
    chosen: list[tuple[ResolvedImage, list[str]]] = []
    for text in names:
        img = svc.resolve(ns, text)
        try:
            as_name = str(refs.parse(text))
            tags = [as_name] if as_name in img.names else []
        except InvalidArgument:
            tags = []
        if not tags and not _looks_like_name(text, img):
            tags = [n for n in img.names if not n.startswith(DANGLING)]
        chosen.append((img, tags))
    return _save_stream(svc, ns, chosen, fmt)


def _looks_like_name(text: str, img: ResolvedImage) -> bool:
    try:
        return str(refs.parse(text)) in img.names
    except InvalidArgument:
        return False


def _save_stream(svc, ns: str, chosen, fmt: str) -> Iterator[bytes]:
    now = time.time()
    yield from _json_entry("oci-layout", {"imageLayoutVersion": "1.0.0"})
    written: set[str] = set()
    index: list[dict] = []
    manifest_json: list[dict] = []
    repositories: dict[str, dict[str, str]] = {}
    for img, tags in chosen:
        for desc in [*img.layers, img.config_desc, img.manifest]:
            if desc.digest in written:
                continue
            written.add(desc.digest)
            yield from regular(f"blobs/sha256/{desc.digest[7:]}", desc.size,
                               svc.content.read(ns, desc.digest), 0o444, now)
        base = img.manifest.to_dict()
        base.pop("platform", None)
        if tags:
            for tag in tags:
                ref = refs.parse(tag)
                index.append({**base, "annotations": {NAME_ANNOTATION: tag,
                                                      REF_ANNOTATION: ref.tag or ""}})
        else:
            index.append(base)
        manifest_json.append({"Config": f"blobs/sha256/{img.id[7:]}",
                              "RepoTags": [refs.parse(t).familiar() for t in tags],
                              "Layers": [f"blobs/sha256/{d.digest[7:]}" for d in img.layers]})
        for tag in tags:
            ref = refs.parse(tag)
            if img.layers:
                repositories.setdefault(ref.familiar_name(), {})[ref.tag or "latest"] = \
                    img.layers[-1].digest[7:]
    yield from _json_entry("index.json", {"schemaVersion": 2,
                                          "mediaType": mediatypes.OCI_INDEX,
                                          "manifests": index})
    if fmt == "docker":
        yield from _json_entry("manifest.json", manifest_json)
        yield from _json_entry("repositories", repositories)
    yield END


# --- load ------------------------------------------------------------------------------------

def _norm(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"load: archive entry {name!r} climbs out with '..'")
    return "/".join(parts)


def load(svc, ns: str, reader, progress: ProgressFn = discard) -> LoadResult:
    """Load every image of a `docker save` tar or OCI layout tar read from reader.

    Raises:
        InvalidArgument: not a tar, no manifest.json/index.json, a blob that does not
            match its name, a missing file, a layer that fails its diff_id.
    """
    lease = svc.leases.create(ns, labels={"dockyard.images/load": "1"},
                              expires_at=time.time_ns() + LEASE_TTL_NS).id
    ok = False
    try:
        files, small = _ingest(svc, ns, reader, lease, progress)
        result = _register(svc, ns, files, small, lease, progress)
        ok = True
        return result
    finally:
        svc.end_lease(ns, lease, collect=not ok)


def _ingest(svc, ns: str, reader, lease: str, progress: ProgressFn):
    files: dict[str, tuple[str, int]] = {}
    small: dict[str, bytes] = {}
    links: dict[str, str] = {}
    try:
        tf = tarfile.open(fileobj=reader, mode="r|", bufsize=1 << 20)
    except tarfile.TarError as err:
        raise InvalidArgument(f"load: not a tar archive: {err}") from err
    try:
        for ti in tf:
            name = _norm(ti.name)
            if ti.issym() or ti.islnk():
                target = ti.linkname if ti.islnk() else \
                    "/".join([*name.split("/")[:-1], ti.linkname])
                links[name] = _norm(target)
                continue
            if not ti.isreg():
                continue
            src = tf.extractfile(ti)
            if name in SMALL_NAMES or name.endswith("/json") or name.endswith("/VERSION"):
                if ti.size > SMALL_MAX:
                    raise InvalidArgument(f"load: {name} is too large ({ti.size} bytes)")
                small[name] = src.read()
                continue
            m = _BLOB.match(name) or _CONFIG.match(name)
            expected = f"sha256:{m.group(1)}" if m else None
            files[name] = (_store(svc, ns, name, src, ti.size, expected, lease, progress),
                           ti.size)
    except tarfile.TarError as err:
        raise InvalidArgument(f"load: broken tar archive: {err}") from err
    for name, target in links.items():
        if target in files:
            files[name] = files[target]
        elif target in small:
            small[name] = small[target]
    return files, small


def _store(svc, ns: str, name: str, src, size: int, expected: str | None, lease: str,
           progress: ProgressFn) -> str:
    try:
        w = svc.content.writer(ns, f"load-{uuid.uuid4().hex}", expected, size, lease)
    except AlreadyExists:
        return expected  # type: ignore[return-value]
    with w:
        last = 0.0
        while chunk := src.read(1 << 20):
            w.write(chunk)
            now = time.monotonic()
            if now - last > 0.1:
                last = now
                progress(Progress(name[-12:] if not expected else expected[7:19], LOADING,
                                  w.offset, size))
        try:
            return w.commit(size, expected).digest
        except AlreadyExists:
            return w.digest()
        except InvalidArgument as err:
            w.abort()
            raise InvalidArgument(f"load: archive file {name}: content does not match: "
                                  f"{err}") from err


def _layer_type(svc, ns: str, digest: str) -> str:
    with svc.content.open(ns, digest) as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return mediatypes.DOCKER_LAYER_GZIP
    if magic == b"\x28\xb5\x2f\xfd":
        return mediatypes.OCI_LAYER_ZSTD
    return mediatypes.DOCKER_LAYER


def _need(files: dict, path: str, what: str) -> tuple[str, int]:
    try:
        return files[_norm(path)]
    except KeyError:
        raise InvalidArgument(f"load: {what} {path!r} is not in the archive") from None


def _register(svc, ns: str, files, small, lease: str, progress: ProgressFn) -> LoadResult:
    images: list[tuple[Descriptor, list[str]]] = []  # (manifest or index desc, names)
    oci_by_config: dict[str, Descriptor] = {}
    index_entries: list[dict] = []
    if "index.json" in small:
        index_entries = parse_index(small["index.json"], "load: index.json")
        for d in index_entries:
            desc = Descriptor.from_dict(d, "load: index.json")
            if desc.media_type in mediatypes.MANIFESTS and svc.content_exists(ns, desc.digest):
                man = parse_manifest(svc.content.read_all(ns, desc.digest), desc.media_type)
                oci_by_config[man.config.digest] = desc
    if "manifest.json" in small:
        try:
            entries = json.loads(small["manifest.json"])
        except ValueError as err:
            raise InvalidArgument(f"load: manifest.json is not JSON: {err}") from err
        for entry in entries:
            config_digest, config_size = _need(files, entry["Config"], "config")
            layers = [_need(files, p, "layer") for p in entry.get("Layers") or []]
            desc = oci_by_config.get(config_digest)
            if desc is None:
                desc = _docker_manifest(svc, ns, config_digest, config_size, layers, lease)
            names = [str(refs.parse(t)) for t in entry.get("RepoTags") or []]
            images.append((desc, names))
    elif index_entries:
        for d in index_entries:
            desc = Descriptor.from_dict(d, "load: index.json")
            ann = d.get("annotations") or {}
            name = ann.get(NAME_ANNOTATION) or ""
            ref_name = ann.get(REF_ANNOTATION, "")
            if not name and ("/" in ref_name or ":" in ref_name):
                name = ref_name  # a full reference; a bare tag names no repository
            images.append((desc, [str(refs.parse(name))] if name else []))
    else:
        raise InvalidArgument("load: the archive has neither manifest.json nor index.json "
                              "(not a docker save or OCI layout tar)")
    result = LoadResult()
    for desc, names in images:
        man_desc = desc
        if desc.media_type in mediatypes.INDEXES:
            children = [c for c in parse_index(svc.content.read_all(ns, desc.digest))
                        if svc.content_exists(ns, c["digest"])]
            man_desc = Descriptor.from_dict(platforms.select(children, svc.platform), "index")
        man = parse_manifest(svc.content.read_all(ns, man_desc.digest), man_desc.media_type,
                             f"load: manifest {man_desc.digest}")
        config = parse_config(svc.content.read_all(ns, man.config.digest), len(man.layers),
                              f"load: config {man.config.digest}")
        unpack_image(svc, ns, man.layers, config["rootfs"]["diff_ids"], lease, progress)
        for name in names:
            svc.set_image(ns, name, desc, {SOURCE_LABEL: "local"})
            result.names.append(name)
            progress(Progress(refs.parse(name).familiar(), LOADED))
        if not names:
            svc.set_image(ns, DANGLING + man.config.digest, desc, {SOURCE_LABEL: "local"})
            result.ids.append(man.config.digest)
            progress(Progress(man.config.digest, LOADED))
    return result


def _docker_manifest(svc, ns: str, config_digest: str, config_size: int,
                     layers: list[tuple[str, int]], lease: str) -> Descriptor:
    """A Docker schema2 manifest for a legacy archive entry, stored in the content store."""
    doc = {"schemaVersion": 2, "mediaType": mediatypes.DOCKER_MANIFEST,
           "config": {"mediaType": mediatypes.DOCKER_CONFIG, "digest": config_digest,
                      "size": config_size},
           "layers": [{"mediaType": _layer_type(svc, ns, d), "digest": d, "size": s}
                      for d, s in layers]}
    data = json.dumps(doc, indent=3).encode()
    digest = digest_of(data)
    svc.content.write_blob(ns, f"load-manifest-{digest}", data, digest, lease=lease)
    return Descriptor(mediatypes.DOCKER_MANIFEST, digest, len(data))
