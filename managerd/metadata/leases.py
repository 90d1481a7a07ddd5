"""Leases: named holds that keep blobs, ingests and snapshots out of garbage collection.

A resource is (type, id): ("content", digest), ("ingests", ref) or
("snapshots/<snapshotter>", key). A lease past its expires_at protects nothing
and is deleted by the next collection.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from dockyard.managerd import filters as _filters
from dockyard.managerd.metadata._fields import validate_labels
from dockyard.managerd.metadata.db import DB, dump_map, load_map, now_ns

from dockyard.errdefs import AlreadyExists, InvalidArgument, NotFound

__all__ = ["Lease", "Resource", "Leases"]


@dataclass
class Lease:
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    expires_at: int | None = None  # ns


@dataclass(frozen=True)
class Resource:
    id: str
    type: str


def _validate_resource(res: Resource) -> None:
    if not res.id:
        raise InvalidArgument("lease resource: id is required")
    if res.type not in ("content", "ingests") and not (
            res.type.startswith("snapshots/") and len(res.type) > len("snapshots/")):
        raise InvalidArgument(f"lease resource {res.id}: unknown type {res.type!r} "
                              "(content, ingests or snapshots/<snapshotter>)")


class Leases:
    def __init__(self, db: DB, namespaces) -> None:
        self.db, self.namespaces = db, namespaces
        self.gc = None  # set by the wiring: delete triggers a collection

    def create(self, ns: str, lease_id: str = "", labels: dict[str, str] | None = None,
               expires_at: int | None = None) -> Lease:
        lease_id = lease_id or f"lease-{os.urandom(8).hex()}"
        labels = validate_labels(labels or {}, f"lease {lease_id}")
        lease = Lease(lease_id, labels, now_ns(), expires_at)
        with self.db.tx() as conn:
            self.namespaces.ensure(conn, ns)
            try:
                conn.execute("INSERT INTO leases (namespace, id, labels, created_at, expires_at) "
                             "VALUES (?, ?, ?, ?, ?)",
                             (ns, lease_id, dump_map(labels), lease.created_at, expires_at))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"lease {lease_id}: already exists") from None
        return lease

    def get(self, ns: str, lease_id: str) -> Lease:
        row = self.db.conn().execute("SELECT * FROM leases WHERE namespace=? AND id=?",
                                     (ns, lease_id)).fetchone()
        if row is None:
            raise NotFound(f"lease {lease_id}: not found")
        return Lease(row["id"], load_map(row["labels"]), row["created_at"], row["expires_at"])

    def list(self, ns: str, filters: Sequence[str] = ()) -> list[Lease]:
        fs = _filters.compile_all(filters)
        rows = self.db.conn().execute("SELECT * FROM leases WHERE namespace=? ORDER BY id",
                                      (ns,)).fetchall()
        out = [Lease(r["id"], load_map(r["labels"]), r["created_at"], r["expires_at"])
               for r in rows]
        return [le for le in out if _filters.match_any(
            fs, _filters.mapping_getter({"id": le.id}, {"labels": le.labels}))]

    def delete(self, ns: str, lease_id: str, sync: bool = False) -> None:
        with self.db.tx() as conn:
            cur = conn.execute("DELETE FROM leases WHERE namespace=? AND id=?", (ns, lease_id))
            if cur.rowcount == 0:
                raise NotFound(f"lease {lease_id}: not found")
        if self.gc is not None:
            self.gc.collect() if sync else self.gc.schedule()

    def add_resource(self, ns: str, lease_id: str, res: Resource) -> None:
        _validate_resource(res)
        with self.db.tx() as conn:
            self.add_in_tx(conn, ns, lease_id, res)

    def add_in_tx(self, conn: sqlite3.Connection, ns: str, lease_id: str, res: Resource) -> None:
        """Add a resource inside the caller's transaction; NotFound if the lease is unknown."""
        if conn.execute("SELECT 1 FROM leases WHERE namespace=? AND id=?",
                        (ns, lease_id)).fetchone() is None:
            raise NotFound(f"lease {lease_id}: not found")
        conn.execute("INSERT OR IGNORE INTO lease_resources (namespace, lease_id, type, "
                     "resource_id) VALUES (?, ?, ?, ?)", (ns, lease_id, res.type, res.id))

    def delete_resource(self, ns: str, lease_id: str, res: Resource) -> None:
        with self.db.tx() as conn:
            self.get(ns, lease_id)
            conn.execute("DELETE FROM lease_resources WHERE namespace=? AND lease_id=? AND "
                         "type=? AND resource_id=?", (ns, lease_id, res.type, res.id))

    def list_resources(self, ns: str, lease_id: str) -> list[Resource]:
        self.get(ns, lease_id)
        rows = self.db.conn().execute(
            "SELECT type, resource_id FROM lease_resources WHERE namespace=? AND lease_id=? "
            "ORDER BY type, resource_id", (ns, lease_id)).fetchall()
        return [Resource(r["resource_id"], r["type"]) for r in rows]
