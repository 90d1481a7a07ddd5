"""Tasks through the real gRPC client: start/wait/exit codes, logs, stdin, tty, exec,
kill, pause/resume, metrics, update, delete (with and without force), no leaks; both
dockyard-shim and Debian's runc as the runtime."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import grpc
import pytest
from helpers import tasks as th

from dockyard import errdefs

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def env(managerd):
    """One namespace with a committed busybox snapshot for every test of this file."""
    ns = f"dy-tasks-{uuid.uuid4().hex[:8]}"
    with managerd.client(ns) as client:
        base = th.commit_busybox(client)
        events = th.EventLog(client, ns)
        yield client, base, events
        events.close()


@pytest.fixture
def mk(env, tmp_path, shim_bin):
    """mk(args, runtime=..., **process) -> (cid, log_path); cleaned up after the test."""
    client, base, _ = env
    made = []
    default = os.environ.get("DY_TEST_RUNTIME") or shim_bin  # a runtime for the whole file

    def make(args, runtime=default, resources=None, **process):
        cid = th.new_id()
        made.append(cid)
        th.make_container(client, cid, args, runtime, base, resources, **process)
        return cid, str(tmp_path / f"{cid}-json.log")

    yield make
    for cid in made:
        th.remove_container(client, cid)


def _tpb():
    from dockyard.protos.services.tasks.v1 import tasks_pb2
    return tasks_pb2


def create(client, cid, log, **kw):
    tpb = _tpb()
    return th.tasks_stub(client).Create(tpb.CreateTaskRequest(container_id=cid, log_path=log,
                                                              **kw))


def start(client, cid, exec_id=""):
    return th.tasks_stub(client).Start(_tpb().StartRequest(container_id=cid, exec_id=exec_id))


def wait(client, cid, exec_id="", timeout=30):
    return th.tasks_stub(client).Wait(_tpb().WaitRequest(container_id=cid, exec_id=exec_id),
                                      timeout=timeout)


def get(client, cid, exec_id=""):
    return th.tasks_stub(client).Get(_tpb().GetRequest(container_id=cid,
                                                       exec_id=exec_id)).process


def delete(client, cid, force=False, exec_id=""):
    return th.tasks_stub(client).Delete(_tpb().DeleteTaskRequest(container_id=cid,
                                                                 exec_id=exec_id, force=force))


def read_log(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_start_wait_exit_code_log_and_events(env, mk, runtime, managerd):
    client, _, events = env
    tpb = _tpb()
    cid, log = mk(["sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 3"], runtime=runtime)
    before = time.time_ns()
    created = create(client, cid, log)
    assert created.pid > 0
    assert get(client, cid).status == tpb.CREATED
    events.wait_for("/tasks/create", container_id=cid)
    start(client, cid)
    events.wait_for("/tasks/start", container_id=cid)
    res = wait(client, cid)
    assert res.exit_status == 3
    assert before <= res.exited_at.ToNanoseconds() <= time.time_ns()
    proc = get(client, cid)
    assert (proc.status, proc.exit_status, proc.pid) == (tpb.STOPPED, 3, created.pid)
    ev = events.wait_for("/tasks/exit", container_id=cid)
    assert ev.exit_status == 3 and ev.pid == created.pid
    # the monitor may still be flushing the last line when Wait returns
    deadline = time.monotonic() + 5
    while len(read_log(log)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    lines = read_log(log)
    assert [(r["log"], r["stream"]) for r in lines if r["stream"] == "stdout"] == [
        ("out1\n", "stdout"), ("out2\n", "stdout")]
    assert [r["log"] for r in lines if r["stream"] == "stderr"] == ["err1\n"]
    assert all(r["time"].endswith("Z") and "T" in r["time"] for r in lines)
    gone = delete(client, cid)
    assert gone.exit_status == 3 and gone.pid == created.pid
    events.wait_for("/tasks/delete", container_id=cid)
    with pytest.raises(errdefs.NotFound):
        get(client, cid)
    state = str(managerd.state)
    assert not os.path.exists(os.path.join(state, "tasks", client.namespace, cid))
    assert th.leaked_mounts(cid) == []
    assert th.leaked_cgroups(cid) == []
    assert th.processes_of(cid) == []


def test_stdin_through_attach(env, mk, runtime):
    client, _, _ = env
    cid, log = mk(["sh", "-c", "read x; echo got $x; cat; echo eof >&2"], runtime=runtime)
    create(client, cid, log, stdin=True)
    att = th.Attach(th.tasks_stub(client), cid, stdin=True)
    try:
        start(client, cid)
        att.send(b"hello\n")
        att.wait_output(b"got hello\n")
        att.send(b"more\n")
        att.close_stdin()  # cat sees EOF
        out = att.wait_done()
    finally:
        att.close()
    assert out == b"got hello\nmore\neof\n"
    assert att.output(_tpb().STDERR) == b"eof\n"
    assert wait(client, cid).exit_status == 0


def test_tty_resize_and_exit(env, mk, runtime):
    client, _, _ = env
    cid, log = mk(["sh"], runtime=runtime)
    tpb = _tpb()
    create(client, cid, log, stdin=True, terminal=True,
           console_size=tpb.ConsoleSize(height=20, width=60))
    att = th.Attach(th.tasks_stub(client), cid, stdin=True)
    try:
        start(client, cid)
        att.send(b"stty size\n")
        att.wait_output(b"20 60\r\n")
        att.resize(33, 77)  # through the attach stream
        att.send(b"stty size\n")
        att.wait_output(b"33 77\r\n")
        th.tasks_stub(client).ResizePty(tpb.ResizePtyRequest(container_id=cid, width=90,
                                                             height=40))
        att.send(b"stty size; exit 4\n")
        out = att.wait_done()
    finally:
        att.close()
    assert b"40 90\r\n" in out
    assert wait(client, cid).exit_status == 4
    assert get(client, cid).terminal
    assert any(r["log"] == "40 90\r\n" and r["stream"] == "stdout" for r in read_log(log))


def test_exec_exit_code_stdin_and_tty(env, mk, runtime):
    client, _, events = env
    tpb = _tpb()
    cid, log = mk(["sleep", "1000"], runtime=runtime)
    create(client, cid, log)
    start(client, cid)
    stub = th.tasks_stub(client)
    process = th.busybox.base_config(["sh", "-c", "cat; echo done >&2; exit 7"])["process"]
    stub.Exec(tpb.ExecProcessRequest(container_id=cid, exec_id="e1", stdin=True,
                                     spec=json.dumps(process).encode()))
    events.wait_for("/tasks/exec-added", container_id=cid, exec_id="e1")
    att = th.Attach(stub, cid, exec_id="e1", stdin=True)
    pid = start(client, cid, "e1").pid
    assert pid > 0
    events.wait_for("/tasks/exec-started", container_id=cid, exec_id="e1", pid=pid)
    att.send(b"abc\n")
    att.close_stdin()
    assert att.wait_done() == b"abc\ndone\n"
    assert wait(client, cid, "e1").exit_status == 7
    assert events.wait_for("/tasks/exit", container_id=cid, exec_id="e1").exit_status == 7
    assert get(client, cid, "e1").status == tpb.STOPPED
    assert get(client, cid).status == tpb.RUNNING

    # a tty exec
    tty = th.busybox.base_config(["sh"])["process"]
    stub.Exec(tpb.ExecProcessRequest(container_id=cid, exec_id="e2", stdin=True,
                                     terminal=True, spec=json.dumps(tty).encode()))
    att = th.Attach(stub, cid, exec_id="e2", stdin=True)
    start(client, cid, "e2")
    att.send(b"tty; exit 9\n")
    assert b"/dev/pts/" in att.wait_done()
    assert wait(client, cid, "e2").exit_status == 9

    # a missing binary: the runtime's words reach the caller
    bad = th.busybox.base_config(["/no/such/binary"])["process"]
    stub.Exec(tpb.ExecProcessRequest(container_id=cid, exec_id="e3",
                                     spec=json.dumps(bad).encode()))
    with pytest.raises(errdefs.EngineError) as err:
        start(client, cid, "e3")
    assert "no such file or directory" in str(err.value)
    noexec = th.busybox.base_config(["/etc/passwd"])["process"]  # not executable
    stub.Exec(tpb.ExecProcessRequest(container_id=cid, exec_id="e4",
                                     spec=json.dumps(noexec).encode()))
    with pytest.raises(errdefs.EngineError) as err:
        start(client, cid, "e4")
    assert "permission denied" in str(err.value)
    with pytest.raises(errdefs.AlreadyExists):
        stub.Exec(tpb.ExecProcessRequest(container_id=cid, exec_id="e1",
                                         spec=json.dumps(process).encode()))
    assert delete(client, cid, exec_id="e1").exit_status == 7
    with pytest.raises(errdefs.NotFound):
        get(client, cid, "e1")
    assert delete(client, cid, force=True).exit_status == 128 + signal.SIGKILL


def test_kill_and_kill_stopped(env, mk):
    client, _, _ = env
    tpb = _tpb()
    cid, log = mk(["sleep", "1000"])
    create(client, cid, log)
    start(client, cid)
    th.tasks_stub(client).Kill(tpb.KillRequest(container_id=cid, signal=signal.SIGKILL))
    assert wait(client, cid).exit_status == 137
    with pytest.raises(errdefs.NotFound):
        th.tasks_stub(client).Kill(tpb.KillRequest(container_id=cid, signal=signal.SIGKILL))
    with pytest.raises(errdefs.FailedPrecondition):
        start(client, cid)


def test_pause_resume_pids_metrics_update(env, mk):
    client, _, events = env
    tpb = _tpb()
    stub = th.tasks_stub(client)
    cid, log = mk(["sh", "-c", "sleep 1000 & wait $!"])
    create(client, cid, log)
    start(client, cid)
    pids = stub.ListPids(tpb.ListPidsRequest(container_id=cid)).pids
    deadline = time.monotonic() + 5
    while len(pids) < 2 and time.monotonic() < deadline:  # sh, then its sleep
        time.sleep(0.05)
        pids = stub.ListPids(tpb.ListPidsRequest(container_id=cid)).pids
    assert get(client, cid).pid in pids and len(pids) == 2
    stub.Pause(tpb.PauseTaskRequest(container_id=cid))
    assert get(client, cid).status == tpb.PAUSED
    events.wait_for("/tasks/paused", container_id=cid)
    with pytest.raises(errdefs.FailedPrecondition):
        stub.Pause(tpb.PauseTaskRequest(container_id=cid))
    stub.Resume(tpb.ResumeTaskRequest(container_id=cid))
    assert get(client, cid).status == tpb.RUNNING
    events.wait_for("/tasks/resumed", container_id=cid)
    stats = json.loads(stub.Metrics(tpb.MetricsRequest(container_id=cid)).stats)
    assert stats["cpu"]["usage"]["total"] > 0
    assert stats["memory"]["usage"]["usage"] > 0
    assert stats["pids"]["current"] == 2
    stub.Update(tpb.UpdateTaskRequest(container_id=cid, resources=json.dumps(
        {"pids": {"limit": 50}}).encode()))
    stats = json.loads(stub.Metrics(tpb.MetricsRequest(container_id=cid)).stats)
    assert stats["pids"]["limit"] == 50
    with pytest.raises(errdefs.InvalidArgument):
        stub.Update(tpb.UpdateTaskRequest(container_id=cid, resources=b"not json"))
    # SIGTERM to the init alone is ignored (pid 1 without a handler); with all=True its
    # sleep child dies too, and sh's `wait` returns 128+15
    stub.Kill(tpb.KillRequest(container_id=cid, signal=signal.SIGTERM))
    time.sleep(0.2)
    assert get(client, cid).status == tpb.RUNNING
    stub.Kill(tpb.KillRequest(container_id=cid, signal=signal.SIGTERM, all=True))
    assert wait(client, cid).exit_status == 128 + signal.SIGTERM


def test_delete_running_needs_force_and_leaves_nothing(env, mk, managerd):
    client, _, _ = env
    tpb = _tpb()
    cid, log = mk(["sleep", "1000"])
    create(client, cid, log)
    start(client, cid)
    with pytest.raises(errdefs.FailedPrecondition):
        delete(client, cid)
    with pytest.raises(errdefs.AlreadyExists):
        create(client, cid, log)
    from dockyard.protos.services.containers.v1 import containers_pb2 as cpb
    with pytest.raises(errdefs.FailedPrecondition):  # the container has a task
        client.containers.Delete(cpb.DeleteContainerRequest(id=cid))
    assert get(client, cid).status == tpb.RUNNING
    assert len(th.processes_of(cid)) == 1  # the monitor (sleep's argv has no id)
    assert th.leaked_cgroups(cid)
    res = delete(client, cid, force=True)
    assert res.exit_status == 137
    assert th.leaked_mounts(cid) == []
    assert th.leaked_cgroups(cid) == []
    assert th.processes_of(cid) == []
    assert not os.path.exists(os.path.join(str(managerd.state), "tasks", client.namespace,
                                           cid))


def test_delete_created_and_paused(env, mk):
    client, _, _ = env
    tpb = _tpb()
    cid, log = mk(["sleep", "1000"])
    create(client, cid, log)
    delete(client, cid)  # a created task can go without force
    assert th.processes_of(cid) == []
    cid2, log2 = mk(["sleep", "1000"])
    create(client, cid2, log2)
    start(client, cid2)
    th.tasks_stub(client).Pause(tpb.PauseTaskRequest(container_id=cid2))
    assert delete(client, cid2, force=True).exit_status == 137
    assert th.leaked_cgroups(cid2) == []


def test_errors(env, mk):
    client, _, _ = env
    tpb = _tpb()
    stub = th.tasks_stub(client)
    with pytest.raises(errdefs.NotFound):
        create(client, "dy-no-such-container", "")
    with pytest.raises(errdefs.NotFound):
        stub.Start(tpb.StartRequest(container_id="dy-nothing"))
    with pytest.raises(errdefs.InvalidArgument):
        stub.Create(tpb.CreateTaskRequest())
    cid, log = mk(["/no/such/binary"])
    with pytest.raises(errdefs.EngineError) as err:  # runc fails at create
        create(client, cid, log)
        start(client, cid)
    assert "no such file or directory" in str(err.value)
    cid, log = mk(["true"], runtime="/no/such/runtime")
    with pytest.raises(errdefs.NotFound):
        create(client, cid, log)
    assert th.leaked_mounts(cid) == []


def test_attach_is_grpc_stream(env, mk):
    """Attach without stdin on a process without one; output-only after half-close."""
    client, _, _ = env
    tpb = _tpb()
    cid, log = mk(["sh", "-c", "for i in 1 2 3; do echo $i; done"])
    create(client, cid, log)
    with pytest.raises(errdefs.FailedPrecondition):
        call = th.tasks_stub(client).Attach(iter([tpb.AttachRequest(open=tpb.AttachOpen(
            container_id=cid, stdin=True, stdout=True))]))
        next(call)
    call = th.tasks_stub(client).Attach(iter([tpb.AttachRequest(open=tpb.AttachOpen(
        container_id=cid, stdout=True))]))
    assert next(call).attached
    start(client, cid)
    assert b"".join(r.data for r in call) == b"1\n2\n3\n"
    assert wait(client, cid).exit_status == 0
    assert isinstance(grpc.StatusCode.OK, grpc.StatusCode)


def test_oom_event(env, mk):
    client, _, events = env
    limit = 16 << 20
    cid, log = mk(["sh", "-c", "x=aaaaaaaa; while :; do x=$x$x; done"],
                  resources={"memory": {"limit": limit, "swap": limit}})
    create(client, cid, log)
    start(client, cid)
    assert wait(client, cid).exit_status == 137
    events.wait_for("/tasks/oom", container_id=cid)
    assert events.wait_for("/tasks/exit", container_id=cid).exit_status == 137


def test_default_runtime_and_log_root(managerd_factory, runc_bin):
    """runtime.name "dockyard-shim" means managerd's --runtime; logs go to --log-root."""
    m = managerd_factory(extra_args=["--runtime", runc_bin], name="defaults")
    ns = f"dy-defaults-{uuid.uuid4().hex[:8]}"
    cid = th.new_id()
    with m.client(ns) as client:
        base = th.commit_busybox(client)
        th.make_container(client, cid, ["sh", "-c", "echo hi"], "dockyard-shim", base)
        try:
            create(client, cid, "")
            proc = get(client, cid)
            assert proc.runtime == runc_bin
            assert proc.log_path == str(m.base / "logs" / cid / f"{cid}-json.log")
            start(client, cid)
            assert wait(client, cid).exit_status == 0
            deadline = time.monotonic() + 5
            while not os.path.getsize(proc.log_path) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert [r["log"] for r in read_log(proc.log_path)] == ["hi\n"]
            create_no_log = th.new_id()
            th.make_container(client, create_no_log, ["true"], "dockyard-shim", base)
            try:
                create(client, create_no_log, "-")
                assert get(client, create_no_log).log_path == ""
            finally:
                th.remove_container(client, create_no_log)
        finally:
            th.remove_container(client, cid)


