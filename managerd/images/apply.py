"""Apply a layer tar to a directory, safely, and measure its diff_id on the way.

Owns the reading of layer streams (gzip, zstd or plain tar, decompressed
here, hashed to the diff_id as the tar is read) and writing their entries
into one snapshot directory: regular files, directories, symlinks, hard
links, devices and FIFOs with ownership, permissions, xattrs and mtimes.
Whiteouts (`.wh.<name>`, `.wh..wh..opq`) become overlayfs whiteouts (char
device 0:0, `trusted.overlay.opaque=y`) when applying into an overlay upper
dir, or deletions when applying into a full copy (native snapshots).

Safety: no entry may write outside `root`. Names with `..` or a leading `/`,
relative symlinks that climb above the root, and hard links whose target is
outside are refused (LayerError names the layer and entry). Every path is
resolved one component at a time inside the root; symlinks met on the way
are followed as if the root were `/` (chroot semantics), never out of it;
an existing entry at the destination is replaced, never written through.

Must not: use tarfile.extractall, touch anything but `root` (lower dirs are
only read, for hard-link targets and parent directory attributes), or decide
where the directory comes from (pull.py and the snapshotter do).
"""

from __future__ import annotations

import array
import errno
import fcntl
import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from dockyard.errdefs import InvalidArgument

__all__ = ["LayerError", "NeedsParents", "ApplyResult", "apply_layer", "inherit_dir_attrs", "ChunkReader", "decompressed",
           "HashingReader", "spread_inodes", "WHITEOUT_PREFIX", "OPAQUE", "OVERLAY_OPAQUE_XATTR"]

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
COPY_CHUNK = 1 << 20
_MAX_LINKS = 40  # symlink hops while resolving one path (Linux's MAXSYMLINKS)


def _read_umask() -> int:
    """This process's umask, read without changing it (os.umask would race threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777  # unknown: never trust the create mode, always chmod


_UMASK = _read_umask()
_EUID, _EGID = os.geteuid(), os.getegid()


class LayerError(InvalidArgument):
    """A layer that cannot be applied: unsafe entry, bad data, digest mismatch."""


class NeedsParents(LayerError):
    """A hard link names a file of a lower layer, and no lowers were given."""


class _Readable(Protocol):
    def read(self, n: int = -1) -> bytes: ...


# --- streams -------------------------------------------------------------------------------

class ChunkReader:
    """A forward-only file object over an iterator of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]):
        self._it: Iterator[bytes] = iter(chunks)
        self._buf = memoryview(b"")
        self.consumed = 0  # bytes handed out

    def _fill(self) -> bool:
        for chunk in self._it:
            if chunk:
                self._buf = memoryview(chunk)
                return True
        return False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [bytes(self._buf)]
            self._buf = memoryview(b"")
            parts += list(self._it)
            out = b"".join(parts)
        else:
            if not self._buf and not self._fill():
                return b""
            out = bytes(self._buf[:n])
            self._buf = self._buf[n:]
        self.consumed += len(out)
        return out


class _GzipReader:
    """gzip decompression over a compressed file object (zlib directly: C speed;
    concatenated members allowed, as gzip(1) and pigz can write them)."""

    def __init__(self, src: _Readable):
        self._src = src
        self._z = zlib.decompressobj(31)
        self._buf = memoryview(b"")
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        while not self._buf and not self._eof:
            data = self._src.read(COPY_CHUNK)
            if not data:
                if not self._z.eof:
                    raise LayerError("gzip stream ends before its end marker (truncated layer)")
                self._eof = True
                break
            if self._z.eof:  # a second member follows
                data = self._z.unused_data + data
                self._z = zlib.decompressobj(31)
            try:
                self._buf = memoryview(self._z.decompress(data))
            except zlib.error as err:
                raise LayerError(f"gzip: {err}") from err
            if self._z.eof and self._z.unused_data.strip(b"\0"):
                rest = self._z.unused_data
                self._z = zlib.decompressobj(31)
                try:
                    self._buf = memoryview(bytes(self._buf) + self._z.decompress(rest))
                except zlib.error as err:
                    raise LayerError(f"gzip: {err}") from err
        if n is None or n < 0:
            out = bytes(self._buf) + b"".join(iter(lambda: self.read(COPY_CHUNK), b""))
            self._buf = memoryview(b"")
            return out
        out = bytes(self._buf[:n])
        self._buf = self._buf[n:]
        return out


