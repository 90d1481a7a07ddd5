"""apid/hijack.py under a real uvicorn server: 101 UPGRADED, early stdin, half-close."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvicorn
from dockyard.apid.hijack import HijackProtocol, hijack
from fastapi import FastAPI, Request
from fastapi.responses import Response

pytestmark = pytest.mark.timeout(30)


def make_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        raw = await hijack(request.scope, [(b"content-type", b"application/vnd.docker.raw-stream")],
                           upgrade="upgrade" in request.headers.get("connection", "").lower())
        data = b""
        while True:
            chunk = await raw.read()
            if not chunk:
                break
            data += chunk
        # after the client's half-close the write side still works
        await raw.write(b"got:" + data)
        await raw.close()
        return Response()

    @app.get("/plain")
    async def plain() -> dict:
        return {"ok": True}

    return app


async def serve(path: str):
    config = uvicorn.Config(make_app(), uds=path, http=HijackProtocol, lifespan="off",
                            log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(100):
        if server.started:
            break
        await asyncio.sleep(0.05)
    return server, task


def exchange(path: str, request: bytes, stdin: bytes) -> bytes:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    s.sendall(request + stdin)  # stdin in the same write as the request, like `run -i`
    s.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out


def test_upgrade_then_raw_duplex(tmp_path):
    path = str(tmp_path / "h.sock")

    async def scenario():
        server, task = await serve(path)
        try:
            req = (b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                   b"Content-Length: 0\r\n\r\n")
            out = await asyncio.to_thread(exchange, path, req, b"early stdin")
            head, _, body = out.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 UPGRADED")
            assert b"Upgrade: tcp" in head and b"application/vnd.docker.raw-stream" in head
            assert body == b"got:early stdin"
            # a normal request on a fresh connection still works
            plain = await asyncio.to_thread(exchange, path,
                                            b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n", b"")
            assert plain.startswith(b"HTTP/1.1 200") and plain.endswith(b'{"ok":true}')
            no_upgrade = await asyncio.to_thread(
                exchange, path, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                b"")
            assert no_upgrade.startswith(b"HTTP/1.1 200 OK")
        finally:
            server.should_exit = True
            await task

    asyncio.run(scenario())
