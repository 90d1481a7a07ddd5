"""Reliability of the monitor's exit bookkeeping (reliability).

The monitor keeps the exit of a pid it reaped before learning whose it was
(`early`): an exec'd process can die before its runtime wrote the pid file.
Such an entry left unclaimed must not outlive the runtimes that could claim it,
or a later process that gets the same pid (pid_max is 32768 on this kind of
host) is reported exited the moment it starts.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from dockyard.managerd.monitor import _process as wire
from helpers import tasks as th

from dockyard import errdefs

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def monitor(tmp_path):
    m = wire.Monitor(str(tmp_path), "")
    yield m
    m.ep.close()


def _exec_proc(monitor, tmp_path, exec_id: str, pid: int, spawn_pid: int) -> wire.Proc:
    proc = wire.Proc(exec_id, False)
    proc.pid_file = str(tmp_path / f"{exec_id}.pid")
    with open(proc.pid_file, "w") as f:
        f.write(str(pid))
    proc.spawn_pid = spawn_pid
    proc.started = True
    monitor.procs[exec_id] = proc
    return proc


def test_exit_before_the_pid_file_is_read_is_claimed(monitor, tmp_path):
    """The legitimate case: the exec'd process (4242) is reaped before its runtime (4241)."""
    proc = _exec_proc(monitor, tmp_path, "e1", 4242, 4241)
    monitor.on_reaped(4242, 3, 111)
    monitor.on_reaped(4241, 0, 112)
    monitor.forget_early()
    assert (proc.pid, proc.status, proc.exited_ns) == (4242, 3, 111)
    assert monitor.early == {}


def test_unclaimed_exit_is_not_given_to_a_later_process_with_the_same_pid(monitor, tmp_path):
    monitor.on_reaped(5000, 137, 1)  # whatever it was, no runtime will ever name it
    monitor.forget_early()  # end of the waitpid batch, no runtime running
    assert monitor.early == {}
    # much later the pid comes round again, for a new exec
    proc = _exec_proc(monitor, tmp_path, "e2", 5000, 5001)
    monitor.on_reaped(5001, 0, 2)
    monitor.forget_early()
    assert proc.pid == 5000
    assert proc.status is None, "a new exec was reported exited with a stale status"


def test_unknown_exit_is_kept_while_a_runtime_runs(monitor, tmp_path):
    proc = _exec_proc(monitor, tmp_path, "e3", 6000, 6001)
    monitor.on_reaped(6000, 0, 5)
    monitor.forget_early()
    assert 6000 in monitor.early  # its runtime may still claim it
    monitor.on_reaped(6001, 0, 6)
    assert proc.status == 0


def _request(monitor, *fields) -> tuple[int, bytes]:
    """Dispatch one request as monitor.sock would, return the reply frame."""
    ours, theirs = socket.socketpair()
    with ours:
        theirs.setblocking(False)
        conn = wire.Conn(theirs)
        monitor.conns[conn.fd] = conn
        monitor.watch(conn.fd, lambda ev: None)
        try:
            monitor.dispatch(conn, wire.REQ, wire.pack(*fields))
        except ValueError as err:  # on_conn turns these into an E frame
            monitor.send(conn, wire.frame(wire.ERR, str(err).encode()), close=True)
        ours.settimeout(5)
        data = ours.recv(65536)
    return wire.take_frames(bytearray(data))[0]


