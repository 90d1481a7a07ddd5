"""import, export and commit: images from and to plain filesystem trees.

- import_rootfs: a root filesystem tar (plain, gzip or zstd) becomes a
  one-layer image (the layer stored uncompressed, so its digest is its diff_id).
- export_container: a container's whole filesystem as a tar stream (its
  snapshot mounted read-only: overlay with the upper dir as the top lower).
- commit_container: a container's changes become a new layer on its image:
  the overlay upper dir is walked and its whiteouts (char 0:0) and opaque
  dirs (trusted.overlay.opaque=y) written back as `.wh.` entries; for the
  native snapshotter the tree is compared with its parent's.
- apply_changes: Dockerfile-like `--change` instructions on a config.

Layers made here go through the same unpack path as pulled ones
(pull.unpack_image), so snapshots are keyed and verified the same way.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import shlex
import stat
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator

from dockyard.errdefs import InvalidArgument, NotFound

from . import mediatypes, platforms
from . import reference as refs
from .apply import OPAQUE, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX, decompressed
from .manifest import Descriptor, digest_of
from .pull import LEASE_TTL_NS, unpack_image
from .service import DANGLING, SOURCE_LABEL
from .tarstream import END, header, padding

__all__ = ["import_rootfs", "export_container", "commit_container", "apply_changes",
           "tree_tar", "overlay_diff_tar"]

READ = 1 << 20


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- changes ---------------------------------------------------------------------------------

def _json_or_shell(rest: str, shell_form: bool = True) -> list[str]:
    rest = rest.strip()
    if rest.startswith("["):
        try:
            val = json.loads(rest)
        except ValueError as err:
            raise InvalidArgument(f"change {rest!r}: invalid JSON array: {err}") from err
        if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
            raise InvalidArgument(f"change {rest!r}: want a JSON array of strings")
        return val
    return ["/bin/sh", "-c", rest] if shell_form else shlex.split(rest)


def apply_changes(cfg: dict, changes: list[str]) -> dict:
    """Apply Dockerfile instructions (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER,
    VOLUME, WORKDIR, STOPSIGNAL, ONBUILD) to a config section (modified and returned).

    Raises:
        InvalidArgument: an unknown instruction or malformed argument.
    """
    for change in changes:
        change = change.strip()
        if not change:
            continue
        word, _, rest = change.partition(" ")
        word = word.upper()
        rest = rest.strip()
        if word == "CMD":
            cfg["Cmd"] = _json_or_shell(rest)
        elif word == "ENTRYPOINT":
            cfg["Entrypoint"] = _json_or_shell(rest)
        elif word == "ENV":
            env = list(cfg.get("Env") or [])
            pairs = shlex.split(rest)
            if pairs and "=" not in pairs[0]:
                key, _, value = rest.partition(" ")
                pairs = [f"{key}={value.strip()}"]
            for pair in pairs:
                key = pair.split("=", 1)[0]
                if not key:
                    raise InvalidArgument(f"change {change!r}: ENV needs NAME=value")
                env = [e for e in env if e.split("=", 1)[0] != key] + [pair]
            cfg["Env"] = env
        elif word == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in rest.split():
                ports[p if "/" in p else f"{p}/tcp"] = {}
            cfg["ExposedPorts"] = ports
        elif word == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            for pair in shlex.split(rest):
                key, sep, value = pair.partition("=")
                if not sep:
                    raise InvalidArgument(f"change {change!r}: LABEL needs key=value")
                labels[key] = value
            cfg["Labels"] = labels
        elif word == "USER":
            cfg["User"] = rest
        elif word == "WORKDIR":
            cfg["WorkingDir"] = rest
        elif word == "STOPSIGNAL":
            cfg["StopSignal"] = rest
        elif word == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            for v in _json_or_shell(rest, shell_form=False):
                vols[v] = {}
            cfg["Volumes"] = vols
        elif word == "ONBUILD":
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), rest]
        else:
            raise InvalidArgument(f"change {change!r}: unsupported instruction {word!r} "
                                  "(CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, "
                                  "USER, VOLUME, WORKDIR)")
    return cfg


# --- tar writers -----------------------------------------------------------------------------

def _xattrs(path: str) -> dict[str, str]:
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in names:
        if name.startswith("trusted.overlay.") or name.startswith("security.selinux"):
            continue
        try:
            out[f"SCHILY.xattr.{name}"] = os.getxattr(path, name, follow_symlinks=False).decode(
                "utf-8", "surrogateescape")
        except OSError:
            continue
    return out


def _entry(path: str, rel: str, st: os.stat_result, links: dict) -> Iterator[bytes]:
    ti = tarfile.TarInfo(rel)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid, ti.mtime = st.st_uid, st.st_gid, int(st.st_mtime)
    ti.pax_headers = _xattrs(path)
    mode = st.st_mode
    data = False
    if stat.S_ISDIR(mode):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
    elif stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            ti.type, ti.linkname = tarfile.LNKTYPE, links[key]
        else:
            if st.st_nlink > 1:
                links[key] = rel
            ti.type, ti.size = tarfile.REGTYPE, st.st_size
            data = True
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        ti.type = tarfile.FIFOTYPE
    else:
        return  # sockets are not archived (Docker skips them too)
    yield header(ti)
    if data:
        sent = 0
        # O_NOFOLLOW: a running container may have swapped the file for a symlink
        # to a host file since the lstat
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as f:
            while sent < ti.size and (chunk := f.read(min(READ, ti.size - sent))):
                sent += len(chunk)
                yield chunk
        if sent < ti.size:  # the file shrank while we read it: pad to the header's size
            yield b"\0" * (ti.size - sent)
        yield padding(ti.size)


def _walk(root: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """(path, rel, lstat) of everything under root, sorted, each dir before its children."""
    return _walk_sub(root, "")


def _walk_sub(path_dir: str, rel_dir: str) -> Iterator[tuple[str, str, os.stat_result]]:
    for name in sorted(os.listdir(path_dir)):
        path = os.path.join(path_dir, name)
        rel = f"{rel_dir}/{name}" if rel_dir else name
        st = os.lstat(path)
        yield path, rel, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_sub(path, rel)


def tree_tar(root: str) -> Iterator[bytes]:
    """A tar of a whole tree (export)."""
    links: dict = {}
    for path, rel, st in _walk(root):
        yield from _entry(path, rel, st, links)
    yield END


def _whiteout(rel_dir: str, name: str, mtime: int) -> bytes:
    ti = tarfile.TarInfo(f"{rel_dir}/{name}" if rel_dir else name)
    ti.type, ti.mode, ti.mtime = tarfile.REGTYPE, 0o644, mtime
    return header(ti)


def overlay_diff_tar(upper: str) -> Iterator[bytes]:
    """A layer tar of an overlay upper dir: whiteouts and opaque dirs back to `.wh.` entries."""
    links: dict = {}
    for path, rel, st in _walk(upper):
        parent, _, name = rel.rpartition("/")
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            yield _whiteout(parent, WHITEOUT_PREFIX + name, int(st.st_mtime))
            continue
        yield from _entry(path, rel, st, links)
        if stat.S_ISDIR(st.st_mode):
            try:
                opaque = os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
            except OSError:
                opaque = False
            if opaque:
                yield _whiteout(rel, OPAQUE, int(st.st_mtime))
    yield END


def _differs(a: os.stat_result, b: os.stat_result, pa: str, pb: str) -> bool:
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return True
    if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
        return True
    if stat.S_ISDIR(a.st_mode):
        return False
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(pa) != os.readlink(pb)
    if stat.S_ISCHR(a.st_mode) or stat.S_ISBLK(a.st_mode):
        return a.st_rdev != b.st_rdev
    return a.st_size != b.st_size or a.st_mtime_ns != b.st_mtime_ns


def native_diff_tar(active: str, parent: str) -> Iterator[bytes]:
    """A layer tar of what differs between a native snapshot and its parent's tree."""
    links: dict = {}
    for path, rel, st in _walk(active):
        ppath = os.path.join(parent, rel)
        try:
            pst = os.lstat(ppath)
        except FileNotFoundError:
            pst = None
        if pst is None or _differs(st, pst, path, ppath):
            if pst is not None and stat.S_ISDIR(pst.st_mode) and not stat.S_ISDIR(st.st_mode):
                pass  # replaced dir: the new entry replaces it on apply
            yield from _entry(path, rel, st, links)
    for _ppath, rel, _pst in _walk(parent):
        if not os.path.lexists(os.path.join(active, rel)):
            head = rel.rpartition("/")[0]
            if head and not os.path.lexists(os.path.join(active, head)):
                continue  # its parent's whiteout covers it
            parent_dir, _, name = rel.rpartition("/")
            yield _whiteout(parent_dir, WHITEOUT_PREFIX + name, int(time.time()))
    yield END


