"""seccomp, capabilities and rlimits through the real shim, checked from inside."""

from __future__ import annotations

import errno
import os

import pytest
from dockyard.shim.seccomp import compiler
from helpers import busybox

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]
ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]


def status(text: str) -> dict[str, str]:
    return {k: v.strip() for k, v in (line.split(":", 1) for line in text.splitlines()
                                      if ":" in line)}


@pytest.mark.parametrize("nnp", [True, False])
def test_seccomp_profile_refuses_with_its_errno(shim, nnp):
    cfg = busybox.base_config(["sh", "-c", "grep Seccomp: /proc/self/status;"
                               " mkdir /dev/shm/x 2>&1; echo rc=$?; echo still-running"],
                              noNewPrivileges=nnp)
    cfg["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": errno.EDQUOT}]}
    res = shim.run_config(cfg)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["Seccomp:", "2"]
    assert os.strerror(errno.EDQUOT) in lines[1] and lines[2:] == ["rc=1", "still-running"]


def test_default_errno_profile_with_an_allow_list(shim):
    blocked = {"uname", "mkdir", "mkdirat"}
    allowed = sorted(set(compiler.syscall_table("x86_64")) - blocked)
    cfg = busybox.base_config(["sh", "-c", "uname -n; mkdir /dev/shm/d 2>&1; echo ok"])
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EPERM,
                               "architectures": ARCHES,
                               "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]}
    res = shim.run_config(cfg)
    assert res.returncode == 0, res.stderr
    # busybox prints an empty name when uname(2) fails (the hostname is "dockyard")
    assert res.stdout.splitlines() == [
        "", "mkdir: can't create directory '/dev/shm/d': Operation not permitted", "ok"]


def test_seccomp_kill_ends_the_process_with_sigsys(shim):
    cfg = busybox.base_config(["sh", "-c", "echo before; uname; echo after"])
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES,
                               "syscalls": [{"names": ["uname"],
                                             "action": "SCMP_ACT_KILL_PROCESS"}]}
    res = shim.run_config(cfg)
    # busybox runs uname inside the shell process: the container's init dies of SIGSYS
    assert res.returncode == 128 + 31, res.stderr
    assert "after" not in res.stdout


def test_bad_seccomp_profile_fails_create_with_a_clear_error(shim):
    cfg = busybox.base_config(["true"])
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_NOTIFY"}
    res = shim.run_config(cfg)
    assert res.returncode != 0
    assert "SCMP_ACT_NOTIFY" in res.stderr


def test_non_root_user_with_ambient_capabilities(shim):
    keep = ["CAP_NET_BIND_SERVICE", "CAP_KILL"]
    cfg = busybox.base_config(["cat", "/proc/self/status"],
                              user={"uid": 1000, "gid": 1000},
                              capabilities={"bounding": keep + ["CAP_CHOWN"], "effective": keep,
                                            "permitted": keep, "inheritable": keep,
                                            "ambient": keep})
    res = shim.run_config(cfg)
    assert res.returncode == 0, res.stderr
    st = status(res.stdout)
    assert (st["Uid"].split()[0], st["CapEff"], st["CapPrm"], st["CapAmb"], st["CapInh"],
            st["CapBnd"]) == ("1000", "0000000000000420", "0000000000000420",
                              "0000000000000420", "0000000000000420", "0000000000000421")


def test_unknown_capability_is_named(shim):
    cfg = busybox.base_config(["true"])
    cfg["process"]["capabilities"]["effective"] = ["CAP_FLY"]
    res = shim.run_config(cfg)
    assert res.returncode != 0 and "CAP_FLY" in res.stderr


def test_rlimits_inside(shim):
    cfg = busybox.base_config(["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c"],
                              rlimits=[{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
                                       {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}])
    res = shim.run_config(cfg)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["100", "200", "0"]
