"""`--console-socket`: the pty master arrives over SCM_RIGHTS, as runc sends it."""

from __future__ import annotations

import array
import os
import select
import socket
import time

import pytest
from helpers import busybox

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]


def receive_master(listener: socket.socket) -> tuple[int, bytes]:
    listener.settimeout(20)
    conn, _ = listener.accept()
    with conn:
        fds = array.array("i")
        msg, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:fds.itemsize])
    assert len(fds) == 1, anc
    return fds[0], msg


def read_until(fd: int, needle: bytes, timeout: float = 10) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


@pytest.fixture
def console_socket(tmp_path):
    path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    yield path, listener
    listener.close()


def test_terminal_through_console_socket(shim, console_socket):
    path, listener = console_socket
    cfg = busybox.base_config(["sh"], terminal=True, consoleSize={"height": 40, "width": 100})
    cid = shim.container()
    bundle = shim.bundle(cfg)
    shim.detached("create", "--console-socket", path, "--bundle", str(bundle), cid)
    master, payload = receive_master(listener)
    try:
        assert payload == b"/dev/ptmx"
        pid = shim.state(cid)["pid"]
        shim.pids.add(pid)
        shim("start", cid, check=True)
        os.write(master, b"stty size; tty; echo $((6*7)); echo END$((1+1))\n")
        out = read_until(master, b"END2\r\n")
        assert b"40 100\r\n" in out, out
        assert b"/dev/pts/0" in out
        assert b"42\r\n" in out
        os.write(master, b"exit 3\n")
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 3
    finally:
        os.close(master)


def test_exec_with_tty(shim, console_socket, tmp_path):
    path, listener = console_socket
    cid, init = shim.create(busybox.base_config(["sleep", "60"]))
    shim("start", cid, check=True)
    pid_file = tmp_path / "exec.pid"
    shim.detached("exec", "--detach", "--tty", "--console-socket", path, "--pid-file",
                  str(pid_file), cid, "sh")
    master, _ = receive_master(listener)
    try:
        pid = int(pid_file.read_text())
        shim.pids.add(pid)
        os.write(master, b"tty; echo END$((1+1)); exit 5\n")
        out = read_until(master, b"END2\r\n")
        assert b"/dev/pts/" in out
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 5
    finally:
        os.close(master)


def test_terminal_needs_console_socket(shim):
    cid = shim.container()
    bundle = shim.bundle(busybox.base_config(["sh"], terminal=True))
    res = shim("create", "--bundle", str(bundle), cid)
    assert res.returncode == 1
    assert "console socket" in res.stderr


def test_attached_run_with_terminal_proxies_the_pty(shim):
    """`spec` + `run` as the README shows: the shim holds the pty itself."""
    import subprocess
    cfg = busybox.base_config(["sh"], terminal=True)
    cid = shim.container()
    bundle = shim.bundle(cfg)
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([shim.binary, "--root", shim.root, "run", "--bundle",
                                 str(bundle), cid], stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        # type only once the prompt is there: raw mode flushes earlier input (TCSAFLUSH)
        out = read_until(master, b"# ")
        os.write(master, b"tty; echo $((6*7)); exit 4\n")
        out += read_until(master, b"42\r\n")
        assert proc.wait(timeout=20) == 4
        assert b"/dev/pts/0" in out and b"42" in out
    finally:
        os.close(master)


def test_attached_exec_with_tty(shim):
    import subprocess
    cid, _ = shim.create(busybox.base_config(["sleep", "60"]))
    shim("start", cid, check=True)
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([shim.binary, "--root", shim.root, "exec", "-t", cid, "sh"],
                                stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        out = read_until(master, b"# ")
        os.write(master, b"tty; exit 6\n")
        out += read_until(master, b"pts")
        assert proc.wait(timeout=20) == 6
        assert b"/dev/pts/" in out
    finally:
        os.close(master)
