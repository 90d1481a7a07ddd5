"""Reliability of the monitor's exit bookkeeping (reliability).

The monitor keeps the exit of a pid it reaped before learning whose it was
(`early`): an exec'd process can die before its runtime wrote the pid file.
Such an entry left unclaimed must not outlive the runtimes that could claim it,
or a later process that gets the same pid (pid_max is 32768 on this kind of
host) is reported exited the moment it starts.
"""

from __future__ import annotations

import pytest
from dockyard.managerd.monitor import _process as wire

pytestmark = pytest.mark.timeout(30)


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
