"""Hijacked attach/exec streams through the real unix-socket transport, against a fake
daemon: run's call order, stdin piping with half-close, stdcopy demux, `-it` under a pty
(raw mode, resize, Ctrl-P Ctrl-Q detach), signal proxying, exec exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dockyard.client.streams import Demux

from .fakedaemon import FakeDaemon, Reply, Request, frame

CID = "f" * 64
EID = "e" * 64
DOCKYARD = [sys.executable, "-m", "dockyard.client"]


class Engine:
    """Fake container lifecycle: create -> attach (hijack) -> wait -> start -> streams."""

    def __init__(self, tty_echo: bool = False, exit_code: int = 7):
        self.started = threading.Event()
        self.finished = threading.Event()
        self.tty_echo = tty_echo
        self.exit_code = exit_code
        self.stdin = b""
        self.resizes: list[tuple[str, str]] = []
        self.kills: list[str] = []
        self.create_body: dict = {}
        self.exec_body: dict = {}

    def attach(self, sock, req: Request) -> None:
        try:
            self.started.wait(10)
            if self.tty_echo:  # a pty: echo what is typed until the client goes away
                sock.sendall(b"ready\r\n")
                while True:
                    data = sock.recv(4096)
                    if not data or b"\x04" in data:  # ^D: the shell exits
                        break
                    sock.sendall(data)
            elif req.params.get("stdin") == "1" or (req.path.startswith("/exec/")
                                                     and self.exec_body.get("AttachStdin")):  # cat: stdin back on stdout, until EOF
                while True:
                    data = sock.recv(4096)
                    if not data:
                        break
                    self.stdin += data
                sock.sendall(frame(1, self.stdin) + frame(2, b"bye\n"))
            else:  # a process that runs until it gets a signal
                sock.sendall(frame(1, b"running\n"))
                deadline = time.monotonic() + 10
                while not self.kills and time.monotonic() < deadline:
                    time.sleep(0.02)
                sock.sendall(frame(2, f"got {self.kills}\n".encode()))
        finally:
            sock.close()
            self.finished.set()

    def wait(self):
        self.finished.wait(20)
        yield json.dumps({"StatusCode": self.exit_code, "Error": None}).encode()

    def __call__(self, req: Request) -> Reply:
        key = f"{req.method} {req.path}"
        if key == "POST /containers/create":
            self.create_body = req.json()
            return Reply(201, {"Id": CID, "Warnings": []})
        if key == f"POST /containers/{CID}/attach":
            return Reply(101, hijack=self.attach)
        if key == f"POST /containers/{CID}/wait":
            return Reply(200, headers={"Content-Type": "application/json"}, chunks=self.wait())
        if key == f"POST /containers/{CID}/start":
            self.started.set()
            return Reply(204)
        if key == f"POST /containers/{CID}/resize":
            self.resizes.append((req.params["h"], req.params["w"]))
            return Reply(200)
        if key == f"POST /containers/{CID}/kill":
            self.kills.append(req.params.get("signal", ""))
            return Reply(204)
        if req.method == "POST" and req.path.endswith("/exec"):
            self.exec_body = req.json()
            return Reply(201, {"Id": EID})
        if key == f"POST /exec/{EID}/start":
            self.started.set()
            return Reply(101, hijack=self.attach)
        if key == f"POST /exec/{EID}/resize":
            self.resizes.append((req.params["h"], req.params["w"]))
            return Reply(200)
        if key == f"GET /exec/{EID}/json":
            return Reply(200, {"Running": False, "ExitCode": self.exit_code})
        return Reply(404, {"message": "page not found"})


@pytest.fixture
def sock_path(tmp_path) -> Path:
    return tmp_path / "d.sock"


def _env(sock: Path) -> dict[str, str]:
    return {**os.environ, "DOCKYARD_HOST": f"unix://{sock}"}


def test_demux_handles_split_and_merged_frames():
    d = Demux()
    data = frame(1, b"hello") + frame(2, b"err") + frame(1, b"")
    got = []
    for i in range(len(data)):  # one byte at a time
        got += list(d.feed(data[i:i + 1]))
    assert got == [(1, b"hello"), (2, b"err"), (1, b"")]
    assert list(Demux().feed(data)) == got


def test_run_pipes_stdin_half_closes_and_exits_with_the_containers_code(sock_path):
    engine = Engine()
    with FakeDaemon(str(sock_path), engine) as fake:
        proc = subprocess.run([*DOCKYARD, "run", "-i", "--rm", "busybox", "cat"],
                              input=b"hello\nworld\n", capture_output=True,
                              env=_env(sock_path), timeout=30)
        assert proc.returncode == 7, proc.stderr
        assert proc.stdout == b"hello\nworld\n"
        assert proc.stderr == b"bye\n"
        order = fake.paths()
        assert order.index(f"POST /containers/{CID}/attach") < order.index(
            f"POST /containers/{CID}/start")
        assert order.index(f"POST /containers/{CID}/wait") < order.index(
            f"POST /containers/{CID}/start")
        attach = next(r for r in fake.requests if r.path.endswith("/attach"))
        assert attach.params == {"stream": "1", "stdin": "1", "stdout": "1", "stderr": "1"}
        assert attach.headers["upgrade"] == "tcp"
        wait = next(r for r in fake.requests if r.path.endswith("/wait"))
        assert wait.params["condition"] == "removed"
    body = engine.create_body
    assert body["OpenStdin"] and body["StdinOnce"] and body["AttachStdin"] and not body["Tty"]
    assert body["HostConfig"]["AutoRemove"] is True


def test_sig_proxy_forwards_signals_to_the_container(sock_path):
    engine = Engine(exit_code=0)
    with FakeDaemon(str(sock_path), engine):
        proc = subprocess.Popen([*DOCKYARD, "run", "busybox", "sleep", "100"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=_env(sock_path))
        try:
            assert proc.stdout.readline() == b"running\n"
            proc.send_signal(signal.SIGUSR1)
            out, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
    assert engine.kills == ["SIGUSR1"]
    assert b"SIGUSR1" in err and proc.returncode == 0


pexpect = pytest.importorskip("pexpect")


def _spawn(sock: Path, *args: str):
    child = pexpect.spawn(DOCKYARD[0], [*DOCKYARD[1:], *args], env=_env(sock), timeout=20,
                          dimensions=(24, 80))
    return child


def _wait_for(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_run_it_raw_mode_resize_and_detach(sock_path):
    engine = Engine(tty_echo=True)
    with FakeDaemon(str(sock_path), engine):
        child = _spawn(sock_path, "run", "-it", "--rm", "busybox", "sh")
        try:
            child.expect("ready")
            # raw mode: no line buffering, so a key reaches the container without Enter
            child.send("x")
            child.expect("x")
            assert _wait_for(lambda: ("24", "80") in engine.resizes), engine.resizes
            child.setwinsize(30, 100)  # the kernel sends SIGWINCH to the session
            assert _wait_for(lambda: ("30", "100") in engine.resizes), engine.resizes
            child.send("\x10\x11")  # ctrl-p ctrl-q
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
        assert child.exitstatus == 0
        assert engine.finished.wait(5)  # the client dropped the connection on detach
    body = engine.create_body
    assert body["Tty"] and body["OpenStdin"] and body["AttachStdin"]
    assert body["HostConfig"]["ConsoleSize"] == [24, 80]


def test_detach_prefix_alone_is_passed_through(sock_path):
    engine = Engine(tty_echo=True, exit_code=3)
    with FakeDaemon(str(sock_path), engine):
        child = _spawn(sock_path, "run", "-it", "--detach-keys", "ctrl-a,ctrl-b", "busybox")
        try:
            child.expect("ready")
            child.send("\x01z")  # ctrl-a then not ctrl-b: both bytes go to the container
            child.expect("\x01z")
            child.sendcontrol("d")  # the fake shell exits; run returns its exit code
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
        assert child.exitstatus == 3


def test_exec_it_under_a_pty_reports_the_exit_code(sock_path):
    engine = Engine(tty_echo=True, exit_code=5)
    with FakeDaemon(str(sock_path), engine) as fake:
        child = _spawn(sock_path, "exec", "-it", "-e", "A=1", "-w", "/tmp", "web", "sh")
        try:
            child.expect("ready")
            child.send("hi")
            child.expect("hi")
            assert _wait_for(lambda: ("24", "80") in engine.resizes)
            child.sendcontrol("d")  # in raw mode ^D is a byte for the container's shell
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
        assert child.exitstatus == 5
        create = next(r for r in fake.requests if r.path == "/containers/web/exec")
        body = create.json()
        assert body["Tty"] and body["AttachStdin"] and body["Env"] == ["A=1"]
        assert body["WorkingDir"] == "/tmp" and body["Cmd"] == ["sh"]
        start = next(r for r in fake.requests if r.path == f"/exec/{EID}/start")
        assert json.loads(start.body)["Tty"] is True


def test_exec_non_tty_exit_code_and_output(sock_path):
    engine = Engine(exit_code=4)
    with FakeDaemon(str(sock_path), engine):
        proc = subprocess.run([*DOCKYARD, "exec", "-i", "web", "cat"], input=b"data",
                              capture_output=True, env=_env(sock_path), timeout=30)
    assert proc.returncode == 4
    assert proc.stdout == b"data" and proc.stderr == b"bye\n"
