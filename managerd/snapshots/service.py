"""Namespaced snapshots: metadata in SQLite, directories through a driver.

Keys are unique per (namespace, snapshotter). Committed snapshots are
read-only and may be parents; active ones are writable and may be committed;
views are read-only actives of a parent. A snapshot with children cannot be
removed (FAILED_PRECONDITION). Image layers are committed under
"sha256:<chainid>" names by the images component, so every image sharing a
layer shares its snapshot.

Removal deletes the row, then renames the directory to a hidden name and
deletes it (atomicDelete). Leftover directories without a row (a crash
between the two) are swept by ``cleanup()`` at start-up.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from dockyard.managerd import filters as _filters
from dockyard.managerd.atomic import atomic_delete
from dockyard.managerd.metadata._fields import apply_map, validate_labels
from dockyard.managerd.metadata.db import DB, dump_map, load_map, now_ns
from dockyard.managerd.metadata.leases import Resource
from dockyard.managerd.snapshots.drivers import (
    Driver,
    Native,
    Overlay,
    overlay_supported,
    usage,
)
from dockyard.managerd.snapshots.mount import Mount

from dockyard.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

log = logging.getLogger(__name__)

__all__ = ["Info", "Snapshots", "KINDS", "DEFAULT_SNAPSHOTTER"]

KINDS = ("view", "active", "committed")
DEFAULT_SNAPSHOTTER = "overlayfs"


@dataclass
class Info:
    name: str
    kind: str  # view | active | committed
    parent: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0

    def field(self, path: list[str]) -> str | None:
        if path[0] == "labels" and len(path) > 1:
            return self.labels.get(".".join(path[1:]))
        return {"name": self.name, "parent": self.parent, "kind": self.kind}.get(".".join(path))


class Snapshots:
    def __init__(self, root: str, db: DB, namespaces, leases, events,
                 default: str = DEFAULT_SNAPSHOTTER) -> None:
        self.root, self.db, self.namespaces = root, db, namespaces
        self.leases, self.events, self.default = leases, events, default
        self.drivers: dict[str, Driver] = {
            "overlayfs": Overlay(os.path.join(root, "overlayfs")),
            "native": Native(os.path.join(root, "native")),
        }
        if default == "auto":  # overlayfs where the kernel and the filesystem allow it
            self.default = ("overlayfs" if overlay_supported(self.drivers["overlayfs"].root)
                            else "native")
            log.info("default snapshotter=%s", self.default)
        elif default not in self.drivers:
            raise InvalidArgument(f"unknown snapshotter {default!r} "
                                  f"(have auto, {', '.join(sorted(self.drivers))})")

    def driver(self, snapshotter: str) -> tuple[str, Driver]:
        name = snapshotter or self.default
        try:
            return name, self.drivers[name]
        except KeyError:
            raise InvalidArgument(f"unknown snapshotter {name!r} "
                                  f"(have {', '.join(sorted(self.drivers))})") from None

    # queries

    def _row(self, ns: str, sn: str, key: str) -> sqlite3.Row:
        row = self.db.conn().execute(
            "SELECT * FROM snapshots WHERE namespace=? AND snapshotter=? AND key=?",
            (ns, sn, key)).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key}: not found")
        return row

    def _chain(self, parent_id: int | None) -> list[int]:
        """Parent ids nearest first."""
        out = []
        conn = self.db.conn()
        while parent_id is not None:
            out.append(parent_id)
            row = conn.execute("SELECT parent_id FROM snapshots WHERE id=?",
                               (parent_id,)).fetchone()
            parent_id = row["parent_id"] if row else None
        return out

    def _info(self, row: sqlite3.Row) -> Info:
        parent = ""
        if row["parent_id"] is not None:
            prow = self.db.conn().execute("SELECT key FROM snapshots WHERE id=?",
                                          (row["parent_id"],)).fetchone()
            parent = prow["key"] if prow else ""
        return Info(row["key"], row["kind"], parent, load_map(row["labels"]),
                    row["created_at"], row["updated_at"])

    def stat(self, ns: str, snapshotter: str, key: str) -> Info:
        sn, _ = self.driver(snapshotter)
        return self._info(self._row(ns, sn, key))

    def list(self, ns: str, snapshotter: str, filters: Sequence[str] = ()) -> list[Info]:
        sn, _ = self.driver(snapshotter)
        fs = _filters.compile_all(filters)
        rows = self.db.conn().execute(
            "SELECT * FROM snapshots WHERE namespace=? AND snapshotter=? ORDER BY id",
            (ns, sn)).fetchall()
        return [i for i in (self._info(r) for r in rows) if _filters.match_any(fs, i.field)]

    def mounts(self, ns: str, snapshotter: str, key: str) -> list[Mount]:
        sn, drv = self.driver(snapshotter)
        row = self._row(ns, sn, key)
        if row["kind"] == "committed":
            raise FailedPrecondition(f"snapshot {key}: committed snapshots have no mounts "
                                     "(prepare or view one on top of it)")
        return drv.mounts(row["id"], self._chain(row["parent_id"]), row["kind"] == "view")

    def usage(self, ns: str, snapshotter: str, key: str) -> tuple[int, int]:
        """(bytes, inodes) of the snapshot's own layer."""
        sn, drv = self.driver(snapshotter)
        row = self._row(ns, sn, key)
        return usage(drv.fs(row["id"]))

    def path(self, ns: str, snapshotter: str, key: str) -> str:
        """The snapshot's own layer directory (for images to unpack into a native view)."""
        sn, drv = self.driver(snapshotter)
        return drv.fs(self._row(ns, sn, key)["id"])

    # changes

    def prepare(self, ns: str, snapshotter: str, key: str, parent: str = "",
                labels: dict[str, str] | None = None, lease: str | None = None) -> list[Mount]:
        """A writable snapshot `key` on top of committed `parent` ("" = empty)."""
        return self._create(ns, snapshotter, key, parent, labels, lease, "active")

    def view(self, ns: str, snapshotter: str, key: str, parent: str = "",
             labels: dict[str, str] | None = None, lease: str | None = None) -> list[Mount]:
        """A read-only snapshot `key` of committed `parent`."""
        return self._create(ns, snapshotter, key, parent, labels, lease, "view")

    def _create(self, ns: str, snapshotter: str, key: str, parent: str,
                labels: dict[str, str] | None, lease: str | None, kind: str) -> list[Mount]:
        sn, drv = self.driver(snapshotter)
        if not key:
            raise InvalidArgument("snapshot: key is required")
        labels = validate_labels(labels or {}, f"snapshot {key}")
        t = now_ns()
        with self.db.tx() as conn:
            self.namespaces.ensure(conn, ns)
            parent_id = None
            if parent:
                prow = self._row(ns, sn, parent)
                if prow["kind"] != "committed":
                    raise FailedPrecondition(f"snapshot {key}: parent {parent} is not committed")
                parent_id = prow["id"]
            if lease:
                self.leases.add_in_tx(conn, ns, lease, Resource(key, f"snapshots/{sn}"))
            try:
                sid = conn.execute(
                    "INSERT INTO snapshots (namespace, snapshotter, key, parent_id, kind, labels, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (ns, sn, key, parent_id, kind, dump_map(labels), t, t)).lastrowid
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"snapshot {key}: already exists") from None
            parents = self._chain(parent_id)
        # outside the write lock: the native driver copies the whole parent. The row
        # already pins the parent (a child) and the key (young: within GC's grace).
        try:
            drv.create(sid, parents, kind == "view")
        except BaseException:
            with self.db.tx() as conn:
                conn.execute("DELETE FROM snapshots WHERE id=?", (sid,))
            atomic_delete(drv.dir(sid))
            raise
        from dockyard.protos.events import snapshot_pb2
        self.events.publish(ns, "/snapshot/prepare",
                            snapshot_pb2.SnapshotPrepare(key=key, parent=parent, snapshotter=sn))
        return drv.mounts(sid, parents, kind == "view")

    def commit(self, ns: str, snapshotter: str, name: str, key: str,
               labels: dict[str, str] | None = None, lease: str | None = None) -> None:
        """Active `key` becomes committed `name` (read-only, may be a parent)."""
        sn, drv = self.driver(snapshotter)
        if not name:
            raise InvalidArgument(f"commit snapshot {key}: name is required")
        labels = validate_labels(labels or {}, f"snapshot {name}")
        with self.db.tx() as conn:
            row = self._row(ns, sn, key)
            if row["kind"] != "active":
                raise FailedPrecondition(f"commit snapshot {key}: it is {row['kind']}, "
                                         "only active snapshots can be committed")
            if lease:
                self.leases.add_in_tx(conn, ns, lease, Resource(name, f"snapshots/{sn}"))
            merged = {**load_map(row["labels"]), **labels}
            try:
                conn.execute("UPDATE snapshots SET key=?, kind='committed', labels=?, updated_at=? "
                             "WHERE id=?", (name, dump_map(merged), now_ns(), row["id"]))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"snapshot {name}: already exists") from None
            # the workdir only serves the writable mount
            atomic_delete(os.path.join(drv.dir(row["id"]), "work"))
        from dockyard.protos.events import snapshot_pb2
        self.events.publish(ns, "/snapshot/commit",
                            snapshot_pb2.SnapshotCommit(key=key, name=name, snapshotter=sn))

    def update(self, ns: str, snapshotter: str, key: str, labels: dict[str, str],
               fieldpaths: Sequence[str] = ()) -> Info:
        sn, _ = self.driver(snapshotter)
        for p in fieldpaths:
            if p != "labels" and not p.startswith("labels."):
                raise InvalidArgument(f"update snapshot {key}: cannot update field {p!r}")
        with self.db.tx() as conn:
            row = self._row(ns, sn, key)
            new = validate_labels(apply_map(load_map(row["labels"]), labels,
                                            fieldpaths or ["labels"], "labels")[0],
                                  f"snapshot {key}")
            conn.execute("UPDATE snapshots SET labels=?, updated_at=? WHERE id=?",
                         (dump_map(new), now_ns(), row["id"]))
            return self._info(self._row(ns, sn, key))

    def remove(self, ns: str, snapshotter: str, key: str) -> None:
        """Raises NotFound, or FailedPrecondition while children exist."""
        sn, drv = self.driver(snapshotter)
        with self.db.tx() as conn:
            row = self._row(ns, sn, key)
            self._remove_row(conn, row, key)
        atomic_delete(drv.dir(row["id"]), background=True)  # renamed now, emptied later
        from dockyard.protos.events import snapshot_pb2
        self.events.publish(ns, "/snapshot/remove",
                            snapshot_pb2.SnapshotRemove(key=key, snapshotter=sn))

    def _remove_row(self, conn: sqlite3.Connection, row: sqlite3.Row, key: str) -> None:
        n = conn.execute("SELECT COUNT(*) FROM snapshots WHERE parent_id=?",
                         (row["id"],)).fetchone()[0]
        if n:
            raise FailedPrecondition(f"snapshot {key}: has {n} children, remove them first")
        conn.execute("DELETE FROM snapshots WHERE id=?", (row["id"],))

    def cleanup(self) -> int:
        """Delete snapshot directories no row owns (crash leftovers); returns how many."""
        ids = {r[0] for r in self.db.conn().execute("SELECT id FROM snapshots")}
        removed = 0
        for drv in self.drivers.values():
            for name in os.listdir(drv.root):
                if name.startswith((".del-", ".check-")) or (
                        name.isdigit() and int(name) not in ids):
                    atomic_delete(os.path.join(drv.root, name))
                    removed += 1
        return removed
