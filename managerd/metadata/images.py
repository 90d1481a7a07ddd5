"""Images: names pointing at a manifest or index descriptor in the content store.

An image keeps its target (and everything reachable from it: config, layers,
their unpacked snapshots) alive against garbage collection; deleting one runs
a collection (see gc.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from dockyard.managerd import filters as _filters
from dockyard.managerd.content.store import validate_digest
from dockyard.managerd.metadata._fields import apply_map, validate_labels
from dockyard.managerd.metadata.db import DB, dump_map, load_map, now_ns

from dockyard.errdefs import AlreadyExists, InvalidArgument, NotFound

__all__ = ["Descriptor", "Image", "Images"]


@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class Image:
    name: str
    target: Descriptor
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0

    def field(self, path: list[str]) -> str | None:
        if path[0] == "labels" and len(path) > 1:
            return self.labels.get(".".join(path[1:]))
        if path[0] == "target" and len(path) > 2 and path[1] == "annotations":
            return self.target.annotations.get(".".join(path[2:]))
        return {"name": self.name, "target.digest": self.target.digest,
                "target.media_type": self.target.media_type}.get(".".join(path))


def _validate(img: Image) -> None:
    if not img.name:
        raise InvalidArgument("image: name is required")
    if img.target is None or not img.target.digest:
        raise InvalidArgument(f"image {img.name}: target digest is required")
    try:
        validate_digest(img.target.digest)
    except InvalidArgument as err:
        raise InvalidArgument(f"image {img.name}: {err}") from None
    if not img.target.media_type:
        raise InvalidArgument(f"image {img.name}: target media type is required")
    if img.target.size < 0:
        raise InvalidArgument(f"image {img.name}: negative target size")
    validate_labels(img.labels, f"image {img.name}")


def _row(r: sqlite3.Row) -> Image:
    return Image(r["name"], Descriptor(r["media_type"], r["digest"], r["size"],
                                       load_map(r["annotations"])),
                 load_map(r["labels"]), r["created_at"], r["updated_at"])


class Images:
    def __init__(self, db: DB, namespaces, events) -> None:
        self.db, self.namespaces, self.events = db, namespaces, events
        self.gc = None  # set by the wiring: delete triggers a collection

    def create(self, ns: str, img: Image) -> Image:
        _validate(img)
        img.created_at = img.updated_at = now_ns()
        with self.db.tx() as conn:
            self.namespaces.ensure(conn, ns)
            try:
                conn.execute(
                    "INSERT INTO images (namespace, name, media_type, digest, size, annotations, "
                    "labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (ns, img.name, img.target.media_type, img.target.digest, img.target.size,
                     dump_map(img.target.annotations), dump_map(img.labels), img.created_at,
                     img.updated_at))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"image {img.name}: already exists") from None
        from dockyard.protos.events import image_pb2
        self.events.publish(ns, "/images/create",
                            image_pb2.ImageCreate(name=img.name, labels=img.labels))
        return img

    def get(self, ns: str, name: str) -> Image:
        row = self.db.conn().execute("SELECT * FROM images WHERE namespace=? AND name=?",
                                     (ns, name)).fetchone()
        if row is None:
            raise NotFound(f"image {name}: not found")
        return _row(row)

    def list(self, ns: str, filters: Sequence[str] = ()) -> list[Image]:
        fs = _filters.compile_all(filters)
        rows = self.db.conn().execute("SELECT * FROM images WHERE namespace=? ORDER BY name",
                                      (ns,)).fetchall()
        return [i for i in map(_row, rows) if _filters.match_any(fs, i.field)]

    def update(self, ns: str, img: Image, fieldpaths: Sequence[str] = ()) -> Image:
        """Update labels and/or target ("labels", "labels.<k>", "target"; empty = both)."""
        paths = list(fieldpaths) or ["labels", "target"]
        for p in paths:
            if p not in ("labels", "target") and not p.startswith("labels."):
                raise InvalidArgument(f"update image {img.name}: cannot update field {p!r}")
        with self.db.tx() as conn:
            cur = self.get(ns, img.name)
            cur.labels = validate_labels(apply_map(cur.labels, img.labels, paths, "labels")[0],
                                         f"image {img.name}")
            if "target" in paths:
                _validate(Image(img.name, img.target))
                cur.target = img.target
            cur.updated_at = now_ns()
            conn.execute("UPDATE images SET media_type=?, digest=?, size=?, annotations=?, "
                         "labels=?, updated_at=? WHERE namespace=? AND name=?",
                         (cur.target.media_type, cur.target.digest, cur.target.size,
                          dump_map(cur.target.annotations), dump_map(cur.labels),
                          cur.updated_at, ns, img.name))
        from dockyard.protos.events import image_pb2
        self.events.publish(ns, "/images/update",
                            image_pb2.ImageUpdate(name=cur.name, labels=cur.labels))
        return cur

    def delete(self, ns: str, name: str, sync: bool = False) -> None:
        """Delete the image, then collect garbage (before returning when sync)."""
        with self.db.tx() as conn:
            n = conn.execute("DELETE FROM images WHERE namespace=? AND name=?",
                             (ns, name)).rowcount
        if n == 0:
            raise NotFound(f"image {name}: not found")
        from dockyard.protos.events import image_pb2
        self.events.publish(ns, "/images/delete", image_pb2.ImageDelete(name=name))
        if self.gc is not None:
            self.gc.collect() if sync else self.gc.schedule()
