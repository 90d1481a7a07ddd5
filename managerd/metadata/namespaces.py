"""Namespaces: names every other object is scoped by.

A namespace is created explicitly (Namespaces.Create) or implicitly by the
first object created in it (``ensure``); it can only be deleted empty.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from dockyard.managerd import filters as _filters
from dockyard.managerd.metadata._fields import apply_map, validate_labels
from dockyard.managerd.metadata.db import DB, dump_map, load_map, now_ns

from dockyard.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

__all__ = ["Namespace", "Namespaces", "validate_namespace"]

_NAME = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
# tables of this package holding namespaced objects, checked before a delete
_OBJECT_TABLES = ("images", "containers", "content", "snapshots", "leases")


def validate_namespace(name: str) -> str:
    if not name or len(name) > 76 or not _NAME.match(name):
        raise InvalidArgument(f"invalid namespace name {name!r}: use letters and digits "
                              "separated by single '.', '_' or '-', at most 76 characters")
    return name


@dataclass
class Namespace:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


def _row(row: sqlite3.Row) -> Namespace:
    return Namespace(row["name"], load_map(row["labels"]), row["created_at"], row["updated_at"])


class Namespaces:
    def __init__(self, db: DB, events) -> None:
        self.db, self.events = db, events

    def ensure(self, conn: sqlite3.Connection, name: str) -> None:
        """Create the namespace if missing, inside the caller's write transaction."""
        validate_namespace(name)
        t = now_ns()
        conn.execute("INSERT OR IGNORE INTO namespaces (name, labels, created_at, updated_at) "
                     "VALUES (?, '{}', ?, ?)", (name, t, t))

    def create(self, name: str, labels: dict[str, str] | None = None) -> Namespace:
        validate_namespace(name)
        labels = validate_labels(labels or {}, f"namespace {name}")
        t = now_ns()
        with self.db.tx() as conn:
            try:
                conn.execute("INSERT INTO namespaces (name, labels, created_at, updated_at) "
                             "VALUES (?, ?, ?, ?)", (name, dump_map(labels), t, t))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"namespace {name}: already exists") from None
        from dockyard.protos.events import namespace_pb2
        self.events.publish(name, "/namespaces/create",
                            namespace_pb2.NamespaceCreate(name=name, labels=labels))
        return Namespace(name, labels, t, t)

    def get(self, name: str) -> Namespace:
        row = self.db.conn().execute("SELECT * FROM namespaces WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"namespace {name}: not found")
        return _row(row)

    def exists(self, name: str) -> bool:
        return self.db.conn().execute("SELECT 1 FROM namespaces WHERE name=?",
                                      (name,)).fetchone() is not None

    def list(self, filters: Sequence[str] = ()) -> list[Namespace]:
        fs = _filters.compile_all(filters)
        rows = self.db.conn().execute("SELECT * FROM namespaces ORDER BY name").fetchall()
        out = [_row(r) for r in rows]
        return [ns for ns in out if _filters.match_any(
            fs, _filters.mapping_getter({"name": ns.name}, {"labels": ns.labels}))]

    def update(self, name: str, labels: dict[str, str],
               fieldpaths: Sequence[str] = ()) -> Namespace:
        labels = validate_labels(labels, f"namespace {name}")
        for path in fieldpaths:
            if path != "labels" and not path.startswith("labels."):
                raise InvalidArgument(f"update namespace {name}: cannot update field {path!r}")
        with self.db.tx() as conn:
            ns = self.get(name)
            new = apply_map(ns.labels, labels, fieldpaths or ["labels"], "labels")[0]
            ns.labels, ns.updated_at = new, now_ns()
            conn.execute("UPDATE namespaces SET labels=?, updated_at=? WHERE name=?",
                         (dump_map(new), ns.updated_at, name))
        from dockyard.protos.events import namespace_pb2
        self.events.publish(name, "/namespaces/update",
                            namespace_pb2.NamespaceUpdate(name=name, labels=ns.labels))
        return ns

    def delete(self, name: str) -> None:
        with self.db.tx() as conn:
            self.get(name)
            for table in _OBJECT_TABLES:
                n = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE namespace=?",
                                 (name,)).fetchone()[0]
                if n:
                    raise FailedPrecondition(f"namespace {name}: not empty "
                                             f"({n} {table} left), delete them first")
            try:
                conn.execute("DELETE FROM namespaces WHERE name=?", (name,))
            except sqlite3.IntegrityError:  # a component's table still refers to it
                raise FailedPrecondition(f"namespace {name}: not empty "
                                         "(objects of another component left)") from None
        from dockyard.protos.events import namespace_pb2
        self.events.publish(name, "/namespaces/delete", namespace_pb2.NamespaceDelete(name=name))
