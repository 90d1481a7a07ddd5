"""Container cgroups: create, join, limit, freeze, measure and remove them.

Owns the mapping from an OCI `linux.cgroupsPath` + `linux.resources` to the
kernel's cgroup files, for both cgroup v1 (one hierarchy per controller, as
this repo's test machines mount them) and v2 (the unified hierarchy most
hosts run). It must not fork, exec or kill processes: the shim's lifecycle
code decides when; managers only read and write cgroupfs (and, on v2, load
the device eBPF program).

Every manager takes its cgroupfs root as a parameter (production:
/sys/fs/cgroup) so unit tests run against a tmp_path tree of fake files.

Usage (shim-runtime)::

    mgr = open_manager(spec["linux"].get("cgroupsPath"), container_id)
    mgr.create(); mgr.add(pid)
    resources = dict(spec["linux"].get("resources") or {})
    resources["devices"] = devices.with_defaults(resources.get("devices"))
    mgr.set(resources)                    # also `update` (runc leaves devices out)
    state["cgroup"] = mgr.to_dict()       # later: Manager.from_dict(...)
    mgr.freeze() / mgr.thaw() / mgr.state() / mgr.pids() / mgr.stats() / mgr.oom_count()
    mgr.destroy()                         # after the tasks are gone

Imports here are cheap (os only); v1/v2 modules load on first use.
"""

from __future__ import annotations

import os

from dockyard.shim.cgroups._base import (
    FREEZING,
    FROZEN,
    THAWED,
    Manager,
    manager_from_dict,
    resolve_path,
)

__all__ = [
    "FREEZING",
    "FROZEN",
    "THAWED",
    "Manager",
    "is_v2",
    "manager_from_dict",
    "open_manager",
    "resolve_path",
]

DEFAULT_ROOT = "/sys/fs/cgroup"


def is_v2(root: str = DEFAULT_ROOT) -> bool:
    """Whether `root` is a cgroup2 (unified) mount rather than a v1 tmpfs of hierarchies."""
    return os.path.exists(os.path.join(root, "cgroup.controllers"))


def open_manager(cgroups_path: str | None, container_id: str,
                 root: str = DEFAULT_ROOT) -> Manager:
    """The cgroup manager for one container; nothing is touched until `create()`.

    Args:
        cgroups_path: OCI `linux.cgroupsPath`. Absolute paths are relative to
            each hierarchy's root (`/dockyard/<id>`); relative ones and None
            (= the container id) are relative to this process's own cgroup,
            as runc does.
        container_id: used when `cgroups_path` is empty.
        root: the cgroupfs mount point (tests pass a fake tree).

    Raises:
        InvalidArgument: the path has `..` components or systemd syntax.
        FileNotFoundError: `root` holds no cgroup hierarchy.
    """
    if is_v2(root):
        from dockyard.shim.cgroups.v2 import V2Manager
        return V2Manager.open(cgroups_path, container_id, root)
    from dockyard.shim.cgroups.v1 import V1Manager
    return V1Manager.open(cgroups_path, container_id, root)
