"""`dockyard-managerd`: parse flags into a Config and run the Server.

    dockyard-managerd [--root DIR] [--state DIR] [--address unix:///PATH]
                      [--log-level LEVEL] [--max-workers N] [--socket-group GID]
                      [--snapshotter auto|overlayfs|native] [--runtime PATH] [--log-root DIR]
                      [--trace-dir DIR] [--trace-max-age DURATION]
                      [--trace-max-files N] [--trace-max-bytes SIZE]

Defaults come from dockyard.paths (/var/lib/dockyard/manager,
/run/dockyard/manager, unix:///run/dockyard/managerd.sock); the socket is
created with mode 0660. Exit status: 0 after a clean SIGTERM/SIGINT
shutdown, 1 when start-up fails (logged on stderr).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from dockyard.managerd.config import Config

from dockyard import paths, tracefiles


def parse_args(argv: list[str] | None = None) -> Config:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="dockyard-managerd",
                                description="dockyard's manager: content, images, snapshots, "
                                            "containers and tasks behind a gRPC API")
    p.add_argument("--root", default=env("DOCKYARD_MANAGER_ROOT", paths.MANAGER_ROOT),
                   help="persistent state: metadata, content, snapshots (default %(default)s)")
    p.add_argument("--state", default=env("DOCKYARD_MANAGER_STATE", paths.MANAGER_STATE),
                   help="volatile state: bundles, fifos, sockets (default %(default)s)")
    p.add_argument("--address", default=env("DOCKYARD_MANAGER_ADDRESS", paths.MANAGER_ADDRESS),
                   help="unix socket to listen on (default %(default)s)")
    p.add_argument("--log-level", default=env("DOCKYARD_LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"])
    p.add_argument("--max-workers", type=int, default=Config.max_workers,
                   help="gRPC threads (streams hold one each; default %(default)s)")
    p.add_argument("--socket-group", type=int, default=None,
                   help="group id owning the socket (mode 0660)")
    p.add_argument("--snapshotter", default=env("DOCKYARD_SNAPSHOTTER", "auto"),
                   choices=["auto", "overlayfs", "native"],
                   help="snapshotter for requests naming none (auto: overlayfs when it "
                        "mounts under --root, else native; default %(default)s)")
    p.add_argument("--runtime", default=env("DOCKYARD_RUNTIME", Config.runtime),
                   help="OCI runtime for containers asking for dockyard-shim (default "
                        "%(default)s; e.g. /usr/sbin/runc)")
    p.add_argument("--log-root", default=env("DOCKYARD_LOG_ROOT", Config.log_root),
                   help="container json-file logs: <log-root>/<id>/<id>-json.log "
                        "(default %(default)s)")
    p.add_argument("--insecure-registry", action="append", default=[],
                   help="registry (host:port or CIDR) to reach over plain HTTP; loopback "
                        "always is (repeatable)")
    p.add_argument("--registry-config", default=env("DOCKYARD_REGISTRY_CONFIG", ""),
                   help="a Docker config.json whose `auths` supply registry credentials")
    p.add_argument("--max-concurrent-downloads", type=int,
                   default=Config.max_concurrent_downloads,
                   help="layers downloaded at once per pull (default %(default)s)")
    p.add_argument("--trace-dir", default=env("DOCKYARD_TRACE_DIR", Config.trace_dir),
                   help="where traced calls append their spans: apid's <exec-root>/trace "
                        "(default %(default)s)")
    tracefiles.add_arguments(p, env)  # --trace-max-age/-files/-bytes
    a = p.parse_args(argv)
    return Config(root=os.path.abspath(a.root), state=os.path.abspath(a.state),
                  address=a.address, log_level=a.log_level, max_workers=a.max_workers,
                  socket_gid=a.socket_group, runtime=a.runtime,
                  default_snapshotter=a.snapshotter,
                  log_root=os.path.abspath(a.log_root),
                  insecure_registries=tuple(a.insecure_registry),
                  registry_config=a.registry_config,
                  max_concurrent_downloads=a.max_concurrent_downloads,
                  trace_dir=os.path.abspath(a.trace_dir), trace_max_age=a.trace_max_age,
                  trace_max_files=a.trace_max_files, trace_max_bytes=a.trace_max_bytes)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    # a TRACEPARENT of our own would make every runtime run trace into it: only traced
    # calls hand one to the runtime (managerd/trace.py)
    os.environ.pop("TRACEPARENT", None)
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from dockyard.managerd.server import Server

    try:
        Server(config).serve()
    except Exception as err:  # start-up failure: one clear line, details in the log
        log = logging.getLogger("dockyard.managerd")
        log.debug("start-up failed", exc_info=True)
        log.error("start-up failed: %s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
