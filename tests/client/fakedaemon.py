"""A minimal Docker-API server on a unix socket for the CLI's tests.

It speaks just enough HTTP/1.1 (Content-Length and chunked bodies, 101 hijack)
for the real UnixTransport to be exercised without apid, and records every
request so tests can assert on order (attach and wait before start).
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    sock: socket.socket | None = None
    rest: bytes = b""  # bytes after the head of a hijacked request (early stdin)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def params(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.query, keep_blank_values=True))


@dataclass
class Reply:
    status: int = 200
    body: bytes | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Any = None  # an iterable of chunks (may block): chunked transfer encoding
    hijack: Callable[[socket.socket, Request], None] | None = None


def _read_request(f: Any) -> Request | None:
    line = f.readline()
    if not line:
        return None
    method, target, _ = line.decode().split(" ", 2)
    headers = {}
    while True:
        h = f.readline().decode().rstrip("\r\n")
        if not h:
            break
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    if "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int(f.readline().strip(), 16)
            if size == 0:
                f.readline()
                break
            body += f.read(size)
            f.readline()
    path, _, query = target.partition("?")
    return Request(method, path, query, headers, body)


class FakeDaemon:
    """Routes: handler(Request) -> Reply. Records requests in `.requests`."""

    def __init__(self, path: str, handler: Callable[[Request], Reply]):
        self.path = path
        self.handler = handler
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        daemon = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                req = _read_request(self.rfile)
                if req is None:
                    return
                req.sock = self.connection
                with daemon.lock:
                    daemon.requests.append(req)
                reply = daemon.handler(req)
                if reply.hijack is not None:
                    head = (f"HTTP/1.1 {reply.status} UPGRADED\r\n"
                            "Content-Type: application/vnd.docker.raw-stream\r\n"
                            "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
                    self.wfile.write(head.encode())
                    self.wfile.flush()
                    reply.hijack(_Sock(self.connection, self.rfile), req)
                    return
                body = reply.body
                if not isinstance(body, bytes):
                    body = json.dumps(body).encode()
                    reply.headers.setdefault("Content-Type", "application/json")
                lines = [f"HTTP/1.1 {reply.status} X"]
                lines += [f"{k}: {v}" for k, v in reply.headers.items()]
                if reply.chunks is not None:
                    lines.append("Transfer-Encoding: chunked")
                    self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode())
                    for c in reply.chunks:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    if reply.status not in (204, 304):
                        lines.append(f"Content-Length: {len(body)}")
                    self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
                self.wfile.flush()

        self.server = socketserver.ThreadingUnixStreamServer(path, Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeDaemon:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]


class _Sock:
    """The hijacked connection on the server side: reads through the handler's buffer."""

    def __init__(self, sock: socket.socket, rfile: Any):
        self.sock = sock
        self.rfile = rfile

    def recv(self, n: int = 65536) -> bytes:
        return self.rfile.read1(n)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def frame(stream: int, data: bytes) -> bytes:
    """One stdcopy frame."""
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data
