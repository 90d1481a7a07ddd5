"""Wiring: builds managerd's stores in dependency order and registers every gRPC service.

This is the one place that knows what managerd is made of. ``build_context``
opens the database and creates the in-process stores (the "local" layer,
usable without gRPC); ``SERVICES`` lists the modules that expose them over
gRPC. Each module in SERVICES has::

    def register(ctx: Context, server: grpc.Server) -> list[str]:
        '''Add servicers to server; return their full service names
        (e.g. "dockyard.services.tasks.v1.Tasks") for health and reflection.'''

Components add themselves with ONE line in SERVICES (in dependency order: a
module may use anything registered before it). Startup work (recovering
running tasks, resuming pulls) goes in register(); cleanup goes in
``ctx.on_shutdown(fn)`` (run in reverse order at shutdown). A component that
other components call in-process stores its local object with
``ctx.extras["tasks"] = manager``. Tables of its own: call
``ctx.db.migrate_component("tasks", MIGRATIONS)`` in register() (see
metadata/db.py).

No import-time side effects here: modules are imported by build/register.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc
    from dockyard.managerd.config import Config
    from dockyard.managerd.content.local import Content
    from dockyard.managerd.events import EventBus
    from dockyard.managerd.gc import Collector
    from dockyard.managerd.metadata.containers import Containers
    from dockyard.managerd.metadata.db import DB
    from dockyard.managerd.metadata.images import Images
    from dockyard.managerd.metadata.leases import Leases
    from dockyard.managerd.metadata.namespaces import Namespaces
    from dockyard.managerd.snapshots.service import Snapshots

log = logging.getLogger(__name__)

__all__ = ["Context", "SERVICES", "build_context", "register_all"]

SERVICES: list[str] = [
    "dockyard.managerd.api.version",
    "dockyard.managerd.api.namespaces",
    "dockyard.managerd.api.events",
    "dockyard.managerd.api.content",
    "dockyard.managerd.api.snapshots",
    "dockyard.managerd.api.images",
    "dockyard.managerd.api.containers",
    "dockyard.managerd.api.leases",
    "dockyard.managerd.api.gc",
    "dockyard.managerd.tasks.service",
    "dockyard.managerd.transfer",
    # a new component: one line above, after the modules it uses
]


@dataclass
class Context:
    """Everything a service module may use; built once per daemon by build_context."""

    config: Config
    db: DB
    events: EventBus
    namespaces: Namespaces
    leases: Leases
    content: Content
    snapshots: Snapshots
    images: Images
    containers: Containers
    gc: Collector
    extras: dict[str, Any] = field(default_factory=dict)
    _shutdown: list[Callable[[], None]] = field(default_factory=list)

    def on_shutdown(self, fn: Callable[[], None]) -> None:
        """Run fn at shutdown (last registered runs first)."""
        self._shutdown.append(fn)

    def close(self) -> None:
        while self._shutdown:
            fn = self._shutdown.pop()
            try:
                fn()
            except Exception:
                log.exception("shutdown hook failed hook=%r", fn)
        # a background collection still running would use the closed database
        self.gc.close()
        self.db.close()


def build_context(config: Config) -> Context:
    """Open the database and build the stores, each after what it depends on."""
    from dockyard.managerd.content.local import Content
    from dockyard.managerd.content.store import ContentStore
    from dockyard.managerd.events import EventBus
    from dockyard.managerd.gc import Collector
    from dockyard.managerd.metadata.containers import Containers
    from dockyard.managerd.metadata.db import DB
    from dockyard.managerd.metadata.images import Images
    from dockyard.managerd.metadata.leases import Leases
    from dockyard.managerd.metadata.namespaces import Namespaces
    from dockyard.managerd.snapshots.service import Snapshots

    os.makedirs(config.root, mode=0o711, exist_ok=True)
    os.makedirs(config.state, mode=0o711, exist_ok=True)
    db = DB(os.path.join(config.root, "metadata.db"))
    events = EventBus()
    namespaces = Namespaces(db, events)
    leases = Leases(db, namespaces)
    content = Content(ContentStore(os.path.join(config.root, "content")), db, namespaces,
                      leases, events)
    snapshots = Snapshots(os.path.join(config.root, "snapshots"), db, namespaces, leases, events,
                          default=config.default_snapshotter)
    config.default_snapshotter = snapshots.default  # "auto" resolved, for every component
    images = Images(db, namespaces, events)
    containers = Containers(db, namespaces, events)
    gc = Collector(db, content, snapshots, leases)
    images.gc = leases.gc = gc  # deletes trigger collection
    return Context(config=config, db=db, events=events, namespaces=namespaces, leases=leases,
                   content=content, snapshots=snapshots, images=images,
                   containers=containers, gc=gc)


def register_all(ctx: Context, server: grpc.Server,
                 modules: list[str] | None = None) -> list[str]:
    """Import each service module and register it; returns every service name."""
    names: list[str] = []
    for mod_name in SERVICES if modules is None else modules:
        module = importlib.import_module(mod_name)
        names.extend(module.register(ctx, server))
    return names
