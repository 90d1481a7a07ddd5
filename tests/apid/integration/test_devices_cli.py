"""`--device` and `--device-cgroup-rule` through the real docker CLIs and docker-py.

Nodes are checked from inside the container (type, numbers, mode) and the device
cgroup from its effects: an open for an access the rule does not grant fails with
EPERM. /dev/loop-control (10:237) is the probe device: not in Docker's default
allow list, and opening it does nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import uuid

import pytest

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(180)]

PROBE = "/dev/loop-control"
OPEN_RW = ("(: <{p}) 2>&1 && echo r-ok; (: >{p}) 2>&1 && echo w-ok; true")


def run(stack, *args: str, cli: str | None = None) -> str:
    r = stack.docker("run", "--rm", *args, cli=cli)
    assert r.returncode == 0, r.stderr.decode() + stack.apid.log()
    return r.stdout.decode()


@pytest.fixture
def probe():
    if not os.path.exists(PROBE) or not stat.S_ISCHR(os.stat(PROBE).st_mode):
        pytest.skip(f"{PROBE} is not on this host")
    return PROBE


@pytest.mark.parametrize("cli", ["/usr/local/bin/docker", "/usr/bin/docker"])
def test_device_node_created_with_host_numbers(stack, busybox, cli):
    if not os.path.exists(cli):
        pytest.skip(f"{cli} is not installed")
    out = run(stack, "--device", "/dev/null:/dev/mynull", "--device", "/dev/zero:/dev/myzero:r",
              busybox, "sh", "-c", "ls -l /dev/mynull /dev/myzero; echo hi > /dev/mynull && "
              "echo wrote; head -c 4 /dev/myzero | od -An -tx1", cli=cli)
    lines = out.splitlines()
    assert lines[0].startswith("crw-rw-rw-") and "1,   3" in lines[0], out
    assert lines[1].startswith("crw-rw-rw-") and "1,   5" in lines[1], out
    assert lines[2] == "wrote" and lines[3].split() == ["00"] * 4


def test_device_read_only_permission(stack, busybox, probe):
    # r only: open for reading works, for writing is refused by the device cgroup
    out = run(stack, "--device", f"{probe}:/dev/lc:r", busybox, "sh", "-c",
              "ls -l /dev/lc; " + OPEN_RW.format(p="/dev/lc"))
    host = os.stat(probe)
    lines = out.splitlines()
    assert lines[0].startswith("crw-------") and f"{os.major(host.st_rdev)}, " \
        f"{os.minor(host.st_rdev)}" in lines[0], out
    assert "r-ok" in lines and "w-ok" not in lines, out
    assert "Operation not permitted" in out


def test_device_read_write_permission(stack, busybox, probe, name):
    out = run(stack, "--device", f"{probe}:/dev/lc:rw", busybox, "sh", "-c",
              OPEN_RW.format(p="/dev/lc"))
    assert out.split() == ["r-ok", "w-ok"], out
    # the spec carries exactly the permission asked for
    r = stack.docker("create", "--name", name, "--device", f"{probe}:/dev/lc:rm", busybox)
    assert r.returncode == 0, r.stderr
    hc = json.loads(stack.docker("inspect", name).stdout)[0]["HostConfig"]
    assert hc["Devices"] == [{"PathOnHost": probe, "PathInContainer": "/dev/lc",
                              "CgroupPermissions": "rm"}]
    stack.docker("rm", name)


def test_other_devices_still_denied(stack, busybox, probe):
    # Docker allows mknod of any node (runc's `c *:* m`), never opening one not granted
    out = run(stack, "--device", f"{probe}:/dev/lc", busybox, "sh", "-c",
              "mknod /tmp/mem c 1 1 && echo mknod-ok; (: </tmp/mem) 2>&1; "
              "(: </dev/lc) && echo lc-ok")
    assert "mknod-ok" in out and "Operation not permitted" in out and "lc-ok" in out, out


def test_device_cgroup_rule_still_works(stack, busybox, probe):
    host = os.stat(probe)
    rule = f"c {os.major(host.st_rdev)}:{os.minor(host.st_rdev)} r"
    out = run(stack, "--device-cgroup-rule", rule, busybox, "sh", "-c",
              f"mknod /tmp/lc c {os.major(host.st_rdev)} {os.minor(host.st_rdev)}; "
              + OPEN_RW.format(p="/tmp/lc"))
    assert "r-ok" in out and "w-ok" not in out, out
    out = run(stack, busybox, "sh", "-c",
              f"mknod /tmp/lc c {os.major(host.st_rdev)} {os.minor(host.st_rdev)}; "
              + OPEN_RW.format(p="/tmp/lc"))
    assert "r-ok" not in out and "w-ok" not in out, out


def test_directory_of_devices(stack, busybox):
    base = f"/tmp/dy-devs-{uuid.uuid4().hex[:8]}"
    os.makedirs(f"{base}/sub")
    try:
        os.mknod(f"{base}/a", 0o620 | stat.S_IFCHR, os.makedev(1, 3))
        os.chmod(f"{base}/a", 0o620)  # past the umask: the container copies the host's mode
        os.mknod(f"{base}/sub/b", 0o644 | stat.S_IFCHR, os.makedev(1, 5))
        open(f"{base}/notadev", "w").close()
        out = run(stack, "--device", f"{base}:/dev/mine", busybox, "sh", "-c",
                  "ls -l /dev/mine/a /dev/mine/sub/b; ls /dev/mine /dev/mine/sub")
    finally:
        shutil.rmtree(base)
    lines = out.splitlines()
    assert lines[0].startswith("crw--w----") and "1,   3" in lines[0], out
    assert lines[1].startswith("crw-r--r--") and "1,   5" in lines[1], out
    assert "notadev" not in out


def test_device_errors_in_dockers_words(stack, busybox, name):
    r = stack.docker("run", "--rm", "--name", name, "--device", "/dev/dy-nope", busybox, "true")
    assert r.returncode == 127  # the CLI's code for "no such file or directory" (as on dockerd)
    assert b'error gathering device information while adding custom device "/dev/dy-nope": ' \
        b"no such file or directory" in r.stderr, r.stderr
    r = stack.docker("run", "--rm", "--device", "/etc/hostname:/dev/x", busybox, "true")
    assert r.returncode == 125
    assert b'adding custom device "/etc/hostname": not a device node' in r.stderr, r.stderr
    with stack.http() as client:
        body = {"Image": busybox, "Cmd": ["true"], "HostConfig": {"Devices": [
            {"PathOnHost": "/dev/dy-nope", "PathInContainer": "/dev/x",
             "CgroupPermissions": "rwm"}]}}
        resp = client.post("/containers/create", json=body)
        assert resp.status_code == 500 and "no such file or directory" in resp.json()["message"]
        body["HostConfig"]["Devices"][0].update(PathOnHost="/dev/null", CgroupPermissions="rwx")
        resp = client.post("/containers/create", json=body)
        assert resp.status_code == 400 and resp.json()["message"] == "bad mode specified: rwx"
        body["HostConfig"]["Devices"][0].update(CgroupPermissions="r", PathInContainer="dev/x")
        resp = client.post("/containers/create", json=body)
        assert resp.status_code == 400
        body["HostConfig"]["Devices"] = None
        body["HostConfig"]["DeviceCgroupRules"] = ["x 1:3 r"]
        resp = client.post("/containers/create", json=body)
        assert resp.status_code == 400 and "invalid device cgroup rule" in resp.json()["message"]
    # nothing was left behind by the failed creates
    ps = stack.docker("ps", "-aq", "--filter", f"name={name}")
    assert ps.stdout.strip() == b""


def test_privileged_with_device(stack, busybox, probe):
    out = run(stack, "--privileged", "--device", "/dev/null:/dev/mynull:r", busybox, "sh", "-c",
              "ls -l /dev/mynull; echo x > /dev/mynull && echo wrote; "
              "mknod /tmp/p c 10 237 && (: >/tmp/p) && echo any-ok")
    assert "1,   3" in out and "wrote" in out and "any-ok" in out, out


def test_docker_py_devices(stack, busybox):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=stack.apid.host, version="auto", timeout=60)
    try:
        out = client.containers.run(busybox, ["sh", "-c", "ls -l /dev/mynull"], remove=True,
                                    devices=["/dev/null:/dev/mynull:rw"])
        assert b"1,   3" in out
        with pytest.raises(docker.errors.APIError, match="not a device node"):
            client.containers.run(busybox, "true", remove=True, devices=["/etc/hostname"])
    finally:
        client.close()


def test_block_device(stack, busybox):
    blk = "/dev/loop7"
    if not os.path.exists(blk) or not stat.S_ISBLK(os.stat(blk).st_mode):
        pytest.skip(f"{blk} is not on this host")
    host = os.stat(blk)
    out = run(stack, "--device", f"{blk}:/dev/xvdz:r", busybox, "sh", "-c",
              "ls -l /dev/xvdz; (: </dev/xvdz) && echo r-ok")
    lines = out.splitlines()
    assert lines[0].startswith("brw-------"), out
    assert f"{os.major(host.st_rdev)},   {os.minor(host.st_rdev)}" in lines[0], out
    assert lines[1] == "r-ok"


def test_gpus_refused_like_dockerd_without_a_driver(stack, busybox, name):
    r = stack.docker("run", "--rm", "--name", name, "--gpus", "all", busybox, "true")
    assert r.returncode == 125
    assert b'could not select device driver "" with capabilities: [[gpu]]' in r.stderr, r.stderr
    assert stack.docker("ps", "-aq", "--filter", f"name={name}").stdout.strip() == b""
