"""`--ipc`, `--pid` and `--uts` through the real docker CLI and docker-py.

Namespace identity is compared by the `readlink /proc/self/ns/<kind>` inode, in
the container and on the host; shared /dev/shm by a file written on one side and
read on the other. Every test checks that no join bind mount or shm tmpfs stays.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(180)]


def ns(kind: str) -> str:
    return os.readlink(f"/proc/self/ns/{kind}")


def run(stack, *args: str, cli: str | None = None) -> str:
    r = stack.docker("run", "--rm", *args, cli=cli)
    assert r.returncode == 0, r.stderr.decode() + stack.apid.log()
    return r.stdout.decode()


def inspect(stack, ref: str) -> dict:
    r = stack.docker("inspect", ref)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]


def mounts_under(path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def no_leftovers(stack) -> None:
    assert mounts_under(stack.apid.exec_root / "nsjoin") == []
    assert not [m for m in mounts_under(stack.apid.data_root / "containers")
                if m.endswith("/mounts/shm")]


@pytest.fixture
def donor(stack, busybox):
    """A running container with IpcMode shareable; removed after the test."""
    name = f"dy-donor-{uuid.uuid4().hex[:8]}"
    r = stack.docker("run", "-d", "--name", name, "--ipc", "shareable", busybox, "sh", "-c",
                     "echo from-donor > /dev/shm/dy-mark; exec sleep 1234")
    assert r.returncode == 0, r.stderr.decode() + stack.apid.log()
    yield name
    stack.docker("rm", "-f", name)


def test_ipc_private_default_none_and_host(stack, busybox, name):
    r = stack.docker("run", "--name", name, busybox, "sh", "-c",
                     "readlink /proc/self/ns/ipc; grep ' /dev/shm ' /proc/mounts")
    assert r.returncode == 0, r.stderr
    own, shm = r.stdout.decode().splitlines()
    assert own != ns("ipc") and shm.startswith("shm /dev/shm tmpfs")
    assert inspect(stack, name)["HostConfig"]["IpcMode"] == "private"
    stack.docker("rm", name)
    out = run(stack, "--ipc", "none", busybox, "sh", "-c",
              "readlink /proc/self/ns/ipc; ls /dev/shm 2>&1; true")
    lines = out.splitlines()
    assert lines[0] != ns("ipc") and "No such file or directory" in lines[1], out
    mark = f"dy-{uuid.uuid4().hex[:8]}"
    with open(f"/dev/shm/{mark}", "w") as f:
        f.write("from-host")
    try:
        out = run(stack, "--ipc", "host", busybox, "sh", "-c",
                  f"readlink /proc/self/ns/ipc; cat /dev/shm/{mark}")
    finally:
        os.unlink(f"/dev/shm/{mark}")
    assert out.split() == [ns("ipc"), "from-host"]
    no_leftovers(stack)


def test_ipc_shareable_and_container_join(stack, busybox, donor):
    info = inspect(stack, donor)
    assert info["HostConfig"]["IpcMode"] == "shareable"
    shm = stack.apid.data_root / "containers" / info["Id"] / "mounts" / "shm"
    assert str(shm) in mounts_under(shm)  # the host-side tmpfs, while it runs
    donor_ns = stack.docker("exec", donor, "readlink", "/proc/self/ns/ipc").stdout.decode()
    clis = [c for c in ("/usr/local/bin/docker", "/usr/bin/docker") if os.path.exists(c)]
    for ref, cli in ((donor, clis[0]), (info["Id"][:12], clis[-1])):  # docker 28 and 20.10
        out = run(stack, "--ipc", f"container:{ref}", busybox, "sh", "-c",
                  "readlink /proc/self/ns/ipc; cat /dev/shm/dy-mark; echo back > /dev/shm/b",
                  cli=cli)
        assert out.split() == [donor_ns.strip(), "from-donor"]
    # the joiner's writes land in the donor's /dev/shm
    assert stack.docker("exec", donor, "cat", "/dev/shm/b").stdout == b"back\n"
    no_leftovers_but_donor = mounts_under(stack.apid.exec_root / "nsjoin")
    assert no_leftovers_but_donor == []
    assert stack.docker("stop", "-t", "0", donor).returncode == 0
    assert mounts_under(shm) == []  # unmounted when the donor stops (as dockerd does)
    no_leftovers(stack)


def test_ipc_join_inspect_shows_id_and_errors(stack, busybox, donor, name):
    did = inspect(stack, donor)["Id"]
    r = stack.docker("create", "--name", name, "--ipc", f"container:{donor}", busybox, "true")
    assert r.returncode == 0, r.stderr
    assert inspect(stack, name)["HostConfig"]["IpcMode"] == f"container:{did}"
    # a private donor is not shareable: 400 in dockerd's words
    private = f"{name}-p"
    assert stack.docker("run", "-d", "--name", private, busybox, "sleep", "60").returncode == 0
    try:
        pid = inspect(stack, private)["Id"]
        with stack.http() as client:
            cid = client.post("/containers/create", json={
                "Image": busybox, "Cmd": ["true"],
                "HostConfig": {"IpcMode": f"container:{private}"}}).json()["Id"]
            resp = client.post(f"/containers/{cid}/start")
            assert resp.status_code == 400, resp.text
            assert resp.json()["message"] == (
                f"failed to join IPC namespace: container {pid}: non-shareable IPC (hint: use "
                "IpcMode:shareable for the donor container)")
            # a stopped donor: 409
            assert stack.docker("stop", "-t", "0", donor).returncode == 0
            resp = client.post(f"/containers/{name}/start")
            assert resp.status_code == 409, resp.text
            assert resp.json()["message"] == (
                f"failed to join IPC namespace: container {did} is not running")
            # an unknown donor: 400, and nothing is created
            resp = client.post("/containers/create", json={
                "Image": busybox, "Cmd": ["true"], "HostConfig": {"IpcMode": "container:dy-nope"}})
            assert resp.status_code == 400, resp.text
            assert resp.json()["message"] == (
                "failed to join IPC namespace: No such container: dy-nope")
            resp = client.post("/containers/create", json={
                "Image": busybox, "HostConfig": {"IpcMode": "bogus"}})
            assert resp.status_code == 400 and resp.json()["message"] == "invalid IPC mode: bogus"
            client.delete(f"/containers/{cid}")
    finally:
        stack.docker("rm", "-f", private, name)
    no_leftovers(stack)


def test_pid_host_and_container(stack, busybox, name):
    out = run(stack, "--pid", "host", busybox, "readlink", "/proc/self/ns/pid")
    assert out.strip() == ns("pid")
    r = stack.docker("run", "-d", "--name", name, busybox, "sleep", "4321")
    assert r.returncode == 0, r.stderr
    did = r.stdout.decode().strip()
    joiner = f"{name}-j"
    try:
        r = stack.docker("run", "--name", joiner, "--pid", f"container:{name}", busybox, "ps",
                         "-o", "pid,args")
        assert r.returncode == 0, r.stderr.decode() + stack.apid.log()
        out = r.stdout.decode()
        assert "1 sleep 4321" in " ".join(out.split()), out  # the donor's init is pid 1
        hc = inspect(stack, joiner)["HostConfig"]
        assert hc["PidMode"] == f"container:{did}"
        assert inspect(stack, name)["HostConfig"]["PidMode"] == ""
        # donor stopped: start refused (dockerd: a 500, from the spec's creation)
        assert stack.docker("stop", "-t", "0", name).returncode == 0
        with stack.http() as client:
            resp = client.post(f"/containers/{joiner}/start")
            assert resp.status_code == 500, resp.text
            assert resp.json()["message"] == (
                f"failed to join PID namespace: container {did} is not running")
            resp = client.post("/containers/create", json={
                "Image": busybox, "HostConfig": {"PidMode": "container:"}})
            assert resp.status_code == 400 and resp.json()["message"] == (
                "invalid PID mode: container:")
    finally:
        stack.docker("rm", "-f", joiner, name)
    no_leftovers(stack)


def test_pid_donor_stop_kills_joiner_and_removal_allowed(stack, busybox, name):
    assert stack.docker("run", "-d", "--name", name, "--ipc", "shareable", busybox,
                        "sleep", "600").returncode == 0
    pj, ij = f"{name}-pj", f"{name}-ij"
    try:
        assert stack.docker("run", "-d", "--name", pj, "--pid", f"container:{name}", busybox,
                            "sleep", "601").returncode == 0
        # an exec in the joiner lives in the donor's pid namespace too
        ps = " ".join(stack.docker("exec", pj, "ps", "-o", "pid,args").stdout.decode().split())
        assert "1 sleep 600" in ps and "sleep 601" in ps, ps
        assert stack.docker("run", "-d", "--name", ij, "--ipc", f"container:{name}", busybox,
                            "sleep", "600").returncode == 0
        # removing a donor is allowed while joiners exist (dockerd has no such check)
        assert stack.docker("rm", "-f", name).returncode == 0
        # the pid namespace died with its init: the pid joiner was killed by the kernel
        r = stack.docker("wait", pj, timeout=30)
        assert r.stdout.strip() == b"137", r.stdout + r.stderr
        # the ipc joiner keeps its namespace and keeps running
        assert inspect(stack, ij)["State"]["Running"] is True
        assert stack.docker("exec", ij, "true").returncode == 0
        # ... but cannot start again without its donor
        assert stack.docker("stop", "-t", "0", ij).returncode == 0
        r = stack.docker("start", ij)
        assert r.returncode != 0 and b"failed to join IPC namespace: No such container" in \
            r.stderr, r.stderr
    finally:
        stack.docker("rm", "-f", pj, ij, name)
    no_leftovers(stack)


def test_uts_host(stack, busybox):
    out = run(stack, "--uts", "host", busybox, "hostname")
    assert out.strip() == os.uname().nodename
    r = stack.docker("run", "--rm", "--uts", "host", "--hostname", "dy-x", busybox, "true")
    assert r.returncode == 125 and b"conflicting options: hostname and the UTS mode" in r.stderr
    with stack.http() as client:
        resp = client.post("/containers/create", json={
            "Image": busybox, "HostConfig": {"UTSMode": "weird"}})
        assert resp.status_code == 400 and resp.json()["message"] == "invalid UTS mode: weird"


def test_docker_py_namespaces(stack, busybox, donor):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=stack.apid.host, version="auto", timeout=60)
    try:
        out = client.containers.run(busybox, ["cat", "/dev/shm/dy-mark"], remove=True,
                                    ipc_mode=f"container:{donor}")
        assert out == b"from-donor\n"
        out = client.containers.run(busybox, ["readlink", "/proc/self/ns/pid"], remove=True,
                                    pid_mode="host")
        assert out.decode().strip() == ns("pid")
        with pytest.raises(docker.errors.APIError, match="invalid IPC mode"):
            client.containers.create(busybox, "true", ipc_mode="sideways")
    finally:
        client.close()


def test_shareable_restart_and_failed_start_leave_nothing(stack, busybox, name):
    # a start that fails (command not found) unmounts the shm tmpfs it mounted
    r = stack.docker("run", "--name", name, "--ipc", "shareable", busybox, "/dy-nope")
    assert r.returncode == 127, r.stderr
    no_leftovers(stack)
    stack.docker("rm", "-f", name)
    # a restarted donor gets a fresh tmpfs; joiners can join again
    assert stack.docker("run", "-d", "--name", name, "--ipc", "shareable", busybox,
                        "sleep", "600").returncode == 0
    try:
        assert stack.docker("restart", "-t", "0", name).returncode == 0
        out = run(stack, "--ipc", f"container:{name}", busybox, "sh", "-c",
                  "grep ' /dev/shm ' /proc/mounts")
        assert " tmpfs " in out, out
    finally:
        stack.docker("rm", "-f", name)
    no_leftovers(stack)


def test_stale_join_released_when_apid_restarts(stack):
    # what an apid killed during a joiner's task create leaves behind
    path = stack.apid.exec_root / "nsjoin" / f"dy-{uuid.uuid4().hex[:8]}" / "ipc"
    path.parent.mkdir(parents=True)
    path.touch()
    assert os.system(f"mount --bind /proc/self/ns/ipc {path}") == 0
    try:
        stack.apid.restart()
        assert mounts_under(path) == [] and not path.exists()
    finally:
        if mounts_under(path):
            os.system(f"umount -l {path}")
