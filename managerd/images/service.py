"""The images service in process (the "local" layer behind the Transfer gRPC service).

Owns the Docker-shaped view of images on top of managerd's stores: pull and
push (pull.py, push.py), tag, inspect (Id = config digest, RepoTags,
RepoDigests, Size, Config, RootFS, Os, Architecture, Created), history,
remove (untag versus delete, refused while a container uses the image
unless forced), prune of dangling images, and the archive, import, export
and commit verbs (archive.py, commit.py). Image records are managerd's
Images store (a name -> the manifest or index descriptor); blobs live in
the content store, layers in snapshots keyed by chain ID.

Names are canonical references (`docker.io/library/busybox:latest`);
`dangling@sha256:<config hex>` records keep images whose last tag moved
elsewhere, as Docker keeps `<none>:<none>` images until a prune.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass, field

from dockyard.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

from . import mediatypes, platforms
from . import reference as refs
from .apply import spread_inodes
from .fetch import Fetcher
from .manifest import (
    SIZE_LABEL,
    Descriptor,
    chain_ids,
    digest_of,
    parse_config,
    parse_index,
    parse_manifest,
)
from .registry import Client, RegistryOptions

__all__ = ["ImageService", "ResolvedImage", "DANGLING", "SOURCE_LABEL"]

log = logging.getLogger(__name__)

DANGLING = "dangling@"
SOURCE_LABEL = "dockyard.io/source"  # "local" on images made here (no RepoDigests)
MAX_SMALL = 32 << 20


@dataclass
class ResolvedImage:
    """An image as Docker sees it: its config, with every name pointing at it."""

    names: list[str]  # image record names pointing at this config
    target: Descriptor  # the first record's target (index or manifest)
    manifest: Descriptor
    layers: list[Descriptor]
    config_desc: Descriptor
    config: dict
    created_at: int  # ns, record creation (Metadata.LastTagTime)
    registry_names: list[str] = field(default_factory=list)  # names pulled/pushed (RepoDigests)

    @property
    def id(self) -> str:
        return self.config_desc.digest

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config["rootfs"]["diff_ids"])

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)


class ImageService:
    """Pull, push, inspect, remove, save/load, import/export/commit over managerd's stores."""

    def __init__(self, content, snapshots, images, leases, containers=None, gc=None,
                 options: RegistryOptions | None = None, snapshotter: str = "overlayfs",
                 platform: platforms.Platform | None = None):
        self.content, self.snapshots, self.images = content, snapshots, images
        self.leases, self.containers, self.gc = leases, containers, gc
        self.options = options or RegistryOptions()
        self.registry = Client(self.options)
        self.fetcher = Fetcher(content, self.options.max_concurrent_downloads)
        self.snapshotter = snapshotter
        self.platform = platform or platforms.host()
        self._name_lock = threading.Lock()
        # beside the snapshots (same filesystem: staged layers are renamed into them)
        self.staging_root = os.path.join(os.path.dirname(os.path.abspath(snapshots.root)),
                                         "images", "staging")
        shutil.rmtree(self.staging_root, ignore_errors=True)  # a previous run's leftovers
        os.makedirs(self.staging_root, mode=0o700, exist_ok=True)
        spread_inodes(self.staging_root)  # each staged layer in its own ext4 block group

    @classmethod
    def from_context(cls, ctx) -> ImageService:
        cfg = ctx.config
        options = RegistryOptions(
            insecure=tuple(getattr(cfg, "insecure_registries", ()) or ()),
            config_path=getattr(cfg, "registry_config", "") or "",
            max_concurrent_downloads=getattr(cfg, "max_concurrent_downloads", 3) or 3)
        # the snapshots store resolved "auto" to what this host supports
        return cls(ctx.content, ctx.snapshots, ctx.images, ctx.leases, ctx.containers, ctx.gc,
                   options, ctx.snapshots.default)

    def close(self) -> None:
        self.fetcher.close()
        self.registry.close()

    # --- helpers used by pull/push/archive ------------------------------------------------

    def content_exists(self, ns: str, digest: str) -> bool:
        try:
            self.content.info(ns, digest)
            return True
        except NotFound:
            return False

    def snapshot_exists(self, ns: str, snapshotter: str, key: str) -> bool:
        try:
            return self.snapshots.stat(ns, snapshotter, key).kind == "committed"
        except NotFound:
            return False

    def fetch_small(self, ns: str, endpoint, repo: str, desc: Descriptor, lease: str) -> bytes:
        """A small blob (config) from the store, else from the registry, verified."""
        if self.content_exists(ns, desc.digest):
            return self.content.read_all(ns, desc.digest)
        if desc.size > MAX_SMALL:
            raise InvalidArgument(f"blob {desc.digest}: {desc.size} bytes is too large for a config")
        with endpoint.open_blob(repo, desc.digest) as chunks:
            data = b""
            for chunk in chunks:
                data += chunk
                if len(data) > desc.size:
                    break
        if len(data) != desc.size or digest_of(data) != desc.digest:
            raise InvalidArgument(f"blob {desc.digest}: content does not match its digest "
                                  "and size (the registry sent corrupt data)")
        self.content.write_blob(ns, f"config-{desc.digest}", data, desc.digest, lease=lease)
        return data

    def end_lease(self, ns: str, lease: str, collect: bool) -> None:
        try:
            self.leases.delete(ns, lease, sync=collect)
        except NotFound:
            pass

    def set_image(self, ns: str, name: str, target: Descriptor,
                  labels: dict[str, str] | None = None) -> bool:
        """Point name at target (create or move); returns True if it already pointed there.

        A moved name leaves its old image as a dangling record when nothing
        else names it, as Docker leaves `<none>:<none>`.
        """
        from dockyard.managerd.metadata.images import Descriptor as MDesc
        from dockyard.managerd.metadata.images import Image as MImage
        mdesc = MDesc(target.media_type, target.digest, target.size, dict(target.annotations))
        with self._name_lock:
            try:
                cur = self.images.get(ns, name)
            except NotFound:
                self.images.create(ns, MImage(name, mdesc, dict(labels or {})))
                if not name.startswith(DANGLING):
                    self._drop_dangling(ns, target)
                return False
            if cur.target.digest == target.digest:
                return True
            old = cur.target
            self.images.update(ns, MImage(name, mdesc, dict(labels or {})), ["target"])
            self._keep_dangling(ns, old)
            self._drop_dangling(ns, target)
            return False

    def _config_of_target(self, ns: str, target) -> Descriptor | None:
        try:
            _, _, config_desc, _ = self._manifest_for(ns, Descriptor(
                target.media_type, target.digest, target.size))
            return config_desc
        except (NotFound, InvalidArgument):
            return None

    def _keep_dangling(self, ns: str, old) -> None:
        cfg = self._config_of_target(ns, old)
        if cfg is None:
            return
        for img in self.images.list(ns):
            if img.target.digest == old.digest:
                return
        from dockyard.managerd.metadata.images import Image as MImage
        try:
            self.images.create(ns, MImage(DANGLING + cfg.digest, old))
        except AlreadyExists:
            pass

    def _drop_dangling(self, ns: str, target: Descriptor) -> None:
        cfg = self._config_of_target(ns, target)
        if cfg is None:
            return
        try:
            self.images.delete(ns, DANGLING + cfg.digest)
        except NotFound:
            pass

    def _manifest_for(self, ns: str, target: Descriptor):
        """(manifest desc, layers, config desc, config dict) of a target in the store;
        an index resolves to this host's platform (or the first manifest present)."""
        desc = target
        if desc.media_type in mediatypes.INDEXES:
            children = parse_index(self.content.read_all(ns, desc.digest),
                                   f"index {desc.digest}")
            present = [c for c in children if self.content_exists(ns, c["digest"])]
            if not present:
                raise NotFound(f"index {desc.digest}: no manifest of it is in the store")
            try:
                chosen = platforms.select(present, self.platform)
            except NotFound:
                chosen = present[0]
            desc = Descriptor.from_dict(chosen, f"index {target.digest}")
        image = parse_manifest(self.content.read_all(ns, desc.digest), desc.media_type,
                               f"manifest {desc.digest}")
        config = parse_config(self.content.read_all(ns, image.config.digest), len(image.layers),
                              f"config {image.config.digest}")
        return desc, image.layers, image.config, config

    # --- lookup -------------------------------------------------------------------------------

    def resolve(self, ns: str, name_or_id: str) -> ResolvedImage:
        """An image by reference (normalised), full ID, or unambiguous ID prefix.

        Raises:
            NotFound: "No such image: <name>" (Docker's wording).
        """
        records = self.images.list(ns)
        text = name_or_id
        hexpart = text[len("sha256:"):] if text.startswith("sha256:") else text
        by_id = refs.is_image_id(hexpart) or (text.startswith("sha256:") and hexpart) or (
            len(hexpart) >= 4 and all(c in "0123456789abcdef" for c in hexpart)
            and ":" not in text and "/" not in text)
        name = None
        if not text.startswith("sha256:"):
            try:
                name = str(refs.parse(text))
            except InvalidArgument:
                name = None
        if name:
            for r in records:
                if r.name == name:
                    return self._resolved(ns, r, records)
        if by_id:
            matches: dict[str, object] = {}
            for r in records:
                cfg = self._config_of_target(ns, Descriptor(r.target.media_type, r.target.digest,
                                                            r.target.size))
                if cfg and cfg.digest[len("sha256:"):].startswith(hexpart):
                    matches.setdefault(cfg.digest, r)
            if len(matches) == 1:
                return self._resolved(ns, next(iter(matches.values())), records)
            if len(matches) > 1:
                raise InvalidArgument(f"image ID prefix {text!r} is ambiguous")
        raise NotFound(f"No such image: {name_or_id}")

    def _resolved(self, ns: str, record, records) -> ResolvedImage:
        target = Descriptor(record.target.media_type, record.target.digest, record.target.size)
        man, layers, config_desc, config = self._manifest_for(ns, target)
        names = []
        for r in records:
            if r.target.digest != record.target.digest:
                cfg = self._config_of_target(ns, Descriptor(r.target.media_type, r.target.digest,
                                                            r.target.size))
                if not cfg or cfg.digest != config_desc.digest:
                    continue
            names.append(r)
        return ResolvedImage(sorted(r.name for r in names), target, man, layers, config_desc,
                             config, record.created_at,
                             sorted(r.name for r in names
                                    if r.labels.get(SOURCE_LABEL) != "local"))

    def list_images(self, ns: str) -> list[ResolvedImage]:
        """Every image (one entry per config), with all its names."""
        out: dict[str, ResolvedImage] = {}
        records = self.images.list(ns)
        for r in records:
            try:
                res = self._resolved(ns, r, records)
            except (NotFound, InvalidArgument):
                continue  # a record whose content is gone or foreign (not an image)
            out.setdefault(res.id, res)
        return list(out.values())

    # --- Docker-shaped data -----------------------------------------------------------------

    def size(self, ns: str, img: ResolvedImage) -> int:
        total = 0
        for chain in img.chain_ids:
            try:
                total += int(self.snapshots.stat(ns, self.snapshotter, chain).labels.get(
                    SIZE_LABEL, "0"))
            except (NotFound, ValueError):
                continue
        return total

    def summary(self, ns: str, img: ResolvedImage) -> dict:
        """Docker's /images/json entry for one image."""
        repo_tags, repo_digests = _repo_names(img)
        containers = -1
        if self.containers is not None:
            containers = sum(1 for c in self.containers.list(ns)
                             if c.image in (*img.names, img.id))
        return {"Id": img.id, "ParentId": "", "RepoTags": repo_tags,
                "RepoDigests": repo_digests,
                "Created": _created_seconds(img.config.get("created", "")),
                "Size": self.size(ns, img), "SharedSize": -1, "VirtualSize": self.size(ns, img),
                "Labels": (img.config.get("config") or {}).get("Labels") or {},
                "Containers": containers}

    def inspect(self, ns: str, name_or_id: str) -> dict:
        """`docker image inspect` for one image."""
        img = self.resolve(ns, name_or_id)
        cfg = img.config
        repo_tags, repo_digests = _repo_names(img)
        out = {
            "Id": img.id,
            "RepoTags": repo_tags,
            "RepoDigests": repo_digests,
            "Parent": "",
            "Comment": _last_comment(cfg),
            "Created": cfg.get("created", ""),
            "Container": cfg.get("container", ""),
            "ContainerConfig": cfg.get("container_config") or {},
            "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""),
            "Config": cfg.get("config") or {},
            "Architecture": cfg.get("architecture", ""),
            "Os": cfg.get("os", ""),
            "Size": self.size(ns, img),
            "VirtualSize": self.size(ns, img),
            "GraphDriver": {"Name": self.snapshotter, "Data": {}},
            "RootFS": {"Type": "layers", "Layers": img.diff_ids},
            "Metadata": {"LastTagTime": _rfc3339(img.created_at)},
            "Descriptor": img.target.to_dict(),
            "Manifest": img.manifest.to_dict(),
        }
        if cfg.get("variant"):
            out["Variant"] = cfg["variant"]
        if cfg.get("os.version"):
            out["OsVersion"] = cfg["os.version"]
        return out

    def history(self, ns: str, name_or_id: str) -> list[dict]:
        """`docker history`: newest first; layer entries carry the layer's size and id."""
        img = self.resolve(ns, name_or_id)
        hist = img.config.get("history") or [{} for _ in img.diff_ids]
        chains = img.chain_ids
        sizes = []
        for chain in chains:
            try:
                sizes.append(int(self.snapshots.stat(ns, self.snapshotter, chain).labels.get(
                    SIZE_LABEL, "0")))
            except (NotFound, ValueError):
                sizes.append(0)
        out = []
        layer = 0
        for i, h in enumerate(hist):
            empty = bool(h.get("empty_layer"))
            size = 0
            if not empty and layer < len(sizes):
                size = sizes[layer]
                layer += 1
            out.append({"Id": img.id if i == len(hist) - 1 else "<missing>",
                        "Created": _created_seconds(h.get("created", "")),
                        "CreatedBy": h.get("created_by", ""), "Tags": None,
                        "Size": size, "Comment": h.get("comment", "")})
        out.reverse()
        if out:
            out[0]["Tags"] = _repo_names(img)[0] or None
        return out

    # --- names --------------------------------------------------------------------------------

    def tag(self, ns: str, source: str, target: str) -> str:
        """Give the image `source` (name or ID) the name `target`; returns the canonical name."""
        img = self.resolve(ns, source)
        ref = refs.parse(target)
        if ref.digest:
            raise InvalidArgument(f"tag {target}: refusing to create a tag with a digest "
                                  "reference")
        self.set_image(ns, str(ref), img.target)
        return str(ref)

    def remove(self, ns: str, name_or_id: str, force: bool = False) -> list[dict]:
        """`docker rmi`: untag a name; delete the image when its last name goes.

        Returns:
            Docker's list of {"Untagged": name} and {"Deleted": id}.

        Raises:
            NotFound: no such image.
            FailedPrecondition: a container uses it (unless force), or an ID names an
                image with several tags (unless force).
        """
        img = self.resolve(ns, name_or_id)
        records = {r.name: r for r in self.images.list(ns)}
        by_name = None
        try:
            by_name = str(refs.parse(name_or_id))
        except InvalidArgument:
            pass
        named = by_name in records and by_name in img.names
        if named:
            victims = [by_name]
        else:
            victims = list(img.names)
            tags = [n for n in victims if not n.startswith(DANGLING)]
            if len(tags) > 1 and not force:
                raise FailedPrecondition(
                    f"conflict: unable to delete {_short(img.id)} (must be forced) - image is "
                    "referenced in multiple repositories")
        remaining = [n for n in img.names if n not in victims]
        if not force and self.containers is not None:
            users = [c for c in self.containers.list(ns)
                     if c.image in victims or (not remaining and c.image in
                                               (img.id, *img.names))]
            if users:
                raise FailedPrecondition(
                    f"conflict: unable to remove repository reference {name_or_id!r} (must "
                    f"force) - container {users[0].id[:12]} is using its referenced image "
                    f"{_short(img.id)}")
        out = []
        # sync: like `docker rmi`, return once blobs and layer dirs are gone (a
        # background collection would bill the deletion to whatever runs next)
        for name in victims:
            self.images.delete(ns, name, sync=True)
            if not name.startswith(DANGLING):
                out.append({"Untagged": _familiar(name)})
        if not [n for n in remaining if not n.startswith(DANGLING)]:
            for name in remaining:
                self.images.delete(ns, name, sync=True)
            out.append({"Deleted": img.id})
        return out

    def prune(self, ns: str, all_unused: bool = False) -> tuple[list[dict], int]:
        """Delete dangling images (all_unused: also tagged ones no container uses).

        Returns:
            (Docker's ImagesDeleted list, bytes reclaimed).
        """
        used = set()
        if self.containers is not None:
            used = {c.image for c in self.containers.list(ns)}
        deleted: list[dict] = []
        reclaimed = 0
        for img in self.list_images(ns):
            dangling = all(n.startswith(DANGLING) for n in img.names)
            if not dangling and not all_unused:
                continue
            if used & {*img.names, img.id}:
                continue
            reclaimed += self.size(ns, img)
            for name in img.names:
                try:
                    self.images.delete(ns, name, sync=True)
                except NotFound:
                    continue
                if not name.startswith(DANGLING):
                    deleted.append({"Untagged": _familiar(name)})
            deleted.append({"Deleted": img.id})
        return deleted, reclaimed


