"""The real docker CLI against dockyard-apid: run, logs, exec, stop, rm, pull, inspect."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(180)]


def test_version_and_ping(stack):
    r = stack.docker("version", "--format", "{{.Server.APIVersion}}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == "1.51"


def test_run_rm_echo(stack, busybox, name):
    r = stack.docker("run", "--rm", "--name", name, busybox, "echo", "hi", timeout=120)
    assert r.returncode == 0, r.stderr.decode() + stack.apid.log()
    assert r.stdout == b"hi\n"
    ps = stack.docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.ID}}")
    assert ps.stdout.strip() == b""


def test_run_rm_pulls_on_demand(stack, name):
    # another test file on this worker may have pulled it already: untag it first (this
    # run pulls it back, so later tests find it as before)
    stack.docker("rmi", "-f", stack.image)
    r = stack.docker("run", "--rm", "--name", name, stack.image, "echo", "hi", timeout=120)
    if b"does not implement" in r.stderr:
        pytest.skip("managerd has no Transfer service yet")
    assert r.returncode == 0, r.stderr.decode() + stack.apid.log()
    assert b"Unable to find image" in r.stderr and r.stdout == b"hi\n"


def test_run_exit_codes(stack, busybox, name):
    assert stack.docker("run", "--rm", busybox, "sh", "-c", "exit 7").returncode == 7
    r = stack.docker("run", "--rm", busybox, "/nonexistent-bin")
    assert r.returncode == 127, r.stderr
    r = stack.docker("run", "--rm", busybox, "/etc")
    assert r.returncode == 126, r.stderr
    r = stack.docker("run", "--rm", "--name", "bad name", busybox, "true")
    assert r.returncode == 125


def test_run_d_logs_exec_stop_rm(stack, busybox, name):
    r = stack.docker("run", "-d", "--name", name, busybox, "sh", "-c",
                     "echo start; trap 'exit 0' TERM; while true; do sleep 0.1; done")
    assert r.returncode == 0, r.stderr.decode() + stack.apid.log()
    cid = r.stdout.decode().strip()
    assert len(cid) == 64
    logs = stack.docker("logs", name)
    assert logs.stdout == b"start\n", logs.stderr
    ex = stack.docker("exec", name, "sh", "-c", "echo in-$HOSTNAME; exit 3")
    assert ex.returncode == 3 and ex.stdout == f"in-{cid[:12]}\n".encode()
    fmt = stack.docker("inspect", "--format", "{{.State.Status}} {{.Name}}", name)
    assert fmt.stdout.decode().strip() == f"running /{name}"
    assert stack.docker("stop", "-t", "5", name).returncode == 0
    info = json.loads(stack.docker("inspect", name).stdout)[0]
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 0
    assert stack.docker("rm", name).returncode == 0
    assert stack.docker("inspect", name).returncode != 0


def test_security_and_runtime_options(stack, busybox):
    def run(*args: str) -> str:
        r = stack.docker("run", "--rm", *args)
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout.decode()

    assert "1 root     /sbin/docker-init -- ps" in run("--init", busybox, "ps")
    assert run("--user", "nobody", busybox, "id").startswith("uid=65534(nobody) gid=65534")
    assert "CapEff:\t00000000a80425fb" in run(busybox, "grep", "CapEff", "/proc/self/status")
    assert "CapEff:\t0000000000000000" in run("--cap-drop", "ALL", busybox, "grep", "CapEff",
                                              "/proc/self/status")
    assert "Seccomp:\t2" in run(busybox, "grep", "Seccomp:", "/proc/self/status")
    assert "Seccomp:\t0" in run("--security-opt", "seccomp=unconfined", busybox, "grep",
                                "Seccomp:", "/proc/self/status")
    assert "Seccomp:\t0" in run("--privileged", busybox, "grep", "Seccomp:", "/proc/self/status")
    r = stack.docker("run", "--rm", "--read-only", busybox, "touch", "/x")
    assert r.returncode == 1 and b"Read-only file system" in r.stderr
    out = run("--add-host", "db:10.1.2.3", "--hostname", "myhost", "--tmpfs", "/scratch",
              "--shm-size", "1m", busybox, "sh", "-c",
              "tail -1 /etc/hosts; hostname; touch /scratch/x && echo tmpfs-ok; "
              "df -k /dev/shm | tail -1")
    lines = out.splitlines()
    assert lines[0] == "10.1.2.3\tdb" and lines[1] == "myhost" and lines[2] == "tmpfs-ok"
    assert lines[3].split()[1] == "1024"
    out = run("-e", "A=1", "-w", "/tmp", "--entrypoint", "sh", busybox, "-c", 'echo $A $PWD')
    assert out == "1 /tmp\n"


def test_oom_killed_in_inspect(stack, busybox, name):
    r = stack.docker("run", "--name", name, "--memory", "8m", "--memory-swap", "8m", busybox,
                     "sh", "-c", "x=a; while true; do x=$x$x; done", timeout=60)
    assert r.returncode == 137, r.stderr
    state = json.loads(stack.docker("inspect", name).stdout)[0]["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137
    stack.docker("rm", name)


def test_own_network_namespace_with_lo_up(stack, busybox, name):
    r = stack.docker("run", "--name", name, busybox, "sh", "-c",
                     "cat /sys/class/net/lo/operstate; ls /sys/class/net; ping -c1 -W1 127.0.0.1 "
                     ">/dev/null && echo ping-ok")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().split()
    assert lines[0] in ("unknown", "up") and lines[1:] == ["lo", "ping-ok"]
    cid = json.loads(stack.docker("inspect", name).stdout)[0]["Id"]
    path = stack.apid.exec_root / "netns" / cid
    assert path.exists()
    assert stack.docker("rm", name).returncode == 0
    assert not path.exists()  # the namespace goes with the container
    host = stack.docker("run", "--rm", "--network", "host", busybox, "ls", "/sys/class/net")
    assert len(host.stdout.split()) > 1  # the host's interfaces


def test_stop_signal_and_stop_timeout(stack, busybox, name):
    r = stack.docker("run", "-d", "--name", name, "--stop-signal", "USR1", "--stop-timeout", "30",
                     busybox, "sh", "-c", "trap 'exit 42' USR1; while true; do sleep 0.1; done")
    assert r.returncode == 0, r.stderr
    import time

    t = time.monotonic()
    assert stack.docker("stop", name).returncode == 0
    assert time.monotonic() - t < 10  # USR1 ended it; no 30 s wait for SIGKILL
    state = json.loads(stack.docker("inspect", name).stdout)[0]
    assert state["State"]["ExitCode"] == 42 and state["Config"]["StopSignal"] == "USR1"
    assert state["Config"]["StopTimeout"] == 30
    stack.docker("rm", name)


def test_network_container_mode_and_ports_refused(stack, busybox, name):
    assert stack.docker("run", "-d", "--name", name, busybox, "sleep", "60").returncode == 0
    r = stack.docker("run", "--rm", "--network", f"container:{name}", busybox, "sh", "-c",
                     "readlink /proc/self/ns/net")
    assert r.returncode == 0, r.stderr
    own = stack.docker("exec", name, "readlink", "/proc/self/ns/net")
    assert r.stdout == own.stdout  # the same network namespace
    r = stack.docker("run", "--rm", "-p", "18080:80", busybox, "true")
    assert r.returncode == 125 and b"bridge networking" in r.stderr
    stack.docker("rm", "-f", name)


def test_named_volumes(stack, busybox, name):
    vol = name + "-vol"
    assert stack.docker("volume", "create", vol).returncode == 0
    r = stack.docker("run", "--rm", "-v", f"{vol}:/data", busybox, "sh", "-c",
                     "echo kept > /data/f")
    assert r.returncode == 0, r.stderr
    r = stack.docker("run", "--rm", "-v", f"{vol}:/data:ro", busybox, "sh", "-c",
                     "cat /data/f; touch /data/g")
    assert r.stdout == b"kept\n" and b"Read-only file system" in r.stderr
    # a new volume over an image directory starts with the image's content (copy-up)
    r = stack.docker("run", "--rm", "-v", f"{vol}-etc:/etc", busybox, "cat", "/etc/passwd")
    assert r.returncode == 0 and b"root:x:0:0" in r.stdout, r.stderr
    listed = stack.docker("volume", "ls", "-q").stdout.decode().split()
    assert vol in listed and f"{vol}-etc" in listed
    assert stack.docker("run", "-d", "--name", name, "-v", f"{vol}:/data", busybox,
                        "sleep", "60").returncode == 0
    r = stack.docker("volume", "rm", vol)
    assert r.returncode != 0 and b"in use" in r.stderr
    mounts = json.loads(stack.docker("inspect", name).stdout)[0]["Mounts"]
    assert mounts[0]["Type"] == "volume" and mounts[0]["Name"] == vol
    stack.docker("rm", "-f", name)
    # docker cp of a stopped container reaches into its volumes too
    assert stack.docker("create", "--name", name, "-v", f"{vol}:/data", busybox,
                        "true").returncode == 0
    r = stack.docker("cp", f"{name}:/data/f", "-")
    assert r.returncode == 0 and b"kept" in r.stdout, r.stderr
    stack.docker("rm", name)
    assert stack.docker("volume", "rm", vol, f"{vol}-etc").returncode == 0
