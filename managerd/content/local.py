"""The namespaced content store: the blobs of content/store.py plus each namespace's
records of them (labels, timestamps) in the metadata database.

A blob is visible in a namespace once that namespace records it: by a commit
there, or, when the blob is on disk already (another namespace has it), by
opening a writer with its expected digest, which records it and raises
AlreadyExists (no bytes need to move: they were verified when first
committed). Ingest refs are per namespace. Objects written under a lease are
added to it (leases protect them from garbage collection).

This is the in-process API images and the Content gRPC service use.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from dockyard.managerd import filters as _filters
from dockyard.managerd.content.store import (
    ContentStore,
    IngestStatus,
    Writer,
    validate_digest,
)
from dockyard.managerd.metadata._fields import apply_map, validate_labels
from dockyard.managerd.metadata.db import DB, dump_map, load_map, now_ns
from dockyard.managerd.metadata.leases import Resource

from dockyard.errdefs import AlreadyExists, InvalidArgument, NotFound, Unavailable

__all__ = ["Content", "ContentWriter", "Info"]


@dataclass
class Info:
    digest: str
    size: int
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0

    def field(self, path: list[str]) -> str | None:
        if path[0] == "labels" and len(path) > 1:
            return self.labels.get(".".join(path[1:]))
        return {"digest": self.digest, "size": str(self.size)}.get(".".join(path))


def _row(r: sqlite3.Row) -> Info:
    return Info(r["digest"], r["size"], load_map(r["labels"]), r["created_at"], r["updated_at"])


class Content:
    """Namespaced blobs. `store` is the shared on-disk ContentStore."""

    def __init__(self, store: ContentStore, db: DB, namespaces, leases, events) -> None:
        self.store, self.db, self.namespaces = store, db, namespaces
        self.leases, self.events = leases, events

    # records

    def info(self, ns: str, digest: str) -> Info:
        validate_digest(digest)
        row = self.db.conn().execute("SELECT * FROM content WHERE namespace=? AND digest=?",
                                     (ns, digest)).fetchone()
        if row is None:
            raise NotFound(f"content {digest}: not found")
        return _row(row)

    def list(self, ns: str, filters: Sequence[str] = ()) -> list[Info]:
        fs = _filters.compile_all(filters)
        rows = self.db.conn().execute("SELECT * FROM content WHERE namespace=? ORDER BY digest",
                                      (ns,)).fetchall()
        return [i for i in map(_row, rows) if _filters.match_any(fs, i.field)]

    def update(self, ns: str, digest: str, labels: dict[str, str],
               fieldpaths: Sequence[str] = ()) -> Info:
        for p in fieldpaths:
            if p != "labels" and not p.startswith("labels."):
                raise InvalidArgument(f"update content {digest}: cannot update field {p!r}")
        with self.db.tx() as conn:
            info = self.info(ns, digest)
            info.labels = validate_labels(
                apply_map(info.labels, labels, fieldpaths or ["labels"], "labels")[0],
                f"content {digest}")
            info.updated_at = now_ns()
            conn.execute("UPDATE content SET labels=?, updated_at=? WHERE namespace=? AND digest=?",
                         (dump_map(info.labels), info.updated_at, ns, digest))
        return info

    def delete(self, ns: str, digest: str) -> None:
        """Drop the namespace's record; the file goes when no namespace records it."""
        validate_digest(digest)
        with self.db.tx() as conn:
            n = conn.execute("DELETE FROM content WHERE namespace=? AND digest=?",
                             (ns, digest)).rowcount
            if n == 0:
                raise NotFound(f"content {digest}: not found")
            self._delete_file_if_unused(conn, digest)
        from dockyard.protos.events import content_pb2
        self.events.publish(ns, "/content/delete", content_pb2.ContentDelete(digest=digest))

    def _delete_file_if_unused(self, conn: sqlite3.Connection, digest: str) -> bool:
        """Inside a write transaction (so no commit can record it meanwhile)."""
        if conn.execute("SELECT 1 FROM content WHERE digest=? LIMIT 1", (digest,)).fetchone():
            return False
        try:
            self.store.delete(digest)
        except NotFound:
            return False
        return True

    def _record(self, ns: str, digest: str, size: int, labels: dict[str, str],
                lease: str | None) -> tuple[Info, bool]:
        """Record a blob in ns (inside or outside a transaction). Returns (info, created)."""
        t = now_ns()
        with self.db.tx() as conn:
            self.namespaces.ensure(conn, ns)
            if lease:
                self.leases.add_in_tx(conn, ns, lease, Resource(digest, "content"))
            cur = conn.execute("INSERT OR IGNORE INTO content (namespace, digest, size, labels, "
                               "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                               (ns, digest, size, dump_map(labels), t, t))
            created = cur.rowcount == 1
            info = self.info(ns, digest)
        return info, created

    def _published(self, ns: str, info: Info) -> Info:
        from dockyard.protos.events import content_pb2
        self.events.publish(ns, "/content/create",
                            content_pb2.ContentCreate(digest=info.digest, size=info.size))
        return info

    # reading

    def path(self, ns: str, digest: str) -> str:
        """The blob's file (read-only); raises NotFound unless recorded in ns."""
        self.info(ns, digest)
        return self.store.path(digest)

    def open(self, ns: str, digest: str) -> BinaryIO:
        self.info(ns, digest)
        return self.store.open(digest)

    def read(self, ns: str, digest: str, offset: int = 0, size: int = 0) -> Iterator[bytes]:
        self.info(ns, digest)
        return self.store.read(digest, offset, size)

    def read_all(self, ns: str, digest: str) -> bytes:
        with self.open(ns, digest) as f:
            return f.read()

    # writing

    def writer(self, ns: str, ref: str, expected_digest: str | None = None,
               expected_size: int | None = None, lease: str | None = None) -> ContentWriter:
        """Open or resume the ingest `ref` of namespace ns.

        Raises:
            AlreadyExists: the expected blob is present (it is now recorded in ns: harmless).
            Unavailable: another writer holds ref.
            NotFound: the lease does not exist.
        """
        if not ref:
            raise InvalidArgument("content writer: ref is required")
        if expected_digest:
            validate_digest(expected_digest)
            found = None
            with self.db.tx():  # a collection cannot delete the file between check and record
                if self.store.exists(expected_digest):
                    size = self.store.info(expected_digest).size
                    found = self._record(ns, expected_digest, size, {}, lease)
            if found is not None:
                if found[1]:
                    self._published(ns, found[0])
                raise AlreadyExists(f"content {expected_digest}: already exists")
        if lease:
            with self.db.tx() as conn:
                self.namespaces.ensure(conn, ns)
                self.leases.add_in_tx(conn, ns, lease, Resource(ref, "ingests"))
        raw = self.store.writer(f"{ns}/{ref}", expected_digest, expected_size)
        return ContentWriter(self, ns, ref, raw, lease)

    def write_blob(self, ns: str, ref: str, data: bytes, expected_digest: str | None = None,
                   labels: dict[str, str] | None = None, lease: str | None = None) -> Info:
        """Write a whole blob; an already present blob is not an error (returns its info).

        Another writer of the same ref (two pulls of one image) is waited for, up
        to 30 s: its commit usually makes this write unnecessary.
        """
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    w = self.writer(ns, ref, expected_digest, len(data), lease)
                    break
                except Unavailable:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            with w:
                if w.offset:
                    w.truncate(0)
                w.write(data)
                try:
                    return w.commit(len(data), expected_digest, labels)
                except InvalidArgument:
                    w.abort()  # bad bytes: nothing to resume, and no one else would abort it
                    raise
        except AlreadyExists:
            info = self.info(ns, expected_digest or _digest(data))
            if labels:
                info = self.update(ns, info.digest, labels, [f"labels.{k}" for k in labels])
            return info

    def status(self, ns: str, ref: str) -> IngestStatus:
        st = self.store.status(f"{ns}/{ref}")
        return _strip(st, ns)

    def statuses(self, ns: str, filters: Sequence[str] = ()) -> list[IngestStatus]:
        fs = _filters.compile_all(filters)
        prefix = f"{ns}/"
        out = [_strip(s, ns) for s in self.store.statuses() if s.ref.startswith(prefix)]
        return [s for s in out if _filters.match_any(
            fs, _filters.mapping_getter({"ref": s.ref, "expected": s.expected}))]

    def abort(self, ns: str, ref: str) -> None:
        self.store.abort(f"{ns}/{ref}")


def _digest(data: bytes) -> str:
    from dockyard.managerd.content.store import digest_of
    return digest_of(data)


def _strip(st: IngestStatus, ns: str) -> IngestStatus:
    return IngestStatus(st.ref[len(ns) + 1:], st.offset, st.total, st.expected,
                        st.started_at, st.updated_at)


class ContentWriter:
    """A namespaced ingest: ``.offset``, ``.write(b)``, ``.commit(size, digest, labels)``,
    ``.abort()``, ``.close()`` (keeps data for a resume). Context manager."""

    def __init__(self, content: Content, ns: str, ref: str, raw: Writer, lease: str | None):
        self._content, self.ns, self.ref, self._raw, self.lease = content, ns, ref, raw, lease

    @property
    def offset(self) -> int:
        return self._raw.offset

    @property
    def total(self) -> int:
        return self._raw.total

    @property
    def expected(self) -> str:
        return self._raw.expected

    @property
    def started_at(self) -> int:
        return self._raw.started_at

    def write(self, data: bytes, offset: int | None = None) -> int:
        return self._raw.write(data, offset)

    def truncate(self, size: int = 0) -> None:
        self._raw.truncate(size)

    def digest(self) -> str:
        return self._raw.digest()

    def commit(self, size: int = 0, expected: str | None = None,
               labels: dict[str, str] | None = None) -> Info:
        """Verify, publish and record the blob in the namespace.

        Raises:
            InvalidArgument: size or digest mismatch (the ingest stays; abort it).
            AlreadyExists: the blob was there already (now recorded in ns: harmless).
        """
        labels = validate_labels(labels or {}, f"content ingest {self.ref}")
        c = self._content
        exists = False
        with c.db.tx():  # no collection can delete the file between link and record
            try:
                digest = self._raw.commit(size, expected)
            except AlreadyExists:
                digest, exists = self._raw.digest(), True
            info, created = c._record(self.ns, digest, c.store.info(digest).size, labels,
                                      self.lease)
        if created:
            c._published(self.ns, info)
        if exists:
            raise AlreadyExists(f"content {digest}: already exists")
        return info

    def abort(self) -> None:
        self._raw.abort()

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> ContentWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
