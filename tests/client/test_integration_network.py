"""`dockyard` networking verbs and run/create's network, port, device, namespace and DNS
flags, driven as a user would against a real apid + managerd (+ the shim).

One engine for the module, started with a default bridge of its own (`dy` + uuid, a
10.x.y.0/24 no host route uses), so -p, user networks, aliases and connect/disconnect
work as they do on a machine set up by scripts/setup.sh. Every user network is created
with a `dy`-named bridge and its own free subnet and removed by the test (the engine's
stop removes what a failing test left).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest
from helpers.network import free_subnet, links

from .engine import Engine, EngineUnavailable, cleanup

pytestmark = [pytest.mark.privileged, pytest.mark.slow, pytest.mark.timeout(300)]

HTTPD = "mkdir /www && echo {text} > /www/index.html && httpd -f -p 80 -h /www"


def uid() -> str:
    return uuid.uuid4().hex[:8]








@pytest.fixture(scope="module")
def bridged(tmp_path_factory):
    """An engine whose apid runs a default bridge (as the system engine of setup.sh does)."""
    bridge = "dy" + uid()
    subnet = free_subnet()
    base = tmp_path_factory.mktemp("dy-net-engine")
    eng = Engine(base, {"DOCKYARD_BRIDGE": bridge,
                        "DOCKYARD_BIP": f"{subnet.network_address + 1}/24"})
    try:
        eng.start()
        eng.ensure_busybox(base / "busybox.tar")
    except EngineUnavailable as e:
        eng.stop()
        cleanup(base)
        pytest.skip(f"no working engine: {e}")
    try:
        yield eng, bridge, subnet
    finally:
        eng.stop()
        cleanup(base)
        if bridge in links():  # the daemon's stop removes it; never leave it on a failure
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        assert bridge not in links(), "the default bridge outlived its daemon"


def ok(eng: Engine, *args: str, timeout: float = 60) -> str:
    r = eng.cli(*args, timeout=timeout)
    assert r.returncode == 0, f"dockyard {' '.join(args)}: {r.stderr}\n{eng.log('apid')}"
    return r.stdout


@pytest.fixture
def net(bridged):
    """A user network: (name, subnet, bridge device); removed afterwards."""
    eng = bridged[0]
    name, subnet, dev = f"dynet-{uid()}", free_subnet(), "dy" + uid()
    ok(eng, "network", "create", "--subnet", str(subnet), "--label", "dy=1",
       "-o", f"com.docker.network.bridge.name={dev}", name)
    yield name, subnet, dev
    ids = eng.cli("ps", "-aq", "--filter", f"network={name}").stdout.split()
    if ids:
        eng.cli("rm", "-f", *ids)
    eng.cli("network", "rm", "-f", name)


def test_network_create_ls_inspect_rm(bridged):
    eng = bridged[0]
    name, subnet, dev = f"dynet-{uid()}", free_subnet(), "dy" + uid()
    gateway = str(subnet.network_address + 254)
    nid = ok(eng, "network", "create", "--subnet", str(subnet), "--gateway", gateway,
             "--internal", "--label", "dy=1", "-o",
             f"com.docker.network.bridge.name={dev}", name).strip()
    try:
        assert len(nid) == 64 and dev in links()
        table = ok(eng, "network", "ls").splitlines()
        assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
        assert f"{nid[:12]}   {name}   bridge    local" in table
        assert any(line.split()[1:] == ["bridge", "bridge", "local"] for line in table[1:])
        assert any(line.split()[1:] == ["host", "host", "local"] for line in table[1:])
        assert ok(eng, "network", "ls", "-q", "--filter", f"name={name}",
                  "--no-trunc").split() == [nid]
        row = json.loads(ok(eng, "network", "ls", "--filter", "label=dy=1", "--format",
                            "json").splitlines()[0])
        assert row["Name"] == name and row["Internal"] == "true" and row["Labels"] == "dy=1"
        info = json.loads(ok(eng, "network", "inspect", name))[0]
        assert info["Id"] == nid and info["Internal"] is True
        assert info["IPAM"]["Config"] == [{"Subnet": str(subnet), "Gateway": gateway}]
        assert ok(eng, "network", "inspect", "-f", "{{.Driver}} {{.Scope}}", name) == \
            "bridge local\n"
        r = eng.cli("network", "create", "--subnet", str(free_subnet()), name)
        assert r.returncode == 1
        assert r.stderr == f"Error response from daemon: network with name {name} already " \
                           "exists\n"
        r = eng.cli("network", "create", "--subnet", str(subnet), f"dynet-{uid()}")
        assert r.returncode == 1 and "Pool overlaps with other one" in r.stderr
        # what apid does not do, it says so; the CLI shows its words
        r = eng.cli("network", "create", "-d", "overlay", f"dynet-{uid()}")
        assert r.returncode == 1 and r.stderr.startswith("Error response from daemon: ")
        assert "overlay" in r.stderr
        r = eng.cli("network", "create", "--ipv6", f"dynet-{uid()}")
        assert r.returncode == 1 and "IPv6" in r.stderr
    finally:
        r = eng.cli("network", "rm", name, "dynet-nosuch")
    assert r.stdout == f"{name}\n" and r.returncode == 1
    assert "Error response from daemon: network dynet-nosuch not found" in r.stderr
    assert dev not in links()
    r = eng.cli("network", "inspect", name)
    assert r.returncode == 1 and f"network {name} not found" in r.stderr


def test_network_prune_removes_only_unused_networks(bridged, net):
    eng = bridged[0]
    name = net[0]
    cid = ok(eng, "run", "-d", "--network", name, "busybox", "sleep", "60").strip()
    spare, dev = f"dynet-{uid()}", "dy" + uid()
    ok(eng, "network", "create", "--subnet", str(free_subnet()), "--label", "dyprune=1",
       "-o", f"com.docker.network.bridge.name={dev}", spare)
    # only the labelled spare network goes (the used one stays whatever its labels)
    out = ok(eng, "network", "prune", "-f", "--filter", "label=dyprune=1")
    assert out == f"Deleted Networks:\n{spare}\n\n"
    assert dev not in links()
    assert eng.cli("network", "inspect", name).returncode == 0
    ok(eng, "rm", "-f", cid)


def test_run_on_a_user_network_with_alias_and_ip(bridged, net):
    eng = bridged[0]
    name, subnet, _ = net
    ip = str(subnet.network_address + 77)
    db = f"dy-db-{uid()}"
    ok(eng, "run", "-d", "--name", db, "--network", name, "--network-alias", "store",
       "--ip", ip, "busybox", "sleep", "60")
    assert ok(eng, "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{name}")'
                                    '.IPAddress}}', db) == f"{ip}\n"
    # a peer on the same network reaches it by its alias (apid writes /etc/hosts)
    out = ok(eng, "run", "--rm", "--network", name, "busybox", "sh", "-c",
             "grep -w store /etc/hosts && ping -c 1 -W 2 store")
    assert ip in out and "1 packets received" in out
    # a container on the default bridge does not
    r = eng.cli("run", "--rm", "busybox", "ping", "-c", "1", "-W", "1", "store")
    assert r.returncode != 0
    # a fixed address on the default bridge: apid's refusal, as dockerd words it
    r = eng.cli("run", "--rm", "--ip", str(subnet.network_address + 78), "busybox", "true")
    assert r.returncode == 125 and "user specified IP address is supported on user " \
        "defined networks only" in r.stderr
    # an alias on the default network is refused by the CLI, as docker does
    r = eng.cli("run", "--rm", "--network-alias", "x", "busybox", "true")
    assert r.returncode == 125
    assert "network-scoped aliases are only supported for user-defined networks" in r.stderr


def test_network_connect_and_disconnect_a_running_container(bridged, net):
    eng = bridged[0]
    name, subnet, _ = net
    c = f"dy-conn-{uid()}"
    ok(eng, "run", "-d", "--name", c, "busybox", "sleep", "60")
    ip = str(subnet.network_address + 9)
    assert ok(eng, "network", "connect", "--alias", "joined", "--ip", ip, name, c) == ""
    assert f"inet {ip}/24" in ok(eng, "exec", c, "ip", "-o", "-4", "addr")
    info = json.loads(ok(eng, "network", "inspect", name))[0]
    assert [v["Name"] for v in info["Containers"].values()] == [c]
    assert ok(eng, "network", "disconnect", name, c) == ""
    assert f"inet {ip}/" not in ok(eng, "exec", c, "ip", "-o", "-4", "addr")
    r = eng.cli("network", "disconnect", name, c)
    assert r.returncode == 1 and "is not connected to network" in r.stderr
    ok(eng, "rm", "-f", c)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_get(url: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_publish_and_port(bridged):
    eng = bridged[0]
    c = f"dy-pub-{uid()}"
    host_port = _free_port()
    ok(eng, "run", "-d", "--name", c, "-p", f"127.0.0.1:{host_port}:80", "-p",
       "127.0.0.1::81/udp", "--expose", "90-91", "busybox", "sh", "-c",
       HTTPD.format(text="published-" + c))
    try:
        assert _http_get(f"http://127.0.0.1:{host_port}/") == f"published-{c}\n"
        assert ok(eng, "port", c, "80") == f"127.0.0.1:{host_port}\n"
        lines = ok(eng, "port", c).splitlines()
        assert lines[0] == f"80/tcp -> 127.0.0.1:{host_port}"
        assert lines[1].startswith("81/udp -> 127.0.0.1:") and len(lines) == 2
        r = eng.cli("port", c, "90")
        assert r.returncode == 1
        assert r.stderr == f"Error: No public port '90' published for {c}\n"
        ps = ok(eng, "ps", "--filter", f"name={c}", "--format", "{{.Ports}}")
        assert f"127.0.0.1:{host_port}->80/tcp" in ps
        # the same host port again: the daemon's error, shown as docker shows it
        other = f"dy-pub2-{uid()}"
        r = eng.cli("run", "-d", "--name", other, "-p", f"127.0.0.1:{host_port}:80",
                    "busybox", "sleep", "5")
        assert r.returncode == 125 and "Error response from daemon:" in r.stderr
        assert "address already in use" in r.stderr or "already allocated" in r.stderr
        eng.cli("rm", "-f", other)
    finally:
        ok(eng, "rm", "-f", c)


def test_publish_all_gives_each_exposed_port_a_host_port(bridged):
    eng = bridged[0]
    c = f"dy-pall-{uid()}"
    ok(eng, "run", "-d", "--name", c, "-P", "--expose", "80", "busybox", "sh", "-c",
       HTTPD.format(text="all-" + c))
    try:
        out = ok(eng, "port", c)
        port = int(out.splitlines()[0].rpartition(":")[2])
        # one host port on every address, IPv4 and IPv6, as dockerd lists them
        assert out == f"80/tcp -> 0.0.0.0:{port}\n80/tcp -> [::]:{port}\n"
        assert _http_get(f"http://127.0.0.1:{port}/") == f"all-{c}\n"
    finally:
        ok(eng, "rm", "-f", c)


def test_network_host_and_none(bridged):
    eng = bridged[0]
    out = ok(eng, "run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]
    out = ok(eng, "run", "--rm", "--net", "host", "busybox", "ip", "-o", "link")
    assert bridged[1] in out  # the host's own interfaces, the engine's bridge among them
    r = eng.cli("run", "--rm", "--network", "dynet-nosuch", "busybox", "true")
    assert r.returncode == 125
    assert "Error response from daemon: network dynet-nosuch not found" in r.stderr


def test_network_container_mode_shares_the_donors_interfaces(bridged):
    eng = bridged[0]
    donor = f"dy-donor-{uid()}"
    ok(eng, "run", "-d", "--name", donor, "busybox", "sleep", "60")
    try:
        ip = ok(eng, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", donor).strip()
        assert ip
        out = ok(eng, "run", "--rm", "--network", f"container:{donor}", "busybox", "ip",
                 "-o", "-4", "addr")
        assert f"inet {ip}/" in out
        r = eng.cli("run", "--rm", "--network", f"container:{donor}", "-p", "80",
                    "busybox", "true")
        assert r.returncode == 125 and "conflicting options" in r.stderr
    finally:
        ok(eng, "rm", "-f", donor)


def test_dns_flags_reach_resolv_conf(bridged):
    eng = bridged[0]
    out = ok(eng, "run", "--rm", "--dns", "10.9.8.7", "--dns-search", "example.com",
             "--dns-option", "ndots:3", "busybox", "cat", "/etc/resolv.conf")
    assert "nameserver 10.9.8.7" in out
    assert "search example.com" in out and "options ndots:3" in out
    r = eng.cli("run", "--rm", "--dns", "not-an-ip", "busybox", "true")
    assert r.returncode == 125
    assert 'invalid argument "not-an-ip" for "--dns" flag' in r.stderr


def test_device_with_permissions_and_cgroup_rule(bridged):
    eng = bridged[0]
    if not os.path.exists("/dev/loop-control"):
        pytest.skip("no /dev/loop-control on this host")
    out = ok(eng, "run", "--rm", "--device", "/dev/null:/dev/dynull:rw", "busybox", "sh",
             "-c", "ls -l /dev/dynull && echo x > /dev/dynull && echo wrote")
    assert out.startswith("crw") and "wrote" in out
    # loop-control (10:237) is not among docker's default device rules: :r lets the
    # container open it for reading only
    r = eng.cli("run", "--rm", "--device", "/dev/loop-control:/dev/dylc:r", "busybox", "sh",
                "-c", "exec 3</dev/dylc && echo read-ok; exec 4>/dev/dylc && echo write-ok")
    assert "read-ok" in r.stdout and "write-ok" not in r.stdout
    assert "Operation not permitted" in r.stderr
    r = eng.cli("run", "--rm", "--device", "dev/null", "busybox", "true")
    assert r.returncode == 125 and "dev/null is not an absolute path" in r.stderr
    r = eng.cli("run", "--rm", "--device", "/dev/dy-no-such-device", "busybox", "true")
    assert r.returncode == 125 and "Error response from daemon:" in r.stderr
    # a node the container makes itself opens only with a cgroup rule for it
    script = "mknod /tmp/lc c 10 237 && exec 3</tmp/lc && echo opened"
    r = eng.cli("run", "--rm", "busybox", "sh", "-c", script)
    assert "opened" not in r.stdout and "Operation not permitted" in r.stderr
    out = ok(eng, "run", "--rm", "--device-cgroup-rule", "c 10:237 r", "busybox", "sh", "-c",
             script)
    assert "opened" in out
    r = eng.cli("run", "--rm", "--device-cgroup-rule", "c 10:237", "busybox", "true")
    assert r.returncode == 125
    assert "invalid device cgroup format 'c 10:237'" in r.stderr


def test_ipc_pid_uts_modes(bridged):
    eng = bridged[0]
    donor = f"dy-ns-{uid()}"
    ok(eng, "run", "-d", "--name", donor, "--ipc", "shareable", "busybox", "sleep", "61")
    try:
        out = ok(eng, "run", "--rm", "--pid", f"container:{donor}", "busybox", "ps")
        assert "sleep 61" in out
        ok(eng, "exec", donor, "sh", "-c", "echo dy-ipc > /dev/shm/mark")
        out = ok(eng, "run", "--rm", "--ipc", f"container:{donor}", "busybox", "cat",
                 "/dev/shm/mark")
        assert out == "dy-ipc\n"
        out = ok(eng, "run", "--rm", "--uts", "host", "busybox", "hostname")
        assert out.strip() == socket.gethostname()
        r = eng.cli("run", "--rm", "--ipc", "bogus", "busybox", "true")
        assert r.returncode == 125 and "invalid IPC mode: bogus" in r.stderr
    finally:
        ok(eng, "rm", "-f", donor)


def test_run_on_two_user_networks(bridged, net):
    eng = bridged[0]
    name, subnet, _ = net
    other, other_subnet, dev = f"dynet-{uid()}", free_subnet(), "dy" + uid()
    ok(eng, "network", "create", "--subnet", str(other_subnet), "-o",
       f"com.docker.network.bridge.name={dev}", other)
    try:
        out = ok(eng, "run", "--rm", "--network", name, "--network",
                 f"name={other},alias=second", "busybox", "ip", "-o", "-4", "addr")
        nets = [ipaddress.ip_interface(line.split()[3]).network for line in out.splitlines()
                if " inet " in line and " lo " not in line]
        assert sorted(map(str, nets)) == sorted([str(subnet), str(other_subnet)])
        r = eng.cli("run", "--rm", "--network", name, "--network", "host", "busybox", "true")
        assert r.returncode == 125 and "conflicting options: cannot attach both " \
            "user-defined and non-user-defined network-modes" in r.stderr
    finally:
        ok(eng, "network", "rm", other)


def test_mac_address_and_ip_range(bridged):
    eng = bridged[0]
    name, subnet, dev = f"dynet-{uid()}", free_subnet(), "dy" + uid()
    ip_range = ipaddress.ip_network(f"{subnet.network_address + 128}/25")
    ok(eng, "network", "create", "--subnet", str(subnet), "--ip-range", str(ip_range),
       "-o", f"com.docker.network.bridge.name={dev}", name)
    try:
        info = json.loads(ok(eng, "network", "inspect", name))[0]
        assert info["IPAM"]["Config"][0]["IPRange"] == str(ip_range)
        out = ok(eng, "run", "--rm", "--network", name, "--mac-address", "02:42:ac:00:00:01",
                 "busybox", "sh", "-c",
                 "ip -o link show eth0; ip -o -4 addr show eth0")
        assert "link/ether 02:42:ac:00:00:01" in out
        addr = ipaddress.ip_interface(out.split(" inet ")[1].split()[0]).ip
        assert addr in ip_range
        r = eng.cli("run", "--rm", "--mac-address", "not-a-mac", "busybox", "true")
        assert r.returncode == 125 and "not-a-mac is not a valid mac address" in r.stderr
    finally:
        eng.cli("network", "rm", name)
