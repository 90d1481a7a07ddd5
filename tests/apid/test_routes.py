"""apid routes over a Daemon on the FakeManager: Docker's shapes, status codes and wording."""

from __future__ import annotations

import json
import time

import pytest
from dockyard.apid.app import create_app
from dockyard.apid.daemon import Daemon, DaemonConfig
from fakes.apid_manager import FakeManager
from starlette.testclient import TestClient

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def env(tmp_path):
    manager = FakeManager()
    manager.add_image("docker.io/library/busybox:latest")
    daemon = Daemon(manager, DaemonConfig(data_root=str(tmp_path), exec_root=str(tmp_path),
                                          host_resolv_conf="/nonexistent", manage_netns=False,
                                          volume_copy_up=False))
    with TestClient(create_app(daemon)) as client:
        yield client, manager, daemon


def create(client, **body):
    body.setdefault("Image", "busybox")
    name = body.pop("name", None)
    r = client.post("/v1.41/containers/create", params={"name": name} if name else None,
                    json=body)
    return r


def test_ping_version_headers_and_prefixes(env):
    client, _, _ = env
    r = client.get("/_ping")
    assert r.text == "OK" and r.headers["api-version"] == "1.51"
    assert r.headers["ostype"] == "linux" and r.headers["docker-experimental"] == "false"
    assert client.head("/_ping").status_code == 200
    v = client.get("/v1.41/version").json()
    assert v["ApiVersion"] == "1.51" and v["MinAPIVersion"] == "1.24" and v["Os"] == "linux"
    assert client.get("/v1.41/_ping").headers["api-version"] == "1.41"
    assert client.get("/v1/version").status_code == 200
    r = client.get("/v1.99/version")
    assert r.status_code == 400 and "too new" in r.json()["message"]
    r = client.get("/v1.12/version")
    assert r.status_code == 400 and "too old" in r.json()["message"]
    assert client.get("/nope").json() == {"message": "page not found"}
    assert "/containers/create" in client.get("/openapi.json").json()["paths"]


def test_create_inspect_list_remove(env):
    client, manager, _ = env
    r = create(client, Cmd=["echo", "hi"], Labels={"a": "b"}, name="web")
    assert r.status_code == 201, r.text
    cid = r.json()["Id"]
    assert len(cid) == 64 and r.json()["Warnings"] == []
    info = client.get("/containers/web/json").json()
    assert info["Id"] == cid and info["Name"] == "/web" and info["State"]["Status"] == "created"
    assert info["Config"]["Hostname"] == cid[:12] and info["Path"] == "echo"
    assert info["HostConfig"]["ShmSize"] == 64 << 20 and info["State"]["FinishedAt"].startswith(
        "0001-01-01")
    spec = manager.containers[cid].spec
    assert spec["process"]["args"] == ["echo", "hi"]
    assert client.get("/containers/json").json() == []
    listed = client.get("/containers/json", params={"all": "1"}).json()
    assert listed[0]["Names"] == ["/web"] and listed[0]["State"] == "created"
    flt = json.dumps({"label": {"a=b": True}})
    assert len(client.get("/containers/json", params={"all": 1, "filters": flt}).json()) == 1
    bad = client.get("/containers/json", params={"filters": json.dumps({"bogus": {"x": True}})})
    assert bad.status_code == 400 and "bogus" in bad.json()["message"]
    assert client.get(f"/containers/{cid[:6]}/json").status_code == 200
    assert client.delete("/containers/web").status_code == 204
    r = client.get("/containers/web/json")
    assert r.status_code == 404 and r.json()["message"] == "No such container: web"
    assert cid not in manager.containers and cid not in manager.snapshots


