"""run/create flags -> the create request, and the value syntaxes docker accepts."""

from __future__ import annotations

import argparse

import pytest
from dockyard.client import opts
from dockyard.client.context import DockyardParser
from dockyard.client.opts import UsageError


def parse(args: list[str], run: bool = True) -> tuple[dict, dict, argparse.Namespace]:
    p = DockyardParser(prog="dockyard run", add_help=False)
    opts.add_create_flags(p, run=run)
    ns = p.parse_args(args)
    params, body = opts.build_create(ns, run=run)
    return params, body, ns


def test_command_after_image_keeps_its_own_flags():
    params, body, ns = parse(["--rm", "--name", "web", "busybox", "echo", "-n", "--rm", "hi"])
    assert body["Image"] == "busybox"
    assert body["Cmd"] == ["echo", "-n", "--rm", "hi"]
    assert body["HostConfig"]["AutoRemove"] is True
    assert params["name"] == "web"


def test_foreground_attaches_stdout_and_stderr_only():
    _, body, _ = parse(["busybox"])
    assert (body["AttachStdin"], body["AttachStdout"], body["AttachStderr"]) == (False, True,
                                                                                 True)
    assert body["Cmd"] is None and body["OpenStdin"] is False


def test_interactive_tty_body():
    _, body, _ = parse(["-it", "busybox", "sh"])
    assert body["Tty"] and body["OpenStdin"] and body["StdinOnce"] and body["AttachStdin"]


def test_detach_attaches_nothing():
    _, body, _ = parse(["-d", "-i", "busybox"])
    assert not any((body["AttachStdin"], body["AttachStdout"], body["AttachStderr"]))
    assert body["OpenStdin"] and not body["StdinOnce"]


def test_resources_and_security_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_ENV", "yes")
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nA=1\nFROM_ENV\nUNSET_ONE\n")
    _, body, _ = parse([
        "-e", "X=1", "-e", "FROM_ENV", "-e", "NOT_SET_ANYWHERE", "--env-file", str(env_file),
        "-v", "/host:/ctr:ro", "-v", "/anon", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m",
        "--tmpfs", "/run:rw,size=64m", "-w", "/work", "-u", "1000:1000", "-h", "box",
        "--entrypoint", "", "-l", "a=b", "--read-only", "-m", "512m", "--memory-swap", "-1",
        "--cpus", "1.5", "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "64",
        "--ulimit", "nofile=1024:2048", "--shm-size", "128m", "--cap-add", "NET_ADMIN",
        "--cap-drop", "ALL", "--privileged", "--security-opt", "no-new-privileges",
        "--add-host", "db:10.0.0.2", "--init", "--restart", "on-failure:3",
        "--health-cmd", "true", "--health-interval", "1m30s", "--health-retries", "3",
        "--stop-signal", "SIGINT", "--stop-timeout", "5", "-p", "127.0.0.1:8080:80/udp",
        "busybox"])
    hc = body["HostConfig"]
    assert body["Env"] == ["A=1", "FROM_ENV=yes", "X=1", "FROM_ENV=yes"]
    assert hc["Binds"] == ["/host:/ctr:ro"] and body["Volumes"] == {"/anon": {}}
    assert hc["Mounts"] == [{"Type": "tmpfs", "Target": "/t",
                             "TmpfsOptions": {"SizeBytes": 1 << 20}}]
    assert hc["Tmpfs"] == {"/run": "rw,size=64m"}
    assert (body["WorkingDir"], body["User"], body["Hostname"]) == ("/work", "1000:1000", "box")
    assert body["Entrypoint"] == [""]
    assert body["Labels"] == {"a": "b"}
    assert hc["ReadonlyRootfs"] and hc["Privileged"] and hc["Init"]
    assert hc["Memory"] == 512 << 20 and hc["MemorySwap"] == -1
    assert hc["NanoCpus"] == 1_500_000_000 and hc["CpuShares"] == 512
    assert hc["CpusetCpus"] == "0" and hc["PidsLimit"] == 64
    assert hc["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert hc["ShmSize"] == 128 << 20
    assert hc["CapAdd"] == ["NET_ADMIN"] and hc["CapDrop"] == ["ALL"]
    assert hc["SecurityOpt"] == ["no-new-privileges"]
    assert hc["ExtraHosts"] == ["db:10.0.0.2"]
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert body["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    assert body["Healthcheck"]["Interval"] == 90 * 10**9
    assert body["Healthcheck"]["Retries"] == 3
    assert body["StopSignal"] == "SIGINT" and body["StopTimeout"] == 5
    assert body["ExposedPorts"] == {"80/udp": {}}
    assert hc["PortBindings"] == {"80/udp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}


@pytest.mark.parametrize("args,needle", [
    (["-m", "lots", "busybox"], "invalid memory"),
    (["--ulimit", "nofile=10:5", "busybox"], "exceeds hard"),
    (["--restart", "sometimes", "busybox"], "invalid restart policy"),
    (["--restart", "always:3", "busybox"], "only on-failure"),
    (["--cpus", "fast", "busybox"], "--cpus"),
    (["-v", "relative", "busybox"], "absolute"),
    (["--mount", "type=bind,target=/x", "busybox"], "source="),
    (["--health-interval", "soon", "busybox"], "duration"),
    (["-m", "1g", "--memory-swap", "512m", "busybox"], "memoryswap"),
    (["-d", "-a", "stdout", "busybox"], "conflicting options"),
    (["--sig-proxy", "maybe", "busybox"], "--sig-proxy"),
])
def test_bad_values_name_the_problem(args, needle):
    with pytest.raises(UsageError, match=needle):
        parse(args)


@pytest.mark.parametrize("text,want", [("512m", 512 << 20), ("1g", 1 << 30), ("1024", 1024),
                                       ("64MB", 64 << 20), ("1.5k", 1536), ("10b", 10)])
def test_parse_size(text, want):
    assert opts.parse_size(text) == want


@pytest.mark.parametrize("text,want", [("30s", 30 * 10**9), ("1m30s", 90 * 10**9),
                                       ("500ms", 5 * 10**8), ("1h", 3600 * 10**9),
                                       ("0", 0)])
def test_parse_duration(text, want):
    assert opts.parse_duration(text) == want


def test_detach_keys_and_publish_and_repo_tag():
    assert opts.parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert opts.parse_detach_keys("ctrl-@,a") == b"\x00a"
    with pytest.raises(UsageError):
        opts.parse_detach_keys("ctrl-pq")
    assert opts.parse_publish("80") == [("80/tcp", {"HostIp": "", "HostPort": ""})]
    assert opts.parse_publish("[::1]:8080:80") == [("80/tcp", {"HostIp": "::1",
                                                               "HostPort": "8080"})]
    assert opts.split_repo_tag("busybox") == ("busybox", "latest")
    assert opts.split_repo_tag("reg:5000/a/b:v1") == ("reg:5000/a/b", "v1")
    assert opts.split_repo_tag("reg:5000/a/b") == ("reg:5000/a/b", "latest")
    assert opts.split_repo_tag("a@sha256:00") == ("a", "sha256:00")
