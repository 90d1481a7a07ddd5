"""Containers: what to run (spec, rootfs snapshot, runtime, labels, extensions).

Metadata only: a running process is a task, kept by the tasks component. The
spec is stored as the JSON bytes the client gave (checked to be a JSON
object); extensions are opaque bytes for clients (apid's Docker config).
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dockyard.managerd import filters as _filters
from dockyard.managerd.metadata._fields import apply_map, validate_labels
from dockyard.managerd.metadata.db import DB, dump_map, load_map, now_ns

from dockyard.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from dockyard.ids import validate_id

__all__ = ["Container", "Runtime", "Containers"]

MUTABLE = ("labels", "extensions", "spec", "image", "snapshot_key")
IMMUTABLE = ("id", "runtime", "snapshotter", "created_at", "updated_at")


@dataclass
class Runtime:
    name: str  # the OCI runtime binary (path or PATH name)
    options: bytes = b""


@dataclass
class Container:
    id: str
    runtime: Runtime
    spec: bytes  # OCI runtime spec, JSON
    labels: dict[str, str] = field(default_factory=dict)
    image: str = ""
    snapshotter: str = ""
    snapshot_key: str = ""
    extensions: dict[str, bytes] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0

    def field(self, path: list[str]) -> str | None:
        """Filter getter (see filters.py)."""
        key = ".".join(path[1:])
        if path[0] == "labels" and len(path) > 1:
            return self.labels.get(key)
        return {"id": self.id, "image": self.image, "runtime.name": self.runtime.name,
                "runtime": self.runtime.name, "snapshotter": self.snapshotter,
                "snapshot_key": self.snapshot_key}.get(".".join(path))


def _validate(c: Container) -> None:
    validate_id(c.id)
    if not c.runtime or not c.runtime.name:
        raise InvalidArgument(f"container {c.id}: runtime name is required")
    _validate_spec(c)
    validate_labels(c.labels, f"container {c.id}")


def _validate_spec(c: Container) -> None:
    if not c.spec:
        raise InvalidArgument(f"container {c.id}: spec is required")
    try:
        spec = json.loads(c.spec)
    except ValueError as err:
        raise InvalidArgument(f"container {c.id}: spec is not JSON ({err})") from None
    if not isinstance(spec, dict):
        raise InvalidArgument(f"container {c.id}: spec must be a JSON object")


def _row(row: sqlite3.Row) -> Container:
    ext = {k: base64.b64decode(v) for k, v in load_map(row["extensions"]).items()}
    return Container(id=row["id"], runtime=Runtime(row["runtime_name"], row["runtime_options"]),
                     spec=row["spec"], labels=load_map(row["labels"]), image=row["image"],
                     snapshotter=row["snapshotter"], snapshot_key=row["snapshot_key"],
                     extensions=ext, created_at=row["created_at"], updated_at=row["updated_at"])


def _ext(ext: dict[str, bytes]) -> str:
    return dump_map({k: base64.b64encode(v).decode() for k, v in ext.items()})


class Containers:
    def __init__(self, db: DB, namespaces, events) -> None:
        self.db, self.namespaces, self.events = db, namespaces, events
        # called as check(ns, id) before a delete; raise FailedPrecondition to refuse
        # (the tasks component refuses while the container has a task)
        self.delete_checks: list[Callable[[str, str], None]] = []

    def create(self, ns: str, c: Container) -> Container:
        """Raises AlreadyExists, InvalidArgument."""
        _validate(c)
        c.created_at = c.updated_at = now_ns()
        with self.db.tx() as conn:
            self.namespaces.ensure(conn, ns)
            try:
                conn.execute(
                    "INSERT INTO containers (namespace, id, labels, image, runtime_name, "
                    "runtime_options, spec, snapshotter, snapshot_key, extensions, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (ns, c.id, dump_map(c.labels), c.image, c.runtime.name, c.runtime.options,
                     c.spec, c.snapshotter, c.snapshot_key, _ext(c.extensions), c.created_at,
                     c.updated_at))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"container {c.id}: already exists") from None
        from dockyard.protos.events import container_pb2
        self.events.publish(ns, "/containers/create", container_pb2.ContainerCreate(
            id=c.id, image=c.image, runtime=c.runtime.name))
        return c

    def get(self, ns: str, container_id: str) -> Container:
        row = self.db.conn().execute("SELECT * FROM containers WHERE namespace=? AND id=?",
                                     (ns, container_id)).fetchone()
        if row is None:
            raise NotFound(f"container {container_id}: not found")
        return _row(row)

    def list(self, ns: str, filters: Sequence[str] = ()) -> list[Container]:
        fs = _filters.compile_all(filters)
        rows = self.db.conn().execute(
            "SELECT * FROM containers WHERE namespace=? ORDER BY created_at, id", (ns,)).fetchall()
        return [c for c in map(_row, rows) if _filters.match_any(fs, c.field)]

    def update(self, ns: str, c: Container, fieldpaths: Sequence[str] = ()) -> Container:
        """Update the mutable fields named by fieldpaths (all of them when empty).

        Raises:
            NotFound: no such container.
            InvalidArgument: a path names an immutable or unknown field, or the new spec is bad.
        """
        paths = list(fieldpaths) or list(MUTABLE)
        for p in paths:
            top = p.split(".", 1)[0]
            if top in IMMUTABLE:
                raise InvalidArgument(f"update container {c.id}: field {top!r} is immutable")
            if top not in MUTABLE or (top not in ("labels", "extensions") and "." in p):
                raise InvalidArgument(f"update container {c.id}: unknown field {p!r}")
        with self.db.tx() as conn:
            cur = self.get(ns, c.id)
            cur.labels = validate_labels(apply_map(cur.labels, c.labels, paths, "labels")[0],
                                         f"container {c.id}")
            cur.extensions = apply_map(cur.extensions, c.extensions, paths, "extensions")[0]
            if "spec" in paths:
                _validate_spec(c)
                cur.spec = c.spec
            if "image" in paths:
                cur.image = c.image
            if "snapshot_key" in paths:
                cur.snapshot_key = c.snapshot_key
            cur.updated_at = now_ns()
            conn.execute("UPDATE containers SET labels=?, image=?, spec=?, snapshot_key=?, "
                         "extensions=?, updated_at=? WHERE namespace=? AND id=?",
                         (dump_map(cur.labels), cur.image, cur.spec, cur.snapshot_key,
                          _ext(cur.extensions), cur.updated_at, ns, c.id))
        from dockyard.protos.events import container_pb2
        self.events.publish(ns, "/containers/update", container_pb2.ContainerUpdate(
            id=cur.id, image=cur.image, labels=cur.labels, snapshot_key=cur.snapshot_key))
        return cur

    def delete(self, ns: str, container_id: str) -> None:
        """Raises NotFound, or FailedPrecondition when a delete check refuses."""
        self.get(ns, container_id)
        for check in self.delete_checks:
            check(ns, container_id)
        with self.db.tx() as conn:
            try:
                n = conn.execute("DELETE FROM containers WHERE namespace=? AND id=?",
                                 (ns, container_id)).rowcount
            except sqlite3.IntegrityError:  # a component's table still refers to it
                raise FailedPrecondition(f"container {container_id}: still in use "
                                         "(delete its task first)") from None
        if n == 0:
            raise NotFound(f"container {container_id}: not found")
        from dockyard.protos.events import container_pb2
        self.events.publish(ns, "/containers/delete",
                            container_pb2.ContainerDelete(id=container_id))
