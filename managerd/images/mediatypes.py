"""Media types of manifests, indexes, configs and layers (OCI and Docker schema2)."""

from __future__ import annotations

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYOUT_HEADER = "application/vnd.oci.image.layout.header.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+prettyjws",
                  "application/vnd.docker.distribution.manifest.v1+json")

INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
# Sent on every manifest request: without the schema2 type distribution 2.8
# down-converts to schema1, and OCI manifests are 404 unless their type is accepted.
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))


def compression(media_type: str) -> str:
    """"gzip", "zstd" or "none" for a layer media type.

    Raises:
        ValueError: not a layer type this engine unpacks.
    """
    if media_type in (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP, OCI_LAYER_ND_GZIP, DOCKER_FOREIGN):
        return "gzip"
    if media_type == OCI_LAYER_ZSTD:
        return "zstd"
    if media_type in (OCI_LAYER, DOCKER_LAYER, "application/vnd.oci.image.layer.nondistributable.v1.tar"):
        return "none"
    raise ValueError(f"unsupported layer media type {media_type!r}")


def guess_manifest_type(data: bytes | dict) -> str:
    """The media type of a manifest whose Content-Type is missing or generic."""
    import json
    doc = json.loads(data) if isinstance(data, bytes | str) else data
    if doc.get("mediaType"):
        return doc["mediaType"]
    if "manifests" in doc:
        return OCI_INDEX
    if doc.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1[0]
    return OCI_MANIFEST
