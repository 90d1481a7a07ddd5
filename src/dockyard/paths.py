"""Default locations of everything dockyard keeps on disk; every one is also a flag."""

from __future__ import annotations

RUNTIME_ROOT = "/run/dockyard/runtime"  # shim --root: one state dir per container
MANAGER_ROOT = "/var/lib/dockyard/manager"  # managerd --root: content, snapshots, metadata
MANAGER_STATE = "/run/dockyard/manager"  # managerd --state: bundles, fifos, sockets
MANAGER_ADDRESS = "unix:///run/dockyard/managerd.sock"
APID_ADDRESS = "unix:///run/dockyard/dockyard.sock"
DATA_ROOT = "/var/lib/dockyard"  # apid --data-root: containers/, networks, volumes
EXEC_ROOT = "/run/dockyard"  # apid --exec-root
CGROUP_ROOT = "/sys/fs/cgroup"


def container_log(data_root: str, container_id: str) -> str:
    """The json-file log of a container: DATA_ROOT/containers/ID/ID-json.log."""
    return f"{data_root}/containers/{container_id}/{container_id}-json.log"


def unix_path(address: str) -> str:
    """`unix:///run/x.sock` -> `/run/x.sock`; a bare path is returned as is."""
    return address[len("unix://"):] if address.startswith("unix://") else address
