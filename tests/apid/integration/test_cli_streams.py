"""The docker CLI's hijacked streams and follow-mode streams against apid."""

from __future__ import annotations

import json
import subprocess
import time

import pexpect
import pytest

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]


def spawn(stack, *args: str) -> pexpect.spawn:
    return pexpect.spawn(stack.docker_cli, list(args), env=stack.env, timeout=20)


def test_run_it_under_a_pty(stack, busybox, name):
    child = spawn(stack, "run", "-it", "--rm", "--name", name, busybox, "sh")
    child.expect([r"# ", r"\$ "])
    child.sendline("echo $((6*7)); stty size")
    child.expect("42")
    child.expect(r"(\d+) (\d+)")
    assert child.match.group(0) == b"24 80"  # pexpect's default window, sent by resize
    child.sendline("exit 5")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 5


def test_run_i_with_piped_stdin(stack, busybox):
    r = stack.docker("run", "-i", "--rm", busybox, "sh", "-c", "cat; echo done >&2",
                     input=b"hello\nworld\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello\nworld\n" and r.stderr == b"done\n"


def test_exec_it_and_attach_detach(stack, busybox, name):
    r = stack.docker("run", "-d", "-it", "--name", name, busybox, "sh")
    assert r.returncode == 0, r.stderr
    child = spawn(stack, "exec", "-it", "-e", "FOO=bar", "-w", "/tmp", name, "sh")
    child.expect([r"# ", r"\$ "])
    child.sendline("echo $FOO-$(pwd)")
    child.expect("bar-/tmp")
    child.sendline("exit 4")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 4
    child = spawn(stack, "attach", name)
    time.sleep(0.5)
    child.sendline("echo attached-$((1+1))")
    child.expect("attached-2")
    child.sendcontrol("p")
    child.sendcontrol("q")
    child.expect(pexpect.EOF)
    child.close()
    state = json.loads(stack.docker("inspect", name).stdout)[0]["State"]
    assert state["Running"] is True  # detaching leaves it running
    assert stack.docker("rm", "-f", name).returncode == 0


def test_logs_follow_until_exit(stack, busybox, name):
    r = stack.docker("run", "-d", "--name", name, busybox, "sh", "-c",
                     "for i in 1 2 3; do echo line$i; sleep 0.2; done; echo err >&2")
    assert r.returncode == 0, r.stderr
    logs = stack.docker("logs", "-f", "--timestamps", name, timeout=30)
    out = logs.stdout.decode().splitlines()
    assert [line.split(" ", 1)[1] for line in out] == ["line1", "line2", "line3"]
    assert out[0].split(" ", 1)[0].endswith("Z")
    assert logs.stderr.decode().split(" ", 1)[1] == "err\n"
    tail = stack.docker("logs", "--tail", "2", name)  # the last two records of both streams
    assert tail.stdout == b"line3\n" and tail.stderr == b"err\n"
    stack.docker("rm", name)


def test_cp_both_ways(stack, busybox, name, tmp_path):
    assert stack.docker("run", "-d", "--name", name, busybox, "sleep", "60").returncode == 0
    src = tmp_path / "in.txt"
    src.write_text("payload\n")
    assert stack.docker("cp", str(src), f"{name}:/tmp/").returncode == 0
    out = stack.docker("exec", name, "cat", "/tmp/in.txt")
    assert out.stdout == b"payload\n"
    r = stack.docker("cp", f"{name}:/etc/hostname", str(tmp_path / "h"))
    assert r.returncode == 0, r.stderr
    cid = json.loads(stack.docker("inspect", name).stdout)[0]["Id"]
    assert (tmp_path / "h").read_text() == cid[:12] + "\n"
    assert stack.docker("cp", f"{name}:/nope", str(tmp_path / "x")).returncode != 0
    stack.docker("rm", "-f", name)
    # a stopped container's filesystem is reachable too (its snapshot gets mounted)
    assert stack.docker("create", "--name", name, busybox, "true").returncode == 0
    assert stack.docker("cp", str(src), f"{name}:/").returncode == 0
    r = stack.docker("cp", f"{name}:/in.txt", "-")
    assert r.returncode == 0 and b"payload" in r.stdout
    diff = stack.docker("diff", name).stdout.decode().split("\n")
    assert "A /in.txt" in diff
    stack.docker("rm", name)


def test_stats_top_events_inspect_format(stack, busybox, name):
    since = str(time.time() - 1)
    assert stack.docker("run", "-d", "--name", name, "--memory", "64m", busybox,
                        "sleep", "60").returncode == 0
    r = stack.docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith(name + " ") and "64MiB" in r.stdout.decode()
    top = stack.docker("top", name).stdout.decode()
    assert "sleep 60" in top
    fmt = stack.docker("inspect", "--format", "{{.HostConfig.Memory}} {{.Config.Image}}", name)
    assert fmt.stdout.decode().split() == [str(64 << 20), busybox]
    assert stack.docker("stop", "-t", "0", name).returncode == 0
    ev = stack.docker("events", "--since", since, "--until", str(time.time() + 0.5),
                      "--filter", f"container={name}", "--format", "{{.Action}}")
    actions = ev.stdout.decode().split()
    for action in ("create", "start", "kill", "die", "stop"):
        assert action in actions, actions
    stack.docker("rm", name)


def test_restart_policy_and_healthcheck(stack, busybox, name):
    r = stack.docker("run", "-d", "--name", name, "--restart", "on-failure:2", busybox,
                     "sh", "-c", "exit 3")
    assert r.returncode == 0, r.stderr
    deadline = time.time() + 15
    while time.time() < deadline:
        info = json.loads(stack.docker("inspect", name).stdout)[0]
        if info["RestartCount"] == 2 and info["State"]["Status"] == "exited":
            break
        time.sleep(0.2)
    assert info["RestartCount"] == 2 and info["State"]["ExitCode"] == 3
    stack.docker("rm", "-f", name)
    hc = name + "-hc"
    r = stack.docker("run", "-d", "--name", hc, "--health-cmd", "test -f /tmp/ok",
                     "--health-interval", "200ms", "--health-retries", "2", busybox, "sh", "-c",
                     "sleep 0.5; touch /tmp/ok; sleep 60")
    assert r.returncode == 0, r.stderr
    deadline = time.time() + 10
    status = ""
    while time.time() < deadline and status != "healthy":
        status = stack.docker("inspect", "--format", "{{.State.Health.Status}}",
                              hc).stdout.decode().strip()
        time.sleep(0.2)
    assert status == "healthy"
    ps = stack.docker("ps", "--filter", f"name={hc}", "--format", "{{.Status}}")
    assert "(healthy)" in ps.stdout.decode()
    stack.docker("rm", "-f", hc)


@pytest.mark.parametrize("cli", ["/usr/bin/docker"])
def test_old_cli_run(stack, busybox, cli):
    import os

    if not os.path.exists(cli):
        pytest.skip(f"{cli} is not installed")
    r = subprocess.run([cli, "run", "--rm", busybox, "echo", "from-20.10"], env=stack.env,
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == b"from-20.10\n", r.stderr


def test_start_attach_again_and_again(stack, busybox, name):
    assert stack.docker("create", "--name", name, busybox, "sh", "-c",
                        "echo round; exit 6").returncode == 0
    for _ in range(2):  # the second start attaches to an exited container
        r = stack.docker("start", "-a", name)
        assert (r.returncode, r.stdout) == (6, b"round\n"), r.stderr
    r = stack.docker("start", "-ai", name, input=b"")
    assert r.stdout == b"round\n"
    stack.docker("rm", name)
