"""The userland proxy of `-p/--publish`: one listener per host address and port, in apid.

Owns what docker-proxy does for dockerd: bind HostIp:HostPort (so a taken
port is refused at start, in dockerd's words), accept, and copy bytes both
ways to the container's address and port, passing half-closes on (a client's
`shutdown(SHUT_WR)` reaches the container as EOF). UDP keeps one upstream
socket per client address, dropped after 60 s of silence. Runs on apid's event
loop: no process per binding. Must not decide which ports (the controller does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field

from dockyard import errdefs

__all__ = ["Proxy", "PortConflict"]

log = logging.getLogger(__name__)

_UDP_IDLE = 60.0


class PortConflict(errdefs.EngineError):
    """The host port is taken (dockerd: a 500 from the driver)."""


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.transport: asyncio.DatagramTransport | None = None
        self.peers: dict[tuple, tuple[asyncio.DatagramTransport, asyncio.TimerHandle]] = {}
        # client address -> datagrams that came while its upstream socket is being made
        # (one socket per client, however many datagrams race its creation)
        self._pending: dict[tuple, list[bytes]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._closed = False

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        if self._closed:
            return
        entry = self.peers.get(addr)
        if entry is not None:
            entry[1].cancel()
            self.peers[addr] = (entry[0], asyncio.get_running_loop().call_later(
                _UDP_IDLE, self._drop, addr))
            entry[0].sendto(data)
        elif addr in self._pending:
            self._pending[addr].append(data)
        else:
            self._pending[addr] = [data]
            task = asyncio.get_running_loop().create_task(self._connect(addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connect(self, addr) -> None:
        loop = asyncio.get_running_loop()
        front = self

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, reply: bytes, _a) -> None:  # type: ignore[override]
                if front.transport is not None:
                    front.transport.sendto(reply, addr)

        try:
            back, _ = await loop.create_datagram_endpoint(Back, remote_addr=self.target)
        except OSError as err:
            self._pending.pop(addr, None)
            log.debug("proxy udp %s:%d: %s", *self.target, err)
            return
        queued = self._pending.pop(addr, [])
        if self._closed:
            back.close()
            return
        self.peers[addr] = (back, loop.call_later(_UDP_IDLE, self._drop, addr))
        for data in queued:
            back.sendto(data)

    def _drop(self, addr) -> None:
        entry = self.peers.pop(addr, None)
        if entry:
            entry[1].cancel()
            entry[0].close()

    def close(self) -> None:
        self._closed = True
        for addr in list(self.peers):
            self._drop(addr)
        if self.transport is not None:
            self.transport.close()


@dataclass
class Proxy:
    """One published port: proto host_ip:host_port -> container_ip:container_port."""

    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    _server: asyncio.AbstractServer | None = None
    _udp: _Udp | None = None
    _conns: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> int:
        """Bind and serve; returns the port bound (the ephemeral one for host_port 0)."""
        family = socket.AF_INET6 if ":" in self.host_ip else socket.AF_INET
        try:
            # EAFNOSUPPORT on a host booted with ipv6.disable=1: refused like a taken
            # port, so the `::` half of a 0.0.0.0 + :: binding is skipped
            sock = socket.socket(family, socket.SOCK_STREAM if self.proto == "tcp" else
                                 socket.SOCK_DGRAM)
        except OSError as err:
            raise PortConflict(f"Bind for {self.host_ip}:{self.host_port} failed: "
                               f"{err.strerror}") from err
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if self.proto == "tcp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host_ip, self.host_port))
        except OSError as err:
            sock.close()
            raise PortConflict(f"Bind for {self.host_ip}:{self.host_port} failed: port is "
                               f"already allocated ({err.strerror})") from err
        self.host_port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        if self.proto == "tcp":
            sock.listen(128)
            self._server = await asyncio.start_server(self._serve, sock=sock)
        else:
            target = (self.container_ip, self.container_port)
            _, proto = await loop.create_datagram_endpoint(lambda: _Udp(target), sock=sock)
            self._udp = proto
        return self.host_port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        up_w = None
        try:
            try:
                up_r, up_w = await asyncio.wait_for(
                    asyncio.open_connection(self.container_ip, self.container_port), 10)
            except (OSError, TimeoutError) as err:
                log.debug("proxy connect %s:%d: %s", self.container_ip, self.container_port,
                          err)
                return
            self._conns.add(up_w)
            await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
        finally:
            for w in (writer, up_w):
                if w is not None:
                    self._conns.discard(w)
                    w.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._conns):
                w.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