def decompressed(src: _Readable, compression: str) -> _Readable:
    """A reader of the uncompressed tar for "gzip", "zstd" or "none"."""
    if compression == "gzip":
        return _GzipReader(src)
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(src, read_size=COPY_CHUNK,
                                                          read_across_frames=True)
    if compression == "none":
        return src
    raise LayerError(f"unsupported layer compression {compression!r}")


class HashingReader:
    """Passes reads through and hashes them: the diff_id of the uncompressed tar."""

    def __init__(self, src: _Readable):
        self._src = src
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        self._hash.update(data)
        self.size += len(data)
        return data

    def tell(self) -> int:
        return self.size

    def seek(self, pos: int, whence: int = 0) -> int:
        """Forward only (skipping reads and hashes the bytes): enough for tarfile's reader."""
        if whence == 1:
            pos += self.size
        elif whence != 0:
            raise OSError("layer stream: can only seek from the start or the current position")
        if pos < self.size:
            raise OSError(f"layer stream: cannot seek back from {self.size} to {pos}")
        while self.size < pos:
            if not self.read(min(COPY_CHUNK, pos - self.size)):
                break
        return self.size

    def drain(self) -> None:
        """Read to the end (the tar's trailing zero blocks count in the diff_id)."""
        while self.read(COPY_CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


# --- tar headers -----------------------------------------------------------------------------

_FAST_TYPES = (tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE)
_POSIX_MAGIC = tarfile.POSIX_MAGIC  # b"ustar\x0000": ustar and pax (Go's and Python's writers)
_NUMERIC = ((100, 108), (108, 116), (116, 124), (124, 136), (136, 148), (329, 337), (337, 345))


def _octal(field: bytes) -> int:
    return int(field.split(b"\0", 1)[0].strip() or b"0", 8)


class _TarInfo(tarfile.TarInfo):
    """tarfile's TarInfo with a faster header parser for the common header (ustar
    magic; file, dir, symlink or hard link; octal numbers; unsigned checksum): per
    entry it is a few slices and int() calls instead of tarfile's per-field helpers
    (~35% of the Python time unpacking 10,000 small files). Anything else (GNU or
    v7 headers, base-256 numbers, pax/GNU extension headers, sparse files) goes to
    tarfile's own parser, as does any field this one cannot read: its errors stay."""

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        if len(buf) != tarfile.BLOCKSIZE or buf[156:157] not in _FAST_TYPES \
                or buf[257:265] != _POSIX_MAGIC:
            return super().frombuf(buf, encoding, errors)
        try:
            mode, uid, gid, size, mtime, devmajor, devminor = (
                _octal(buf[a:b]) for a, b in _NUMERIC)
            chksum = _octal(buf[148:156])
        except ValueError:
            return super().frombuf(buf, encoding, errors)
        # the unsigned sum with the checksum field counted as 8 spaces
        if chksum != sum(buf) - sum(buf[148:156]) + 256:
            return super().frombuf(buf, encoding, errors)
        obj = cls()
        name = buf[0:100].split(b"\0", 1)[0].decode(encoding, errors)
        obj.mode, obj.uid, obj.gid, obj.size, obj.mtime = mode, uid, gid, size, mtime
        obj.chksum = chksum
        obj.type = buf[156:157]
        obj.linkname = buf[157:257].split(b"\0", 1)[0].decode(encoding, errors)
        obj.uname = buf[265:297].split(b"\0", 1)[0].decode(encoding, errors)
        obj.gname = buf[297:329].split(b"\0", 1)[0].decode(encoding, errors)
        obj.devmajor, obj.devminor = devmajor, devminor
        if obj.type == tarfile.DIRTYPE:
            name = name.rstrip("/")
        prefix = buf[345:500].split(b"\0", 1)[0].decode(encoding, errors)
        obj.name = f"{prefix}/{name}" if prefix else name
        return obj


# --- applying --------------------------------------------------------------------------------

@dataclass
class ApplyResult:
    diff_id: str
    tar_size: int  # bytes of uncompressed tar
    size: int  # bytes of regular file content written
    # parent dirs the tar did not list, created here: they take a lower layer's
    # attributes (inherit_dir_attrs) when the lowers were not known at apply time
    implicit_dirs: list[str] = field(default_factory=list)


@dataclass
class _Applier:
    root: str
    overlay: bool
    parents: list[str]
    layer: str
    dirs: dict[str, str] = field(default_factory=dict)  # rel dir -> real abs dir
    written: set[str] = field(default_factory=set)  # rel paths this layer created
    # real dirs this apply created (empty when made) and real paths it created: a
    # new entry in such a dir needs no lstat to find what it replaces
    fresh: set[str] = field(default_factory=set)
    made: set[str] = field(default_factory=set)
    # fresh dirs without setgid or xattrs (no default ACL): a root-created file in
    # them gets owner 0:0 and its create mode, so fchown/fchmod can be skipped
    plain: set[str] = field(default_factory=set)
    dir_times: list[tuple[str, int]] = field(default_factory=list)
    implicit: set[str] = field(default_factory=set)
    standalone: bool = False  # applying ahead of the lowers (into a staging dir)
    size: int = 0

    def fail(self, name: str, why: str) -> LayerError:
        return LayerError(f"layer {self.layer}: entry {name!r}: {why}")

    # path handling

    def clean(self, name: str, what: str = "path") -> list[str]:
        if name.startswith("/"):
            raise self.fail(name, f"absolute {what} is not allowed in a layer")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.fail(name, f"{what} with '..' would write outside the layer root")
        return parts

    def resolve_dir(self, parts: list[str], name: str, create: bool = True, hops: int = 0) -> str:
        """The real directory for rel parts, walking inside the root (scoped symlinks)."""
        key = "/".join(parts)
        hit = self.dirs.get(key)
        if hit is not None:
            return hit
        cur = self.root
        done: list[str] = []
        for i, comp in enumerate(parts):
            path = os.path.join(cur, comp)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    raise self.fail(name, f"parent {'/'.join(parts[:i + 1])!r} does not "
                                          "exist") from None
                self.mkparent(path, done + [comp])
                cur = path
                done.append(comp)
                continue
            if stat.S_ISDIR(st.st_mode):
                cur = path
                done.append(comp)
            elif stat.S_ISLNK(st.st_mode):
                if hops >= _MAX_LINKS:
                    raise self.fail(name, "too many levels of symbolic links")
                target = os.readlink(path)
                base = [] if target.startswith("/") else self.real_parts(cur)
                # chroot semantics: '..' at the root stays at the root
                new: list[str] = list(base)
                for t in target.split("/"):
                    if t in ("", "."):
                        continue
                    if t == "..":
                        if new:
                            new.pop()
                    else:
                        new.append(t)
                cur = self.resolve_dir(new, name, create, hops + 1)
                done = self.real_parts(cur)
            else:
                raise self.fail(name, f"parent {'/'.join(parts[:i + 1])!r} is not a directory")
        self.dirs[key] = cur
        return cur

    def real_parts(self, abs_dir: str) -> list[str]:
        rel = os.path.relpath(abs_dir, self.root)
        return [] if rel == "." else rel.split("/")

    def mkparent(self, path: str, rel: list[str]) -> None:
        """Create a missing parent dir, with the attributes a lower layer gives it (containerd)."""
        os.mkdir(path, 0o755)
        self.fresh.add(path)
        self.made.add(path)
        self.implicit.add("/".join(rel))
        if not _inherit(path, rel, self.parents):
            self.plain.add(path)

    def forget(self, rel: str) -> None:
        """Drop cached dir resolutions at or under rel (a dir or symlink being replaced)."""
        if not self.dirs:
            return
        prefix = rel + "/"
        for k in [k for k in self.dirs if k == rel or k.startswith(prefix)]:
            del self.dirs[k]

    def remove(self, path: str, rel: str) -> None:
        """Remove whatever is at path (never following it); forget it if it was a dir
        or symlink (cached resolutions may run through it)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            self.forget(rel)
            # resolutions cached under another name (through a symlink) and pending
            # dir mtimes may run through this real path too: a symlink put here
            # next would send them out of the root
            under = path + "/"
            for k in [k for k, v in self.dirs.items() if v == path or v.startswith(under)]:
                del self.dirs[k]
            self.dir_times = [(p, t) for p, t in self.dir_times
                              if p != path and not p.startswith(under)]

    # entries

    def apply(self, tf: tarfile.TarFile) -> None:
        for ti in tf:
            try:
                self.entry(tf, ti)
            except LayerError:
                raise
            except OSError as err:
                raise self.fail(ti.name, f"{err.strerror or err}") from err
        # directory mtimes last: writing their contents changed them
        for path, mtime in reversed(self.dir_times):
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    def entry(self, tf: tarfile.TarFile, ti: tarfile.TarInfo) -> None:
        name = ti.name
        parts = self.clean(name)
        if not parts:
            return  # the root itself: its attributes belong to the snapshot
        base = parts[-1]
        rel = "/".join(parts)
        parent = self.resolve_dir(parts[:-1], name)
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(parent, parts, base, name)
            return
        path = os.path.join(parent, base)
        if ti.isdir():
            try:
                st = os.lstat(path)
                if not stat.S_ISDIR(st.st_mode):
                    os.unlink(path)
                    self.forget(rel)
                    raise FileNotFoundError
            except FileNotFoundError:
                os.mkdir(path, 0o700)
                self.fresh.add(path)
                self.made.add(path)
            self.attrs(path, ti, is_dir=True)
            self.dirs[rel] = path
            self.written.add(rel)
            self.implicit.discard(rel)
            if path in self.fresh and not ti.mode & stat.S_ISGID and not ti.pax_headers:
                self.plain.add(path)
            else:
                self.plain.discard(path)
            return
        if parent not in self.fresh or path in self.made:
            self.remove(path, rel)
        self.made.add(path)
        if ti.isreg():
            mode = ti.mode & 0o7777
            plain = parent in self.plain
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         mode & 0o777 if plain else 0o600)
            try:
                if ti.size:
                    # the data follows the header in the stream: read it directly
                    # (tarfile.extractfile costs a buffered wrapper per file)
                    src = tf.fileobj
                    src.seek(ti.offset_data)
                    left = ti.size
                    while left:
                        chunk = src.read(min(left, COPY_CHUNK))
                        if not chunk:
                            raise self.fail(name, "layer ends inside this file's data")
                        os.write(fd, chunk)
                        left -= len(chunk)
                    self.size += ti.size
                # each inode update is a journal transaction: skip the ones that
                # would change nothing (most files of most layers)
                if not (plain and ti.uid == _EUID and ti.gid == _EGID):
                    os.fchown(fd, ti.uid, ti.gid)
                if not (plain and ti.uid == _EUID and ti.gid == _EGID
                        and mode == mode & 0o777 & ~_UMASK):
                    os.fchmod(fd, mode)
                self.xattrs(path, ti, fd)
                os.utime(fd, ns=(ti.mtime * 10**9,) * 2)
            finally:
                os.close(fd)
        elif ti.issym():
            target = ti.linkname
            if not target.startswith("/"):
                depth = len(parts) - 1
                for t in target.split("/"):
                    if t == "..":
                        depth -= 1
                        if depth < 0:
                            raise self.fail(name, f"symlink to {target!r} points outside the "
                                                  "layer root")
                    elif t not in ("", "."):
                        depth += 1
            os.symlink(target, path)
            self.attrs(path, ti)
        elif ti.islnk():
            self.hardlink(ti, path, name)
        elif ti.ischr() or ti.isblk() or ti.isfifo():
            kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK if ti.isblk() else stat.S_IFIFO
            os.mknod(path, kind | 0o600, os.makedev(ti.devmajor, ti.devminor))
            self.attrs(path, ti)
        else:
            raise self.fail(name, f"unsupported tar entry type {ti.type!r}")
        self.written.add(rel)

    def attrs(self, path: str, ti: tarfile.TarInfo, is_dir: bool = False) -> None:
        os.chown(path, ti.uid, ti.gid, follow_symlinks=False)
        if not ti.issym():
            os.chmod(path, ti.mode & 0o7777)
        self.xattrs(path, ti)
        if is_dir:
            self.dir_times.append((path, ti.mtime * 10**9))
        else:
            os.utime(path, ns=(ti.mtime * 10**9,) * 2, follow_symlinks=False)

    def xattrs(self, path: str, ti: tarfile.TarInfo, fd: int | None = None) -> None:
        for key, value in ti.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key[len("SCHILY.xattr."):]
            if attr.startswith("trusted.overlay."):
                raise self.fail(ti.name, f"xattr {attr!r} is reserved for overlayfs")
            raw = value.encode("utf-8", "surrogateescape")
            try:
                if fd is not None:
                    os.setxattr(fd, attr, raw)
                else:
                    os.setxattr(path, attr, raw, follow_symlinks=False)
            except OSError as err:
                # user.* on symlinks and some filesystems' missing namespaces: skip, as Docker does
                if err.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise

    def hardlink(self, ti: tarfile.TarInfo, path: str, name: str) -> None:
        tparts = self.clean(ti.linkname.lstrip("/"), "hard link target")
        if not tparts:
            raise self.fail(name, "hard link to the layer root")
        try:
            tdir = self.resolve_dir(tparts[:-1], name, create=False)
        except LayerError:
            tdir = None
        target = os.path.join(tdir, tparts[-1]) if tdir else None
        if target is None or not os.path.lexists(target):
            target = self.copy_up(tparts, name)
        if os.path.isdir(target) and not os.path.islink(target):
            raise self.fail(name, f"hard link to directory {ti.linkname!r}")
        os.link(target, path, follow_symlinks=False)

    def copy_up(self, tparts: list[str], name: str) -> str:
        """A hard link to a file of a lower layer: copy it into this layer first (overlay)."""
        for lower in self.parents:
            src = os.path.join(lower, *tparts)
            if os.path.lexists(src) and not os.path.isdir(src):
                real = os.path.realpath(src)
                if not (real + "/").startswith(os.path.realpath(lower) + "/") and \
                        not os.path.islink(src):
                    break
                dst_dir = self.resolve_dir(tparts[:-1], name)
                dst = os.path.join(dst_dir, tparts[-1])
                if os.path.islink(src):
                    os.symlink(os.readlink(src), dst)
                else:
                    shutil.copy2(src, dst, follow_symlinks=False)
                    st = os.lstat(src)
                    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
                return dst
        err = self.fail(name, f"hard link target {'/'.join(tparts)!r} is not in this layer "
                              "or below")
        if not self.parents and self.standalone:
            raise NeedsParents(str(err))
        raise err

    def whiteout(self, parent: str, parts: list[str], base: str, name: str) -> None:
        prel = "/".join(parts[:-1])
        if base == OPAQUE:
            if self.overlay:
                os.setxattr(parent, OVERLAY_OPAQUE_XATTR, b"y")
            else:
                for child in os.listdir(parent):
                    crel = f"{prel}/{child}" if prel else child
                    if crel not in self.written:
                        self.remove(os.path.join(parent, child), crel)
            return
        victim = base[len(WHITEOUT_PREFIX):]
        if not victim or victim in (".", "..") or victim.startswith(WHITEOUT_PREFIX):
            raise self.fail(name, "invalid whiteout name")
        vrel = f"{prel}/{victim}" if prel else victim
        if vrel in self.written:
            return  # whiteouts hide lower layers only (image-spec layer.md)
        vpath = os.path.join(parent, victim)
        self.remove(vpath, vrel)
        if self.overlay:
            os.mknod(vpath, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def apply_layer(src: _Readable, root: str | os.PathLike, *, compression: str = "none",
                overlay: bool = False, parents: Iterable[str] = (),
                layer: str = "", standalone: bool = False,
                empty_root: bool = False) -> ApplyResult:
    """Apply one (compressed) layer stream to root and return its diff_id.

    Args:
        src: the layer blob's bytes (file object, e.g. a ChunkReader over a download).
        root: the snapshot directory to write into (an overlay upper dir, or a full copy).
        compression: "gzip", "zstd" or "none".
        overlay: write whiteouts as overlayfs whiteouts (upper dir) instead of deleting.
        parents: lower directories, topmost first (overlay: hard-link targets, parent attrs).
        layer: the layer's name in error messages (its digest).
        standalone: the lowers exist but are not given (unpacking ahead of them):
            a hard link into them raises NeedsParents, so the caller can retry later.
        empty_root: root is a new empty dir (saves a lookup per entry).

    Returns:
        ApplyResult with the diff_id (sha256 of the whole uncompressed stream).

    Raises:
        LayerError: an unsafe or malformed entry, or an unreadable stream.
    """
    reader = HashingReader(decompressed(src, compression))
    applier = _Applier(os.fspath(root), overlay, list(parents), layer, standalone=standalone)
    if empty_root:
        applier.fresh.add(applier.root)
        st = os.stat(applier.root)
        if not st.st_mode & stat.S_ISGID and not os.listxattr(applier.root):
            applier.plain.add(applier.root)
    try:
        # "r:" on a forward-only stream: tarfile reads headers straight from it
        # (its "r|" stream wrapper re-copies its buffer on every header read)
        with tarfile.open(fileobj=reader, mode="r:", tarinfo=_TarInfo) as tf:
            tf.errorlevel = 2
            applier.apply(tf)
        reader.drain()
    except LayerError as err:
        if not str(err).startswith(f"layer {layer}"):
            raise LayerError(f"layer {layer}: {err}") from err
        raise
    except (tarfile.TarError, EOFError) as err:
        raise LayerError(f"layer {layer}: not a valid tar stream: {err}") from err
    except Exception as err:
        if type(err).__module__.startswith("zstandard") or "zstd" in type(err).__name__.lower():
            raise LayerError(f"layer {layer}: zstd: {err}") from err
        raise
    return ApplyResult(reader.digest(), reader.size, applier.size, sorted(applier.implicit))


def _inherit(path: str, rel: list[str], parents: Iterable[str]) -> bool:
    """Copy a lower layer's attributes of the same dir; True if one had it."""
    for lower in parents:
        try:
            st = os.lstat(os.path.join(lower, *rel))
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            os.chown(path, st.st_uid, st.st_gid)
            os.chmod(path, stat.S_IMODE(st.st_mode))
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
            return True
        return False
    return False


def inherit_dir_attrs(root: str, rels: Iterable[str], parents: Iterable[str]) -> None:
    """Give dirs a layer created implicitly the attributes lower layers have for them
    (for layers unpacked before their lowers were known)."""
    parents = list(parents)
    real_root = os.path.realpath(root)
    for rel in rels:
        path = os.path.join(real_root, rel)
        # a later entry may have replaced a parent by a symlink: never follow it out
        if os.path.realpath(path) == path and os.path.isdir(path):
            _inherit(path, rel.split("/"), parents)


_FS_IOC_GETFLAGS = 0x80086601  # _IOR('f', 1, long) on 64-bit Linux
_FS_IOC_SETFLAGS = 0x40086602
_FS_TOPDIR_FL = 0x00020000


def spread_inodes(path: str) -> bool:
    """Mark path as a top of directory hierarchies (chattr +T): ext4's Orlov allocator
    then puts each dir made in it in its own block group (hashed from its name)
    instead of next to its parent. Why: on an ext4 without a journal, allocating
    an inode scans past every inode of the group deleted in the last ~30 s
    (recently_deleted() per candidate), so unpacking 10,000 files where the previous
    image's 10,000 were just removed costs 5-10x the kernel time (measured: tar -xzf
    of the bench's small-files layer 4.6-16 s in a plain dir, 1.5 s under +T).
    Best effort: False when the filesystem has no such flag."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        buf = array.array("l", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buf, True)
        if not buf[0] & _FS_TOPDIR_FL:
            buf[0] |= _FS_TOPDIR_FL
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, buf, True)
        return True
    except OSError:
        return False  # ENOTTY/EOPNOTSUPP (tmpfs, overlayfs, btrfs...) or EPERM
    finally:
        os.close(fd)


def open_file_chunks(f: BinaryIO) -> Iterator[bytes]:
    """Chunks of an open file, for ChunkReader."""
    while chunk := f.read(COPY_CHUNK):
        yield chunk
