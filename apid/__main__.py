"""`dockyard-apid`: the Docker Engine API daemon.

    dockyard-apid [--data-root DIR] [--exec-root DIR] [-H unix:///PATH | tcp://HOST:PORT]...
                  [--group GROUP] [--managerd ADDRESS] [--namespace NS] [--init-path PATH]
                  [--tlsverify --tlscacert CA --tlscert CERT --tlskey KEY]
                  [--insecure-tcp-forced] [--log-level LEVEL]
                  [--bridge NAME|none] [--bip CIDR]

Unix sockets are created with mode 0660 (group root unless --group). A TCP
listener requires TLS with client-certificate verification; plain TCP is
refused except on loopback, unless --insecure-tcp-forced. Builds a Config,
then a Server with startup() / serve() / shutdown() (uvicorn Server per
listener kind, signal handlers restored on exit). Running containers keep
running when apid stops; a new apid picks them up from managerd.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import grp
import ipaddress
import logging
import os
import shutil
import signal
import socket
import ssl
import sys
from dataclasses import dataclass, field

from dockyard import errdefs, paths, tracefiles

__all__ = ["Config", "Server", "main", "parse_args"]

log = logging.getLogger("dockyard.apid")


@dataclass
class Config:
    data_root: str = paths.DATA_ROOT
    exec_root: str = paths.EXEC_ROOT
    hosts: list[str] = field(default_factory=lambda: [paths.APID_ADDRESS])
    group: str | None = None
    managerd: str = paths.MANAGER_ADDRESS
    namespace: str = "moby"
    init_path: str | None = None
    tlsverify: bool = False
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None
    insecure_tcp_forced: bool = False
    log_level: str = "info"
    bridge: str | None = None  # default bridge device; None = lo-only namespaces
    bip: str | None = None  # the bridge's address/prefix, e.g. 172.18.0.1/16
    # span file retention in <exec-root>/trace (dockyard/tracefiles.py)
    trace_retention: tracefiles.Retention = field(default_factory=tracefiles.Retention)


def _default_init() -> str | None:
    for cand in ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/libexec/docker/docker-init"):
        if os.path.exists(cand):
            return cand
    return shutil.which("tini-static")


def parse_args(argv: list[str] | None = None) -> Config:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="dockyard-apid", description="dockyard's Docker Engine API")
    p.add_argument("--data-root", default=env("DOCKYARD_DATA_ROOT", paths.DATA_ROOT))
    p.add_argument("--exec-root", default=env("DOCKYARD_EXEC_ROOT", paths.EXEC_ROOT))
    p.add_argument("-H", "--host", action="append", dest="hosts",
                   help=f"listen address (several allowed; default {paths.APID_ADDRESS})")
    p.add_argument("--group", "-G", default=None, help="group owning the unix sockets")
    p.add_argument("--managerd", default=env("DOCKYARD_MANAGER_ADDRESS", paths.MANAGER_ADDRESS))
    p.add_argument("--namespace", default=env("DOCKYARD_NAMESPACE", "moby"),
                   help="managerd namespace of this daemon's objects (default %(default)s)")
    p.add_argument("--init-path", default=None, help="docker-init binary for --init "
                   "(default: tini-static when installed)")
    p.add_argument("--tlsverify", action="store_true")
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    p.add_argument("--insecure-tcp-forced", action="store_true",
                   help="allow plain-text TCP on non-loopback addresses (anyone on the network "
                        "gets root on this host)")
    p.add_argument("--log-level", default=env("DOCKYARD_LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"])
    p.add_argument("--bridge", "-b", default=env("DOCKYARD_BRIDGE", "none"),
                   help="bridge device of the default `bridge` network, created if missing; "
                        "`none` (the default) keeps containers on a private namespace with lo "
                        "only (scripts/setup.sh passes dockyard0)")
    p.add_argument("--bip", default=env("DOCKYARD_BIP") or None,
                   help="the default bridge's address and prefix (e.g. 172.18.0.1/16); default: "
                        "the first of 172.17-31.0.0/16, 192.168.N.0/20 no host route overlaps")
    tracefiles.add_arguments(p, env)  # --trace-max-age/-files/-bytes
    a = p.parse_args(argv)
    return Config(data_root=a.data_root, exec_root=a.exec_root,
                  hosts=a.hosts or [paths.APID_ADDRESS], group=a.group, managerd=a.managerd,
                  namespace=a.namespace,
                  init_path=a.init_path or _default_init(), tlsverify=a.tlsverify,
                  tlscacert=a.tlscacert, tlscert=a.tlscert, tlskey=a.tlskey,
                  insecure_tcp_forced=a.insecure_tcp_forced, log_level=a.log_level,
                  trace_retention=tracefiles.from_args(a),
                  bridge=None if a.bridge in ("", "none") else a.bridge, bip=a.bip)


def _tcp_addr(host: str) -> tuple[str, int]:
    rest = host[len("tcp://"):]
    h, _, port = rest.rpartition(":")
    return (h.strip("[]") or "127.0.0.1"), int(port or 2375)


def _is_loopback(h: str) -> bool:
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _validate(config: Config) -> None:
    for host in config.hosts:
        if host.startswith("tcp://"):
            addr, _ = _tcp_addr(host)
            tls = config.tlsverify and config.tlscacert and config.tlscert and config.tlskey
            if not tls and not _is_loopback(addr) and not config.insecure_tcp_forced:
                raise SystemExit(f"dockyard-apid: refusing plain TCP on {host}: use --tlsverify "
                                 "with --tlscacert/--tlscert/--tlskey, a loopback address, or "
                                 "--insecure-tcp-forced")
        elif not (host.startswith("unix://") or host.startswith("/")):
            raise SystemExit(f"dockyard-apid: unsupported host {host!r} (unix:// or tcp://)")


def _unix_socket(path: str, group: str | None) -> socket.socket:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
            probe.close()
            raise SystemExit(f"dockyard-apid: {path} is in use by a running daemon")
        except ConnectionRefusedError:
            os.unlink(path)
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    gid = 0
    if group:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    os.chown(path, 0, gid)
    os.chmod(path, 0o660)
    sock.listen(512)
    sock.setblocking(False)
    return sock


class Server:
    """Runs the app on every listener until SIGTERM/SIGINT."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.servers: list = []
        self.sockets: list[tuple[socket.socket, str | None]] = []
        self.daemon = None
        self.manager = None
        self._stop = asyncio.Event()
        self._restore_task: asyncio.Task | None = None
        self._trace_sweeper: tracefiles.Sweeper | None = None

    async def startup(self) -> None:
        import uvicorn
        from dockyard.apid.app import create_app
        from dockyard.apid.daemon import Daemon, DaemonConfig
        from dockyard.apid.grpc_manager import GrpcManager
        from dockyard.apid.hijack import HijackProtocol

        _validate(self.config)
        os.makedirs(f"{self.config.data_root}/containers", exist_ok=True)
        os.makedirs(self.config.exec_root, exist_ok=True)
        self._trace_sweeper = tracefiles.Sweeper(f"{self.config.exec_root}/trace",
                                                 self.config.trace_retention).start()
        self.manager = GrpcManager(self.config.managerd, namespace=self.config.namespace)
        self.daemon = Daemon(self.manager, DaemonConfig(
            data_root=self.config.data_root, exec_root=self.config.exec_root,
            init_path=self.config.init_path, bridge=self.config.bridge, bip=self.config.bip))
        try:
            await self.daemon.restore()
        except errdefs.Unavailable as err:
            # serve anyway (calls report managerd's absence) and keep trying in the background
            log.warning("managerd unavailable, restoring later: %s", err)
            self._restore_task = asyncio.get_running_loop().create_task(
                self.daemon.restore_when_available())
        self.daemon.watch_manager_events()
        app = create_app(self.daemon)
        plain, tls = [], []
        for host in self.config.hosts:
            if host.startswith("tcp://"):
                addr, port = _tcp_addr(host)
                sock = socket.create_server((addr, port), reuse_port=False,
                                            family=socket.AF_INET6 if ":" in addr else
                                            socket.AF_INET)
                sock.setblocking(False)
                (tls if self.config.tlsverify else plain).append(sock)
                self.sockets.append((sock, None))
            else:
                path = paths.unix_path(host)
                sock = _unix_socket(path, self.config.group)
                plain.append(sock)
                self.sockets.append((sock, path))
        common = dict(http=HijackProtocol, lifespan="off", log_level=self.config.log_level,
                      access_log=self.config.log_level == "debug", timeout_keep_alive=60,
                      timeout_graceful_shutdown=2, ws="none")
        for socks, use_tls in ((plain, False), (tls, True)):
            if not socks:
                continue
            kwargs = dict(common)
            if use_tls:
                kwargs.update(ssl_certfile=self.config.tlscert, ssl_keyfile=self.config.tlskey,
                              ssl_ca_certs=self.config.tlscacert, ssl_cert_reqs=ssl.CERT_REQUIRED)
            server = uvicorn.Server(uvicorn.Config(app, **kwargs))
            server.config.load()
            server.lifespan = server.config.lifespan_class(server.config)
            await server.startup(sockets=socks)
            self.servers.append(server)
        log.info("apid listening hosts=%s managerd=%s", ",".join(self.config.hosts),
                 self.config.managerd)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.getsignal(sig)
            loop.add_signal_handler(sig, self._stop.set)
        try:
            await self._stop.wait()
        finally:
            for sig, handler in old.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)

    async def shutdown(self) -> None:
        if self._restore_task is not None:
            self._restore_task.cancel()
        if self._trace_sweeper is not None:
            await asyncio.to_thread(self._trace_sweeper.stop)
        for server in self.servers:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.shutdown(), 5)
        if self.daemon is not None:
            await self.daemon.shutdown()
        if self.manager is not None:
            with contextlib.suppress(Exception):
                await self.manager.close()
        for sock, path in self.sockets:
            sock.close()
            if path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


async def _run(config: Config) -> int:
    server = Server(config)
    try:
        await server.startup()
    except SystemExit:
        raise
    except Exception as err:  # noqa: BLE001 - report start-up failures on stderr, exit 1
        log.error("start-up failed: %s", err)
        await server.shutdown()
        return 1
    try:
        await server.serve()
    finally:
        await server.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return asyncio.run(_run(config))


if __name__ == "__main__":
    sys.exit(main())
