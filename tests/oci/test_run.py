"""`run`: what the container's process sees from inside, one setting per test."""

from __future__ import annotations

import pytest
from helpers import busybox

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]


def status_field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in {text!r}")


def test_pid_one_and_exit_status(shim):
    res = shim.run(["sh", "-c", "echo $$; exit 42"])
    assert res.returncode == 42, res.stderr
    assert res.stdout.strip() == "1"


def test_hostname_and_uts(shim):
    cfg = busybox.base_config(["hostname"])
    cfg["hostname"] = "dy-host"
    res = shim.run_config(cfg)
    assert res.stdout.strip() == "dy-host", res.stderr


def test_mount_table_and_readonly_root(shim):
    res = shim.run(["sh", "-c", "cat /proc/self/mounts; touch /x 2>&1; echo rc=$?"])
    mounts = {line.split()[1]: line.split() for line in res.stdout.splitlines()
              if len(line.split()) >= 4}
    assert mounts["/"][3].startswith("ro")
    assert mounts["/proc"][2] == "proc"
    assert mounts["/dev"][2] == "tmpfs"
    assert mounts["/dev/pts"][2] == "devpts"
    assert mounts["/sys"][3].startswith("ro")
    assert mounts["/sys/fs/cgroup"][2] == "tmpfs"
    assert "Read-only file system" in res.stdout
    # nothing of the host is visible: the old root was detached
    assert not any(p.startswith("/work") or p.startswith("/tmp/") for p in mounts)


def test_masked_and_readonly_paths(shim):
    res = shim.run(["sh", "-c", "cat /proc/kcore | wc -c; ls /proc/acpi | wc -l; "
                    "echo 1 > /proc/sys/kernel/domainname 2>&1; echo rc=$?; "
                    "grep ' /proc/sys ' /proc/self/mounts"])
    lines = res.stdout.splitlines()
    assert lines[0] == "0"  # /dev/null over the file
    assert lines[1] == "0"  # empty tmpfs over the directory
    assert "rc=1" in res.stdout or "Read-only" in res.stdout
    assert " ro," in lines[-1]


def test_capabilities_and_no_new_privs(shim):
    res = shim.run(["cat", "/proc/self/status"])
    # CAP_KILL(5), CAP_NET_BIND_SERVICE(10), CAP_AUDIT_WRITE(29)
    expected = f"{(1 << 5) | (1 << 10) | (1 << 29):016x}"
    assert status_field(res.stdout, "CapEff") == expected
    assert status_field(res.stdout, "CapBnd") == expected
    assert status_field(res.stdout, "CapPrm") == expected
    assert status_field(res.stdout, "NoNewPrivs") == "1"


def test_no_capabilities_without_nnp(shim):
    res = shim.run(["cat", "/proc/self/status"], capabilities={}, noNewPrivileges=False)
    assert status_field(res.stdout, "CapEff") == "0" * 16
    assert status_field(res.stdout, "CapBnd") == "0" * 16
    assert status_field(res.stdout, "NoNewPrivs") == "0"


def test_rlimits(shim):
    res = shim.run(["sh", "-c", "ulimit -n; ulimit -Hn"],
                   rlimits=[{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}])
    assert res.stdout.split() == ["123", "456"], res.stderr


def test_user_groups_umask(shim):
    res = shim.run(["sh", "-c", "id -u; id -g; id -G; umask; touch /tmp/f; stat -c %a /tmp/f"],
                   user={"uid": 1000, "gid": 1001, "additionalGids": [5, 7], "umask": 0o077})
    cfg_out = res.stdout.split()
    assert cfg_out[0] == "1000" and cfg_out[1] == "1001", res.stderr
    assert set(res.stdout.splitlines()[2].split()) == {"1001", "5", "7"}
    assert res.stdout.splitlines()[3] == "0077"


def test_cwd_env_and_home(shim):
    res = shim.run(["sh", "-c", "pwd; echo $FOO; echo $HOME"], cwd="/work/dir",
                   env=["PATH=/bin:/usr/bin", "FOO=bar baz"])
    assert res.stdout.splitlines() == ["/work/dir", "bar baz", "/root"], res.stderr


