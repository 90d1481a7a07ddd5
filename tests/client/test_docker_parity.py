"""`dockyard run/create` builds the create body the docker CLI builds, and refuses what it
refuses with the same words: both CLIs are run with the same flags against a fake daemon
(tests/client/fakedaemon.py) that answers `_ping` as a Linux engine and records the body.

Uses docker CLI 28 (/usr/local/bin/docker) or 20.10 (/usr/bin/docker); skips without one.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from typing import Any

import pytest
from dockyard.client.__main__ import main

from .fakedaemon import FakeDaemon, Reply, Request

pytestmark = pytest.mark.timeout(120)

DOCKER = next((p for p in ("/usr/local/bin/docker", "/usr/bin/docker", shutil.which("docker"))
               if p and os.access(p, os.X_OK)), None)

# the HostConfig fields these flags set
FIELDS = ("NetworkMode", "PortBindings", "PublishAllPorts", "Devices", "DeviceCgroupRules",
          "Dns", "DnsSearch", "DnsOptions", "IpcMode", "PidMode", "UTSMode")


def _handler(req: Request) -> Reply:
    if req.path.endswith("/_ping"):
        # one request per connection (the fake does no keep-alive): say so
        return Reply(200, b"", {"API-Version": "1.45", "OSType": "linux",
                                "Connection": "close"})
    if req.method == "POST":
        return Reply(400, {"message": "recorded"}, {"Connection": "close"})
    return Reply(404, {"message": "page not found"})


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    if DOCKER is None:
        pytest.skip("no docker CLI on this machine")
    sock = str(tmp_path_factory.mktemp("parity") / "d.sock")
    with FakeDaemon(sock, _handler) as daemon:
        yield sock, daemon


def _docker(fake, args: list[str], tmp_path) -> tuple[dict | None, str]:
    sock, daemon = fake
    daemon.requests.clear()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(tmp_path / "cfg")}
    r = subprocess.run([DOCKER, "create", *args, "busybox"], capture_output=True, text=True,
                       env=env, timeout=30)
    body = next((q.json() for q in daemon.requests if q.path.endswith("/containers/create")),
                None)
    return body, r.stderr


def _dockyard(fake, args: list[str]) -> tuple[dict | None, str]:
    sock, daemon = fake
    daemon.requests.clear()
    err = io.StringIO()
    os.environ.pop("DOCKYARD_HOST", None)
    main(["-H", f"unix://{sock}", "create", *args, "busybox"], stdout=io.StringIO(),
         stderr=err)
    body = next((q.json() for q in daemon.requests if q.path.endswith("/containers/create")),
                None)
    return body, err.getvalue()


def _endpoints(body: dict) -> dict:
    """EndpointsConfig without the zero values the Go client always sends."""
    out = {}
    for name, ep in (body.get("NetworkingConfig") or {}).get("EndpointsConfig", {}).items():
        out[name] = {k: v for k, v in (ep or {}).items() if v not in (None, "", 0, {}, [])}
    return out


SAME_BODY = [
    ["--device", "/dev/null"],
    ["--device", "/dev/null:rw", "--device", "/dev/zero:/z/../zz", "--device",
     "/dev/full:/f:r"],
    ["--device-cgroup-rule", "c 1:3 rw", "--device-cgroup-rule", "b *:* m"],
    ["--ipc", "host", "--pid", "host", "--uts", "host"],
    ["--ipc", "container:other", "--pid", "container:other"],
    ["--network", "host"],
    ["--net", "none"],
    ["--network", "bridge"],
    ["--network", "container:web"],
    ["--network", "mynet", "--network-alias", "db", "--network-alias", "db2",
     "--ip", "10.1.2.3"],
    ["--network", "name=n1,alias=a1,ip=10.0.0.5,driver-opt=k=v", "--network", "n2"],
    ["--mac-address", "02:42:ac:11:00:02"],
    ["--network", "n1", "--mac-address", "02-42-ac-11-00-03"],
    ["--network", "name=n1,mac-address=02:42:ac:11:00:04"],
    ["-p", "80"],
    ["-p", "8080:80", "-p", "127.0.0.1:8081:81/udp", "-p", "127.0.0.1::82"],
    ["-p", "8000-8002:80-82", "-p", "9000-9005:53/udp"],
    ["-p", "[::1]:8080:80", "-p", "target=90,published=9090,protocol=udp"],
    ["-P", "--expose", "100-102", "--expose", "53/udp"],
    ["--dns", "1.1.1.1", "--dns", " 8.8.8.8 ", "--dns-search", "example.com",
     "--dns-search", ".", "--dns-option", "ndots:2"],
]


@pytest.mark.parametrize("args", SAME_BODY, ids=lambda a: " ".join(a))
def test_create_body_matches_the_docker_cli(fake, tmp_path, args):
    want, derr = _docker(fake, args, tmp_path)
    got, err = _dockyard(fake, args)
    assert want is not None, derr
    assert got is not None, err
    for key in FIELDS:
        assert (got["HostConfig"].get(key) or None) == (want["HostConfig"].get(key) or None), key
    assert (got.get("ExposedPorts") or {}) == (want.get("ExposedPorts") or {})
    assert _endpoints(got) == _endpoints(want)


SAME_ERROR = [
    ["--device", "foo"],
    ["--device", "/dev/a:rwz:r"],
    ["--device", "/dev/a:b"],
    ["--device", "/dev/a:/b:rwx"],
    ["--device", "a:b:c:d"],
    ["--device-cgroup-rule", "foo"],
    ["--dns", "x"],
    ["--dns-search=-bad"],
    ["--dns-search", "123"],
    ["--dns-search", "a..b"],
    ["-p", "80/xyz"],
    ["-p", "1.2.3:80:80"],
    ["-p", "8000-8010:80-85"],
    ["-p", ":"],
    ["-p", "abc"],
    ["-p", "70000"],
    ["-p", "mode=host,target=80,published=90x"],
    ["--expose", "80:90"],
    ["--expose", "90-80"],
    ["--network-alias", "x"],
    ["--network", "name=x,foo=1"],
    ["--network", "a", "--network", "bridge"],
    ["--network", "host", "--network-alias", "x"],
    ["--mac-address", "zz"],
    ["--network", "name=n1,mac-address=02:42:ac:11:00:04", "--mac-address",
     "02:42:ac:11:00:05"],
]


@pytest.mark.parametrize("args", SAME_ERROR, ids=lambda a: " ".join(a))
def test_bad_flags_fail_with_the_docker_cli_message(fake, tmp_path, args):
    want, derr = _docker(fake, args, tmp_path)
    got, err = _dockyard(fake, args)
    assert want is None and got is None
    docker_msg = derr.strip().splitlines()[0].removeprefix("docker: ").rstrip(".")
    ours = err.strip().splitlines()[0].removeprefix("dockyard: ")
    assert ours == docker_msg


def _record(fake, argv_docker: list[str] | None, argv_ours: list[str], tmp_path, path: str
            ) -> tuple[Any, Any, str, str]:
    """Run one network verb through both CLIs; the JSON body each sent to path."""
    sock, daemon = fake
    daemon.requests.clear()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(tmp_path / "cfg")}
    r = subprocess.run([DOCKER, *(argv_docker or argv_ours)], capture_output=True, text=True,
                       env=env, timeout=30)
    want = next((q.json() for q in daemon.requests if q.path.endswith(path)), None)
    daemon.requests.clear()
    err = io.StringIO()
    main(["-H", f"unix://{sock}", *argv_ours], stdout=io.StringIO(), stderr=err)
    got = next((q.json() for q in daemon.requests if q.path.endswith(path)), None)
    return want, got, r.stderr, err.getvalue()


NETWORK_CREATE = [
    ["network", "create", "n1"],
    ["network", "create", "-d", "bridge", "--subnet", "10.5.0.0/24", "--gateway", "10.5.0.1",
     "--ip-range", "10.5.0.0/25", "--internal", "--attachable", "--label", "a=b", "--label",
     "c", "-o", "com.docker.network.bridge.name=dyx", "--aux-address", "h=10.5.0.9", "n1"],
    ["network", "create", "--subnet", "10.6.0.0/16", "--subnet", "10.7.0.0/16",
     "--gateway", "10.7.0.254", "--ipv6=false", "--ipam-opt", "k=v", "n2"],
]


def _strip(body: dict) -> dict:
    out = {k: v for k, v in body.items() if v not in (None, False, "", {}, [])}
    if "IPAM" in out:  # docker builds IPAM.Config from a Go map: its order is random
        out["IPAM"] = {**out["IPAM"], "Config": sorted(out["IPAM"].get("Config") or [],
                                                       key=lambda c: c.get("Subnet", ""))}
    return out


@pytest.mark.parametrize("args", NETWORK_CREATE, ids=lambda a: " ".join(a))
def test_network_create_body_matches_the_docker_cli(fake, tmp_path, args):
    want, got, derr, err = _record(fake, None, args, tmp_path, "/networks/create")
    assert want is not None, derr
    assert got is not None, err
    assert _strip(got) == _strip(want)


@pytest.mark.parametrize("args", [
    ["network", "create", "--gateway", "10.0.0.1", "n"],
    ["network", "create", "--subnet", "10.0.0.0/24", "--gateway", "10.1.0.1", "n"],
    ["network", "create", "--subnet", "10.0.0.0/24", "--ip-range", "10.1.0.0/25", "n"],
    ["network", "create", "--subnet", "10.0.0.0/16", "--subnet", "10.0.1.0/24", "n"],
], ids=lambda a: " ".join(a))
def test_network_create_refuses_what_docker_refuses(fake, tmp_path, args):
    want, got, derr, err = _record(fake, None, args, tmp_path, "/networks/create")
    assert want is None and got is None
    assert err.strip().splitlines()[0].removeprefix("dockyard: ") == \
        derr.strip().splitlines()[0].removeprefix("docker: ").rstrip(".")


@pytest.mark.parametrize("args,path", [
    (["network", "connect", "--alias", "x", "--alias", "y", "--ip", "10.5.0.9", "n1", "c1"],
     "/connect"),
    (["network", "connect", "n1", "c1"], "/connect"),
    (["network", "disconnect", "-f", "n1", "c1"], "/disconnect"),
    (["network", "disconnect", "n1", "c1"], "/disconnect"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else a)
def test_network_connect_body_matches_the_docker_cli(fake, tmp_path, args, path):
    want, got, derr, err = _record(fake, None, args, tmp_path, path)
    assert want is not None, derr
    assert got is not None, err
    want_ep = _strip(want.get("EndpointConfig") or {})
    assert _strip(got.get("EndpointConfig") or {}) == want_ep
    assert got["Container"] == want["Container"]
    assert bool(got.get("Force")) == bool(want.get("Force"))
