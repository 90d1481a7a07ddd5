"""Hijacked connections for attach and exec start, under uvicorn.

Docker's attach and exec start turn the HTTP connection into a raw duplex
byte pipe: the client sends `Connection: Upgrade` + `Upgrade: tcp`, the daemon
answers `101 UPGRADED` and from then on writes stdout/stderr and reads stdin
on the bare socket (docker-api-flow.md §6). ASGI cannot express that, so this
module owns a small extension of uvicorn's h11 protocol:

- `HijackProtocol` (pass it as `uvicorn.Config(http=HijackProtocol)`) treats
  `Upgrade: tcp` requests as ordinary requests (no websocket handling), and
  puts a callable in `scope["extensions"]["dockyard.hijack"]`.
- A route validates the request like any other (404/409 go out as normal
  responses), then awaits `hijack(request, content_type)`: that writes the
  101 (or `200 OK` when the client did not ask to upgrade) straight to the
  transport, detaches the connection from uvicorn and returns a `RawStream`
  whose reader already holds any bytes the client sent after its request
  (docker run -i writes stdin before start).
- A half-close from the client (stdin EOF, `shutdown(SHUT_WR)`) shows as EOF on
  the reader while the write side stays open, so output keeps flowing.

The route then returns any Response; uvicorn drops it because the request
cycle is marked disconnected. Must not know about containers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HijackProtocol", "RawStream", "hijack", "HIJACK_KEY"]

log = logging.getLogger(__name__)

HIJACK_KEY = "dockyard.hijack"


class RawStream:
    """The hijacked socket: read() stdin bytes (b"" at EOF), write() output, close()."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 ssl_protocol: Any = None) -> None:
        self.reader = reader
        self.writer = writer
        self._ssl_protocol = ssl_protocol

    async def read(self, n: int = 65536) -> bytes:
        try:
            return await self.reader.read(n)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data: bytes) -> bool:
        """Write and drain; False once the client has gone."""
        if self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
            return True
        except (ConnectionError, OSError):
            return False

    def closed(self) -> bool:
        return self.writer.is_closing()

    async def close(self) -> None:
        if self._ssl_protocol is not None:
            self._ssl_protocol._dockyard_closing = True
        if not self.writer.is_closing():
            self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


class HijackProtocol(H11Protocol):
    """uvicorn's h11 protocol that lets a route take over the connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.app

        async def app(scope: dict, receive: Callable, send: Callable) -> None:
            if scope["type"] == "http":
                cycle = self.cycle
                scope.setdefault("extensions", {})[HIJACK_KEY] = (
                    lambda headers, upgrade: self._take_over(cycle, headers, upgrade))
            await inner(scope, receive, send)

        self.app = app

    def _should_upgrade(self) -> bool:
        # `Upgrade: tcp` (docker) is a plain request until a route hijacks it;
        # websocket upgrades keep uvicorn's handling
        if self._get_upgrade() == b"tcp":
            return False
        return super()._should_upgrade()

    async def _take_over(self, cycle: Any, headers: list[tuple[bytes, bytes]],
                         upgrade: bool) -> RawStream:
        if cycle is None or cycle.response_started or self.transport.is_closing():
            raise ConnectionError("connection cannot be hijacked")
        status = b"HTTP/1.1 101 UPGRADED\r\n" if upgrade else b"HTTP/1.1 200 OK\r\n"
        lines = [status]
        for name, value in list(self.server_state.default_headers) + list(headers):
            lines.append(name + b": " + value + b"\r\n")
        if upgrade:
            lines.append(b"Connection: Upgrade\r\nUpgrade: tcp\r\n")
        lines.append(b"\r\n")
        # bytes the client sent after its request (stdin written before start)
        try:
            trailing, closed = self.conn.trailing_data
        except (AttributeError, h11.LocalProtocolError):
            trailing, closed = b"", False
        cycle.disconnected = True  # uvicorn must not write anything more here
        cycle.response_started = True
        self.connections.discard(self)
        self._unset_keepalive_if_required()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport = self.transport
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        transport.write(b"".join(lines))
        if trailing:
            reader.feed_data(bytes(trailing))
        if closed:
            reader.feed_eof()
        try:
            transport.resume_reading()
        except (RuntimeError, AttributeError):
            pass
        return RawStream(reader, writer, _allow_tls_half_close(transport))


def _allow_tls_half_close(transport: Any) -> Any:
    """Keep a TLS connection writable after the client's close_notify.

    The docker CLI half-closes a hijacked TLS connection (Go's tls.Conn.CloseWrite
    sends close_notify) and keeps reading output. asyncio's SSL protocol answers
    close_notify by shutting the whole connection down; defer that until we close
    the stream ourselves (OpenSSL may still write after receiving close_notify).
    Uses asyncio's private `_ssl_protocol._start_shutdown`; a no-op without TLS.
    """
    ssl_protocol = getattr(transport, "_ssl_protocol", None)
    real = getattr(ssl_protocol, "_start_shutdown", None)
    if ssl_protocol is None or real is None:
        return None

    def start_shutdown() -> None:
        if getattr(ssl_protocol, "_dockyard_closing", False):
            real()

    ssl_protocol._start_shutdown = start_shutdown
    return ssl_protocol


async def hijack(scope: dict, headers: list[tuple[bytes, bytes]] | None = None,
                 upgrade: bool = True) -> RawStream:
    """Take over the connection of the request in `scope` (see module docstring).

    Raises:
        RuntimeError: the server is not running HijackProtocol (e.g. a test client).
    """
    take: Callable[..., Awaitable[RawStream]] | None = (scope.get("extensions") or {}).get(
        HIJACK_KEY)
    if take is None:
        raise RuntimeError("this server cannot hijack connections (run apid under HijackProtocol)")
    return await take(headers or [], upgrade)
