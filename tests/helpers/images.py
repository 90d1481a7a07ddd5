"""Build OCI and Docker images in memory, push them with plain HTTP, write archives.

Independent of dockyard's own registry client on purpose: fixtures must not
be built by the code under test.

    from helpers import images
    img = images.busybox_image(cmd=["sh"])              # one busybox layer, OCI media types
    images.push(registry, "busybox", "latest", img)     # registry: helpers.registry.Registry
    -> pull f"{registry.host}/busybox:latest"

Layers are built from entry lists (``file``, ``dir``, ``symlink``, ``hardlink``,
``whiteout``, ``opaque``, ``device``) or from a directory; ``multi_platform``
makes an index of per-platform images; ``docker_archive`` and ``oci_archive``
give `docker save`-style tars for load tests.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import json
import re
import tarfile
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from helpers.busybox import make_rootfs

__all__ = ["Blob", "Image", "Index", "file", "dir", "symlink", "hardlink", "whiteout",
           "opaque", "device", "tar_layer", "dir_layer", "busybox_tar", "compress",
           "make_image", "busybox_image", "multi_platform", "push", "push_blob",
           "docker_archive", "oci_archive", "OCI", "DOCKER"]

OCI = {"manifest": "application/vnd.oci.image.manifest.v1+json",
       "index": "application/vnd.oci.image.index.v1+json",
       "config": "application/vnd.oci.image.config.v1+json",
       "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
       "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
       "none": "application/vnd.oci.image.layer.v1.tar"}
DOCKER = {"manifest": "application/vnd.docker.distribution.manifest.v2+json",
          "index": "application/vnd.docker.distribution.manifest.list.v2+json",
          "config": "application/vnd.docker.container.image.v1+json",
          "gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
          "none": "application/vnd.docker.image.rootfs.diff.tar"}
MTIME = 1700000000  # fixed, so the same helper call gives the same digests


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Blob:
    media_type: str
    data: bytes
    platform: dict | None = None

    @property
    def digest(self) -> str:
        return sha256(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> dict:
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            d["platform"] = self.platform
        return d


@dataclass
class Image:
    """A manifest with its config and layer blobs; `diff_ids` are the uncompressed digests."""

    manifest: Blob
    config: Blob
    layers: list[Blob]
    diff_ids: list[str]
    uncompressed: list[bytes] = field(repr=False, default_factory=list)

    @property
    def digest(self) -> str:
        """The manifest digest (RepoDigests)."""
        return self.manifest.digest

    @property
    def id(self) -> str:
        """Docker's image ID: the config digest."""
        return self.config.digest

    def config_json(self) -> dict:
        return json.loads(self.config.data)

    def blobs(self) -> list[Blob]:
        return [*self.layers, self.config]


@dataclass
class Index:
    """A multi-platform index of images (each manifest carries its platform)."""

    manifest: Blob
    images: list[Image]

    @property
    def digest(self) -> str:
        return self.manifest.digest


# --- layer entries -------------------------------------------------------------------------

def _info(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0,
          mtime: int = MTIME) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = kind, mode, uid, gid, mtime
    return ti


def file(name: str, data: bytes | str = b"", mode: int = 0o644, uid: int = 0, gid: int = 0,
         mtime: int = MTIME, xattrs: dict[str, str] | None = None):
    """A regular file entry (xattrs as PAX SCHILY.xattr.* records)."""
    data = data.encode() if isinstance(data, str) else data
    ti = _info(name, tarfile.REGTYPE, mode, uid, gid, mtime)
    ti.size = len(data)
    if xattrs:
        ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    return ti, data


def dir(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: int = MTIME):  # noqa: A001
    return _info(name, tarfile.DIRTYPE, mode, uid, gid, mtime), None


def symlink(name: str, target: str):
    ti = _info(name, tarfile.SYMTYPE, 0o777)
    ti.linkname = target
    return ti, None


def hardlink(name: str, target: str):
    ti = _info(name, tarfile.LNKTYPE, 0o644)
    ti.linkname = target
    return ti, None


def device(name: str, kind: str = "char", major: int = 1, minor: int = 3, mode: int = 0o666):
    ti = _info(name, tarfile.CHRTYPE if kind == "char" else tarfile.BLKTYPE, mode)
    ti.devmajor, ti.devminor = major, minor
    return ti, None


def whiteout(path: str):
    """Delete `path` from lower layers (an empty `.wh.<name>` file)."""
    parent, _, base = path.rstrip("/").rpartition("/")
    return file(f"{parent}/.wh.{base}" if parent else f".wh.{base}")