def _familiar(name: str) -> str:
    try:
        return refs.parse(name).familiar()
    except InvalidArgument:
        return name


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _repo_names(img: ResolvedImage) -> tuple[list[str], list[str]]:
    tags, digests = [], []
    for name in img.names:
        if name.startswith(DANGLING):
            continue
        try:
            ref = refs.parse(name)
        except InvalidArgument:
            continue
        if ref.tag:
            tags.append(ref.familiar())
        if name in img.registry_names:
            d = f"{ref.familiar_name()}@{ref.digest or img.target.digest}"
            if d not in digests:
                digests.append(d)
    return tags, digests


def _last_comment(cfg: dict) -> str:
    hist = cfg.get("history") or []
    return hist[-1].get("comment", "") if hist else ""


def _rfc3339(ns: int) -> str:
    import datetime
    if not ns:
        return "0001-01-01T00:00:00Z"
    t = datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _created_seconds(text: str) -> int:
    import datetime
    if not text:
        return 0
    try:
        t = text.rstrip("Z")
        if "." in t:
            head, frac = t.split(".", 1)
            t = f"{head}.{frac[:6]}"
        dt = datetime.datetime.fromisoformat(t.split("+")[0])
        return int(dt.replace(tzinfo=datetime.UTC).timestamp())
    except ValueError:
        return 0


def _dumps(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()
