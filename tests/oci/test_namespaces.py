"""linux.namespaces: new ones, joined ones (by path), and inherited ones."""

from __future__ import annotations

import os

import pytest
from helpers import busybox

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]


def test_join_namespaces_by_path(shim):
    a_cfg = busybox.base_config(["sleep", "60"])
    a_cfg["hostname"] = "dy-shared"
    a, a_pid = shim.create(a_cfg)
    shim("start", a, check=True)
    b_cfg = busybox.base_config(["sh", "-c", "hostname; echo $$"])
    del b_cfg["hostname"]  # joining a uts namespace: setting a hostname would change A's
    b_cfg["linux"]["namespaces"] = [
        {"type": "pid", "path": f"/proc/{a_pid}/ns/pid"},
        {"type": "network", "path": f"/proc/{a_pid}/ns/net"},
        {"type": "ipc", "path": f"/proc/{a_pid}/ns/ipc"},
        {"type": "uts", "path": f"/proc/{a_pid}/ns/uts"},
        {"type": "mount"}, {"type": "cgroup"},
    ]
    b, b_pid = shim.create(b_cfg)
    for ns in ("pid", "net", "ipc", "uts"):
        assert os.readlink(f"/proc/{b_pid}/ns/{ns}") == os.readlink(f"/proc/{a_pid}/ns/{ns}")
    assert os.readlink(f"/proc/{b_pid}/ns/mnt") != os.readlink(f"/proc/{a_pid}/ns/mnt")
    # in A's pid namespace B's init is not pid 1
    with open(f"/proc/{b_pid}/status") as f:
        nspid = [line.split()[1:] for line in f if line.startswith("NSpid:")][0]
    assert len(nspid) == 2 and int(nspid[1]) > 1


def test_join_output(shim):
    a, a_pid = shim.create(busybox.base_config(["sleep", "60"]))
    shim("start", a, check=True)
    cfg = busybox.base_config(["sh", "-c", "hostname; echo $$; ip link 2>/dev/null | wc -l"])
    cfg["linux"]["namespaces"] = [
        {"type": "pid", "path": f"/proc/{a_pid}/ns/pid"},
        {"type": "uts", "path": f"/proc/{a_pid}/ns/uts"},
        {"type": "mount"},
    ]
    del cfg["hostname"]
    res = shim.run_config(cfg)
    assert res.returncode == 0, res.stderr
    hostname, pid, _ = res.stdout.split()
    assert hostname == "dockyard" and int(pid) > 1


def test_host_pid_namespace_when_absent(shim):
    cfg = busybox.base_config(["sh", "-c", "echo $$"])
    cfg["linux"]["namespaces"] = [{"type": "mount"}, {"type": "uts"}]
    res = shim.run_config(cfg)
    assert int(res.stdout) > 1, res.stderr


def test_bad_namespace_path(shim):
    cfg = busybox.base_config(["true"])
    cfg["linux"]["namespaces"].remove({"type": "network"})
    cfg["linux"]["namespaces"].append({"type": "network", "path": "/proc/self/ns/nonexistent"})
    res = shim.run_config(cfg)
    assert res.returncode == 1
    assert "network namespace" in res.stderr and "no such file" in res.stderr