def test_signal_reaches_a_running_exec_and_never_a_reaped_pid(monitor, tmp_path):
    """Kill of an exec goes through the monitor: it signals only a process it has not
    reaped, so a pid reused after the exit is never hit."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        proc = _exec_proc(monitor, tmp_path, "e4", child.pid, 0)
        proc.pid = child.pid
        proc.status = 0  # reaped already: the pid may belong to anyone now
        kind, payload = _request(monitor, "signal", "e4", int(signal.SIGKILL))
        assert kind == wire.ERR and b"not running" in payload
        time.sleep(0.05)
        assert child.poll() is None
        kind, _ = _request(monitor, "signal", "", int(signal.SIGKILL))  # the init: via runtime
        assert kind == wire.ERR
        proc.status = None
        kind, payload = _request(monitor, "signal", "e4", int(signal.SIGKILL))
        assert kind == wire.REPLY, payload
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# --- through a real managerd -------------------------------------------------------------

def _tpb():
    from dockyard.protos.services.tasks.v1 import tasks_pb2
    return tasks_pb2


@pytest.fixture(scope="module")
def env(managerd):
    ns = f"dy-rel-{uuid.uuid4().hex[:8]}"
    with managerd.client(ns) as client:
        yield client, th.commit_busybox(client)


@pytest.fixture
def containers(env, shim_bin):
    client, base = env
    made: list[str] = []

    def make(args: list[str]) -> str:
        cid = th.new_id()
        made.append(cid)
        th.make_container(client, cid, args, shim_bin, base)
        return cid

    yield make
    for cid in made:
        th.remove_container(client, cid)


def _exec(stub, cid: str, exec_id: str, args: list[str]) -> None:
    tpb = _tpb()
    spec = json.dumps({"args": args, "cwd": "/", "env": ["PATH=/bin"],
                       "user": {"uid": 0, "gid": 0}}).encode()
    stub.Exec(tpb.ExecProcessRequest(container_id=cid, exec_id=exec_id, spec=spec))
    stub.Start(tpb.StartRequest(container_id=cid, exec_id=exec_id))


@pytest.mark.privileged
def test_kill_exec_through_the_monitor(env, containers, tmp_path):
    client, _ = env
    tpb, stub = _tpb(), th.tasks_stub(client)
    cid = containers(["sleep", "600"])
    stub.Create(tpb.CreateTaskRequest(container_id=cid, log_path=str(tmp_path / "log")))
    stub.Start(tpb.StartRequest(container_id=cid))
    _exec(stub, cid, "ex1", ["sleep", "600"])
    stub.Kill(tpb.KillRequest(container_id=cid, exec_id="ex1", signal=signal.SIGKILL))
    got = stub.Wait(tpb.WaitRequest(container_id=cid, exec_id="ex1"), timeout=10)
    assert got.exit_status == 137
    with pytest.raises(errdefs.NotFound):
        stub.Kill(tpb.KillRequest(container_id=cid, exec_id="ex1", signal=signal.SIGKILL))
    _exec(stub, cid, "ex2", ["sleep", "600"])  # a forced delete of a running exec kills it
    stub.Delete(tpb.DeleteTaskRequest(container_id=cid, exec_id="ex2", force=True))
    assert stub.Get(tpb.GetRequest(container_id=cid)).process.status == 2  # RUNNING: init lives
    stub.Kill(tpb.KillRequest(container_id=cid, signal=signal.SIGKILL))
    assert stub.Wait(tpb.WaitRequest(container_id=cid), timeout=10).exit_status == 137
    stub.Delete(tpb.DeleteTaskRequest(container_id=cid))


@pytest.mark.privileged
@pytest.mark.slow
def test_concurrent_lifecycles_under_cpu_load(env, containers, tmp_path):
    """The reported scenarios, scaled down: 12 containers created, started, exec'd into
    and SIGKILLed concurrently while two busy loops load the CPUs. Every init must run
    until killed, and every Kill(9) must end in an exit."""
    client, _ = env
    tpb, stub = _tpb(), th.tasks_stub(client)
    ids = [containers(["sleep", "30"]) for _ in range(12)]
    # the loop is a shell builtin: killing the shell ends it (no `timeout` wrapper,
    # whose SIGKILL would orphan a still-spinning child)
    busy = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(2)]
    problems: list[str] = []

    def cycle(cid: str) -> None:
        try:
            stub.Create(tpb.CreateTaskRequest(container_id=cid,
                                              log_path=str(tmp_path / f"{cid}.log")))
            stub.Start(tpb.StartRequest(container_id=cid))
            for k in range(2):
                _exec(stub, cid, f"e{k}", ["true"])
                got = stub.Wait(tpb.WaitRequest(container_id=cid, exec_id=f"e{k}"), timeout=20)
                if got.exit_status != 0:
                    problems.append(f"{cid}: exec e{k} exited {got.exit_status}")
                stub.Delete(tpb.DeleteTaskRequest(container_id=cid, exec_id=f"e{k}"))
                proc = stub.Get(tpb.GetRequest(container_id=cid)).process
                if proc.exit_status or proc.pid == 0 or proc.status != 2:  # RUNNING
                    problems.append(f"{cid}: init not running after exec e{k}: {proc}")
                    return
            stub.Kill(tpb.KillRequest(container_id=cid, signal=signal.SIGKILL))
            got = stub.Wait(tpb.WaitRequest(container_id=cid), timeout=15)
            if got.exit_status != 137:
                problems.append(f"{cid}: init exited {got.exit_status} after SIGKILL")
            stub.Delete(tpb.DeleteTaskRequest(container_id=cid))
            if th.processes_of(cid):
                problems.append(f"{cid}: processes left {th.processes_of(cid)}")
        except Exception as err:  # noqa: BLE001 - collected, reported below
            problems.append(f"{cid}: {type(err).__name__}: {err}")

    try:
        with ThreadPoolExecutor(12) as pool:
            list(pool.map(cycle, ids))
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert problems == []
