"""The CLI's HTTP/1.1 client on a real unix socket: framing, uploads, hijack, errors."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest
from dockyard.client import api

from .fakedaemon import FakeDaemon, Reply, Request


def handler(req: Request) -> Reply:
    if req.path == "/lines":
        return Reply(200, chunks=iter([b'{"a":1}\r\n{"b"', b':2}\n', b'\n{"c":3}']))
    if req.path == "/json":
        return Reply(200, {"n": req.params.get("n"), "f": req.params.get("filters")})
    if req.path == "/nothing":
        return Reply(304)
    if req.path == "/upload":
        return Reply(200, {"got": len(req.body), "te": req.headers.get("transfer-encoding")})
    if req.path == "/text-error":
        return Reply(500, b"plain failure", headers={"Content-Type": "text/plain"})
    if req.path == "/hijack":
        def stream(sock, r):
            data = sock.recv(100)
            sock.sendall(b"echo:" + data)
            sock.close()
        return Reply(101, hijack=stream)
    return Reply(404, {"message": f"No such container: {req.path.rsplit('/', 1)[-1]}"})


@pytest.fixture
def client(tmp_path):
    path = tmp_path / "api.sock"
    with FakeDaemon(str(path), handler) as fake:
        c = api.Client(f"unix://{path}")
        c.fake = fake
        yield c


def test_json_params_and_quoting(client):
    got = client.get("/json", params={"n": "a b/c", "skip": None, "all": True,
                                      "filters": {"name": {"x": True}}})
    assert got == {"n": "a b/c", "f": '{"name":{"x":true}}'}
    assert "all=1" in client.fake.requests[-1].query
    assert "skip" not in client.fake.requests[-1].query
    assert api.q("reg:5000/a/b:v1") == "reg%3A5000%2Fa%2Fb%3Av1"


def test_chunked_json_lines_across_chunk_boundaries(client):
    assert list(client.request("GET", "/lines").iter_json()) == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_empty_answers(client):
    resp = client.request("POST", "/nothing")
    assert resp.status == 304 and resp.read() == b""


def test_streamed_upload_is_chunked(client):
    got = client.post("/upload", data=iter([b"x" * 70000, b"y" * 10]))
    assert got == {"got": 70010, "te": "chunked"}
    assert client.post("/upload", data=b"abc") == {"got": 3, "te": None}


def test_errors_carry_the_daemons_message(client):
    with pytest.raises(api.APIError) as e:
        client.get("/containers/nope")
    assert e.value.status == 404 and e.value.message == "No such container: nope"
    with pytest.raises(api.APIError) as e:
        client.get("/text-error")
    assert e.value.status == 500 and e.value.message == "plain failure"


def test_hijack_is_a_raw_duplex_connection(client):
    conn = client.hijack("/hijack", params={"stream": True})
    assert conn is not None
    conn.sendall(b"ping")
    data = b""
    while True:
        chunk = conn.recv(100)
        if not chunk:
            break
        data += chunk
    assert data == b"echo:ping"
    req = client.fake.requests[-1]
    assert req.headers["connection"] == "Upgrade" and req.headers["upgrade"] == "tcp"


def test_missing_and_refusing_sockets(tmp_path):
    with pytest.raises(api.DaemonUnreachable) as e:
        api.Client(f"unix://{tmp_path}/none.sock").get("/_ping")
    assert not e.value.permission
    dead = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(dead))  # bound, never listening: connect is refused
    try:
        with pytest.raises(api.DaemonUnreachable, match="refused"):
            api.Client(f"unix://{dead}").get("/_ping")
    finally:
        s.close()
    with pytest.raises(ValueError, match="unix://"):
        api.Client("tcp://1.2.3.4:2375")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root to run the CLI as another user")
def test_permission_denied_names_the_socket_and_the_fix(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(private / "d.sock"))
    sock.listen(1)
    os.chmod(tmp_path, 0o755)
    try:
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               sys.executable, "-m", "dockyard.client", "-H",
                               f"unix://{private}/d.sock", "ps"],
                              capture_output=True, text=True, timeout=30,
                              cwd="/", env={**os.environ, "HOME": "/nonexistent"})
    finally:
        sock.close()
    if "permission denied while trying" not in proc.stderr and any(
            t in proc.stderr for t in ("failed to execute", "No module named",
                                       "Permission denied", "can't open file")):
        # nobody cannot run this interpreter or read this checkout: nothing to learn here
        pytest.skip(f"cannot run the CLI as nobody here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 1
    assert "permission denied while trying to connect" in proc.stderr
    assert "sudo" in proc.stderr