def test_create_errors(env):
    client, _, _ = env
    r = create(client, Image="nosuch:1")
    assert r.status_code == 404 and r.json()["message"] == "No such image: nosuch:1"
    assert create(client, name="dup", Cmd=["true"]).status_code == 201
    r = create(client, name="dup", Cmd=["true"])
    assert r.status_code == 409 and 'The container name "/dup" is already in use' in \
        r.json()["message"]
    r = create(client, name="bad name")
    assert r.status_code == 400 and "Invalid container name" in r.json()["message"]
    r = client.post("/containers/create", content=b"{not json",
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and "invalid JSON" in r.json()["message"]
    r = create(client, Cmd=["x"], HostConfig={"Memory": "lots"})
    assert r.status_code == 400
    r = create(client, Cmd=["x"], HostConfig={"AutoRemove": True,
                                              "RestartPolicy": {"Name": "always"}})
    assert r.status_code == 400 and "--rm" in r.json()["message"]
    r = client.post("/containers/create", content=b"x" * (9 << 20),
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and "too large" in r.json()["message"]


def test_start_wait_logs_and_304s(env):
    client, _, _ = env
    cid = create(client, Cmd=["echo", "hello"], name="ec").json()["Id"]
    assert client.post(f"/containers/{cid}/start").status_code == 204
    r = client.post(f"/containers/{cid}/wait")
    assert r.json() == {"Error": None, "StatusCode": 0}
    info = client.get(f"/containers/{cid}/json").json()
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 0
    logs = client.get(f"/containers/{cid}/logs", params={"stdout": 1}).content
    assert logs == b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n"
    logs = client.get(f"/containers/{cid}/logs", params={"stdout": 1, "timestamps": 1}).content
    assert logs[8:].startswith(b"2026-01-01T00:00:00.5Z hello")
    assert client.post(f"/containers/{cid}/stop").status_code == 304
    r = client.post(f"/containers/{cid}/kill")
    assert r.status_code == 409 and "is not running" in r.json()["message"]


def test_stop_running_and_rm_conflict(env):
    client, manager, _ = env
    cid = create(client, Cmd=["sleep", "100"]).json()["Id"]
    assert client.post(f"/containers/{cid}/start").status_code == 204
    assert client.post(f"/containers/{cid}/start").status_code == 304
    r = client.delete(f"/containers/{cid}")
    assert r.status_code == 409 and "You cannot remove a running container" in r.json()["message"]
    assert client.post(f"/containers/{cid}/stop", params={"t": "1"}).status_code == 204
    assert ("kill", cid, 15) in manager.calls
    info = client.get(f"/containers/{cid}/json").json()
    assert info["State"]["ExitCode"] == 143 and not info["State"]["Running"]
    assert client.delete(f"/containers/{cid}", params={"force": "1"}).status_code == 204


def test_start_failure_sets_127(env):
    client, _, _ = env
    cid = create(client, Cmd=["/nonexistent-bin"]).json()["Id"]
    r = client.post(f"/containers/{cid}/start")
    assert r.status_code == 400 and "no such file or directory" in r.json()["message"]
    state = client.get(f"/containers/{cid}/json").json()["State"]
    assert state["ExitCode"] == 127 and state["Status"] == "created" and state["Error"]


def test_autoremove_and_wait_removed(env):
    import threading

    client, manager, daemon = env
    cid = create(client, Cmd=["sleep", "9"], HostConfig={"AutoRemove": True}).json()["Id"]
    client.post(f"/containers/{cid}/start")
    result = {}

    def wait():
        result["r"] = client.post(f"/containers/{cid}/wait", params={"condition": "removed"})

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    assert client.post(f"/containers/{cid}/kill", params={"signal": "SIGINT"}).status_code == 204
    waiter.join(10)
    assert result["r"].json() == {"Error": None, "StatusCode": 130}
    assert cid not in daemon.containers and cid not in manager.containers
    assert client.get(f"/containers/{cid}/json").status_code == 404


def test_restart_policy_on_failure(env):
    client, _, daemon = env
    cid = create(client, Cmd=["exit", "1"], HostConfig={
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}).json()["Id"]
    client.post(f"/containers/{cid}/start")
    deadline = time.time() + 10
    while time.time() < deadline:
        info = client.get(f"/containers/{cid}/json").json()
        if info["RestartCount"] == 2 and info["State"]["Status"] == "exited":
            break
        time.sleep(0.1)
    assert info["RestartCount"] == 2 and info["State"]["Status"] == "exited"


def test_rename_pause_top_stats_events(env):
    client, _, _ = env
    cid = create(client, Cmd=["sleep", "1"], name="old").json()["Id"]
    assert client.post(f"/containers/{cid}/rename", params={"name": "new"}).status_code == 204
    assert client.get("/containers/new/json").json()["Name"] == "/new"
    client.post(f"/containers/{cid}/start")
    assert client.post(f"/containers/{cid}/pause").status_code == 204
    assert client.get(f"/containers/{cid}/json").json()["State"]["Paused"] is True
    assert client.post(f"/containers/{cid}/unpause").status_code == 204
    st = client.get(f"/containers/{cid}/stats", params={"stream": 0, "one-shot": 1}).json()
    assert st["memory_stats"]["usage"] == 4096 and st["name"] == "/new"
    assert st["cpu_stats"]["cpu_usage"]["total_usage"] == 1000
    r = client.get("/events", params={"since": 0, "until": time.time() + 0.1,
                                      "filters": json.dumps({"container": {"new": True}})})
    actions = [json.loads(line)["Action"] for line in r.text.splitlines()]
    assert "start" in actions and "pause" in actions and "unpause" in actions
    client.post(f"/containers/{cid}/kill")


def test_images_list_and_inspect(env):
    client, _, _ = env
    imgs = client.get("/images/json").json()
    assert imgs[0]["RepoTags"] == ["busybox:latest"]
    info = client.get("/images/busybox/json").json()
    assert info["Id"].startswith("sha256:") and info["Config"]["Cmd"] == ["sh"]
    r = client.get("/images/nosuch/json")
    assert r.status_code == 404 and r.json()["message"] == "No such image: nosuch"


def test_restore_from_manager(env, tmp_path):
    client, manager, daemon = env
    cid = create(client, Cmd=["true"], name="keep").json()["Id"]
    fresh = Daemon(manager, daemon.config)
    import asyncio

    asyncio.run(fresh.restore())
    assert fresh.get("keep").id == cid


def test_traceparent_records_request_span(env, tmp_path):
    client, _, _ = env
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = client.get("/v1/version", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    assert r.status_code == 200
    spans = client.get(f"/v1/traces/{trace_id}").json()
    assert spans[0]["name"] == "GET /version" and spans[0]["parent_id"] == "00f067aa0ba902b7"
    assert spans[0]["attrs"]["http.status"] == 200 and spans[0]["service"] == "apid"
    assert client.get("/v1/traces/" + "1" * 32).status_code == 404
    assert client.get("/v1/traces/nothex").status_code == 400


def test_event_bus_replay_then_live_without_duplicates():
    import asyncio

    from dockyard.apid.events import EventBus

    async def scenario():
        bus = EventBus()
        bus.publish("container", "create", "a" * 64, {"name": "x", "image": "busybox"})
        got = []

        async def consume():
            async for msg in bus.subscribe(0, None, {"type": ["container"]}):
                got.append(msg["Action"])
                if len(got) == 1:
                    bus.publish("container", "start", "a" * 64, {"name": "x"})
                    bus.publish("network", "connect", "n", {})
                if len(got) == 2:
                    return

        await asyncio.wait_for(consume(), 5)
        return got

    assert asyncio.run(scenario()) == ["create", "start"]


def test_restore_keeps_never_started_always_container_created(env):
    import asyncio

    client, manager, daemon = env
    cid = create(client, Cmd=["sleep", "1"], name="never",
                 HostConfig={"RestartPolicy": {"Name": "always"}}).json()["Id"]

    async def restored():
        fresh = Daemon(manager, daemon.config)
        await fresh.restore()
        await asyncio.sleep(0.2)
        return fresh.get(cid).state.status

    assert asyncio.run(restored()) == "created"


def test_builtin_networks_and_no_volumes(env):
    client, _, _ = env
    names = [n["Name"] for n in client.get("/networks").json()]
    assert names == ["bridge", "host", "none"]
    assert client.get("/networks/host").json()["Driver"] == "host"
    assert client.get("/networks/nope").status_code == 404
    r = client.post("/networks/create", json={"Name": "x"})  # bridge networking: 201
    assert r.status_code == 201 and client.get("/networks/x").json()["Id"] == r.json()["Id"]
    assert client.delete("/networks/x").status_code == 204
    assert client.get("/volumes").json() == {"Volumes": [], "Warnings": None}


def test_volumes_create_use_remove(env):
    client, manager, _ = env
    r = client.post("/volumes/create", json={"Name": "data1", "Labels": {"k": "v"}})
    assert r.status_code == 201 and r.json()["Mountpoint"].endswith("/volumes/data1/_data")
    cid = create(client, Cmd=["true"], HostConfig={"Binds": ["data1:/data", "anon:/x:ro"]}).json()[
        "Id"]
    spec = manager.containers[cid].spec
    srcs = {m["destination"]: m["source"] for m in spec["mounts"]}
    assert srcs["/data"].endswith("/volumes/data1/_data")
    mounts = {m["Destination"]: m for m in client.get(f"/containers/{cid}/json").json()["Mounts"]}
    assert mounts["/data"]["Type"] == "volume" and mounts["/data"]["Name"] == "data1"
    assert mounts["/x"]["RW"] is False
    r = client.delete("/volumes/data1")
    assert r.status_code == 409 and "in use" in r.json()["message"]
    names = {v["Name"] for v in client.get("/volumes").json()["Volumes"]}
    assert names == {"data1", "anon"}
    assert client.delete(f"/containers/{cid}", params={"v": 1}).status_code == 204
    assert client.delete("/volumes/data1").status_code == 204
    assert client.get("/volumes/data1").status_code == 404
    r = client.post("/volumes/prune", params={"filters": '{"all":["true"]}'})
    assert r.json()["VolumesDeleted"] == ["anon"]


def test_restore_waits_for_managerd(env):
    import asyncio

    from dockyard import errdefs

    client, manager, daemon = env
    create(client, Cmd=["true"], name="later")
    calls = {"n": 0}
    real = manager.list_containers

    async def flaky():
        calls["n"] += 1
        if calls["n"] < 3:
            raise errdefs.Unavailable("managerd is restarting")
        return await real()

    manager.list_containers = flaky

    async def scenario():
        fresh = Daemon(manager, daemon.config)
        await asyncio.wait_for(fresh.restore_when_available(), 10)
        return fresh.get("later").name

    assert asyncio.run(scenario()) == "/later" and calls["n"] == 3


def test_openapi_documents_every_route_and_raw_bodies(env):
    client, _, _ = env
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for path, method in (("/containers/create", "post"), ("/exec/{exec_id}/start", "post"),
                         ("/containers/{ref}/archive", "put"), ("/images/load", "post"),
                         ("/commit", "post")):
        assert "requestBody" in paths[path][method], path
    app = client.app.fastapi
    routed = {r.path for r in app.routes if getattr(r, "include_in_schema", False)}
    assert routed <= set(paths)
    assert doc["info"]["version"] == "1.51"


def test_image_list_filters(env):
    client, _, _ = env
    flt = json.dumps({"until": {"1600000000": True}})
    assert client.get("/images/json", params={"filters": flt}).json() == []
    flt = json.dumps({"reference": {"busy*": True}})
    assert len(client.get("/images/json", params={"filters": flt}).json()) == 1
    flt = json.dumps({"dangling": {"true": True}})
    assert client.get("/images/json", params={"filters": flt}).json() == []


def test_network_prune_keeps_networks_newer_than_until(env):
    client, _, daemon = env
    assert client.post("/networks/create", json={"Name": "old"}).status_code == 201
    assert client.post("/networks/create", json={"Name": "new"}).status_code == 201
    daemon.network.find("old").created = time.time() - 3600
    flt = json.dumps({"until": [str(time.time() - 60)]})
    r = client.post("/networks/prune", params={"filters": flt})
    assert r.status_code == 200 and r.json()["NetworksDeleted"] == ["old"]
    assert client.get("/networks/new").status_code == 200
    # a Go duration, as `docker network prune --filter until=30m` sends it
    daemon.network.find("new").created = time.time() - 3600
    r = client.post("/networks/prune", params={"filters": json.dumps({"until": ["30m"]})})
    assert r.status_code == 200 and r.json()["NetworksDeleted"] == ["new"]


def test_device_mappings_are_read_off_the_event_loop(env, monkeypatch):
    """A --device directory is walked (`--device /` walks the whole host): never on the
    loop that serves every other request."""
    import asyncio

    from dockyard.apid import devices

    client, _, _ = env
    seen = []
    real = devices.resolve

    def resolve(*args, **kwargs):
        try:
            asyncio.get_running_loop()
            seen.append("on the loop")
        except RuntimeError:
            seen.append("in a thread")
        return real(*args, **kwargs)

    monkeypatch.setattr(devices, "resolve", resolve)
    r = create(client, HostConfig={"Devices": [{"PathOnHost": "/dev/null"}]})
    assert r.status_code == 201, r.text
    assert seen == ["in a thread"]
