"""Reliability of `kill` and the container-status check under load (reliability).

Regression tests for the reports "Kill(9) returned OK but the container kept
running" and "a running container was reported stopped": the status check reads
the init's start time from /proc/<pid>/stat (comm may hold spaces and
parentheses), a pid whose start time differs is another process and must never
be signalled (pid reuse: pid_max is 32768 on this kind of host), and SIGKILL
reaches an init still blocked on the exec fifo (`created`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from dockyard.shim import container as ct
from helpers import busybox

pytestmark = pytest.mark.timeout(60)

WEIRD_COMM = "a) (b) x"  # 8 bytes, fits comm's 15


def _child_with_comm(comm: str) -> subprocess.Popen:
    """A sleeping child whose /proc/<pid>/comm is `comm`; it prints once renamed."""
    code = (f"open('/proc/self/comm', 'w').write({comm!r}); print('ok', flush=True); "
            "import time; time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert child.stdout.readline() == b"ok\n"
    return child


def _stop(child: subprocess.Popen) -> None:
    child.kill()
    child.wait(10)


def test_start_time_parses_a_comm_with_spaces_and_parentheses():
    child = _child_with_comm(WEIRD_COMM)
    try:
        with open(f"/proc/{child.pid}/stat", "rb") as f:
            raw = f.read()
        assert f"({WEIRD_COMM})".encode() in raw
        # field 22 counted from the right end: 52 fields in all on current kernels
        expected = int(raw.rsplit(b")", 1)[1].split()[19])
        state, start = ct._start_time(child.pid)
        assert state in ("S", "R") and start == expected > 0
        assert ct._alive(child.pid, start)
        assert not ct._alive(child.pid, start + 1)
    finally:
        _stop(child)
    assert ct._start_time(child.pid) is None
    assert not ct._alive(child.pid, start)


def test_signal_goes_only_to_the_process_with_the_recorded_start_time():
    """A pid reused by another process (same pid, other start time) is left alone."""
    child = _child_with_comm("dy-victim")
    try:
        _, start = ct._start_time(child.pid)
        assert ct._signal_init(child.pid, start + 7, signal.SIGKILL) is False
        time.sleep(0.05)
        assert child.poll() is None, "a process that merely reuses the pid was killed"
        assert ct._signal_init(child.pid, start, signal.SIGKILL) is True
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            _stop(child)
    assert ct._signal_init(child.pid, start, signal.SIGKILL) is False  # reaped: gone
    assert ct._signal_init(0, 0, signal.SIGKILL) is False


@pytest.mark.privileged
def test_sigkill_reaches_a_created_container_blocked_on_the_exec_fifo(shim):
    cid, pid = shim.create(busybox.base_config(["sleep", "600"]))
    assert shim.state(cid)["status"] == "created"
    res = shim("kill", cid, "KILL")
    assert res.returncode == 0, res.stderr
    shim.reap(pid)
    assert not os.path.exists(f"/proc/{pid}")
    assert shim.state(cid)["status"] == "stopped"
    res = shim("kill", cid, "KILL")
    assert res.returncode == 1 and "not running" in res.stderr
    shim("delete", cid, check=True)


@pytest.mark.privileged
def test_kill_of_a_dead_init_whose_pid_is_taken_signals_nobody(shim):
    """state.json names a pid now owned by another process: `kill` must refuse, not
    hit that process (the start time tells them apart)."""
    cid, pid = shim.create(busybox.base_config(["sleep", "600"]))
    child = _child_with_comm("dy-innocent")
    try:
        state_file = os.path.join(shim.root, cid, "state.json")
        with open(state_file) as f:
            record = json.load(f)
        assert record["pid"] == pid
        # point the container's record at the innocent process, keeping the dead
        # init's start time: exactly what a reused pid looks like
        record["pid"] = child.pid
        with open(state_file, "w") as f:
            json.dump(record, f)
        assert shim.state(cid)["status"] == "stopped"
        res = shim("kill", cid, "KILL")
        assert res.returncode == 1 and "not running" in res.stderr
        time.sleep(0.05)
        assert child.poll() is None, "kill signalled a process that reused the pid"
        os.kill(pid, signal.SIGKILL)  # the real init, which the record no longer names
        shim.reap(pid)
        shim("delete", "--force", cid, check=True)
        assert child.poll() is None, "delete --force killed a process that reused the pid"
    finally:
        _stop(child)
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)
            shim.reap(pid)
