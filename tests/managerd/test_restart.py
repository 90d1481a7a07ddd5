"""Restart survival (issue 3 §6): kill -9 managerd with 10 containers printing, start it
again: all still running, no log line lost, attach and stdin work again, exits that
happened while it was down come back with their real codes, times and /tasks/exit
events; deleting everything afterwards leaves no mounts, cgroups or processes."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
from helpers import busybox
from helpers import tasks as th

from dockyard import errdefs

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(180)]

PRINTER = ("i=0; while [ ! -e /tmp/stop ]; do echo \"line $i\"; i=$((i+1)); sleep 0.05; done; "
           "echo \"last $i\"; exit $CODE")
CHATTER = ("(i=0; while :; do echo \"tick $i\"; i=$((i+1)); sleep 0.05; done) & "
           "while read x; do echo \"got $x\"; done")


@pytest.fixture
def subreaper():
    """Orphaned monitors of a killed managerd are reaped by this test process (th.subreaper)."""
    with th.subreaper() as pids:
        yield pids


def _tpb():
    from dockyard.protos.services.tasks.v1 import tasks_pb2
    return tasks_pb2


def _log_seq(path: str) -> tuple[list[int], list[str]]:
    nums, other = [], []
    with open(path) as f:
        for line in f:
            text = json.loads(line)["log"]
            if text.startswith("line "):
                nums.append(int(text.split()[1]))
            else:
                other.append(text)
    return nums, other


def test_kill9_restart_survival(managerd_factory, shim_bin, tmp_path, subreaper, request):
    runtime = os.environ.get("DY_TEST_RUNTIME") or shim_bin
    tpb = _tpb()
    m = managerd_factory(name="restart")
    request.addfinalizer(lambda: [th.stop_monitor(pid) for pid, _ in
                                  th.processes_of(os.path.join(str(m.state), "tasks"))])
    ns = f"dy-restart-{uuid.uuid4().hex[:8]}"
    state_dir = os.path.join(str(m.state), "tasks", ns)
    printers: dict[str, int] = {}  # cid -> exit code it will use
    chatter = th.new_id("dy-chat")
    logs: dict[str, str] = {}
    with m.client(ns) as client:
        stub = th.tasks_stub(client)
        base = th.commit_busybox(client)
        for k in range(9):
            cid = th.new_id()
            printers[cid] = 40 + k
            th.make_container(client, cid, ["sh", "-c", PRINTER], runtime, base,
                              env=["PATH=/bin:/usr/bin", f"CODE={40 + k}"])
        th.make_container(client, chatter, ["sh", "-c", CHATTER], runtime, base)
        for cid in [*printers, chatter]:
            logs[cid] = str(tmp_path / f"{cid}.log")
            stub.Create(tpb.CreateTaskRequest(container_id=cid, log_path=logs[cid],
                                              stdin=cid == chatter))
            stub.Start(tpb.StartRequest(container_id=cid))
        att = th.Attach(stub, chatter, stdin=True)
        att.send(b"before\n")
        att.wait_output(b"got before\n")
        att.close()
        # an exec process that lives across the restart
        reader = busybox.base_config(["sh", "-c", "read x; echo \"exec got $x\"; exit 3"])
        stub.Exec(tpb.ExecProcessRequest(container_id=chatter, exec_id="e1", stdin=True,
                                         spec=json.dumps(reader["process"]).encode()))
        exec_pid = stub.Start(tpb.StartRequest(container_id=chatter, exec_id="e1")).pid

    for cid in [*printers, chatter]:
        with open(os.path.join(state_dir, cid, "monitor.pid")) as f:
            subreaper.append(int(f.read()))
    # the monitor zygote exits with its managerd: reap it here too
    subreaper.extend(pid for pid, cmd in th.processes_of(str(m.state)) if "_zygote" in cmd)
    time.sleep(0.3)  # everyone has printed a few lines
    m.kill()  # kill -9

    # while managerd is down: three printers finish, the rest keep logging
    down_at = time.time_ns()
    stopped = list(printers)[:3]
    for cid in stopped:
        open(os.path.join(state_dir, cid, "rootfs", "tmp", "stop"), "w").close()
    deadline = time.monotonic() + 15
    while not all(os.path.exists(os.path.join(state_dir, c, "exit")) for c in stopped):
        assert time.monotonic() < deadline, "printers did not exit"
        time.sleep(0.05)
    time.sleep(0.2)

    m.start()
    up_at = time.time_ns()
    with m.client(ns) as client:
        stub = th.tasks_stub(client)
        events = th.EventLog(client, ns)
        try:
            for cid in stopped:  # exits from while it was down, published after the restart
                ev = events.wait_for("/tasks/exit", container_id=cid, timeout=15)
                assert ev.exit_status == printers[cid]
                assert down_at <= ev.exited_at.ToNanoseconds() <= up_at
            listed = {p.container_id: p for p in stub.List(tpb.ListTasksRequest()).tasks}
            assert set(listed) == {*printers, chatter}
            for cid, proc in listed.items():
                if cid in stopped:
                    assert (proc.status, proc.exit_status) == (tpb.STOPPED, printers[cid])
                    assert down_at <= proc.exited_at.ToNanoseconds() <= up_at
                else:
                    assert proc.status == tpb.RUNNING, cid
            assert stub.Wait(tpb.WaitRequest(container_id=stopped[0]),
                             timeout=5).exit_status == printers[stopped[0]]

            # attach and stdin work again
            att = th.Attach(stub, chatter, stdin=True)
            att.send(b"after\n")
            att.wait_output(b"got after\n")
            att.close()
            e1 = stub.Get(tpb.GetRequest(container_id=chatter, exec_id="e1")).process
            assert (e1.status, e1.pid) == (tpb.RUNNING, exec_pid)
            att = th.Attach(stub, chatter, exec_id="e1", stdin=True)
            att.send(b"later\n")
            assert att.wait_done() == b"exec got later\n"
            assert stub.Wait(tpb.WaitRequest(container_id=chatter, exec_id="e1"),
                             timeout=10).exit_status == 3
            assert events.wait_for("/tasks/exit", container_id=chatter,
                                   exec_id="e1").exit_status == 3

            # the survivors exit now, with events from the new managerd
            for cid in list(printers)[3:]:
                open(os.path.join(state_dir, cid, "rootfs", "tmp", "stop"), "w").close()
            for cid in list(printers)[3:]:
                res = stub.Wait(tpb.WaitRequest(container_id=cid), timeout=15)
                assert res.exit_status == printers[cid]
                assert events.wait_for("/tasks/exit", container_id=cid).exit_status == \
                    printers[cid]
            # no log line lost across the restart
            for cid in printers:
                nums, other = _log_seq(logs[cid])
                assert nums == list(range(len(nums))), cid
                assert other == [f"last {len(nums)}\n"], cid
                assert len(nums) > 10
            ticks = [json.loads(line)["log"] for line in open(logs[chatter])]
            assert "got before\n" in ticks and "got after\n" in ticks

            for cid in [*printers, chatter]:
                stub.Delete(tpb.DeleteTaskRequest(container_id=cid, force=cid == chatter))
            with pytest.raises(errdefs.NotFound):
                stub.Get(tpb.GetRequest(container_id=chatter))
        finally:
            events.close()
            for cid in [*printers, chatter]:
                th.remove_container(client, cid)

    assert th.leaked_mounts(str(m.state)) == []
    assert [p for p in th.processes_of(str(m.state))
            if p[0] != m.proc.pid and "_zygote" not in p[1]] == []
    for cid in [*printers, chatter]:
        assert th.leaked_cgroups(cid) == []
    deadline = time.monotonic() + 10  # bundles are emptied by a background thread
    while os.listdir(state_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.listdir(state_dir) == []


def test_restart_cleans_half_done_work(managerd_factory, shim_bin):
    """A create cut short (record, no monitor) and a delete cut short (.del-* dir) are
    finished on start-up instead of showing up as tasks."""
    tpb = _tpb()
    m = managerd_factory(name="halfdone")
    ns = f"dy-half-{uuid.uuid4().hex[:8]}"
    m.stop()
    tasks_dir = os.path.join(str(m.state), "tasks", ns)
    half = os.path.join(tasks_dir, "dy-half")
    os.makedirs(os.path.join(half, "rootfs"))
    with open(os.path.join(half, "task.json"), "w") as f:
        json.dump({"namespace": ns, "id": "dy-half", "runtime": shim_bin,
                   "runtime_root": os.path.join(str(m.state), "runtime", ns),
                   "status": "created", "init": {"pid": 0}}, f)
    os.makedirs(os.path.join(tasks_dir, ".del-dy-gone-1234", "rootfs"))
    m.start()
    with m.client(ns) as client:
        assert list(th.tasks_stub(client).List(tpb.ListTasksRequest()).tasks) == []
    assert os.listdir(tasks_dir) == []