# --- shared: store a layer + config + manifest, unpack, name ----------------------------------

def _store_layer(svc, ns: str, chunks, lease: str) -> Descriptor:
    w = svc.content.writer(ns, f"layer-{uuid.uuid4().hex}", lease=lease)
    with w:
        for chunk in chunks:
            if chunk:
                w.write(chunk)
        digest = w.digest()
        size = w.offset
        try:
            w.commit(size, digest)
        except Exception as err:  # noqa: BLE001  (AlreadyExists: same bytes, fine)
            from dockyard.errdefs import AlreadyExists
            if not isinstance(err, AlreadyExists):
                raise
    return Descriptor(mediatypes.DOCKER_LAYER, digest, size)


def _finish_image(svc, ns: str, config: dict, layers: list[Descriptor], reference: str,
                  lease: str) -> tuple[str, str]:
    config_data = json.dumps(config, separators=(",", ":")).encode()
    config_digest = digest_of(config_data)
    svc.content.write_blob(ns, f"config-{config_digest}", config_data, config_digest,
                           lease=lease)
    manifest = {"schemaVersion": 2, "mediaType": mediatypes.DOCKER_MANIFEST,
                "config": {"mediaType": mediatypes.DOCKER_CONFIG, "digest": config_digest,
                           "size": len(config_data)},
                "layers": [{"mediaType": d.media_type, "digest": d.digest, "size": d.size}
                           for d in layers]}
    man_data = json.dumps(manifest, indent=3).encode()
    man_digest = digest_of(man_data)
    svc.content.write_blob(ns, f"manifest-{man_digest}", man_data, man_digest, lease=lease)
    unpack_image(svc, ns, layers, config["rootfs"]["diff_ids"], lease)
    target = Descriptor(mediatypes.DOCKER_MANIFEST, man_digest, len(man_data))
    name = str(refs.parse(reference)) if reference else DANGLING + config_digest
    if reference and refs.parse(reference).digest:
        raise InvalidArgument(f"{reference}: cannot name an image with a digest")
    svc.set_image(ns, name, target, {SOURCE_LABEL: "local"})
    return config_digest, "" if name.startswith(DANGLING) else name


