"""The managerd daemon: gRPC on a unix socket, with health and reflection.

``Server(config)`` runs ``startup()`` (stores, services, socket),
``serve()`` (until SIGTERM/SIGINT; handlers restored on exit) and
``shutdown()`` (health NOT_SERVING, end event streams, drain RPCs, run
shutdown hooks, close the database, remove the socket). gRPC is the
synchronous server on a thread pool: streams (event subscriptions, task
waits, attach) hold one thread each, hence a large pool. Child processes
are started with subprocess/asyncio, never os.fork (threads).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from concurrent import futures

from dockyard.managerd.config import Config

from dockyard.errdefs import Unavailable
from dockyard.paths import unix_path

log = logging.getLogger(__name__)

__all__ = ["Server"]

HEALTH = "grpc.health.v1.Health"


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.ctx = None
        self.grpc_server = None
        self.health = None
        self.service_names: list[str] = []
        self._stop = threading.Event()
        self._owns_socket = False  # never remove a socket another daemon listens on
        self.socket_path = os.path.abspath(unix_path(config.address))

    def startup(self) -> None:
        import grpc
        from dockyard.managerd.services import build_context, register_all
        from dockyard.managerd.trace import TraceInterceptor, Tracer
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        from grpc_reflection.v1alpha import reflection

        from dockyard.tracefiles import Retention, Sweeper

        self._claim_socket()
        self.ctx = build_context(self.config)
        removed = self.ctx.snapshots.cleanup()
        if removed:
            log.info("removed leftover snapshot directories count=%d", removed)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.config.max_workers,
                                                        thread_name_prefix="rpc"),
                             interceptors=[TraceInterceptor(Tracer(self.config.trace_dir))],
                             options=[("grpc.max_receive_message_length", 64 << 20),
                                      ("grpc.max_send_message_length", 64 << 20)])
        self.service_names = register_all(self.ctx, server)
        # span file retention: a sweep now, then periodically (dockyard/tracefiles.py)
        sweeper = Sweeper(self.config.trace_dir, Retention(
            self.config.trace_max_age, self.config.trace_max_files,
            self.config.trace_max_bytes)).start()
        self.ctx.on_shutdown(sweeper.stop)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for name in ["", *self.service_names]:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            [*self.service_names, HEALTH, reflection.SERVICE_NAME], server)
        old = os.umask(0o777 & ~self.config.socket_mode)  # socket born with the right mode
        try:
            server.add_insecure_port(f"unix:{self.socket_path}")
            server.start()
        finally:
            os.umask(old)
        os.chmod(self.socket_path, self.config.socket_mode)
        if self.config.socket_gid is not None:
            os.chown(self.socket_path, -1, self.config.socket_gid)
        self.grpc_server = server
        self._owns_socket = True
        log.info("managerd serving address=unix://%s root=%s state=%s services=%d",
                 self.socket_path, self.config.root, self.config.state, len(self.service_names))

    def _claim_socket(self) -> None:
        """Remove a stale socket; refuse if another daemon answers on it."""
        os.makedirs(os.path.dirname(self.socket_path), mode=0o711, exist_ok=True)
        if not os.path.exists(self.socket_path):
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.socket_path)
        except OSError:
            os.unlink(self.socket_path)  # nobody listens: left by a crash
        else:
            raise Unavailable(f"address unix://{self.socket_path}: another daemon is "
                              "listening on it")
        finally:
            s.close()

    def serve(self) -> None:
        """startup(), then block until SIGTERM/SIGINT, then shutdown()."""
        handlers = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.startup()
            while not self._stop.wait(3600):
                pass
        finally:
            self.shutdown()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:
        log.info("received signal=%s, shutting down", signal.Signals(signum).name)
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        if self.health is not None:
            self.health.enter_graceful_shutdown()
        if self.ctx is not None:
            self.ctx.events.close()  # end Subscribe streams so draining finishes
        if self.grpc_server is not None:
            self.grpc_server.stop(grace=5).wait(10)
            self.grpc_server = None
        if self.ctx is not None:
            self.ctx.close()
            self.ctx = None
        if self._owns_socket:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
            self._owns_socket = False
        log.info("managerd stopped")
