"""`exec`: a second process in every namespace and the cgroup of a container."""

from __future__ import annotations

import json
import os

import pytest
from helpers import busybox

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]

NAMESPACES = ("pid", "net", "mnt", "ipc", "uts", "cgroup")


@pytest.fixture
def running(shim):
    """A started `sleep` container: (id, init pid)."""
    cfg = busybox.base_config(["sleep", "60"])
    cfg["hostname"] = "dy-exec"
    cid, pid = shim.create(cfg)
    shim("start", cid, check=True)
    return cid, pid


def test_exec_detached_joins_every_namespace_and_cgroup(shim, running, tmp_path):
    cid, init = running
    pid_file = tmp_path / "exec.pid"
    shim.detached("exec", "--detach", "--pid-file", str(pid_file), cid, "sleep", "60")
    pid = int(pid_file.read_text())
    shim.pids.add(pid)
    for ns in NAMESPACES:
        assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{init}/ns/{ns}"), ns
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    with open(f"/proc/{pid}/cgroup") as a, open(f"/proc/{init}/cgroup") as b:
        assert a.read() == b.read()
    assert os.readlink(f"/proc/{pid}/root") == "/"  # seen from its own mount ns
    assert os.stat(f"/proc/{pid}/root/bin/busybox").st_ino == \
        os.stat(f"/proc/{init}/root/bin/busybox").st_ino
    pids = json.loads(shim("ps", "--format", "json", cid, check=True).stdout)
    assert sorted(pids) == sorted([init, pid])


def test_exec_attached_exit_status_and_view(shim, running):
    cid, _ = running
    res = shim("exec", cid, "sh", "-c", "echo $$; hostname; id -u; exit 7")
    assert res.returncode == 7, res.stderr
    pid_in_ns, hostname, uid = res.stdout.split()
    assert int(pid_in_ns) > 1 and hostname == "dy-exec" and uid == "0"


def test_exec_flags(shim, running):
    cid, _ = running
    res = shim("exec", "--cwd", "/tmp", "--env", "DY=1", "-e", "DZ=2", "--user", "1000:1000",
               cid, "sh", "-c", "pwd; echo $DY$DZ; id -u; id -g; grep NoNewPrivs /proc/self/status")
    assert res.stdout.split()[:5] == ["/tmp", "12", "1000", "1000", "NoNewPrivs:"], res.stderr


def test_exec_process_json(shim, running, tmp_path):
    cid, _ = running
    process = {"args": ["sh", "-c", "echo $A; pwd; grep CapEff /proc/self/status"],
               "env": ["PATH=/bin", "A=from-json"], "cwd": "/dev", "user": {"uid": 0, "gid": 0},
               "capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"],
                                "permitted": ["CAP_CHOWN"]}}
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    res = shim("exec", "--process", str(path), cid)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["from-json", "/dev", "CapEff:", "0000000000000001"]


def test_exec_failures(shim, running):
    cid, _ = running
    res = shim("exec", cid, "/no/such")
    assert res.returncode == 255
    assert "no such file or directory" in res.stderr
    res = shim("exec", cid, "/etc/passwd")
    assert res.returncode == 255 and "permission denied" in res.stderr
    res = shim("exec", "dy-nope", "true")
    assert res.returncode == 1 and "container does not exist" in res.stderr


def test_exec_in_stopped_container(shim):
    cid, pid = shim.create(busybox.base_config(["true"]))
    shim("start", cid, check=True)
    shim.reap(pid)
    res = shim("exec", cid, "true")
    assert res.returncode == 1 and "stopped" in res.stderr
