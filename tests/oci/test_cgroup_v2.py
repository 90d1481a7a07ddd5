"""The shim on cgroup v2: this hybrid host's cgroup2 mount (/sys/fs/cgroup/unified)
stands in for a v2-only host through $DOCKYARD_CGROUP_ROOT. No controllers are
enabled there, but membership, the freezer and the device eBPF program work."""

from __future__ import annotations

import os

import pytest
from helpers import busybox

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]

UNIFIED = "/sys/fs/cgroup/unified"


@pytest.fixture
def v2(shim, monkeypatch):
    if not os.path.exists(f"{UNIFIED}/cgroup.procs"):
        pytest.skip("no cgroup2 mount at /sys/fs/cgroup/unified")
    monkeypatch.setenv("DOCKYARD_CGROUP_ROOT", UNIFIED)
    return shim


def test_v2_membership_namespace_and_mount(v2):
    res = v2.run(["sh", "-c", "cat /proc/self/cgroup; grep ' /sys/fs/cgroup ' /proc/self/mounts;"
                  " cat /sys/fs/cgroup/cgroup.procs"])
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "0::/" in lines  # the v2 entry: cgroup namespace rooted at the container's cgroup
    mount = [line for line in lines if " /sys/fs/cgroup " in line]
    assert mount and mount[0].split()[2] == "cgroup2"
    assert lines[-1] == "1"  # only the container's own process


def test_v2_lifecycle_freezer_and_devices(v2):
    cfg = busybox.base_config(["sleep", "60"])
    cid, pid = v2.create(cfg)
    path = f"{UNIFIED}/dockyard/{cid}"
    with open(f"{path}/cgroup.procs") as f:
        assert f.read().split() == [str(pid)]
    v2("start", cid, check=True)
    v2("pause", cid, check=True)
    assert v2.state(cid)["status"] == "paused"
    with open(f"{path}/cgroup.freeze") as f:
        assert f.read().strip() == "1"
    v2("resume", cid, check=True)
    assert v2.state(cid)["status"] == "running"
    # the device program: /dev/null is allowed, a node it does not list is refused
    res = v2("exec", "--cap", "CAP_MKNOD", cid, "sh", "-c",
             "echo x > /dev/null && echo null-ok; mknod /dev/dymem c 1 1 && "
             "head -c1 /dev/dymem 2>&1; true")
    assert "null-ok" in res.stdout, res.stderr
    assert "Operation not permitted" in res.stdout
    v2("delete", "--force", cid, check=True)
    v2.reap(pid)
    assert not os.path.exists(path)
