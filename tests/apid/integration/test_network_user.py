"""User-defined networks with the real docker CLIs and docker-py: the networks API,
name resolution by /etc/hosts, isolation between networks, live connect/disconnect,
EndpointsConfig, and state that survives an apid restart.

Uses test_network_bridge's `bridged` apid (its own namespace, roots and default bridge).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid

import docker
import pytest
import test_network_bridge
from conftest import DOCKER_CLIS
from docker.types import EndpointConfig, IPAMConfig, IPAMPool
from test_network_bridge import (
    HTTPD,
    _free_port,
    _get,
    fetch,
    free_subnet,
    inspect,
    links,
    run,
    settled,
)

pytestmark = pytest.mark.timeout(300)

bridged = test_network_bridge.bridged  # the module fixture: an apid of this module's own


def uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def net(bridged):
    """A fresh user network (name, subnet); removed afterwards with its containers."""
    st = bridged[0]
    name, subnet = f"dynet-{uid()}", free_subnet()
    run(st, "network", "create", "--subnet", str(subnet), "--label", "dy=1", name)
    yield name, subnet
    _drop_network(st, name)


def _drop_network(st, name: str) -> None:
    with st.http() as client:
        info = client.get(f"/networks/{name}").json()
        for cid in (info.get("Containers") or {}):
            client.delete(f"/containers/{cid}", params={"force": 1})
        for c in client.get("/containers/json", params={"all": 1}).json():
            if name in (c.get("NetworkSettings") or {}).get("Networks", {}):
                client.delete(f"/containers/{c['Id']}", params={"force": 1})
        client.delete(f"/networks/{name}")


def test_create_inspect_ls_and_errors(bridged, net):
    st = bridged[0]
    name, subnet = net
    info = json.loads(run(st, "network", "inspect", name).stdout)[0]
    assert info["Driver"] == "bridge" and info["Scope"] == "local"
    assert info["IPAM"]["Config"] == [{"Subnet": str(subnet),
                                       "Gateway": str(subnet.network_address + 1)}]
    assert info["Labels"] == {"dy": "1"} and info["Internal"] is False
    bridge = f"br-{info['Id'][:12]}"
    assert bridge in links()
    ls = run(st, "network", "ls", "--filter", f"name={name}", "--format",
             "{{.Name}} {{.Driver}}").stdout.decode().split("\n")
    assert f"{name} bridge" in ls
    r = st.docker("network", "create", name)
    assert r.returncode == 1 and b"network with name " + name.encode() + b" already exists" \
        in r.stderr
    r = st.docker("network", "create", "--subnet", str(subnet), f"dynet-{uid()}")
    assert r.returncode == 1 and b"overlaps" in r.stderr
    with st.http() as client:
        r = client.post("/networks/create", json={"Name": f"dynet-{uid()}", "IPAM": {
            "Config": [{"Subnet": "10.999.0.0/16"}]}})
        assert r.status_code == 400 and "invalid CIDR address" in r.json()["message"]
        assert client.post("/networks/create", json={"Name": name}).status_code == 409
        r = client.delete("/networks/dynet-none-such")
        assert r.status_code == 404 and r.json()["message"] == "network dynet-none-such not found"
        assert client.delete("/networks/bridge").status_code == 403
    r = st.docker("run", "--rm", "--network", "dynet-none-such", st.image, "true")
    assert r.returncode == 125 and b"network dynet-none-such not found" in r.stderr
    run(st, "network", "rm", name)
    assert bridge not in links(), "the network's bridge outlived it"
    run(st, "network", "create", "--subnet", str(subnet), name)  # for the fixture's cleanup


def test_members_resolve_each_other_and_talk(bridged, net):
    st = bridged[0]
    name, subnet = net
    server = f"dy-{uid()}"
    run(st, "run", "-d", "--name", server, "--network", name, "--network-alias", "web",
        st.image, "sh", "-c",
        "mkdir /www && echo hello-user-net > /www/index.html && httpd -f -p 8080 -h /www")
    for host in (server, "web"):
        out = run(st, "run", "--rm", "--network", name, st.image, "sh", "-c",
                  fetch(f"http://{host}:8080/")).stdout
        assert out == b"hello-user-net\n"
    # the server learns of a client that starts after it (its /etc/hosts is rewritten)
    client = f"dy-{uid()}"
    run(st, "run", "-d", "--name", client, "--network", name, st.image, "sleep", "60")
    hosts = run(st, "exec", server, "cat", "/etc/hosts").stdout.decode()
    cip = inspect(st, client)["NetworkSettings"]["Networks"][name]["IPAddress"]
    assert f"{cip}\t{client}" in hosts
    renamed = f"dy-{uid()}"
    run(st, "rename", client, renamed)
    hosts = run(st, "exec", server, "cat", "/etc/hosts").stdout.decode()
    assert f"{cip}\t{renamed}" in hosts and f"\t{client} " not in hosts
    run(st, "rm", "-f", renamed)
    hosts = run(st, "exec", server, "cat", "/etc/hosts").stdout.decode()
    assert renamed not in hosts
    net_info = json.loads(run(st, "network", "inspect", name).stdout)[0]
    sid = inspect(st, server)["Id"]
    assert net_info["Containers"][sid]["Name"] == server


def test_networks_are_isolated(bridged, net):
    st = bridged[0]
    name, _ = net
    other, other_subnet = f"dynet-{uid()}", free_subnet()
    run(st, "network", "create", "--subnet", str(other_subnet), other)
    try:
        target = f"dy-{uid()}"
        run(st, "run", "-d", "--name", target, "--network", name, st.image, "sleep", "60")
        ip = inspect(st, target)["NetworkSettings"]["Networks"][name]["IPAddress"]
        same = st.docker("run", "--rm", "--network", name, st.image, "ping", "-c", "1",
                         "-W", "2", ip)
        assert same.returncode == 0, same.stdout + same.stderr
        cross = st.docker("run", "--rm", "--network", other, st.image, "ping", "-c", "1",
                          "-W", "2", ip)
        rules = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
        if "DOCKYARD-FWD-" not in rules:
            pytest.skip("iptables unusable: no isolation rules")
        assert cross.returncode != 0, "a container reached another network's member"
    finally:
        _drop_network(st, other)


def test_connect_and_disconnect_a_running_container(bridged, net):
    st = bridged[0]
    name, subnet = net
    other, other_subnet = f"dynet-{uid()}", free_subnet()
    run(st, "network", "create", "--subnet", str(other_subnet), other)
    ctr = f"dy-{uid()}"
    try:
        run(st, "run", "-d", "--name", ctr, "--network", name, st.image, "sleep", "120")
        run(st, "network", "connect", "--alias", "extra", other, ctr)
        addrs = run(st, "exec", ctr, "sh", "-c", "ip -o -4 addr").stdout.decode()
        assert " eth1 " in addrs and str(other_subnet)[:-5].rsplit(".", 1)[0] in addrs
        nets = inspect(st, ctr)["NetworkSettings"]["Networks"]
        assert set(nets) == {name, other} and nets[other]["Aliases"] == ["extra"]
        r = st.docker("network", "rm", other)
        assert r.returncode == 1 and b"has active endpoints" in r.stderr
        run(st, "network", "disconnect", other, ctr)
        addrs = run(st, "exec", ctr, "sh", "-c", "ip -o -4 addr").stdout.decode()
        assert " eth1 " not in addrs and " eth0 " in addrs
        r = st.docker("network", "disconnect", other, ctr)
        assert r.returncode == 1 and b"is not connected" in r.stderr
    finally:
        run(st, "rm", "-f", ctr)
        _drop_network(st, other)


def test_docker_py_ipam_endpoint_config_internal_and_prune(bridged):
    st = bridged[0]
    client = docker.DockerClient(base_url=st.apid.host, version="auto")
    subnet = free_subnet()
    name = f"dynet-{uid()}"
    network = client.networks.create(name, driver="bridge", internal=True, ipam=IPAMConfig(
        pool_configs=[IPAMPool(subnet=str(subnet), gateway=str(subnet.network_address + 1))]),
        labels={"dy": "py"})
    try:
        network.reload()
        assert network.attrs["Internal"] is True and network.attrs["Labels"] == {"dy": "py"}
        want = str(subnet.network_address + 10)
        api = client.api
        ctr = api.create_container(st.image, ["sleep", "60"], name=f"dy-{uid()}",
                                   host_config=api.create_host_config(network_mode=name),
                                   networking_config=api.create_networking_config({
                                       name: EndpointConfig(api.api_version,
                                                            ipv4_address=want,
                                                            aliases=["py-alias"])}))
        api.start(ctr)
        nets = api.inspect_container(ctr)["NetworkSettings"]["Networks"]
        assert nets[name]["IPAddress"] == want and "py-alias" in nets[name]["Aliases"]
        assert nets[name]["IPAMConfig"] == {"IPv4Address": want}
        # internal: no default route out of the network
        out = api.exec_start(api.exec_create(ctr, ["sh", "-c", "ip route"]))
        assert b"default" not in out
        api.remove_container(ctr, force=True)
        prune = client.networks.prune(filters={"label": "dy=py"})
        assert name in (prune.get("NetworksDeleted") or [])
    finally:
        _drop_network(st, name)
        client.close()


def test_restart_keeps_networks_addresses_and_ports(bridged, net):
    st = bridged[0]
    name, subnet = net
    ctr = f"dy-{uid()}"
    port = _free_port()
    run(st, "run", "-d", "--name", ctr, "--network", name, "-p", f"127.0.0.1:{port}:80",
        st.image, "sh", "-c", HTTPD)
    assert _get(port).endswith(b"published\n")
    before = inspect(st, ctr)["NetworkSettings"]["Networks"][name]
    net_id = json.loads(run(st, "network", "inspect", name).stdout)[0]["Id"]
    st.apid.restart()
    assert json.loads(run(st, "network", "inspect", name).stdout)[0]["Id"] == net_id
    after = inspect(st, ctr)["NetworkSettings"]["Networks"][name]
    assert after["IPAddress"] == before["IPAddress"] and after["MacAddress"] == before[
        "MacAddress"]
    assert _get(port).endswith(b"published\n")  # the proxy is back on the same port
    # the restored allocation is honoured: a new member gets another address
    other = f"dy-{uid()}"
    run(st, "run", "-d", "--name", other, "--network", name, st.image, "sleep", "30")
    assert inspect(st, other)["NetworkSettings"]["Networks"][name]["IPAddress"] != \
        before["IPAddress"]
    run(st, "rm", "-f", other, ctr)
    assert settled(lambda: "master br-" + net_id[:12] not in links()), "veths left after rm -f"


COMPOSE = """\
version: "2.4"
services:
  web:
    image: {image}
    stop_grace_period: 1s  # httpd as pid 1 ignores SIGTERM
    command: ["sh", "-c", "mkdir /www && echo compose-ok > /www/index.html && httpd -f -p 8080 -h /www"]
  client:
    image: {image}
    depends_on: [web]
    command: ["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do wget -q -O - http://web:8080/ && exit 0; sleep 0.5; done; exit 1"]
