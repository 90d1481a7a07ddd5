"""Garbage collection of blobs and snapshots nothing references (mark and sweep).

Roots, per namespace:
- images: their target; from every reachable blob that is JSON, an index's
  ``manifests``, a manifest's ``config``/``layers`` (and ``subject``), and an
  image config's ``rootfs.diff_ids``, whose chain IDs name the committed
  layer snapshots ("sha256:<chainid>", any snapshotter) the images component unpacks;
- containers: their (snapshotter, snapshot_key);
- unexpired leases: every resource added to them;
- objects labelled "dockyard.io/gc.root" (or containerd.io/gc.root);
- labels on reachable blobs: "dockyard.io/gc.ref.content[.<x>]" = digest and
  "dockyard.io/gc.ref.snapshot.<snapshotter>[.<x>]" = key (containerd.io/ too).
A snapshot keeps its parents. Everything else is swept: content records, then
blob files no namespace records, then snapshot rows (leaves first) and dirs.

The sweep holds the database's write lock, so no commit can record a blob
between the mark and the unlink. Clients building something in several steps
(pull: blobs, then snapshots, then the image) must hold a lease meanwhile.
Active snapshots and views younger than ``grace_ns`` are not swept (unless
``collect(immediate=True)``): a client that prepares a rootfs and then creates
the container referencing it needs no lease for that short window.
Collections run on image delete, lease delete and the GC.Collect RPC, never
on a timer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass

from dockyard.managerd.atomic import atomic_delete
from dockyard.managerd.metadata.db import DB, load_map, now_ns

log = logging.getLogger(__name__)

__all__ = ["Collector", "Result", "chain_ids"]

ROOT_LABELS = ("dockyard.io/gc.root", "containerd.io/gc.root")
REF_PREFIXES = ("dockyard.io/gc.ref.", "containerd.io/gc.ref.")
MAX_JSON = 16 << 20
GRACE_NS = 10 * 10**9


@dataclass
class Result:
    content_removed: int = 0
    snapshots_removed: int = 0
    leases_removed: int = 0
    blobs_deleted: int = 0


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI chain IDs: chain[0] = diff[0]; chain[i] = sha256(chain[i-1] + " " + diff[i])."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else
                   "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


class Collector:
    def __init__(self, db: DB, content, snapshots, leases, grace_ns: int = GRACE_NS) -> None:
        self.db, self.content, self.snapshots, self.leases = db, content, snapshots, leases
        self.grace_ns = grace_ns
        self._pending = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def schedule(self) -> None:
        """Collect soon in a background thread (coalesces bursts of requests)."""
        with self._lock:
            if self._closed:
                return
            self._pending.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="gc", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._pending.is_set() or self._closed:
                    self._thread = None
                    return
                self._pending.clear()
            try:
                self.collect()
            except Exception:
                log.exception("garbage collection failed")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)

    def collect(self, immediate: bool = False) -> Result:
        """Mark and sweep every namespace now (see the module docstring)."""
        res = Result()
        # snapshots created after this instant are within the grace period
        young = now_ns() if immediate else now_ns() - self.grace_ns
        dirs: list[str] = []
        with self.db.tx() as conn:
            res.leases_removed = conn.execute(
                "DELETE FROM leases WHERE expires_at IS NOT NULL AND expires_at < ?",
                (now_ns(),)).rowcount
            namespaces = [r[0] for r in conn.execute("SELECT name FROM namespaces")]
            for ns in namespaces:
                n_content, snaps = self._collect_namespace(conn, ns, young)
                res.content_removed += n_content
                dirs += snaps
            res.snapshots_removed = len(dirs)
            recorded = {r[0] for r in conn.execute("SELECT DISTINCT digest FROM content")}
            for blob in list(self.content.store.list()):
                if blob.digest not in recorded:
                    try:
                        self.content.store.delete(blob.digest)
                        res.blobs_deleted += 1
                    except Exception:
                        log.exception("gc: delete blob digest=%s", blob.digest)
        for path in dirs:
            atomic_delete(path)
        if res.content_removed or res.snapshots_removed or res.leases_removed:
            log.info("gc content=%d blobs=%d snapshots=%d leases=%d", res.content_removed,
                     res.blobs_deleted, res.snapshots_removed, res.leases_removed)
        return res

    def _collect_namespace(self, conn, ns: str, young: int) -> tuple[int, list[str]]:
        content = {r["digest"]: load_map(r["labels"]) for r in conn.execute(
            "SELECT digest, labels FROM content WHERE namespace=?", (ns,))}
        snaps = {(r["snapshotter"], r["key"]): r for r in conn.execute(
            "SELECT * FROM snapshots WHERE namespace=?", (ns,))}
        by_id = {r["id"]: r for r in snaps.values()}
        live_content: set[str] = set()
        live_snaps: set[tuple[str, str]] = set()
        todo: list[str] = []
        chains: set[str] = set()

        for r in conn.execute("SELECT digest FROM images WHERE namespace=?", (ns,)):
            todo.append(r[0])
        for r in conn.execute("SELECT snapshotter, snapshot_key FROM containers "
                              "WHERE namespace=? AND snapshot_key != ''", (ns,)):
            live_snaps.add((r[0] or self.snapshots.default, r[1]))
        for r in conn.execute(
                "SELECT lr.type, lr.resource_id FROM lease_resources lr JOIN leases l ON "
                "l.namespace=lr.namespace AND l.id=lr.lease_id WHERE lr.namespace=?", (ns,)):
            if r[0] == "content":
                todo.append(r[1])
            elif r[0].startswith("snapshots/"):
                live_snaps.add((r[0][len("snapshots/"):], r[1]))
        for digest, labels in content.items():
            if any(k in labels for k in ROOT_LABELS):
                todo.append(digest)
        for key, row in snaps.items():
            if any(k in load_map(row["labels"]) for k in ROOT_LABELS):
                live_snaps.add(key)
            elif row["kind"] != "committed" and row["created_at"] > young:
                live_snaps.add(key)  # within the grace period

        while todo:
            digest = todo.pop()
            if digest in live_content or digest not in content:
                continue
            live_content.add(digest)
            for k, v in content[digest].items():
                if not k.startswith(REF_PREFIXES):
                    continue
                kind = k.split("gc.ref.", 1)[1]
                if kind.startswith("content"):
                    todo.append(v)
                elif kind.startswith("snapshot."):
                    live_snaps.add((kind.split(".")[1], v))
            refs, diff_ids = self._refs(digest)
            todo += refs
            chains.update(chain_ids(diff_ids))

        for key in snaps:
            if key[1] in chains:
                live_snaps.add(key)
        # a live snapshot keeps its parents
        keep_ids: set[int] = set()
        for key in live_snaps:
            row = snaps.get(key)
            while row is not None and row["id"] not in keep_ids:
                keep_ids.add(row["id"])
                row = by_id.get(row["parent_id"])

        dead_content = [d for d in content if d not in live_content]
        for d in dead_content:
            conn.execute("DELETE FROM content WHERE namespace=? AND digest=?", (ns, d))
        dead = {sid: r for sid, r in by_id.items() if sid not in keep_ids}
        dirs = []
        while dead:  # leaves first: a parent goes once its children are gone
            parents = {r["parent_id"] for r in dead.values()}
            leaves = [sid for sid in dead if sid not in parents]
            for sid in leaves:
                r = dead.pop(sid)
                conn.execute("DELETE FROM snapshots WHERE id=?", (sid,))
                dirs.append(self.snapshots.drivers[r["snapshotter"]].dir(sid)
                            if r["snapshotter"] in self.snapshots.drivers else "")
        return len(dead_content), [d for d in dirs if d]

    def _refs(self, digest: str) -> tuple[list[str], list[str]]:
        """Digests a JSON blob points at, and an image config's diff_ids."""
        store = self.content.store
        try:
            if store.info(digest).size > MAX_JSON:
                return [], []
            with store.open(digest) as f:
                head = f.read(1)
                if head not in (b"{", b" ", b"\n", b"\t", b"\r"):
                    return [], []
                doc = json.loads(head + f.read())
        except Exception:
            return [], []
        if not isinstance(doc, dict):
            return [], []
        refs = []
        for key in ("manifests", "layers"):
            for desc in doc.get(key) or []:
                if isinstance(desc, dict) and isinstance(desc.get("digest"), str):
                    refs.append(desc["digest"])
        for key in ("config", "subject"):
            desc = doc.get(key)
            if isinstance(desc, dict) and isinstance(desc.get("digest"), str):
                refs.append(desc["digest"])
        diff_ids = []
        rootfs = doc.get("rootfs")
        if isinstance(rootfs, dict) and isinstance(rootfs.get("diff_ids"), list):
            diff_ids = [d for d in rootfs["diff_ids"] if isinstance(d, str)]
        return refs, diff_ids
