"""The default `bridge` network (`--bridge`/`--bip`) with the real docker CLIs and docker-py.

An apid of its own (own managerd namespace, data and exec roots) on the
session's managerd, started with a bridge named `dy` + uuid and a /24 no host
route uses. Checks: eth0 with an address from the subnet and the default
route, /etc/hosts, inspect's NetworkSettings, container-to-container traffic,
`-p`/`-P` through 127.0.0.1, port conflicts, `docker port`, no leftovers
(veths, bridge, iptables chains, proxies) after removal and daemon stop.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
import subprocess
import time
import uuid

import docker
import pytest
from conftest import DOCKER_CLIS, ApidProcess, Stack
from helpers import images
from helpers.network import free_subnet, host_routes, links, settled
from seed import seed_image

pytestmark = pytest.mark.timeout(300)

IMAGE = "dockyard.test/busybox:latest"










class BridgedApid(ApidProcess):
    """conftest's ApidProcess, started with extra environment (the flags' env twins)."""

    def __init__(self, base, managerd: str, env: dict[str, str]) -> None:
        super().__init__(base, managerd)
        self.extra_env = env

    def start(self, timeout: float = 20.0) -> ApidProcess:
        saved = {k: os.environ.get(k) for k in self.extra_env}
        os.environ.update(self.extra_env)
        try:
            return super().start(timeout)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def iptables_chains() -> str:
    out = ""
    for table in ("nat", "filter"):
        out += subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True,
                              text=True).stdout
    return out


@pytest.fixture(scope="module")
def bridged(stack, tmp_path_factory):
    """(Stack, bridge name, subnet) of an apid with a default bridge."""
    bridge = "dy" + uuid.uuid4().hex[:8]
    subnet = free_subnet()
    ns = "dynet" + uuid.uuid4().hex[:6]
    base = tmp_path_factory.mktemp("apid-bridge")
    (base / "docker-config").mkdir()
    seed_image(stack.managerd.address, ns, IMAGE, images.busybox_image(cmd=["sh"]))
    apid = BridgedApid(base, stack.managerd.address, {
        "DOCKYARD_BRIDGE": bridge, "DOCKYARD_BIP": f"{subnet.network_address + 1}/24",
        "DOCKYARD_NAMESPACE": ns})
    apid.start()
    st = Stack(stack.managerd, apid, IMAGE)
    try:
        yield st, bridge, subnet
    finally:
        with st.http() as client:
            for c in client.get("/containers/json", params={"all": 1}).json():
                client.delete(f"/containers/{c['Id']}", params={"force": 1})
            for n in client.get("/networks").json():
                if n["Name"] not in ("bridge", "host", "none"):
                    client.delete(f"/networks/{n['Id']}")
        apid.stop()
        # the daemon's stop removed its bridge and chains; never leave them on a failure
        leftover = bridge in links()
        if leftover:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        tag = hashlib.sha256(os.path.abspath(apid.exec_root).encode()).hexdigest()[:8]
        chains = [line for line in iptables_chains().splitlines() if tag in line]
        for table in ("nat", "filter"):  # only ever this daemon's own rules
            for line in chains:
                if line.startswith("-A ") and ("POSTROUTING" in line or "FORWARD" in line):
                    subprocess.run(["iptables", "-w", "-t", table, "-D", *line.split()[1:]],
                                   capture_output=True)
        assert not leftover, "the default bridge outlived its daemon"
        assert not chains, f"iptables rules outlived their daemon: {chains}"


def run(st: Stack, *args: str, cli: str | None = None, timeout: float = 60
        ) -> subprocess.CompletedProcess:
    r = st.docker(*args, cli=cli, timeout=timeout)
    assert r.returncode == 0, r.stderr.decode() + st.apid.log()
    return r


def inspect(st: Stack, name: str) -> dict:
    return json.loads(run(st, "inspect", name).stdout)[0]


@pytest.mark.parametrize("cli", DOCKER_CLIS)
def test_container_gets_eth0_address_route_hosts(bridged, cli):
    st, bridge, subnet = bridged
    name = f"dy-{uuid.uuid4().hex[:8]}"
    out = run(st, "run", "--name", name, "--add-host", "host.docker.internal:host-gateway",
              st.image, "sh", "-c",
              "ip -o -4 addr show eth0; ip route; cat /etc/hosts; hostname", cli=cli).stdout
    text = out.decode()
    info = inspect(st, name)
    run(st, "rm", name)
    gateway = str(subnet.network_address + 1)
    addr = next(line.split()[3] for line in text.splitlines() if " eth0 " in line)
    ip = ipaddress.IPv4Interface(addr)
    assert ip.network == subnet and str(ip.ip) != gateway
    assert f"default via {gateway} dev eth0" in text
    hostname = text.strip().splitlines()[-1]
    assert f"{ip.ip}\t{hostname}" in text and "127.0.0.1\tlocalhost" in text
    assert f"{gateway}\thost.docker.internal" in text
    # stopped: the network is still there, the address is not (dockerd's inspect)
    net = info["NetworkSettings"]["Networks"]["bridge"]
    assert net["NetworkID"] and net["IPAddress"] == ""


def test_inspect_network_settings_and_network_inspect(bridged):
    st, bridge, subnet = bridged
    name = f"dy-{uuid.uuid4().hex[:8]}"
    run(st, "run", "-d", "--name", name, st.image, "sleep", "60")
    try:
        ns = inspect(st, name)["NetworkSettings"]
        ip = ns["IPAddress"]
        assert ipaddress.IPv4Address(ip) in subnet
        assert ns["Gateway"] == str(subnet.network_address + 1) and ns["IPPrefixLen"] == 24
        octets = ipaddress.IPv4Address(ip).packed
        assert ns["MacAddress"] == "02:42:" + ":".join(f"{b:02x}" for b in octets)
        assert ns["Networks"]["bridge"]["IPAddress"] == ip
        assert ns["SandboxKey"].endswith(inspect(st, name)["Id"])
        net = json.loads(run(st, "network", "inspect", "bridge").stdout)[0]
        assert net["IPAM"]["Config"] == [{"Subnet": str(subnet),
                                          "Gateway": str(subnet.network_address + 1)}]
        assert net["Options"]["com.docker.network.bridge.name"] == bridge
        cid = inspect(st, name)["Id"]
        assert net["Containers"][cid]["IPv4Address"] == f"{ip}/24"
        # the host side: a veth on the bridge, and the bridge carries the gateway
        assert f"master {bridge}" in links()
        r = run(st, "ps", "--format", "{{.Networks}}", "--filter", f"name={name}")
        assert r.stdout.decode().strip() == "bridge"
    finally:
        run(st, "rm", "-f", name)
    assert settled(lambda: f"master {bridge}" not in links()), "veth left after rm -f"


def test_two_containers_talk_over_the_bridge(bridged):
    st, _, _ = bridged
    server = f"dy-{uuid.uuid4().hex[:8]}"
    run(st, "run", "-d", "--name", server, st.image, "sh", "-c",
        "mkdir /www && echo hello-bridge > /www/index.html && httpd -f -p 8080 -h /www")
    try:
        ip = inspect(st, server)["NetworkSettings"]["IPAddress"]
        out = run(st, "run", "--rm", st.image, "sh", "-c", fetch(f"http://{ip}:8080/")).stdout
        assert out == b"hello-bridge\n"
    finally:
        run(st, "rm", "-f", server)


def fetch(url: str) -> str:
    """A shell line that wgets url, retrying while the server starts (busybox wget's own
    -T crashes the static build)."""
    return (f"for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - {url} && exit 0; sleep 0.3; "
            "done; exit 1")


def _get(port: int, path: str = "/") -> bytes:
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
                s.shutdown(socket.SHUT_WR)
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            if data:
                return data
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing served on 127.0.0.1:{port}")
        time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HTTPD = "mkdir /www && echo published > /www/index.html && httpd -f -p 80 -h /www"


@pytest.mark.parametrize("cli", DOCKER_CLIS)
def test_publish_port_and_docker_port(bridged, cli):
    st, bridge, _ = bridged
    name = f"dy-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    run(st, "run", "-d", "--name", name, "-p", f"{port}:80", st.image, "sh", "-c", HTTPD,
        cli=cli)
    try:
        assert _get(port).endswith(b"published\n")
        ports = inspect(st, name)["NetworkSettings"]["Ports"]
        assert {"HostIp": "0.0.0.0", "HostPort": str(port)} in ports["80/tcp"]
        out = run(st, "port", name, cli=cli).stdout.decode()
        assert f"80/tcp -> 0.0.0.0:{port}" in out
        ps = run(st, "ps", "--filter", f"name={name}", "--format", "{{.Ports}}",
                 cli=cli).stdout.decode()
        assert f"0.0.0.0:{port}->80/tcp" in ps
        # a second container on the same port: dockerd's error, nothing left behind
        other = f"dy-{uuid.uuid4().hex[:8]}"
        r = st.docker("run", "-d", "--name", other, "-p", f"{port}:80", st.image, "sleep", "9",
                      cli=cli)
        assert r.returncode == 125
        assert b"port is already allocated" in r.stderr
        assert inspect(st, other)["State"]["Status"] == "created"
        assert settled(lambda: links().count(f"master {bridge}") == 1), \
            "the failed start left its veth"
        assert inspect(st, other)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""
        run(st, "rm", other)
    finally:
        run(st, "rm", "-f", name)
    with pytest.raises(OSError):  # the proxy stopped with the container
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_publish_all_and_ephemeral_with_docker_py(bridged):
    st, _, _ = bridged
    client = docker.DockerClient(base_url=st.apid.host, version="auto")
    ctr = client.containers.run(st.image, ["sh", "-c", HTTPD], detach=True,
                                ports={"80/tcp": ("127.0.0.1", None)},
                                name=f"dy-{uuid.uuid4().hex[:8]}")
    try:
        ctr.reload()
        binding = ctr.ports["80/tcp"][0]
        assert binding["HostIp"] == "127.0.0.1" and int(binding["HostPort"]) > 0
        assert _get(int(binding["HostPort"])).endswith(b"published\n")
    finally:
        ctr.remove(force=True)
    name = f"dy-{uuid.uuid4().hex[:8]}"
    run(st, "create", "--name", name, "--expose", "80", "-P", st.image, "sh", "-c", HTTPD)
    try:
        run(st, "start", name)
        port = int(inspect(st, name)["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
        assert _get(port).endswith(b"published\n")
    finally:
        run(st, "rm", "-f", name)
    client.close()


def test_network_none_and_host_keep_working(bridged):
    st, bridge, _ = bridged
    out = run(st, "run", "--rm", "--network", "none", st.image, "sh", "-c",
              "ip -o link").stdout
    assert b"eth0" not in out and b"lo" in out
    out = run(st, "run", "--rm", "--network", "host", st.image, "sh", "-c",
              "ip -o link").stdout
    assert bridge.encode() in out  # the host's links, our bridge among them


def test_masquerade_chain_is_the_daemons_own(bridged):
    st, bridge, subnet = bridged
    rules = iptables_chains()
    if "DOCKYARD-NAT-" not in rules:
        pytest.skip("iptables unusable here")
    assert f"-s {subnet} ! -o {bridge} -j MASQUERADE" in rules


def test_apid_killed_and_restarted(bridged):
    """kill -9 of apid: a running container keeps its address and gets its published port
    back; one that exited meanwhile loses its veth and address; the chains' jumps are not
    duplicated."""
    st, bridge, subnet = bridged
    keep, gone = f"dy-{uuid.uuid4().hex[:8]}", f"dy-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    run(st, "run", "-d", "--name", keep, "-p", f"127.0.0.1:{port}:80", st.image, "sh", "-c",
        HTTPD)
    run(st, "run", "-d", "--name", gone, st.image, "sleep", "2")
    try:
        ip = inspect(st, keep)["NetworkSettings"]["IPAddress"]
        gone_ip = inspect(st, gone)["NetworkSettings"]["IPAddress"]
        assert _get(port).endswith(b"published\n")
        st.apid.proc.kill()
        st.apid.proc.wait()
        time.sleep(3)  # `gone` exits while apid is away
        st.apid.start()
        assert inspect(st, keep)["NetworkSettings"]["IPAddress"] == ip
        assert _get(port).endswith(b"published\n")
        assert inspect(st, gone)["State"]["Status"] == "exited"
        assert settled(lambda: links().count(f"master {bridge}") == 1)
        net = json.loads(run(st, "network", "inspect", "bridge").stdout)[0]
        assert gone_ip not in json.dumps(net["Containers"])
        nat = subprocess.run(["iptables", "-w", "-t", "nat", "-S", "POSTROUTING"],
                             capture_output=True, text=True).stdout
        if "DOCKYARD-NAT-" in nat:
            chains = [line for line in nat.splitlines() if "-j DOCKYARD-NAT-" in line]
            assert len(chains) == len(set(chains)), nat
    finally:
        run(st, "rm", "-f", keep, gone)


def test_without_bip_a_free_private_range_is_picked(stack, tmp_path):
    """--bridge without --bip: the first of dockerd's pools no host route overlaps, kept
    across a restart; the bridge goes at stop."""
    bridge = "dy" + uuid.uuid4().hex[:8]
    (tmp_path / "docker-config").mkdir()
    apid = BridgedApid(tmp_path, stack.managerd.address, {
        "DOCKYARD_BRIDGE": bridge, "DOCKYARD_NAMESPACE": "dynet" + uuid.uuid4().hex[:6]})
    before = host_routes()
    apid.start()
    try:
        st = Stack(stack.managerd, apid, IMAGE)
        cfg = json.loads(run(st, "network", "inspect", "bridge").stdout)[0]["IPAM"]["Config"][0]
        subnet = ipaddress.IPv4Network(cfg["Subnet"])
        pools = [ipaddress.IPv4Network(f"172.{n}.0.0/16") for n in range(17, 32)] + [
            ipaddress.IPv4Network(f"192.168.{n}.0/20") for n in range(0, 256, 16)]
        assert subnet in pools
        assert not any(subnet.overlaps(r) for r in before)
        assert cfg["Gateway"] == str(subnet.network_address + 1)
        apid.restart()
        again = json.loads(run(st, "network", "inspect", "bridge").stdout)[0]
        assert again["IPAM"]["Config"][0]["Subnet"] == str(subnet)
    finally:
        apid.stop()
        if bridge in links():
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
            pytest.fail("the default bridge outlived its daemon")


@pytest.mark.parametrize("cli", DOCKER_CLIS)
def test_mac_address(bridged, cli):
    st, _, _ = bridged
    name = f"dy-{uuid.uuid4().hex[:8]}"
    mac = "02:42:de:ad:be:ef"
    out = run(st, "run", "--name", name, "--mac-address", mac, st.image, "sh", "-c",
              "cat /sys/class/net/eth0/address", cli=cli).stdout.decode().strip()
    try:
        assert out == mac
        assert inspect(st, name)["NetworkSettings"]["Networks"]["bridge"]["NetworkID"]
    finally:
        run(st, "rm", name)
    with st.http() as client:  # the CLIs check the syntax themselves: the API directly
        r = client.post("/containers/create", json={
            "Image": st.image, "Cmd": ["true"], "NetworkingConfig": {"EndpointsConfig": {
                "bridge": {"MacAddress": "zz:42"}}}})
        assert r.status_code == 400 and "invalid MAC address" in r.json()["message"]


def test_host_devices_that_are_not_bridges_are_refused(bridged, stack, tmp_path):
    """--bridge or a network's bridge name naming a non-bridge device: refused, and the
    device keeps its state (no address added, not deleted)."""
    st, _, _ = bridged
    dummy = "dy" + uuid.uuid4().hex[:8]
    # a veth pair stands for a host device (no dummy module here)
    subprocess.run(["ip", "link", "add", dummy, "type", "veth", "peer", "name", dummy + "p"],
                   check=True)
    try:
        r = st.docker("network", "create", "-o", f"com.docker.network.bridge.name={dummy}",
                      "--subnet", str(free_subnet()), f"dynet-{uuid.uuid4().hex[:6]}")
        assert r.returncode == 1 and b"already in use" in r.stderr
        (tmp_path / "docker-config").mkdir()
        apid = BridgedApid(tmp_path, stack.managerd.address, {
            "DOCKYARD_BRIDGE": dummy, "DOCKYARD_NAMESPACE": "dynet" + uuid.uuid4().hex[:6]})
        with pytest.raises(RuntimeError, match="is not a bridge"):
            apid.start(timeout=15)
        apid.stop()
        out = subprocess.run(["ip", "-o", "addr", "show", dummy], capture_output=True,
                             text=True).stdout
        assert "inet " not in out and dummy in links()
    finally:
        subprocess.run(["ip", "link", "del", dummy], capture_output=True)


def test_container_mode_shares_a_bridged_namespace(bridged):
    st, _, subnet = bridged
    name = f"dy-{uuid.uuid4().hex[:8]}"
    run(st, "run", "-d", "--name", name, st.image, "sleep", "60")
    try:
        ip = inspect(st, name)["NetworkSettings"]["IPAddress"]
        out = run(st, "run", "--rm", "--network", f"container:{name}", st.image, "sh", "-c",
                  "ip -o -4 addr show eth0").stdout.decode()
        assert f"inet {ip}/24" in out
        r = st.docker("run", "--rm", "--network", f"container:{name}", "-p", "80", st.image,
                      "true")
        assert r.returncode == 125 and b"conflicting options" in r.stderr
    finally:
        run(st, "rm", "-f", name)
