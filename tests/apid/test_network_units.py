"""apid/network/ without the kernel: IPAM rules, the store's round trip, the iptables
rule set, create-time checks and NetworkSettings of the controller (enabled=False)."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from dockyard.apid.container import Container, State
from dockyard.apid.network import ipam
from dockyard.apid.network.controller import NetworkController
from dockyard.apid.network.firewall import Firewall, NetRule
from dockyard.apid.network.store import Store

from dockyard import errdefs


def test_pool_allocates_lowest_free_and_never_gateway():
    pool = ipam.Pool.create("10.7.0.0/29")
    assert pool.gateway == "10.7.0.1"
    got = [pool.allocate() for _ in range(5)]
    assert got == ["10.7.0.2", "10.7.0.3", "10.7.0.4", "10.7.0.5", "10.7.0.6"]
    with pytest.raises(errdefs.FailedPrecondition):
        pool.allocate()
    pool.release("10.7.0.3")
    assert pool.allocate() == "10.7.0.3"


def test_pool_requested_address_rules():
    pool = ipam.Pool.create("10.7.1.0/24", "10.7.1.254")
    assert pool.allocate("10.7.1.9") == "10.7.1.9"
    with pytest.raises(errdefs.FailedPrecondition, match="already in use"):
        pool.allocate("10.7.1.9")
    with pytest.raises(errdefs.FailedPrecondition):
        pool.allocate("10.7.1.254")  # the gateway
    with pytest.raises(errdefs.InvalidArgument):
        pool.allocate("10.8.0.1")
    with pytest.raises(errdefs.InvalidArgument, match="no matching subnet for gateway"):
        ipam.Pool.create("10.7.1.0/24", "10.9.0.1")


@pytest.mark.parametrize("bad", ["10.999.0.0/16", "nonsense", "10.0.0.0/33"])
def test_invalid_cidr_is_400(bad):
    with pytest.raises(errdefs.InvalidArgument, match="invalid CIDR address"):
        ipam.parse_subnet(bad)


def test_pick_subnet_skips_used_ranges_and_mac_rule():
    used = [ipaddress.IPv4Network("172.17.0.0/16"), ipaddress.IPv4Network("172.18.5.0/24")]
    assert str(ipam.pick_subnet(used)) == "172.19.0.0/16"
    everything = [ipaddress.IPv4Network("0.0.0.0/1"), ipaddress.IPv4Network("128.0.0.0/1")]
    with pytest.raises(errdefs.InvalidArgument, match="non-overlapping"):
        ipam.pick_subnet(everything)
    assert ipam.mac_for("172.17.0.2") == "02:42:ac:11:00:02"


def test_store_round_trip(tmp_path):
    store = Store(str(tmp_path / "network"))
    ctl = NetworkController(str(tmp_path), str(tmp_path / "exec"), enabled=False)
    ctl.store = store
    asyncio.run(ctl.startup())
    nid, _ = asyncio.run(ctl.create_network({"Name": "n1", "IPAM": {"Config": [
        {"Subnet": "10.20.0.0/24"}]}, "Labels": {"a": "b"}, "Internal": True}))
    store.networks[nid].pool.allocate()
    store.save()
    again = Store(str(tmp_path / "network"))
    again.load()
    net = again.networks[nid]
    assert net.name == "n1" and net.internal and net.labels == {"a": "b"}
    assert net.pool.allocated == {"10.20.0.2"} and net.bridge == f"br-{nid[:12]}"


def test_firewall_rules_are_in_own_chains_only():
    fw = Firewall("abcd1234")
    text = fw._ruleset([NetRule("10.1.0.0/24", "br-a", False), NetRule("10.2.0.0/24", "br-b",
                                                                          True)])
    assert "-A DOCKYARD-NAT-abcd1234 -s 10.1.0.0/24 ! -o br-a -j MASQUERADE" in text
    assert "10.2.0.0/24" not in text  # internal: no NAT
    assert "-A DOCKYARD-FWD-abcd1234 -i br-a -o br-b -j DROP" in text
    assert "-A DOCKYARD-FWD-abcd1234 -i br-b ! -o br-b -j DROP" in text
    assert all(line.split()[1].startswith("DOCKYARD-") for line in text.splitlines()
               if line.startswith("-A"))


def _container(tmp_path, **hc) -> Container:
    return Container(id="c" * 64, name="/web", created=0, image="busybox", image_id="sha256:x",
                     image_ref="busybox", config={"Hostname": "cccccccccccc",
                                                  "ExposedPorts": {"80/tcp": {}}},
                     host_config=dict(hc), root=str(tmp_path / "ctr"))


def test_check_create_and_settings(tmp_path):
    ctl = NetworkController(str(tmp_path), str(tmp_path / "exec"), enabled=False)
    asyncio.run(ctl.startup())
    with pytest.raises(errdefs.InvalidArgument, match="--bridge none"):
        ctl.check_create({"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}})
    ctl.check_create({"NetworkMode": "host", "PortBindings": {"80/tcp": [{}]}})  # ignored
    asyncio.run(ctl.create_network({"Name": "n2", "IPAM": {"Config": [
        {"Subnet": "10.21.0.0/24"}]}}))
    with pytest.raises(errdefs.InvalidArgument, match="invalid port specification"):
        ctl.check_create({"NetworkMode": "n2", "PortBindings": {"99999/tcp": [{}]}})
    for bad_ip in ("zz::zz", "1.2.3.4:5"):  # bind() would call it a taken port
        with pytest.raises(errdefs.InvalidArgument, match="invalid host IP"):
            ctl.check_create({"NetworkMode": "n2", "PortBindings": {"80/tcp": [
                {"HostIp": bad_ip}]}})
    ctl.check_create({"NetworkMode": "n2", "PortBindings": {"80/tcp": [{"HostIp": "[::1]"}]}})
    with pytest.raises(errdefs.InvalidArgument, match="user defined networks only"):
        ctl.check_create({"NetworkMode": "host"}, {"EndpointsConfig": {
            "bridge": {"IPAMConfig": {"IPv4Address": "10.0.0.2"}}}})
    ctl.check_create({"NetworkMode": "later-net"})  # looked up at start, not at create
    c = _container(tmp_path, NetworkMode="n2")
    ctl.created(c)
    settings = ctl.settings(c)
    assert settings is not None and settings["Networks"]["n2"]["IPAddress"] == ""
    ep = ctl.store.endpoints[c.id][ctl.find("n2").id]
    ep.ip, ep.mac = "10.21.0.2", ipam.mac_for("10.21.0.2")
    c.state = State(status="running")
    settings = ctl.settings(c)
    assert settings["Networks"]["n2"]["IPAddress"] == "10.21.0.2"
    assert settings["Networks"]["n2"]["DNSNames"] == ["web", "cccccccccccc"]
    assert settings["Ports"] == {"80/tcp": None}
    with pytest.raises(errdefs.FailedPrecondition, match="active endpoints"):
        asyncio.run(ctl.remove_network("n2"))
    with pytest.raises(errdefs.NotFound, match="network nope not found"):
        ctl.find("nope")


def test_proxy_tcp_half_close_udp_and_conflict():
    """The userland proxy on loopback: TCP with half-close passed on, UDP both ways,
    a taken port refused in dockerd's words."""
    from dockyard.apid.network.proxy import PortConflict, Proxy

    async def main() -> None:
        async def echo_tcp(reader, writer):
            data = await reader.read()  # until the client's half-close arrives as EOF
            writer.write(data.upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo_tcp, "127.0.0.1", 0)
        tport = server.sockets[0].getsockname()[1]

        class EchoUdp(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.t = transport

            def datagram_received(self, data, addr):
                self.t.sendto(b"udp:" + data, addr)

        loop = asyncio.get_running_loop()
        utrans, _ = await loop.create_datagram_endpoint(EchoUdp, local_addr=("127.0.0.1", 0))
        uport = utrans.get_extra_info("sockname")[1]
        tcp = Proxy("tcp", "127.0.0.1", 0, "127.0.0.1", tport)
        udp = Proxy("udp", "127.0.0.1", 0, "127.0.0.1", uport)
        pt, pu = await tcp.start(), await udp.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", pt)
            writer.write(b"hello")
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b"HELLO"
            writer.close()
            got: asyncio.Future = loop.create_future()

            class Client(asyncio.DatagramProtocol):
                def datagram_received(self, data, addr):
                    got.set_result(data)

            ctrans, _ = await loop.create_datagram_endpoint(Client,
                                                            remote_addr=("127.0.0.1", pu))
            ctrans.sendto(b"ping")
            assert await asyncio.wait_for(got, 5) == b"udp:ping"
            ctrans.close()
            with pytest.raises(PortConflict, match="port is already allocated"):
                await Proxy("tcp", "127.0.0.1", pt, "127.0.0.1", tport).start()
        finally:
            await tcp.stop()
            await udp.stop()
            server.close()
            utrans.close()

    asyncio.run(main())


def test_ip_range_and_aux_addresses():
    pool = ipam.Pool.create("10.30.0.0/24", None, "10.30.0.128/25", {"host": "10.30.0.129"})
    assert pool.allocate() == "10.30.0.130"  # inside the range, the aux address skipped
    assert pool.allocate("10.30.0.5") == "10.30.0.5"  # an asked-for address may lie outside
    with pytest.raises(errdefs.InvalidArgument, match="ip-range"):
        ipam.Pool.create("10.30.0.0/24", None, "10.31.0.0/25")
    with pytest.raises(errdefs.InvalidArgument, match="aux-address"):
        ipam.Pool.create("10.30.0.0/24", None, None, {"x": "10.99.0.1"})


@pytest.mark.parametrize("bridge", ["br+", "-j", "br\n", "a" * 16, "br!x"])
def test_bridge_name_unsafe_for_iptables_is_400(tmp_path, bridge):
    """`+` is iptables' interface wildcard and a leading `-` an option: such a name in
    the FORWARD chain would drop or accept traffic of other devices."""
    ctl = NetworkController(str(tmp_path), str(tmp_path / "exec"), enabled=False)
    asyncio.run(ctl.startup())
    with pytest.raises(errdefs.InvalidArgument, match="bridge name"):
        asyncio.run(ctl.create_network({"Name": "n", "Options": {
            "com.docker.network.bridge.name": bridge}}))
    assert ctl.store.by_name("n") is None
    # a name of letters, digits, "_", "." and "-" still works
    asyncio.run(ctl.create_network({"Name": "n", "Options": {
        "com.docker.network.bridge.name": "dy-br_0.1"}}))


def test_proxy_udp_burst_from_one_client_uses_one_upstream_socket():
    """Datagrams that arrive while a client's upstream socket is being made wait for
    it: one socket per client (none leaked), every datagram forwarded in order."""
    from dockyard.apid.network.proxy import Proxy

    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[tuple[bytes, tuple]] = []
        done = asyncio.Event()

        class Sink(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                seen.append((data, addr))
                if len(seen) == 5:
                    done.set()

        strans, _ = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
        udp = Proxy("udp", "127.0.0.1", 0, "127.0.0.1", strans.get_extra_info("sockname")[1])
        port = await udp.start()
        ctrans, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                        remote_addr=("127.0.0.1", port))
        try:
            for i in range(5):
                ctrans.sendto(b"%d" % i)
            await asyncio.wait_for(done.wait(), 5)
            assert [d for d, _ in seen] == [b"0", b"1", b"2", b"3", b"4"]
            assert len({a for _, a in seen}) == 1
            assert udp._udp is not None and len(udp._udp.peers) == 1
        finally:
            ctrans.close()
            await udp.stop()
            strans.close()

    asyncio.run(main())


def test_ps_summary_skips_an_unparsable_exposed_port(tmp_path):
    """ExposedPorts come from images unchecked: a bad key is left out of `docker ps`
    instead of failing the whole list with 400."""
    ctl = NetworkController(str(tmp_path), str(tmp_path / "exec"), enabled=False)
    asyncio.run(ctl.startup())
    asyncio.run(ctl.create_network({"Name": "n3", "IPAM": {"Config": [
        {"Subnet": "10.22.0.0/24"}]}}))
    c = _container(tmp_path, NetworkMode="n3")
    c.config["ExposedPorts"] = {"80/tcp": {}, "http/tcp": {}}
    ctl.created(c)
    ctl.store.endpoints[c.id][ctl.find("n3").id].ip = "10.22.0.2"
    c.state = State(status="running")
    entry: dict = {}
    ctl.summary(c, entry)
    assert entry["Ports"] == [{"PrivatePort": 80, "Type": "tcp"}]


def test_publish_skips_ipv6_on_a_host_without_it(monkeypatch):
    """A host booted with ipv6.disable=1 has no AF_INET6 sockets: `-p 0.0.0.0+::` binds
    IPv4 only instead of failing the start."""
    import errno
    import socket

    from dockyard.apid.network import proxy

    real = socket.socket

    def no_v6(family=socket.AF_INET, *args, **kwargs):
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real(family, *args, **kwargs)

    monkeypatch.setattr(proxy.socket, "socket", no_v6)

    async def main() -> None:
        proxies: list = []
        port = await NetworkController._bind_one(proxies, "tcp", ["127.0.0.1", "::"], [0],
                                                 "127.0.0.1", 9)
        try:
            assert port > 0 and [p.host_ip for p in proxies] == ["127.0.0.1"]
        finally:
            for p in proxies:
                await p.stop()

    asyncio.run(main())


def test_mac_address_forms_of_go_parsemac(tmp_path):
    """The docker CLI passes --mac-address as typed once net.ParseMAC accepts it: the
    dash and dotted forms are valid too, and reach the kernel in colon form."""
    from dockyard.apid.network.controller import _parse_mac

    assert _parse_mac("02:42:AC:11:00:09") == "02:42:ac:11:00:09"
    assert _parse_mac("02-42-ac-11-00-09") == "02:42:ac:11:00:09"
    assert _parse_mac("0242.ac11.0009") == "02:42:ac:11:00:09"
    for bad in ("02:42:ac:11:00", "02:42:ac:11:00:09\n", "02:42-ac:11:00:09", "zz"):
        assert _parse_mac(bad) is None
    ctl = NetworkController(str(tmp_path), str(tmp_path / "exec"), enabled=False)
    asyncio.run(ctl.startup())
    asyncio.run(ctl.create_network({"Name": "n4", "IPAM": {"Config": [
        {"Subnet": "10.23.0.0/24"}]}}))
    ctl.check_create({"NetworkMode": "n4"}, {"EndpointsConfig": {
        "n4": {"MacAddress": "02-42-ac-11-00-09"}}})
    with pytest.raises(errdefs.InvalidArgument, match="invalid MAC address"):
        ctl.check_create({"NetworkMode": "n4"}, {"EndpointsConfig": {
            "n4": {"MacAddress": "02:42:ac:11:00:09\n"}}})


def test_alias_with_whitespace_is_400(tmp_path):
    """An alias is written into the other members' /etc/hosts: a newline in it would add
    a whole line (another name's address) to their files."""
    ctl = NetworkController(str(tmp_path), str(tmp_path / "exec"), enabled=False)
    asyncio.run(ctl.startup())
    asyncio.run(ctl.create_network({"Name": "n5", "IPAM": {"Config": [
        {"Subnet": "10.24.0.0/24"}]}}))
    evil = {"Aliases": ["db\n10.24.0.99 registry.example"]}
    for net in ("n5", "not-yet-created"):
        with pytest.raises(errdefs.InvalidArgument, match="invalid network alias"):
            ctl.check_create({"NetworkMode": net}, {"EndpointsConfig": {net: evil}})
    c = _container(tmp_path, NetworkMode="n5")
    with pytest.raises(errdefs.InvalidArgument, match="invalid network alias"):
        asyncio.run(ctl.connect("n5", c, evil, None))
    assert c.id not in ctl.store.endpoints or not ctl.store.endpoints[c.id]
    ctl.check_create({"NetworkMode": "n5"}, {"EndpointsConfig": {"n5": {"Aliases": ["db"]}}})