def opaque(dirpath: str):
    """Hide everything lower layers have inside dirpath."""
    return file(f"{dirpath.rstrip('/')}/.wh..wh..opq")


def tar_layer(entries) -> bytes:
    """An uncompressed PAX tar of (TarInfo, data) entries, in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def dir_layer(path: str | Path) -> bytes:
    """An uncompressed tar of a directory's contents (root-owned, fixed mtimes, sorted)."""
    def norm(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        ti.mtime = MTIME
        return ti

    root = Path(path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for p in sorted(root.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(root)), recursive=False, filter=norm)
    return buf.getvalue()


@functools.cache
def busybox_tar() -> bytes:
    """The busybox root filesystem (helpers.busybox.make_rootfs) as one uncompressed tar."""
    with tempfile.TemporaryDirectory() as tmp:
        return dir_layer(make_rootfs(Path(tmp) / "rootfs"))


def compress(tar: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(tar, compresslevel=1, mtime=0)
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdCompressor().compress(tar)
    if compression == "none":
        return tar
    raise ValueError(f"unknown compression {compression!r}")


# --- images --------------------------------------------------------------------------------

def make_image(layers: list[bytes], *, fmt: str = "oci", compression: str = "gzip",
               arch: str = "amd64", os_name: str = "linux", variant: str | None = None,
               history: list[dict] | None = None, diff_ids: list[str] | None = None,
               created: str = "2024-01-01T00:00:00Z", **config) -> Image:
    """An image of the given uncompressed layer tars.

    Args:
        layers: uncompressed tars (tar_layer, dir_layer, busybox_tar).
        fmt: "oci" or "docker" media types.
        compression: "gzip", "zstd" (OCI only) or "none", for every layer.
        diff_ids: override the config's diff_ids (to build a lying image).
        **config: the image config's `config` section in Docker's spelling
            (Cmd, Env, Entrypoint, WorkingDir, ExposedPorts, Labels, User, ...);
            lowercase keys (cmd=...) are capitalised for convenience.
    """
    types = OCI if fmt == "oci" else DOCKER
    blobs = [Blob(types[compression], compress(t, compression)) for t in layers]
    cfg_section = {_docker_key(k): v for k, v in config.items()}
    cfg = {"architecture": arch, "os": os_name, "created": created, "config": cfg_section,
           "rootfs": {"type": "layers", "diff_ids": diff_ids or [sha256(t) for t in layers]},
           "history": history or [{"created": created, "created_by": f"layer {i}"}
                                  for i in range(len(layers))]}
    if variant:
        cfg["variant"] = variant
    config_blob = Blob(types["config"], json.dumps(cfg, sort_keys=True).encode())
    manifest = {"schemaVersion": 2, "mediaType": types["manifest"],
                "config": config_blob.descriptor(), "layers": [b.descriptor() for b in blobs]}
    man_blob = Blob(types["manifest"], json.dumps(manifest, indent=2).encode())
    return Image(man_blob, config_blob, blobs, cfg["rootfs"]["diff_ids"], list(layers))


def _docker_key(key: str) -> str:
    special = {"workingdir": "WorkingDir", "exposedports": "ExposedPorts",
               "stopsignal": "StopSignal", "working_dir": "WorkingDir",
               "exposed_ports": "ExposedPorts", "stop_signal": "StopSignal"}
    return special.get(key.lower(), key[0].upper() + key[1:])


def busybox_image(extra_layers: list[bytes] = (), **kwargs) -> Image:
    """busybox as the first layer, then extra_layers; kwargs as for make_image."""
    kwargs.setdefault("Env", ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    kwargs.setdefault("Cmd", ["sh"])
    return make_image([busybox_tar(), *extra_layers], **kwargs)


def multi_platform(images: list[Image], fmt: str = "oci") -> Index:
    """An index over images; each image's platform comes from its config."""
    types = OCI if fmt == "oci" else DOCKER
    descs = []
    for img in images:
        cfg = img.config_json()
        platform = {"architecture": cfg["architecture"], "os": cfg["os"]}
        if cfg.get("variant"):
            platform["variant"] = cfg["variant"]
        descs.append({**img.manifest.descriptor(), "platform": platform})
    body = {"schemaVersion": 2, "mediaType": types["index"], "manifests": descs}
    return Index(Blob(types["index"], json.dumps(body, indent=2).encode()), images)


# --- push ----------------------------------------------------------------------------------

class _Auth(httpx.Auth):
    """Basic or Bearer, whichever the 401 asks for (enough for the test registries)."""

    def __init__(self, creds: tuple[str, str] | None):
        self.creds = creds
        self.header: str | None = None

    def auth_flow(self, request):
        if self.header:
            request.headers["Authorization"] = self.header
        response = yield request
        if response.status_code != 401:
            return
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.creds:
                return
            self.header = "Basic " + base64.b64encode(":".join(self.creds).encode()).decode()
        else:
            fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
            query = {"service": fields.get("service", "")}
            if "scope" in fields:
                scope = fields["scope"]
                if request.method != "GET" and request.method != "HEAD":
                    name = scope.split(":")[1]
                    scope = f"repository:{name}:pull,push"
                query["scope"] = scope
            tok = httpx.get(fields["realm"], params=query, auth=self.creds)
            tok.raise_for_status()
            self.header = "Bearer " + tok.json()["token"]
        request.headers["Authorization"] = self.header
        yield request


def _client(registry) -> httpx.Client:
    return httpx.Client(base_url=registry.url, auth=_Auth(registry.auth), timeout=30)


def push_blob(registry, repo: str, blob: Blob, client: httpx.Client | None = None) -> None:
    """Upload one blob (monolithic POST then PUT), skipping it if present."""
    c = client or _client(registry)
    try:
        if c.head(f"/v2/{repo}/blobs/{blob.digest}").status_code == 200:
            return
        r = c.post(f"/v2/{repo}/blobs/uploads/")
        r.raise_for_status()
        loc = r.headers["Location"]
        sep = "&" if "?" in loc else "?"
        r = c.put(f"{loc}{sep}digest={urllib.parse.quote(blob.digest)}", content=blob.data,
                  headers={"Content-Type": "application/octet-stream"})
        r.raise_for_status()
    finally:
        if client is None:
            c.close()


def push(registry, repo: str, tag: str, image: Image | Index) -> str:
    """Push an image or index (and everything it refers to) as repo:tag; returns its digest."""
    with _client(registry) as c:
        images = image.images if isinstance(image, Index) else [image]
        for img in images:
            for blob in img.blobs():
                push_blob(registry, repo, blob, c)
            if isinstance(image, Index):
                _put_manifest(c, repo, img.digest, img.manifest)
        _put_manifest(c, repo, tag, image.manifest)
    return image.digest


def _put_manifest(c: httpx.Client, repo: str, ref: str, blob: Blob) -> None:
    r = c.put(f"/v2/{repo}/manifests/{ref}", content=blob.data,
              headers={"Content-Type": blob.media_type})
    if r.status_code != 201:
        raise RuntimeError(f"push manifest {repo}:{ref}: {r.status_code} {r.text}")


# --- archives ------------------------------------------------------------------------------

def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = len(data), MTIME, 0o644
    tf.addfile(ti, io.BytesIO(data))


def docker_archive(image: Image, repo_tags: list[str]) -> bytes:
    """A legacy `docker save` tar: manifest.json, repositories, <config>.json, <id>/layer.tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        cfg_name = image.id.split(":")[1] + ".json"
        _add(tf, cfg_name, image.config.data)
        layer_paths = []
        parent = ""
        for i, tar in enumerate(image.uncompressed):
            v1 = hashlib.sha256(f"{parent} {image.diff_ids[i]}".encode()).hexdigest()
            _add(tf, f"{v1}/VERSION", b"1.0")
            _add(tf, f"{v1}/json", json.dumps({"id": v1, **({"parent": parent} if parent
                                                           else {})}).encode())
            _add(tf, f"{v1}/layer.tar", tar)
            layer_paths.append(f"{v1}/layer.tar")
            parent = v1
        _add(tf, "manifest.json", json.dumps([{"Config": cfg_name, "RepoTags": repo_tags,
                                               "Layers": layer_paths}]).encode())
        repos: dict[str, dict[str, str]] = {}
        for rt in repo_tags:
            name, _, tag = rt.rpartition(":")
            repos.setdefault(name, {})[tag] = parent
        _add(tf, "repositories", json.dumps(repos).encode())
    return buf.getvalue()


def oci_archive(image: Image, ref_name: str | None = None) -> bytes:
    """An OCI image layout (oci-layout, index.json, blobs/sha256/*) as a tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        _add(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        desc = image.manifest.descriptor()
        if ref_name:
            desc["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
        _add(tf, "index.json", json.dumps({"schemaVersion": 2, "mediaType": OCI["index"],
                                           "manifests": [desc]}).encode())
        for blob in [image.manifest, *image.blobs()]:
            _add(tf, "blobs/sha256/" + blob.digest.split(":")[1], blob.data)
    return buf.getvalue()
