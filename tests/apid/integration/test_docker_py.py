"""docker-py (the API contract) against dockyard-apid."""

from __future__ import annotations

import io
import tarfile
import time

import docker
import pytest

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def client(stack):
    c = docker.DockerClient(base_url=stack.apid.host, version="auto", timeout=60)
    yield c
    c.close()


def test_version_negotiation_and_ping(client):
    assert client.ping() is True
    assert client.api.api_version == "1.51"
    info = client.info()
    assert info["Driver"] == "overlay2" and info["OSType"] == "linux"


def test_run_remove_logs(client, busybox, name):
    out = client.containers.run(busybox, ["sh", "-c", "echo out; echo err >&2"], name=name,
                                remove=True, stderr=True)
    assert out == b"out\nerr\n"
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(name)


def test_errors_are_classified(client, busybox, name):
    with pytest.raises(docker.errors.ImageNotFound):
        client.containers.create("dockyard.test/nope:1", ["true"])
    c = client.containers.create(busybox, ["sleep", "30"], name=name)
    with pytest.raises(docker.errors.APIError) as err:
        client.containers.create(busybox, ["true"], name=name)
    assert err.value.status_code == 409
    c.start()
    with pytest.raises(docker.errors.APIError) as err:
        c.remove()
    assert err.value.status_code == 409
    with pytest.raises(docker.errors.APIError) as err:
        client.api.create_container(busybox, ["true"], name="bad name")
    assert err.value.status_code == 400
    c.remove(force=True)


def test_lifecycle_exec_archive_stats(client, busybox, name):
    c = client.containers.run(busybox, ["sleep", "60"], name=name, detach=True,
                              labels={"dy.test": "yes"})
    c.reload()
    assert c.status == "running" and c.attrs["Config"]["Labels"]["dy.test"] == "yes"
    listed = client.containers.list(filters={"label": "dy.test=yes"})
    assert [x.id for x in listed] == [c.id]
    code, out = c.exec_run(["sh", "-c", "echo $((2+3)); exit 2"])
    assert (code, out) == (2, b"5\n")
    code, (o, e) = c.exec_run(["sh", "-c", "echo a; echo b >&2"], demux=True)
    assert (code, o, e) == (0, b"a\n", b"b\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"hello archive\n"
        info = tarfile.TarInfo("greeting.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert c.put_archive("/tmp", buf.getvalue())
    stream, st = c.get_archive("/tmp/greeting.txt")
    raw = b"".join(stream)
    assert st["name"] == "greeting.txt" and st["size"] == 14
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert tar.extractfile("greeting.txt").read() == b"hello archive\n"
    stats = c.stats(stream=False)
    assert stats["name"] == "/" + name and stats["memory_stats"]["usage"] > 0
    top = c.top()
    assert "PID" in top["Titles"] and any("sleep" in " ".join(p) for p in top["Processes"])
    c.rename(name + "-r")
    c.pause()
    c.reload()
    assert c.status == "paused"
    c.unpause()
    c.update(mem_limit="128m", memswap_limit="256m")
    c.reload()
    assert c.attrs["HostConfig"]["Memory"] == 128 << 20
    c.stop(timeout=1)
    assert c.wait()["StatusCode"] == 137
    c.remove()


def test_images_api(client, busybox):
    tags = [t for img in client.images.list() for t in img.tags]
    assert busybox in tags
    img = client.images.get(busybox)
    assert img.id.startswith("sha256:") and img.attrs["Config"]["Cmd"] == ["sh"]


def test_pull_progress_and_tag(client, stack):
    events = list(client.api.pull(stack.image.rsplit(":", 1)[0], tag="latest", stream=True,
                                  decode=True))
    statuses = [e.get("status", "") for e in events]
    assert statuses[0].startswith("Pulling from") or statuses[0].startswith("Pulling")
    assert any(s.startswith("Digest: sha256:") for s in statuses)
    assert any(s.startswith("Status: ") for s in statuses)
    img = client.images.get(stack.image)
    assert img.tag("dockyard.test/tagged", "v1")
    assert client.images.get("dockyard.test/tagged:v1").id == img.id
    client.images.remove("dockyard.test/tagged:v1")


def test_events_stream(client, busybox, name):
    since = time.time() - 1
    client.containers.run(busybox, ["true"], name=name, remove=True)
    events = client.events(since=since, until=time.time() + 0.5, decode=True,
                           filters={"container": name})
    actions = [e["Action"] for e in events]
    assert actions[:2] == ["create", "start"] and "die" in actions and "destroy" in actions


def test_apid_restart_keeps_containers(stack, client, busybox, name):
    c = client.containers.run(busybox, ["sleep", "60"], name=name, detach=True,
                              restart_policy={"Name": "unless-stopped"})
    stack.apid.restart()
    fresh = docker.DockerClient(base_url=stack.apid.host, version="auto")
    try:
        again = fresh.containers.get(name)
        assert again.id == c.id and again.status == "running"
        assert again.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        again.remove(force=True)
    finally:
        fresh.close()


def test_managerd_restart_keeps_containers_and_exits(stack, client, busybox, name):
    c = client.containers.run(busybox, ["sh", "-c", "sleep 2; exit 9"], name=name, detach=True)
    stack.managerd.restart()
    assert c.wait(timeout=30)["StatusCode"] == 9  # the exit is seen across the restart
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 9
    c.remove()


def test_always_restarts_after_apid_restart(stack, client, busybox, name):
    c = client.containers.run(busybox, ["sleep", "60"], name=name, detach=True,
                              restart_policy={"Name": "always"})
    c.stop(timeout=0)
    stack.apid.restart()  # dockerd: a stopped `always` container starts with the daemon
    fresh = docker.DockerClient(base_url=stack.apid.host, version="auto")
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            again = fresh.containers.get(name)
            if again.status == "running":
                break
            time.sleep(0.2)
        assert again.status == "running"
        again.remove(force=True)
    finally:
        fresh.close()


def test_logs_since_until_and_stats_stream(client, busybox, name):
    c = client.containers.run(busybox, ["sh", "-c", "echo early; sleep 3; echo late; sleep 30"],
                              name=name, detach=True)
    time.sleep(1.5)
    middle = time.time()  # ~1.5 s after "early", ~1.5 s before "late"
    deadline = time.time() + 10
    while b"late" not in c.logs() and time.time() < deadline:
        time.sleep(0.2)
    assert c.logs(until=middle) == b"early\n"
    assert c.logs(since=middle) == b"late\n"
    assert c.logs(tail=1, timestamps=True).decode().split(" ", 1)[1] == "late\n"
    stream = c.stats(stream=True, decode=True)
    first, second = next(stream), next(stream)
    assert second["precpu_stats"]["cpu_usage"]["total_usage"] == \
        first["cpu_stats"]["cpu_usage"]["total_usage"]
    assert second["read"] > first["read"]
    c.remove(force=True)


def test_wait_conditions(client, busybox, name):
    c = client.containers.create(busybox, ["sh", "-c", "exit 3"], name=name)
    assert c.wait(condition="not-running")["StatusCode"] == 0  # not started yet: at once
    c.start()
    assert c.wait(condition="not-running", timeout=30)["StatusCode"] == 3
    with pytest.raises(docker.errors.APIError) as err:
        client.api.wait(c.id, condition="bogus")
    assert err.value.status_code == 400
    c.remove()