def test_default_devices_and_linux_devices(shim):
    cfg = busybox.base_config(["sh", "-c", "ls -l /dev/null /dev/zero /dev/full /dev/random "
                               "/dev/urandom /dev/tty /dev/dyfoo; readlink /dev/ptmx; readlink /dev/fd; "
                               "echo x > /dev/null && echo ok"])
    cfg["linux"]["devices"] = [{"path": "/dev/dyfoo", "type": "c", "major": 1, "minor": 3,
                                "fileMode": 0o640, "uid": 0, "gid": 0}]
    cfg["linux"]["resources"]["devices"].append(
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"})
    res = shim.run_config(cfg)
    lines = res.stdout.splitlines()
    by_name = {line.split()[-1]: line for line in lines if line.startswith(("c", "b"))}
    assert by_name["/dev/null"].startswith("crw-rw-rw-")
    assert "1,   3" in by_name["/dev/null"]
    assert "5,   0" in by_name["/dev/tty"]
    assert by_name["/dev/dyfoo"].startswith("crw-r-----")
    assert "pts/ptmx" in lines and "/proc/self/fd" in lines
    assert lines[-1] == "ok"


def test_sysctl_and_oom_score(shim):
    cfg = busybox.base_config(["sh", "-c", "cat /proc/sys/kernel/msgmax; "
                               "cat /proc/self/oom_score_adj"])
    cfg["linux"]["sysctl"] = {"kernel.msgmax": "12345"}
    cfg["process"]["oomScoreAdj"] = 500
    res = shim.run_config(cfg)
    assert res.stdout.split() == ["12345", "500"], res.stderr


def test_no_pivot(shim):
    cid = shim.container()
    bundle = shim.bundle(busybox.base_config(["sh", "-c", "echo $$; ls /"]))
    res = shim("run", "--no-pivot", "--bundle", str(bundle), cid)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "1"
    assert "bin" in res.stdout.split()


def test_executable_not_found(shim):
    res = shim.run(["/no/such/binary"])
    assert res.returncode == 1
    assert "no such file or directory" in res.stderr
    res = shim.run(["nosuchcmd"])
    assert "executable file not found" in res.stderr


def test_exec_permission_denied(shim):
    res = shim.run(["/etc/passwd"])
    assert res.returncode == 1
    assert "permission denied" in res.stderr


def test_run_detach_and_wait_by_state(shim):
    cid = shim.container()
    bundle = shim.bundle(busybox.base_config(["sleep", "30"]))
    shim.detached("run", "--detach", "--bundle", str(bundle), cid)
    state = shim.state(cid)
    shim.pids.add(state["pid"])
    assert state["status"] == "running"


def test_only_stdio_and_preserved_fds_reach_the_container(shim, tmp_path):
    import os
    import subprocess
    extra = tmp_path / "extra"
    extra.write_text("preserved\n")
    leaked = tmp_path / "leaked"
    leaked.write_text("x")
    cid = shim.container()
    bundle = shim.bundle(busybox.base_config(["sh", "-c", "ls /proc/self/fd; cat <&3"]))
    with open(extra) as keep, open(leaked) as leak:
        os.dup2(keep.fileno(), 100)
        try:
            res = subprocess.run(
                [shim.binary, "--root", shim.root, "run", "--preserve-fds", "1",
                 "--bundle", str(bundle), cid],
                capture_output=True, text=True, timeout=30,
                pass_fds=(3, leak.fileno()),  # fd 3 is made by preexec_fn from 100
                preexec_fn=lambda: os.dup2(100, 3))
        finally:
            os.close(100)
    assert res.returncode == 0, res.stderr
    fds = res.stdout.split()[:-1]
    # stdio, the preserved fd 3 and the fd `ls` opens for the directory; not the leak
    assert sorted(fds, key=int) == ["0", "1", "2", "3", "4"]
    assert res.stdout.split()[-1] == "preserved"


@pytest.mark.parametrize("nnp", [True, False])
def test_seccomp_profile_applies(shim, nnp):
    cfg = busybox.base_config(["sh", "-c", "grep Seccomp: /proc/self/status; "
                               "mkdir /tmp/x 2>&1; echo rc=$?; cat /proc/self/status >/dev/null"
                               " && echo reads-ok"], noNewPrivileges=nnp)
    cfg["root"]["readonly"] = False
    cfg["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 13}]}
    res = shim.run_config(cfg)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["Seccomp:", "2"]
    assert "Permission denied" in lines[1] and lines[2] == "rc=1"
    assert lines[3] == "reads-ok"


def test_bad_seccomp_profile_fails_create(shim):
    cfg = busybox.base_config(["true"])
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_NOPE"}
    cid = shim.container()
    res = shim("create", "--bundle", str(shim.bundle(cfg)), cid)
    assert res.returncode == 1 and "SCMP_ACT_NOPE" in res.stderr
    assert shim.cgroup_dirs(cid) == []