class _Peek:
    def __init__(self, src):
        self.src = src
        self.head = src.read(8)

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                out, self.head = self.head + self.src.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            if len(out) < n:
                out += self.src.read(n - len(out))
            return out
        return self.src.read(n)


def import_rootfs(svc, ns: str, reader, reference: str = "", changes: list[str] = (),
                  message: str = "", platform: str = "") -> tuple[str, str]:
    """A root filesystem tar (plain, gzip, zstd) -> a one-layer image. Returns (id, name)."""
    if reference:
        refs.parse(reference)
    plat = platforms.parse(platform) if platform else svc.platform
    cfg_section = apply_changes({}, list(changes))
    lease = svc.leases.create(ns, expires_at=time.time_ns() + LEASE_TTL_NS).id
    ok = False
    try:
        src = _Peek(reader)
        comp = "gzip" if src.head[:2] == b"\x1f\x8b" else \
            "zstd" if src.head[:4] == b"\x28\xb5\x2f\xfd" else "none"
        plain = decompressed(src, comp)
        layer = _store_layer(svc, ns, iter(lambda: plain.read(READ), b""), lease)
        _check_tar(svc, ns, layer)
        created = _now()
        config = {"architecture": plat.architecture, "os": plat.os, "created": created,
                  "config": cfg_section,
                  "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
                  "history": [{"created": created, "created_by": "",
                               "comment": message or "Imported from -"}]}
        if plat.variant:
            config["variant"] = plat.variant
        out = _finish_image(svc, ns, config, [layer], reference, lease)
        ok = True
        return out
    finally:
        svc.end_lease(ns, lease, collect=not ok)


