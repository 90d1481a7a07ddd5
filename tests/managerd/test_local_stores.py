"""The in-process layer without gRPC: filters, schema migrations, event bus, store hooks."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from dockyard.managerd import filters
from dockyard.managerd.events import EventBus
from dockyard.managerd.metadata.containers import Container, Containers, Runtime
from dockyard.managerd.metadata.db import DB, SCHEMA_VERSION
from dockyard.managerd.metadata.namespaces import Namespaces

from dockyard import errdefs

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("text,fields,expected", [
    ("id==a", {"id": "a"}, True),
    ("id==a", {"id": "b"}, False),
    ("id!=a", {"id": "b"}, True),
    ("id", {"id": ""}, False),
    ('labels."a.b"==x', {"labels.a.b": "x"}, True),
    ("labels.a.b==x", {"labels.a.b": "x"}, True),
    ('name=="a,b",id==1', {"name": "a,b", "id": "1"}, True),
    ("topic~=^/tasks/", {"topic": "/tasks/exit"}, True),
    ("topic~=^/tasks/", {"topic": "/containers/create"}, False),
    ("missing==", {}, False),
])
def test_filter_syntax(text, fields, expected):
    f = filters.parse(text)
    assert f.match(lambda path: fields.get(".".join(path))) is expected


@pytest.mark.parametrize("bad", ["==x", 'a=="unterminated', "a==b,", "a~=(", "a b"])
def test_filter_errors_name_the_filter(bad):
    with pytest.raises(errdefs.InvalidArgument, match="filter"):
        filters.parse(bad)


def test_schema_and_component_migrations(tmp_path):
    db = DB(tmp_path / "m.db")
    assert db.version == SCHEMA_VERSION
    assert db.conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn().execute("PRAGMA foreign_keys").fetchone()[0] == 1
    v1 = ["CREATE TABLE tasks_x (namespace TEXT NOT NULL REFERENCES namespaces(name), id TEXT);"]
    assert db.migrate_component("tasks", v1) == 1
    assert db.migrate_component("tasks", v1) == 1  # idempotent
    v2 = v1 + ["ALTER TABLE tasks_x ADD COLUMN pid INTEGER;"]
    assert db.migrate_component("tasks", v2) == 2
    db.close()
    db = DB(tmp_path / "m.db")  # reopen: nothing re-applied
    assert db.migrate_component("tasks", v2) == 2
    with pytest.raises(RuntimeError, match="newer"):
        db.migrate_component("tasks", v1)
    # a component's row keeps its namespace from being deleted
    namespaces = Namespaces(db, EventBus())
    namespaces.create("nsx")
    with db.tx() as conn:
        conn.execute("INSERT INTO tasks_x (namespace, id) VALUES ('nsx', 't')")
    with pytest.raises(errdefs.FailedPrecondition, match="not empty"):
        namespaces.delete("nsx")
    db.close()


def test_tx_rolls_back_and_threads_get_own_connections(tmp_path):
    db = DB(tmp_path / "m.db")
    with pytest.raises(sqlite3.IntegrityError), db.tx() as conn:
        conn.execute("INSERT INTO namespaces (name, created_at, updated_at) VALUES ('a', 1, 1)")
        conn.execute("INSERT INTO namespaces (name, created_at, updated_at) VALUES ('a', 1, 1)")
    assert db.conn().execute("SELECT COUNT(*) FROM namespaces").fetchone()[0] == 0
    ns = Namespaces(db, EventBus())
    errors = []

    def make(i):
        try:
            for j in range(20):
                ns.create(f"t{i}-{j}")
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=make, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join(20) for t in threads]
    assert not errors and len(ns.list()) == 80
    db.close()


def test_event_bus_filters_and_close():
    bus = EventBus()
    sub = bus.subscribe(["topic==/a/b"])
    bus.publish("ns", "/x/y", None)
    bus.publish("ns", "/a/b", "payload")
    ev = sub.get(timeout=1)
    assert (ev.namespace, ev.topic, ev.event) == ("ns", "/a/b", "payload")
    assert sub.get(timeout=0.05) is None
    bus.close()
    assert sub.closed and sub.get(timeout=0.05) is None
    with pytest.raises(errdefs.InvalidArgument, match="topic"):
        bus.publish("ns", "no-slash", None)


def test_container_delete_checks(tmp_path):
    db = DB(tmp_path / "m.db")
    bus = EventBus()
    store = Containers(db, Namespaces(db, bus), bus)
    store.create("n", Container("c1", Runtime("runc"), b"{}"))

    def refuse(ns, cid):
        raise errdefs.FailedPrecondition(f"container {cid}: task is running")

    store.delete_checks.append(refuse)
    with pytest.raises(errdefs.FailedPrecondition, match="running"):
        store.delete("n", "c1")
    store.delete_checks.clear()
    store.delete("n", "c1")
    db.close()
