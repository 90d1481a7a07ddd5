"""The manager's metadata database: SQLite in WAL mode under --root.

Owns the connection handling, the schema and its migrations; the per-object
stores (namespaces.py, containers.py, images.py, leases.py, content records in
content/local.py, snapshots in snapshots/service.py) own their queries. Must
not hold blobs or snapshot files: those live on disk beside it.

Schema, version 1 (``PRAGMA user_version``; every table is scoped by namespace
and references ``namespaces(name)`` so a namespace cannot vanish under its
objects; timestamps are integer nanoseconds since the epoch; ``labels`` and
other maps are JSON objects)::

    namespaces      name PK, labels, created_at, updated_at
    content         (namespace, digest) PK, size, labels, created_at, updated_at
                    -- a namespace's record of a blob; the file itself is shared
                    -- at <root>/content/blobs/sha256/<hex>
    images          (namespace, name) PK, media_type, digest, size,
                    annotations, labels, created_at, updated_at
    containers      (namespace, id) PK, labels, image, runtime_name,
                    runtime_options BLOB, spec BLOB, snapshotter, snapshot_key,
                    extensions (JSON, values base64), created_at, updated_at
    snapshots       id INTEGER PK (names the directory <root>/snapshots/<snapshotter>/<id>),
                    namespace, snapshotter, key, parent_id -> snapshots(id)
                    (RESTRICT: no removal under children), kind
                    (view|active|committed), labels, created_at, updated_at,
                    UNIQUE (namespace, snapshotter, key)
    leases          (namespace, id) PK, labels, created_at, expires_at NULL
    lease_resources (namespace, lease_id, type, resource_id) PK,
                    -> leases ON DELETE CASCADE; type is "content", "ingests"
                    or "snapshots/<snapshotter>"
    schema_components  component PK, version  -- see below

Rule: change the schema => add a migration to MIGRATIONS => the version bumps
(it is len(MIGRATIONS)). Never edit a released migration.

Other components (tasks, images) keep their own tables with their own
migration list, applied by ``DB.migrate_component(name, migrations)`` at
start-up and versioned in ``schema_components``, so parallel work never
collides on one version number. Their tables should reference
``namespaces(name)`` too.

Threading: one connection per thread (sqlite3 objects are not shareable);
writers serialise on one lock and use BEGIN IMMEDIATE, readers never block
(WAL).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence

log = logging.getLogger(__name__)

__all__ = ["DB", "MIGRATIONS", "SCHEMA_VERSION", "now_ns", "dump_map", "load_map"]

MIGRATIONS: list[str] = [
    # 1: initial schema
    """
    CREATE TABLE namespaces (
        name TEXT PRIMARY KEY,
        labels TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE content (
        namespace TEXT NOT NULL REFERENCES namespaces(name),
        digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, digest)
    );
    CREATE INDEX content_digest ON content(digest);
    CREATE TABLE images (
        namespace TEXT NOT NULL REFERENCES namespaces(name),
        name TEXT NOT NULL,
        media_type TEXT NOT NULL,
        digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        annotations TEXT NOT NULL DEFAULT '{}',
        labels TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, name)
    );
    CREATE TABLE containers (
        namespace TEXT NOT NULL REFERENCES namespaces(name),
        id TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        image TEXT NOT NULL DEFAULT '',
        runtime_name TEXT NOT NULL,
        runtime_options BLOB NOT NULL DEFAULT x'',
        spec BLOB NOT NULL,
        snapshotter TEXT NOT NULL DEFAULT '',
        snapshot_key TEXT NOT NULL DEFAULT '',
        extensions TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, id)
    );
    CREATE TABLE snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace TEXT NOT NULL REFERENCES namespaces(name),
        snapshotter TEXT NOT NULL,
        key TEXT NOT NULL,
        parent_id INTEGER REFERENCES snapshots(id) ON DELETE RESTRICT,
        kind TEXT NOT NULL CHECK (kind IN ('view', 'active', 'committed')),
        labels TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (namespace, snapshotter, key)
    );
    CREATE INDEX snapshots_parent ON snapshots(parent_id);
    CREATE TABLE leases (
        namespace TEXT NOT NULL REFERENCES namespaces(name),
        id TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (namespace, id)
    );
    CREATE TABLE lease_resources (
        namespace TEXT NOT NULL,
        lease_id TEXT NOT NULL,
        type TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        PRIMARY KEY (namespace, lease_id, type, resource_id),
        FOREIGN KEY (namespace, lease_id) REFERENCES leases(namespace, id) ON DELETE CASCADE
    );
    CREATE TABLE schema_components (
        component TEXT PRIMARY KEY,
        version INTEGER NOT NULL
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def now_ns() -> int:
    return time.time_ns()


def dump_map(value: dict | None) -> str:
    return json.dumps(dict(value or {}), sort_keys=True)


def load_map(text: str | None) -> dict:
    return json.loads(text) if text else {}


class DB:
    """The metadata database at `path` (created with its schema when missing).

    Use ``db.conn()`` for reads and ``with db.tx() as conn:`` for writes; a
    write transaction commits when the block ends and rolls back on an error.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        # 0600 (SQLite gives its -wal/-shm files the same mode): container specs hold
        # env values, often secrets, and the root dir above is only 0711
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600))
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        conn = self.conn()
        conn.execute("PRAGMA journal_mode=WAL")
        self._migrate(conn)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError(f"metadata database {self.path} is closed")
            # check_same_thread=False only so close() can close every thread's connection
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (nested calls join the outer one)."""
        with self._write_lock:
            conn = self.conn()
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @property
    def version(self) -> int:
        return self.conn().execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self, conn: sqlite3.Connection) -> None:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise RuntimeError(f"metadata database {self.path} has schema version {current}, "
                               f"newer than this managerd's {SCHEMA_VERSION}")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            log.info("migrating metadata path=%s to_version=%d", self.path, version)
            with self.tx():
                for stmt in _statements(MIGRATIONS[version - 1]):
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version={version}")

    def migrate_component(self, component: str, migrations: Sequence[str]) -> int:
        """Apply a component's own migrations (tables it owns) that are not applied yet.

        Args:
            component: a stable name, e.g. "tasks".
            migrations: SQL scripts in order; migration i brings the component to version i+1.

        Returns:
            The component's schema version (len(migrations)).
        """
        conn = self.conn()
        row = conn.execute("SELECT version FROM schema_components WHERE component=?",
                           (component,)).fetchone()
        current = row[0] if row else 0
        if current > len(migrations):
            raise RuntimeError(f"metadata for {component} has schema version {current}, "
                               f"newer than this managerd's {len(migrations)}")
        for version in range(current + 1, len(migrations) + 1):
            with self.tx():
                for stmt in _statements(migrations[version - 1]):
                    conn.execute(stmt)
                conn.execute("INSERT INTO schema_components (component, version) VALUES (?, ?) "
                             "ON CONFLICT(component) DO UPDATE SET version=excluded.version",
                             (component, version))
        return len(migrations)

    def close(self) -> None:
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would COMMIT our transaction)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
