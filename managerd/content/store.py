"""The content store on disk: verified blobs addressed by digest, and ingests.

Layout under the store root (``<manager root>/content``)::

    blobs/sha256/<hex>              committed blobs, read-only (0444), never rewritten
    ingest/<sha256(ref)>/ref        the ingest's ref (text)
    ingest/<sha256(ref)>/data       bytes written so far (resume at its size)
    ingest/<sha256(ref)>/meta.json  {"total": int, "expected": str, "started_at": ns}

A commit fsyncs the data, checks its size and digest, then hard-links it to
its blob path: link(2) fails rather than replace, so a blob is only ever
visible complete, and two writers racing on one digest end with one blob and
an AlreadyExists for the second (harmless: the bytes are the same). One writer
per ref at a time (Unavailable for the second).

This module knows nothing of namespaces, labels or leases: content/local.py
adds those on top. It must not be given unverified bytes under a blob name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.managerd.atomic import atomic_delete, fsync_dir

from dockyard.errdefs import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)

__all__ = ["ContentStore", "Writer", "BlobInfo", "IngestStatus", "validate_digest", "digest_of"]

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
CHUNK = 1 << 20


def validate_digest(digest: str) -> str:
    """Return digest if it is "sha256:<64 lowercase hex>", else raise InvalidArgument."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise InvalidArgument(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return digest


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    created_at: int  # ns, the blob file's mtime


@dataclass(frozen=True)
class IngestStatus:
    ref: str
    offset: int
    total: int  # 0 = unknown
    expected: str  # "" = unknown
    started_at: int  # ns
    updated_at: int  # ns


