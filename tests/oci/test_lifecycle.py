"""create / start / state / kill / delete: the lifecycle and its guards."""

from __future__ import annotations

import os
import time

import pytest
from helpers import busybox

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]


def wait_status(shim, cid: str, status: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = shim.state(cid)
        if state["status"] == status or time.monotonic() > deadline:
            return state
        time.sleep(0.02)


def test_create_start_split_is_real(shim, tmp_path):
    marker = "/dev/shm/started"  # root is read-only
    cid, pid = shim.create(busybox.base_config(
        ["sh", "-c", f"touch {marker}; sleep 30"], ), None, "--pid-file", str(tmp_path / "pid"))
    state = shim.state(cid)
    assert state["status"] == "created"
    assert (tmp_path / "pid").read_text() == str(pid)  # digits, no newline
    assert os.path.exists(f"{shim.root}/{cid}/exec.fifo")
    rootfs = state["rootfs"]
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{pid}/root{marker}")  # user program not run yet
    # the init already lives in its own namespaces
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    shim("start", cid, check=True)
    assert shim.state(cid)["status"] == "running"
    assert not os.path.exists(f"{shim.root}/{cid}/exec.fifo")
    deadline = time.monotonic() + 5
    while not os.path.exists(f"/proc/{pid}/root{marker}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.path.exists(f"/proc/{pid}/root{marker}")
    assert rootfs.endswith("/rootfs")


def test_stopped_after_process_exits_on_its_own(shim):
    cid, pid = shim.create(busybox.base_config(["true"]))
    shim("start", cid, check=True)
    shim.reap(pid)  # we are the subreaper: the init is ours once `start` returned
    state = wait_status(shim, cid, "stopped")
    assert state["status"] == "stopped"
    assert state["pid"] == 0
    res = shim("start", cid)
    assert res.returncode == 1 and "stopped" in res.stderr
    shim("delete", cid, check=True)
    assert not os.path.exists(f"{shim.root}/{cid}")


def test_start_twice(shim):
    cid, _ = shim.create(busybox.base_config(["sleep", "30"]))
    shim("start", cid, check=True)
    res = shim("start", cid)
    assert res.returncode == 1
    assert "cannot start an already running container" in res.stderr


@pytest.mark.parametrize("signal", ["KILL", "SIGKILL", "9"])
def test_kill_by_name_and_number(shim, signal):
    cid, pid = shim.create(busybox.base_config(["sleep", "30"]))
    shim("start", cid, check=True)
    shim("kill", cid, signal, check=True)
    shim.reap(pid)
    assert wait_status(shim, cid, "stopped")["status"] == "stopped"
    res = shim("kill", cid, "KILL")
    assert res.returncode == 1 and "container not running" in res.stderr


def test_kill_term_reaches_trapping_init(shim):
    cid, pid = shim.create(busybox.base_config(
        ["sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.05; done"]))
    shim("start", cid, check=True)
    time.sleep(0.3)
    shim("kill", cid, check=True)  # default SIGTERM
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 3


def test_kill_all(shim):
    cid, pid = shim.create(busybox.base_config(["sh", "-c", "sleep 30 & sleep 30 & wait"]))
    shim("start", cid, check=True)
    time.sleep(0.3)
    pids = [int(p) for p in shim("ps", "--format", "json", cid, check=True).stdout
            .strip("[]\n").split(",")]
    assert len(pids) == 3 and pid in pids
    shim("kill", "--all", cid, "KILL", check=True)
    shim.reap(pid)
    for p in pids:
        assert not os.path.exists(f"/proc/{p}") or open(f"/proc/{p}/stat").read().split()[2] == "Z"


def test_bad_signal(shim):
    cid, _ = shim.create(busybox.base_config(["sleep", "30"]))
    res = shim("kill", cid, "NOTASIGNAL")
    assert res.returncode == 1
    assert "unknown signal" in res.stderr


def test_delete_created_kills_the_init(shim):
    cid, pid = shim.create(busybox.base_config(["sleep", "30"]))
    shim("delete", cid, check=True)
    shim.reap(pid)
    assert not os.path.exists(f"/proc/{pid}")
    assert shim("state", cid).returncode == 1


def test_delete_running_needs_force(shim):
    cid, pid = shim.create(busybox.base_config(["sleep", "30"]))
    shim("start", cid, check=True)
    res = shim("delete", cid)
    assert res.returncode == 1
    assert f"cannot delete container {cid} that is not stopped: running" in res.stderr
    shim("delete", "--force", cid, check=True)
    shim.reap(pid)
    assert shim("state", cid).returncode == 1


def test_delete_force_unknown_is_ok(shim):
    assert shim("delete", "--force", "dy-nonexistent").returncode == 0
    res = shim("delete", "dy-nonexistent")
    assert res.returncode == 1 and "container does not exist" in res.stderr


def test_list_json(shim):
    cid, pid = shim.create(busybox.base_config(["sleep", "30"]))
    import json
    states = json.loads(shim("list", "--format", "json", check=True).stdout)
    assert [s["id"] for s in states] == [cid]
    assert states[0]["pid"] == pid and states[0]["status"] == "created"
    assert states[0]["owner"] == "root"
    assert cid in shim("list", check=True).stdout
    assert shim("list", "-q", check=True).stdout.split() == [cid]


def test_state_json_shape(shim):
    cfg = busybox.base_config(["sleep", "30"])
    cfg["annotations"] = {"dy.test": "yes"}
    cid, pid = shim.create(cfg)
    state = shim.state(cid)
    assert list(state) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created",
                           "annotations", "owner"]
    assert state["annotations"] == {"dy.test": "yes"}
    assert state["created"].endswith("Z")


def test_pause_resume(shim):
    cid, pid = shim.create(busybox.base_config(["sleep", "30"]))
    shim("start", cid, check=True)
    shim("pause", cid, check=True)
    assert shim.state(cid)["status"] == "paused"
    res = shim("delete", cid)
    assert res.returncode == 1 and "paused" in res.stderr
    shim("resume", cid, check=True)
    assert shim.state(cid)["status"] == "running"
    res = shim("resume", cid)
    assert res.returncode == 1


def test_pause_then_force_delete(shim):
    cid, pid = shim.create(busybox.base_config(["sleep", "30"]))
    shim("start", cid, check=True)
    shim("pause", cid, check=True)
    shim("delete", "--force", cid, check=True)
    shim.reap(pid)
