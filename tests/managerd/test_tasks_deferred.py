"""Tasks whose runtime create is deferred to Start (metadata dockyard-defer-create: 1,
what apid sends for docker run): the monitor runs the runtime's `run --detach`. Both
dockyard-shim and Debian's runc, through the real gRPC client."""

from __future__ import annotations

import os
import signal
import uuid

import pytest
from helpers import tasks as th

from dockyard import errdefs

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]

DEFER = [("dockyard-defer-create", "1")]


@pytest.fixture(scope="module")
def env(managerd):
    ns = f"dy-defer-{uuid.uuid4().hex[:8]}"
    with managerd.client(ns) as client:
        base = th.commit_busybox(client)
        events = th.EventLog(client, ns)
        yield client, base, events
        events.close()


@pytest.fixture
def mk(env, tmp_path):
    client, base, _ = env
    made = []

    def make(args, runtime):
        cid = th.new_id()
        made.append(cid)
        th.make_container(client, cid, args, runtime, base, None)
        return cid, str(tmp_path / f"{cid}-json.log")

    yield make
    for cid in made:
        th.remove_container(client, cid)


def _tpb():
    from dockyard.protos.services.tasks.v1 import tasks_pb2
    return tasks_pb2


def test_deferred_create_runs_at_start_with_attach_and_log(env, mk, runtime):
    client, _, events = env
    tpb, stub = _tpb(), th.tasks_stub(client)
    cid, log = mk(["sh", "-c", "read x; echo got $x; echo err >&2; exit 5"], runtime)
    created = stub.Create(tpb.CreateTaskRequest(container_id=cid, log_path=log, stdin=True),
                          metadata=DEFER)
    assert created.pid == 0  # nothing runs before Start
    proc = stub.Get(tpb.GetRequest(container_id=cid)).process
    assert proc.status == tpb.CREATED and proc.pid == 0
    assert list(stub.ListPids(tpb.ListPidsRequest(container_id=cid)).pids) == []
    with pytest.raises(errdefs.FailedPrecondition, match="not started"):
        stub.Kill(tpb.KillRequest(container_id=cid, signal=signal.SIGTERM))
    att = th.Attach(stub, cid, stdin=True)  # before the init exists: sees every byte
    try:
        started = stub.Start(tpb.StartRequest(container_id=cid))
        assert started.pid > 0
        att.send(b"hi\n")
        out = att.wait_done()
    finally:
        att.close()
    assert out == b"got hi\nerr\n"
    got = stub.Wait(tpb.WaitRequest(container_id=cid), timeout=30)
    assert got.exit_status == 5
    events.wait_for("/tasks/exit", container_id=cid)
    res = stub.Delete(tpb.DeleteTaskRequest(container_id=cid))
    assert res.exit_status == 5
    with open(log) as f:
        assert '"log":"got hi\\n","stream":"stdout"' in f.read()
    assert th.leaked_mounts(cid) == [] and th.leaked_cgroups(cid) == []
    assert th.processes_of(cid) == []


def test_deferred_start_failure_names_the_runtime_error(env, mk, runtime):
    client, _, _ = env
    tpb, stub = _tpb(), th.tasks_stub(client)
    cid, log = mk(["/no/such/binary"], runtime)
    stub.Create(tpb.CreateTaskRequest(container_id=cid, log_path=log), metadata=DEFER)
    with pytest.raises(errdefs.EngineError, match="no such file or directory"):
        stub.Start(tpb.StartRequest(container_id=cid))
    stub.Delete(tpb.DeleteTaskRequest(container_id=cid))
    assert th.leaked_mounts(cid) == [] and th.leaked_cgroups(cid) == []
    assert th.processes_of(cid) == []


def test_deferred_never_started_and_terminal_not_deferred(env, mk, shim_bin):
    client, _, _ = env
    tpb, stub = _tpb(), th.tasks_stub(client)
    cid, log = mk(["sleep", "100"], shim_bin)
    stub.Create(tpb.CreateTaskRequest(container_id=cid, log_path=log), metadata=DEFER)
    res = stub.Delete(tpb.DeleteTaskRequest(container_id=cid))  # never started: fine
    assert res.exit_status == 0
    assert th.processes_of(cid) == [] and th.leaked_mounts(cid) == []
    # a terminal task is created at once even when asked to defer (the pty comes then)
    cid2, log2 = mk(["sleep", "100"], shim_bin)
    created = stub.Create(tpb.CreateTaskRequest(container_id=cid2, log_path=log2,
                                                terminal=True), metadata=DEFER)
    assert created.pid > 0
    stub.Delete(tpb.DeleteTaskRequest(container_id=cid2, force=True))
    assert th.processes_of(cid2) == []


@pytest.fixture
def reaper():
    """Monitors orphaned by a kill -9 are reaped by this test process (th.subreaper)."""
    with th.subreaper() as pids:
        yield pids


def test_deferred_task_survives_a_managerd_restart(managerd_factory, shim_bin, tmp_path,
                                                   request, reaper):
    """Created (deferred) before a kill -9 of managerd, started after it."""
    tpb = _tpb()
    m = managerd_factory(name="defer-restart")
    request.addfinalizer(lambda: [th.stop_monitor(pid) for pid, _ in
                                  th.processes_of(os.path.join(str(m.state), "tasks"))])
    ns = f"dy-defer-r-{uuid.uuid4().hex[:8]}"
    cid = th.new_id()
    log = str(tmp_path / "log")
    with m.client(ns) as client:
        base = th.commit_busybox(client)
        th.make_container(client, cid, ["sh", "-c", "echo after; exit 7"], shim_bin, base)
        assert th.tasks_stub(client).Create(tpb.CreateTaskRequest(
            container_id=cid, log_path=log), metadata=DEFER).pid == 0
    with open(os.path.join(str(m.state), "tasks", ns, cid, "monitor.pid")) as f:
        reaper.append(int(f.read()))
    m.kill()
    m.start()
    with m.client(ns) as client:
        stub = th.tasks_stub(client)
        proc = stub.Get(tpb.GetRequest(container_id=cid)).process
        assert proc.status == tpb.CREATED and proc.pid == 0
        assert stub.Start(tpb.StartRequest(container_id=cid)).pid > 0
        assert stub.Wait(tpb.WaitRequest(container_id=cid), timeout=30).exit_status == 7
        stub.Delete(tpb.DeleteTaskRequest(container_id=cid))
        th.remove_container(client, cid)
    with open(log) as f:
        assert '"log":"after\\n"' in f.read()
    assert th.processes_of(cid) == [] and th.leaked_cgroups(cid) == []