class ContentStore:
    """Blobs and ingests under `root`."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = os.fspath(root)
        self.blobs = os.path.join(self.root, "blobs", "sha256")
        self.ingest_root = os.path.join(self.root, "ingest")
        # 0700: image content (private images' layers) is for root only (containerd
        # CVE-2021-41103 made its plugin dirs 0700 too)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.makedirs(self.blobs, exist_ok=True)
        os.makedirs(self.ingest_root, exist_ok=True)
        for name in os.listdir(self.ingest_root):  # deletions a crash interrupted
            if name.startswith(".del-"):
                atomic_delete(os.path.join(self.ingest_root, name))
        self._locks: set[str] = set()
        self._locks_mutex = threading.Lock()

    # blobs

    def path(self, digest: str) -> str:
        """Where the blob lives (whether or not it exists)."""
        return os.path.join(self.blobs, validate_digest(digest)[len("sha256:"):])

    def exists(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def info(self, digest: str) -> BlobInfo:
        """Raises NotFound if the blob is not in the store."""
        try:
            st = os.stat(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None
        return BlobInfo(digest, st.st_size, st.st_mtime_ns)

    def open(self, digest: str) -> BinaryIO:
        """The blob opened for reading; raises NotFound."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def read(self, digest: str, offset: int = 0, size: int = 0) -> Iterator[bytes]:
        """Chunks of [offset, offset+size) (size 0 = to the end)."""
        if offset < 0 or size < 0:
            raise InvalidArgument(f"read content {digest}: negative offset or size")
        with self.open(digest) as f:
            total = os.fstat(f.fileno()).st_size
            if offset > total:
                raise InvalidArgument(f"read content {digest}: offset {offset} beyond size {total}")
            f.seek(offset)
            left = total - offset if size == 0 else min(size, total - offset)
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk

    def read_all(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def delete(self, digest: str) -> None:
        """Remove the blob file; raises NotFound if absent."""
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def list(self) -> Iterator[BlobInfo]:
        for name in sorted(os.listdir(self.blobs)):
            with contextlib.suppress(FileNotFoundError, InvalidArgument):
                yield self.info("sha256:" + name)

    # ingests

    def _ingest_dir(self, ref: str) -> str:
        if not ref:
            raise InvalidArgument("content ingest: ref is required")
        return os.path.join(self.ingest_root, hashlib.sha256(ref.encode()).hexdigest())

    def writer(self, ref: str, expected_digest: str | None = None,
               expected_size: int | None = None) -> Writer:
        """Open (or resume) the ingest `ref`.

        Raises:
            AlreadyExists: expected_digest is given and that blob is committed already.
            Unavailable: another writer holds `ref`.
            InvalidArgument: bad digest or size.
        """
        if expected_digest:
            validate_digest(expected_digest)
            if self.exists(expected_digest):
                raise AlreadyExists(f"content {expected_digest}: already exists")
        if expected_size is not None and expected_size < 0:
            raise InvalidArgument(f"content ingest {ref}: negative expected size {expected_size}")
        path = self._ingest_dir(ref)
        with self._locks_mutex:
            if ref in self._locks:
                raise Unavailable(f"content ingest {ref}: ref is locked by another writer")
            self._locks.add(ref)
        try:
            return Writer(self, ref, path, expected_digest or "", expected_size or 0)
        except BaseException:
            self._unlock(ref)
            raise

    def _unlock(self, ref: str) -> None:
        with self._locks_mutex:
            self._locks.discard(ref)

    def status(self, ref: str) -> IngestStatus:
        """Raises NotFound when no ingest has that ref."""
        path = self._ingest_dir(ref)
        try:
            with open(os.path.join(path, "meta.json")) as f:
                meta = json.load(f)
            st = os.stat(os.path.join(path, "data"))
        except FileNotFoundError:
            raise NotFound(f"content ingest {ref}: not found") from None
        return IngestStatus(meta["ref"], st.st_size, meta.get("total", 0),
                            meta.get("expected", ""), meta["started_at"], st.st_mtime_ns)

    def statuses(self) -> list[IngestStatus]:
        out = []
        for name in sorted(os.listdir(self.ingest_root)):
            if name.startswith("."):
                continue
            try:
                with open(os.path.join(self.ingest_root, name, "meta.json")) as f:
                    ref = json.load(f)["ref"]
                out.append(self.status(ref))
            except (FileNotFoundError, NotFound, KeyError, ValueError):
                continue
        return out

    def abort(self, ref: str) -> None:
        """Drop an ingest; raises NotFound if there is none, Unavailable if it is being written."""
        path = self._ingest_dir(ref)
        with self._locks_mutex:
            if ref in self._locks:
                raise Unavailable(f"content ingest {ref}: ref is locked by another writer")
            if not os.path.isdir(path):
                raise NotFound(f"content ingest {ref}: not found")
            atomic_delete(path)


class Writer:
    """One open ingest. Use as a context manager: leaving without commit keeps the
    data for a later resume (call abort() to drop it)."""

    def __init__(self, store: ContentStore, ref: str, path: str, expected: str, total: int) -> None:
        self.store, self.ref, self._dir = store, ref, path
        self._hash = hashlib.sha256()
        meta_path = os.path.join(path, "meta.json")
        if os.path.isdir(path) and os.path.exists(meta_path):
            with open(meta_path) as f:
                meta = json.load(f)
            # a resume: hash what is there so the digest check covers every byte
            self._file = open(os.path.join(path, "data"), "r+b")
            while chunk := self._file.read(CHUNK):
                self._hash.update(chunk)
            self.offset = self._file.tell()
            self.started_at = meta["started_at"]
            self.expected = expected or meta.get("expected", "")
            self.total = total or meta.get("total", 0)
            if (expected and meta.get("expected") and expected != meta["expected"]) or \
                    (total and meta.get("total") and total != meta["total"]):
                self._save_meta()
        else:
            os.makedirs(path, exist_ok=True)
            self._file = open(os.path.join(path, "data"), "w+b")
            self.offset = 0
            self.started_at = time.time_ns()
            self.expected, self.total = expected, total
            self._save_meta()
        self._closed = False

    def _save_meta(self) -> None:
        tmp = os.path.join(self._dir, ".meta.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"ref": self.ref, "total": self.total, "expected": self.expected,
                       "started_at": self.started_at}, f)
        os.replace(tmp, os.path.join(self._dir, "meta.json"))

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, data: bytes, offset: int | None = None) -> int:
        """Append data (at `offset`, which must be the current offset if given).

        Returns:
            The new offset.
        """
        self._check_open()
        if offset is not None and offset != self.offset:
            raise InvalidArgument(f"content ingest {self.ref}: write at offset {offset}, "
                                  f"but the ingest is at {self.offset}")
        if self.total and self.offset + len(data) > self.total:
            raise InvalidArgument(f"content ingest {self.ref}: {self.offset + len(data)} bytes "
                                  f"exceed the expected size {self.total}")
        self._file.write(data)
        self._hash.update(data)
        self.offset += len(data)
        return self.offset

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def truncate(self, size: int = 0) -> None:
        """Restart at `size` bytes (only 0 is supported: the hash cannot be rewound cheaply)."""
        self._check_open()
        if size != 0:
            raise InvalidArgument(f"content ingest {self.ref}: can only truncate to 0")
        self._file.seek(0)
        self._file.truncate(0)
        self._hash = hashlib.sha256()
        self.offset = 0

    def commit(self, size: int = 0, expected: str | None = None) -> str:
        """Verify and publish the blob; the ingest goes away.

        Args:
            size: expected size (0 = use the writer's expected size, if any).
            expected: expected digest (None = use the writer's, if any).

        Returns:
            The blob's digest.

        Raises:
            InvalidArgument: size or digest differ (the ingest is kept for inspection/abort).
            AlreadyExists: the blob was committed meanwhile (this ingest is dropped).
        """
        self._check_open()
        size = size or self.total
        expected = expected or self.expected
        if size and size != self.offset:
            raise InvalidArgument(f"content ingest {self.ref}: unexpected commit size "
                                  f"{self.offset}, expected {size}")
        digest = self.digest()
        if expected and expected != digest:
            raise InvalidArgument(f"content ingest {self.ref}: unexpected commit digest "
                                  f"{digest}, expected {expected}")
        self._file.flush()
        os.fsync(self._file.fileno())
        os.fchmod(self._file.fileno(), 0o444)
        target = self.store.path(digest)
        try:
            os.link(os.path.join(self._dir, "data"), target)
        except FileExistsError:
            self._finish()
            raise AlreadyExists(f"content {digest}: already exists") from None
        fsync_dir(self.store.blobs)
        self._finish()
        return digest

    def abort(self) -> None:
        """Drop the ingest and its data."""
        self._finish()

    def close(self) -> None:
        """Release the ref, keeping the data for a resume."""
        if not self._closed:
            self._closed = True
            self._file.close()
            self.store._unlock(self.ref)

    def _finish(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            atomic_delete(self._dir)

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPrecondition(f"content ingest {self.ref}: writer is closed")