def test_monitor_killed(env, mk, managerd):
    """A task whose monitor dies is reported exited (255) and its container removed."""
    client, _, events = env
    cid, log = mk(["sleep", "1000"])
    create(client, cid, log)
    pid = start(client, cid).pid
    task_dir = os.path.join(str(managerd.state), "tasks", client.namespace, cid)
    with open(os.path.join(task_dir, "monitor.pid")) as f:
        os.kill(int(f.read()), signal.SIGKILL)
    assert wait(client, cid, timeout=15).exit_status == 255
    assert events.wait_for("/tasks/exit", container_id=cid).exit_status == 255
    assert th.processes_of(cid) == []
    try:  # the orphaned init is gone (at most a zombie of an init that does not reap)
        with open(f"/proc/{pid}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        pass
    assert delete(client, cid).exit_status == 255
    assert th.leaked_mounts(cid) == [] and th.leaked_cgroups(cid) == []


def test_list_filters_and_namespaces_isolate(env, mk, managerd):
    client, _, _ = env
    tpb = _tpb()
    a, log_a = mk(["sleep", "1000"])
    b, log_b = mk(["sleep", "1000"])
    create(client, a, log_a)
    create(client, b, log_b)
    stub = th.tasks_stub(client)
    listed = {p.container_id for p in stub.List(tpb.ListTasksRequest()).tasks}
    assert {a, b} <= listed
    only = stub.List(tpb.ListTasksRequest(container_ids=[a])).tasks
    assert [(p.container_id, p.status) for p in only] == [(a, tpb.CREATED)]
    with managerd.client(f"dy-other-{uuid.uuid4().hex[:8]}") as other:
        assert list(th.tasks_stub(other).List(tpb.ListTasksRequest()).tasks) == []
        with pytest.raises(errdefs.NotFound):
            th.tasks_stub(other).Get(tpb.GetRequest(container_id=a))


def test_attach_detach_reattach_and_fan_out(env, mk):
    """Cancelling an attach leaves the container running; later and concurrent
    attaches all get the live output."""
    client, _, _ = env
    stub = th.tasks_stub(client)
    cid, log = mk(["sh", "-c", "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.05; done"])
    create(client, cid, log)
    first = th.Attach(stub, cid)
    start(client, cid)
    first.wait_output(b"tick 2\n")
    first.close()
    assert first.done.wait(5)
    assert get(client, cid).status == _tpb().RUNNING
    a, b = th.Attach(stub, cid), th.Attach(stub, cid)
    try:
        a.wait_output(b"\n")
        n = int(a.output().split(b"\n")[0].split()[1]) + 3  # a line both get, later
        a.wait_output(b"tick %d\n" % n)
        b.wait_output(b"tick %d\n" % n)
    finally:
        a.close()
        b.close()
    assert delete(client, cid, force=True).exit_status == 137
