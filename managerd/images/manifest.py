"""Image manifests, configs and their derived ids: parse, validate, chain IDs.

Pure: works on bytes and dicts. The content store, registry and snapshots
are the callers' business.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from dockyard.errdefs import InvalidArgument

from . import mediatypes

__all__ = ["Descriptor", "ImageManifest", "parse_manifest", "parse_index", "chain_ids",
           "parse_config", "digest_of", "GC_CONTENT", "GC_SNAPSHOT", "SNAPSHOT_LABEL",
           "SIZE_LABEL", "UNCOMPRESSED_LABEL"]

# containerd's garbage-collection labels: content carrying them keeps what they name alive
GC_CONTENT = "containerd.io/gc.ref.content"
GC_SNAPSHOT = "containerd.io/gc.ref.snapshot"
SNAPSHOT_LABEL = "containerd.io/snapshot.ref"
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"
SIZE_LABEL = "dockyard.io/images.size"  # on layer snapshots: bytes of file content unpacked


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict = field(default_factory=dict, hash=False, compare=False)
    platform: dict | None = field(default=None, hash=False, compare=False)
    urls: tuple = ()

    @classmethod
    def from_dict(cls, d: dict, what: str) -> Descriptor:
        try:
            desc = cls(d["mediaType"], d["digest"], int(d["size"]), d.get("annotations") or {},
                       d.get("platform"), tuple(d.get("urls") or ()))
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidArgument(f"{what}: invalid descriptor {d!r}: {err}") from err
        if not desc.digest.startswith("sha256:") or len(desc.digest) != 71 or desc.size < 0:
            raise InvalidArgument(f"{what}: invalid descriptor digest {desc.digest!r} "
                                  f"or size {desc.size}")
        return desc

    def to_dict(self) -> dict:
        d: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform:
            d["platform"] = dict(self.platform)
        if self.urls:
            d["urls"] = list(self.urls)
        return d


@dataclass(frozen=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: list[Descriptor]


def _load(data: bytes, what: str) -> dict:
    try:
        doc = json.loads(data)
    except ValueError as err:
        raise InvalidArgument(f"{what}: not JSON: {err}") from err
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what}: not a JSON object")
    return doc


def parse_manifest(data: bytes, media_type: str, what: str = "manifest") -> ImageManifest:
    """Parse an OCI or Docker schema2 image manifest.

    Raises:
        InvalidArgument: not an image manifest, or a layer type this engine cannot unpack.
    """
    doc = _load(data, what)
    if doc.get("schemaVersion") != 2:
        raise InvalidArgument(f"{what}: unsupported schemaVersion {doc.get('schemaVersion')!r}")
    if "config" not in doc or not isinstance(doc.get("layers", []), list):
        raise InvalidArgument(f"{what}: has no config/layers (media type {media_type})")
    config = Descriptor.from_dict(doc["config"], what)
    layers = [Descriptor.from_dict(x, what) for x in doc.get("layers") or []]
    for layer in layers:
        try:
            mediatypes.compression(layer.media_type)
        except ValueError as err:
            raise InvalidArgument(f"{what}: layer {layer.digest}: {err}") from None
    return ImageManifest(media_type, config, layers)


def parse_index(data: bytes, what: str = "index") -> list[dict]:
    """The `manifests` of an OCI index or Docker manifest list."""
    doc = _load(data, what)
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise InvalidArgument(f"{what}: has no manifests list")
    for m in manifests:
        Descriptor.from_dict(m, what)
    return manifests


def parse_config(data: bytes, n_layers: int | None = None, what: str = "config") -> dict:
    """Parse an image config and check its diff_ids (one per layer when n_layers is given)."""
    doc = _load(data, what)
    diff_ids = (doc.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and d.startswith("sha256:")
                                                 and len(d) == 71 for d in diff_ids):
        raise InvalidArgument(f"{what}: rootfs.diff_ids missing or malformed")
    if n_layers is not None and len(diff_ids) != n_layers:
        raise InvalidArgument(f"{what}: {len(diff_ids)} diff_ids for {n_layers} layers")
    return doc


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else digest_of(f"{out[-1]} {d}".encode()))
    return out