"""


def test_docker_compose_default_network(bridged, tmp_path):
    """docker-compose creates <project>_default and its services find each other by name."""
    exe = shutil.which("docker-compose")
    if not exe:
        pytest.skip("Debian's docker-compose is not installed (scripts/install.sh --test)")
    st = bridged[0]
    (tmp_path / "docker-compose.yml").write_text(COMPOSE.format(image=st.image))
    project = f"dyproj{uid()}"
    env = dict(st.env, COMPOSE_PROJECT_NAME=project)

    def compose(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([exe, *args], cwd=tmp_path, env=env, capture_output=True,
                              timeout=120)

    try:
        r = compose("up", "--abort-on-container-exit", "--exit-code-from", "client")
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode() + st.apid.log()
        assert b"compose-ok" in r.stdout
        info = json.loads(run(st, "network", "inspect", f"{project}_default").stdout)[0]
        assert info["Labels"]["com.docker.compose.project"] == project
    finally:
        r = compose("down")
        assert r.returncode == 0, r.stderr.decode()
    assert st.docker("network", "inspect", f"{project}_default").returncode == 1


@pytest.mark.parametrize("cli", DOCKER_CLIS)
def test_network_verbs_with_each_cli(bridged, cli):
    """create / ls / inspect / run --network --ip --network-alias / connect / disconnect /
    rm / prune as each docker CLI sends them."""
    st = bridged[0]
    name, subnet = f"dynet-{uid()}", free_subnet()
    ip = str(subnet.network_address + 7)
    since = f"{time.time() - 1:.3f}"
    run(st, "network", "create", "--subnet", str(subnet), "--gateway",
        str(subnet.network_address + 254), name, cli=cli)
    ctr = f"dy-{uid()}"
    try:
        info = json.loads(run(st, "network", "inspect", name, cli=cli).stdout)[0]
        assert info["IPAM"]["Config"][0]["Gateway"] == str(subnet.network_address + 254)
        out = run(st, "network", "ls", "--format", "{{.Name}}", cli=cli).stdout.decode()
        assert name in out.split()
        run(st, "run", "-d", "--name", ctr, "--network", name, "--ip", ip,
            "--network-alias", "svc", st.image, "sleep", "60", cli=cli)
        routes = run(st, "exec", ctr, "sh", "-c", "ip -o -4 addr; ip route", cli=cli).stdout
        assert f"inet {ip}/24".encode() in routes
        assert f"default via {subnet.network_address + 254}".encode() in routes
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        assert run(st, "inspect", "-f", fmt, ctr, cli=cli).stdout.decode().strip() == ip
        run(st, "network", "disconnect", name, ctr, cli=cli)
        assert b"eth0" not in run(st, "exec", ctr, "sh", "-c", "ip -o link",
                                  cli=cli).stdout
        run(st, "network", "connect", name, ctr, cli=cli)
        assert b"eth0" in run(st, "exec", ctr, "sh", "-c", "ip -o link", cli=cli).stdout
        run(st, "rm", "-f", ctr, cli=cli)
        out = run(st, "network", "prune", "-f", "--filter", "label!=keep", cli=cli).stdout
        assert name.encode() in out
        events = run(st, "events", "--since", since, "--until", f"{time.time() + 1:.3f}",
                     "--filter", "type=network", "--filter", f"network={name}", "--format",
                     "{{.Action}}", cli=cli).stdout.decode().split()
        for action in ("create", "connect", "disconnect", "destroy"):
            assert action in events, events
    finally:
        st.docker("rm", "-f", ctr)
        st.docker("network", "rm", name)


def test_ip_range_and_aux_address(bridged):
    st = bridged[0]
    name, subnet = f"dynet-{uid()}", free_subnet()
    base = subnet.network_address
    run(st, "network", "create", "--subnet", str(subnet), "--ip-range", f"{base + 128}/25",
        "--aux-address", f"router={base + 129}", name)
    try:
        cfg = json.loads(run(st, "network", "inspect", name).stdout)[0]["IPAM"]["Config"][0]
        assert cfg["IPRange"] == f"{base + 128}/25"
        assert cfg["AuxiliaryAddresses"] == {"router": str(base + 129)}
        out = run(st, "run", "--rm", "--network", name, st.image, "sh", "-c",
                  "ip -o -4 addr show eth0").stdout.decode()
        assert f"inet {base + 130}/24" in out
    finally:
        _drop_network(st, name)


def test_parallel_starts_get_distinct_addresses_and_full_hosts(bridged, net):
    """8 containers started at once on one network: 8 addresses, and every member's
    /etc/hosts names every other member."""
    from concurrent.futures import ThreadPoolExecutor

    st = bridged[0]
    name, subnet = net
    names = [f"dy-{uid()}" for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: st.docker("run", "-d", "--name", n, "--network",
                                                    name, st.image, "sleep", "120"), names))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    ips = {n: inspect(st, n)["NetworkSettings"]["Networks"][name]["IPAddress"] for n in names}
    assert len(set(ips.values())) == 8
    for n in names:
        hosts = run(st, "exec", n, "cat", "/etc/hosts").stdout.decode()
        for other in names:
            if other != n:
                assert f"{ips[other]}\t{other}" in hosts, (n, hosts)
    run(st, "rm", "-f", *names)