def _check_tar(svc, ns: str, layer: Descriptor) -> None:
    with svc.content.open(ns, layer.digest) as f:
        try:
            with tarfile.open(fileobj=f, mode="r|") as tf:
                next(iter(tf), None)
        except tarfile.TarError as err:
            raise InvalidArgument(f"import: not a tar archive: {err}") from err


def _container_mounts(svc, ns: str, container_id: str):
    try:
        c = svc.containers.get(ns, container_id) if svc.containers else None
    except NotFound:
        c = None
    if c is None:
        raise NotFound(f"No such container: {container_id}")
    if not c.snapshot_key:
        raise InvalidArgument(f"container {container_id}: has no snapshot")
    sn = c.snapshotter or svc.snapshotter
    return c, sn, svc.snapshots.mounts(ns, sn, c.snapshot_key)


def export_container(svc, ns: str, container_id: str) -> Iterator[bytes]:
    """The container's filesystem as a tar stream (mounted read-only meanwhile)."""
    _c, _sn, mounts = _container_mounts(svc, ns, container_id)
    return _export_stream(mounts)


def _export_stream(mounts) -> Iterator[bytes]:
    from dockyard.managerd.snapshots.mount import Mount, mount_all, unmount
    m = mounts[0]
    if len(mounts) == 1 and m.type == "bind":
        yield from tree_tar(m.source)
        return
    opts = dict(o.split("=", 1) for o in m.options if "=" in o)
    lower = ":".join(x for x in (opts.get("upperdir", ""), opts.get("lowerdir", "")) if x)
    target = tempfile.mkdtemp(prefix="dockyard-export-")
    try:
        mount_all([Mount("overlay", "overlay", ("ro", f"lowerdir={lower}"))], target)
        try:
            yield from tree_tar(target)
        finally:
            unmount(target)
    finally:
        os.rmdir(target)


def commit_container(svc, ns: str, container_id: str, reference: str = "", author: str = "",
                     comment: str = "", changes: list[str] = (),
                     config: dict | None = None) -> tuple[str, str]:
    """The container's changes as a new layer on its image. Returns (id, name)."""
    if reference:
        refs.parse(reference)
    c, sn, mounts = _container_mounts(svc, ns, container_id)
    if c.image:
        parent = svc.resolve(ns, c.image)
        base = copy.deepcopy(parent.config)
        layers = list(parent.layers)
    else:
        base = {"architecture": svc.platform.architecture, "os": svc.platform.os,
                "config": {}, "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
        layers = []
    m = mounts[0]
    if m.type == "overlay":
        opts = dict(o.split("=", 1) for o in m.options if "=" in o)
        diff = overlay_diff_tar(opts["upperdir"])
    elif sn == "native" and layers:
        parent_dir = svc.snapshots.path(ns, sn, svc.snapshots.stat(ns, sn, c.snapshot_key).parent)
        diff = native_diff_tar(m.source, parent_dir)
    else:
        diff = tree_tar(m.source)
    lease = svc.leases.create(ns, expires_at=time.time_ns() + LEASE_TTL_NS).id
    ok = False
    try:
        layer = _store_layer(svc, ns, diff, lease)
        cfg_section = dict(base.get("config") or {})
        if config:
            cfg_section.update(config)
        apply_changes(cfg_section, list(changes))
        created = _now()
        base["config"] = cfg_section
        base["created"] = created
        if author:
            base["author"] = author
        base.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        base["rootfs"]["diff_ids"] = [*base["rootfs"].get("diff_ids", []), layer.digest]
        hist = {"created": created, "created_by": ""}
        if author:
            hist["author"] = author
        if comment:
            hist["comment"] = comment
        base["history"] = [*(base.get("history") or []), hist]
        base.pop("container", None)
        base.pop("container_config", None)
        out = _finish_image(svc, ns, base, [*layers, layer], reference, lease)
        ok = True
        return out
    finally:
        svc.end_lease(ns, lease, collect=not ok)


