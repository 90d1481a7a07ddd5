"""managerd's configuration: one dataclass, filled from flags (see __main__.py)."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard import paths

__all__ = ["Config"]


@dataclass
class Config:
    """Where managerd keeps things and listens. Components may add fields (with defaults)."""

    root: str = paths.MANAGER_ROOT  # persistent: metadata.db, content/, snapshots/
    state: str = paths.MANAGER_STATE  # volatile (tmpfs): bundles, fifos, sockets
    address: str = paths.MANAGER_ADDRESS  # unix:///path or a bare path
    socket_mode: int = 0o660
    socket_gid: int | None = None  # chown the socket to this group when set
    max_workers: int = 256  # gRPC thread pool: streams (events, wait, attach) hold a thread
    log_level: str = "info"
    default_snapshotter: str = "auto"  # for requests naming none: auto|overlayfs|native
    # tasks: the runtime for containers whose runtime.name is "dockyard-shim" or empty
    # (a PATH name or a path), and where task logs go (<log_root>/<id>/<id>-json.log)
    runtime: str = "dockyard-shim"
    log_root: str = f"{paths.DATA_ROOT}/containers"
    # images: registries reached over plain HTTP besides loopback ("host:port" or a CIDR),
    # a Docker config.json whose `auths` give credentials ("" = none), parallel downloads
    insecure_registries: tuple[str, ...] = ()
    registry_config: str = ""
    max_concurrent_downloads: int = 3
    # traced calls (gRPC metadata `traceparent`) append spans to <trace_dir>/<trace id>.jsonl,
    # the directory apid reads (<apid exec-root>/trace); see managerd/trace.py
    trace_dir: str = f"{paths.EXEC_ROOT}/trace"
    # span file retention in trace_dir (src/dockyard/tracefiles.py; 0 = no limit)
    trace_max_age: float = 3600.0
    trace_max_files: int = 1000
    trace_max_bytes: int = 256 << 20
