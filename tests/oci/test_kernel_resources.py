"""`linux.resources` through the real shim: what the container sees and suffers.

Limit files read from inside, a memory hog killed by the OOM killer, a fork
bomb held by pids.max, host devices refused by the device cgroup, and the
freezer/update/events verbs against a running container. The `shim` fixture
force-deletes every container and checks no cgroup, mount or process is left.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from dockyard.shim import cgroups
from helpers import busybox

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(90)]


def config(script: str, **resources) -> dict:
    cfg = busybox.base_config(["sh", "-c", script])
    cfg["linux"]["resources"].update(resources)
    return cfg


def manager(cid: str) -> cgroups.Manager:
    # the shim's default cgroupsPath for a config without one
    return cgroups.open_manager(f"/dockyard/{cid}", cid)


def test_limits_are_visible_inside(shim):
    res = shim.run_config(config(
        "cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes memory/memory.soft_limit_in_bytes"
        " cpu/cpu.shares cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us cpuset/cpuset.cpus"
        " pids/pids.max",
        memory={"limit": 64 << 20, "reservation": 16 << 20},
        cpu={"shares": 256, "quota": 50000, "period": 100000, "cpus": "0"},
        pids={"limit": 33}))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(64 << 20), str(16 << 20), "256", "50000", "100000",
                                  "0", "33"]


def test_memory_hog_is_oom_killed(shim):
    cid = shim.container()
    cfg = config("tail /dev/zero; echo tail=$?", memory={"limit": 32 << 20, "swap": 32 << 20})
    res = shim("run", "--bundle", str(shim.bundle(cfg)), cid)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "tail=137"  # SIGKILL from the OOM killer


def test_oom_count_and_events_of_a_running_container(shim):
    cfg = config("tail /dev/zero; sleep 60", memory={"limit": 32 << 20, "swap": 32 << 20})
    cid, _ = shim.create(cfg)
    mgr = manager(cid)
    shim("start", cid, check=True)
    deadline = time.monotonic() + 20
    while mgr.oom_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mgr.oom_count() >= 1
    res = shim("events", "--stats", cid, check=True)
    event = json.loads(res.stdout)
    assert event["type"] == "stats" and event["id"] == cid
    assert event["data"]["memory"]["usage"]["limit"] == 32 << 20
    assert event["data"]["memory"]["usage"]["max"] == 32 << 20
    assert event["data"]["pids"]["current"] >= 1


def test_fork_bomb_is_held_by_the_pids_limit(shim):
    res = shim.run_config(config(
        "(i=0; while [ $i -lt 50 ]; do sleep 30 & i=$((i+1)); echo $i > /dev/shm/n; done)"
        " 2>/dev/null; read n < /dev/shm/n; read c < /sys/fs/cgroup/pids/pids.current;"
        " echo started=$n current=$c", pids={"limit": 10}))
    assert res.returncode == 0, res.stderr
    fields = dict(kv.split("=") for kv in res.stdout.split())
    assert int(fields["started"]) < 10 and int(fields["current"]) <= 10


def test_host_devices_are_refused(shim):
    cfg = config("head -c 3 /dev/zero | wc -c; echo x > /dev/null && echo null-ok;"
                 " mknod /dev/sda b 8 0 && echo mknod-ok;"
                 " head -c 1 /dev/sda 2>&1; mknod /dev/mem c 1 1; head -c 1 /dev/mem 2>&1; true")
    for kind in ("bounding", "effective", "permitted"):  # root with CAP_MKNOD, as in Docker
        cfg["process"]["capabilities"][kind].append("CAP_MKNOD")
    res = shim.run_config(cfg)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[:3] == ["3", "null-ok", "mknod-ok"]  # runc's defaults allow mknod, not use
    assert "Operation not permitted" in lines[3] and "Operation not permitted" in lines[4]


def test_pause_resume_update_and_stats(shim):
    cid, pid = shim.create(config("sleep 60"))
    shim("start", cid, check=True)
    mgr = manager(cid)
    assert mgr.pids() == [pid]
    shim("pause", cid, check=True)
    assert shim.state(cid)["status"] == "paused" and mgr.state() == cgroups.FROZEN
    shim("resume", cid, check=True)
    assert shim.state(cid)["status"] == "running" and mgr.state() == cgroups.THAWED
    shim("update", "--resources", "-", cid, check=True,
         input=json.dumps({"memory": {"limit": 96 << 20, "swap": 128 << 20},
                           "cpu": {"shares": 300}, "pids": {"limit": 12}}))
    with open(os.path.join(mgr.path("memory"), "memory.limit_in_bytes")) as f:
        assert f.read().strip() == str(96 << 20)
    with open(os.path.join(mgr.path("pids"), "pids.max")) as f:
        assert f.read().strip() == "12"
    with open(os.path.join(mgr.path("cpu"), "cpu.shares")) as f:
        assert f.read().strip() == "300"
    data = json.loads(shim("events", "--stats", cid, check=True).stdout)["data"]
    assert data["pids"] == {"current": 1, "limit": 12}
    assert data["memory"]["usage"]["limit"] == 96 << 20
    assert "kernel" in data["cpu"]["usage"] and "user" in data["cpu"]["usage"]
