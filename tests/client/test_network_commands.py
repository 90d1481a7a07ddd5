"""`dockyard network ...` and `dockyard port` through httpx.MockTransport: the requests
sent, docker's output (checked against docker CLI 28's output for the same answers) and
exit codes."""

from __future__ import annotations

import json

from dockyard.client.commands.network import created_at, natural_key

from .test_commands import Router, run

NETS = [
    {"Name": "zeta", "Id": "a" * 64, "Created": "2026-11-29T18:00:00.123456789Z",
     "Scope": "local", "Driver": "bridge", "EnableIPv4": True, "EnableIPv6": False,
     "Internal": True, "Labels": {"b": "2", "a": "1"}},
    {"Name": "bridge", "Id": "b" * 64, "Created": "2026-11-29T17:00:00Z", "Scope": "local",
     "Driver": "bridge", "Internal": False, "Labels": {}},
    {"Name": "net10", "Id": "c" * 64, "Created": "2026-11-29T17:00:00+02:00",
     "Scope": "local", "Driver": "bridge", "Labels": {}},
    {"Name": "net9", "Id": "d" * 64, "Created": "2026-11-29T17:00:00Z", "Scope": "local",
     "Driver": "host", "Labels": {}},
]

PORTS = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"},
                    {"HostIp": "::", "HostPort": "8080"}],
         "9/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}],
         "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}],
         "443/tcp": None, "10/tcp": []}


def test_network_ls_table_sorted_naturally_like_docker():
    router = Router({"GET /networks": (200, NETS)})
    code, out, _ = run(router, "network", "ls")
    assert code == 0
    assert out == ("NETWORK ID     NAME      DRIVER    SCOPE\n"
                   "bbbbbbbbbbbb   bridge    bridge    local\n"
                   "dddddddddddd   net9      host      local\n"
                   "cccccccccccc   net10     bridge    local\n"
                   "aaaaaaaaaaaa   zeta      bridge    local\n")


def test_network_ls_quiet_no_trunc_filters_and_json():
    router = Router({"GET /networks": (200, NETS)})
    code, out, _ = run(router, "network", "ls", "-q", "--no-trunc", "-f", "driver=bridge",
                       "--filter", "label=a")
    assert code == 0 and out.split() == ["b" * 64, "d" * 64, "c" * 64, "a" * 64]
    assert json.loads(router.calls[0].url.params["filters"]) == {"driver": {"bridge": True},
                                                                  "label": {"a": True}}
    code, out, _ = run(router, "network", "list", "--format", "json")
    last = out.splitlines()[-1]
    # docker 28's line for the same network, byte for byte
    assert last == ('{"CreatedAt":"2026-11-29 18:00:00.123456789 +0000 UTC","Driver":"bridge",'
                    '"ID":"aaaaaaaaaaaa","IPv4":"true","IPv6":"false","Internal":"true",'
                    '"Labels":"b=2,a=1","Name":"zeta","Scope":"local"}')
    code, out, _ = run(router, "network", "ls", "--format",
                       "{{.Name}} {{.Internal}} {{.Label \"a\"}} {{.CreatedAt}}")
    assert out.splitlines()[1] == "net9 false  2026-11-29 17:00:00 +0000 UTC"
    assert out.splitlines()[3] == "zeta true 1 2026-11-29 18:00:00.123456789 +0000 UTC"


def test_created_at_and_natural_order():
    assert created_at("2026-11-29T17:00:00+02:00") == "2026-11-29 17:00:00 +0200 +0200"
    assert created_at("2026-11-29T17:00:00.500Z") == "2026-11-29 17:00:00.5 +0000 UTC"
    assert sorted(["net10", "net9", "a"], key=natural_key) == ["a", "net9", "net10"]


def test_network_create_body_and_id():
    router = Router({"POST /networks/create": (201, {"Id": "f" * 64, "Warning": ""})})
    code, out, _ = run(router, "network", "create", "--subnet", "10.9.0.0/24", "--gateway",
                       "10.9.0.1", "--internal", "--label", "dy=1", "-o",
                       "com.docker.network.bridge.name=dyb", "web-net")
    assert code == 0 and out == "f" * 64 + "\n"
    body = json.loads(router.calls[0].content)
    assert body["Name"] == "web-net" and body["Driver"] == "bridge"
    assert body["IPAM"] == {"Driver": "default", "Options": {},
                            "Config": [{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"}]}
    assert body["Internal"] is True and body["Labels"] == {"dy": "1"}
    assert body["Options"] == {"com.docker.network.bridge.name": "dyb"}


def test_network_create_shows_the_daemons_error():
    router = Router({"POST /networks/create": (409, {
        "message": "network with name web-net already exists"})})
    code, out, err = run(router, "network", "create", "web-net")
    assert code == 1 and out == ""
    assert err == "Error response from daemon: network with name web-net already exists\n"


def test_network_create_bad_subnet_is_a_usage_error_before_any_request():
    router = Router({})
    code, _, err = run(router, "network", "create", "--subnet", "10.999.0.0/16", "n")
    assert code == 125 and "invalid CIDR address: 10.999.0.0/16" in err
    assert router.calls == []


def test_network_inspect_array_template_and_errors_last():
    router = Router({"GET /networks/zeta": (200, NETS[0]),
                     "GET /networks/nope": (404, {"message": "network nope not found"})})
    code, out, err = run(router, "network", "inspect", "zeta", "nope")
    assert code == 1
    assert json.loads(out) == [NETS[0]] and out.startswith("[\n    {\n        \"Name\"")
    assert err == "Error response from daemon: network nope not found\n"
    code, out, _ = run(router, "network", "inspect", "-f", "{{.Name}} {{.Internal}}", "zeta")
    assert (code, out) == (0, "zeta true\n")


def test_network_rm_prints_each_name_and_reports_failures():
    router = Router({"DELETE /networks/zeta": (204, None),
                     "DELETE /networks/nope": (404, {"message": "network nope not found"})})
    code, out, err = run(router, "network", "rm", "zeta", "nope")
    assert (code, out) == (1, "zeta\n")
    assert err == "Error response from daemon: network nope not found\n"
    code, out, err = run(router, "network", "remove", "-f", "nope")
    assert (code, out, err) == (0, "", "")


def test_network_prune_prompts_and_lists_what_went():
    router = Router({"POST /networks/prune": (200, {"NetworksDeleted": ["n1", "n2"]})})
    code, out, _ = run(router, "network", "prune", stdin="n\n")
    assert code == 0 and "Are you sure you want to continue? [y/N]" in out
    assert router.calls == []
    code, out, _ = run(router, "network", "prune", "-f", "--filter", "label=dy")
    assert (code, out) == (0, "Deleted Networks:\nn1\nn2\n\n")
    assert json.loads(router.calls[0].url.params["filters"]) == {"label": {"dy": True}}


def test_network_connect_and_disconnect_bodies():
    router = Router({"POST /networks/n1/connect": (200, None),
                     "POST /networks/n1/disconnect": (200, None)})
    code, out, _ = run(router, "network", "connect", "--alias", "db", "--ip", "10.9.0.5",
                       "n1", "web")
    assert (code, out) == (0, "")
    assert json.loads(router.calls[0].content) == {
        "Container": "web", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.9.0.5"},
                                               "Aliases": ["db"]}}
    code, out, _ = run(router, "network", "disconnect", "--force", "n1", "web")
    assert (code, out) == (0, "")
    assert json.loads(router.calls[1].content) == {"Container": "web", "Force": True}


def test_network_without_a_subcommand_lists_them():
    code, out, err = run(Router({}), "network")
    assert code == 1 and "connect" in err and "prune" in err
    code, out, err = run(Router({}), "network", "frobnicate")
    assert code == 1 and "'network frobnicate' is not a dockyard command" in err
    code, out, _ = run(Router({}), "network", "ls", "--help")
    assert code == 0 and out.startswith("Usage:  dockyard network ls [OPTIONS]")


def test_port_lists_every_mapping_in_docker_order():
    router = Router({"GET /containers/web/json": (200, {"NetworkSettings": {"Ports": PORTS}})})
    code, out, _ = run(router, "port", "web")
    assert code == 0
    assert out == ("9/tcp -> 127.0.0.1:32768\n53/udp -> 0.0.0.0:5353\n"
                   "80/tcp -> 0.0.0.0:8080\n80/tcp -> [::]:8080\n")
    code, out, _ = run(router, "container", "port", "web", "80")
    assert (code, out) == (0, "0.0.0.0:8080\n[::]:8080\n")
    code, out, _ = run(router, "port", "web", "53/udp")
    assert (code, out) == (0, "0.0.0.0:5353\n")


def test_port_errors_as_docker():
    router = Router({"GET /containers/web/json": (200, {"NetworkSettings": {"Ports": PORTS}}),
                     "GET /containers/nope/json": (404, {"message": "No such container: nope"})})
    assert run(router, "port", "web", "80/udp")[1:] == (
        "", "Error: No public port '80/udp' published for web\n")
    assert run(router, "port", "web", "443")[2] == \
        "Error: No public port '443' published for web\n"
    code, _, err = run(router, "port", "web", "abc")
    assert code == 1
    assert err == 'Error: invalid port (abc): strconv.ParseUint: parsing "abc": invalid syntax\n'
    code, _, err = run(router, "port", "nope")
    assert (code, err) == (1, "Error response from daemon: No such container: nope\n")
    code, out, _ = run(Router({"GET /containers/c/json": (200, {"NetworkSettings": {}})}),
                       "port", "c")
    assert (code, out) == (0, "")


def test_ps_ports_column_groups_ranges_as_docker():
    # the Ports of four containers and docker CLI 28's PORTS column for each
    cases = [
        ([{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
          {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
         "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"),
        ([{"IP": "0.0.0.0", "PrivatePort": p, "PublicPort": p, "Type": "tcp"}
          for p in (8000, 8001, 8002, 8005)]
         + [{"PrivatePort": p, "Type": "tcp"} for p in (90, 91, 93)]
         + [{"PrivatePort": 53, "Type": "udp"}],
         "90-91/tcp, 0.0.0.0:8000-8002->8000-8002/tcp, 53/udp, 93/tcp, "
         "0.0.0.0:8005->8005/tcp"),
        ([{"IP": "127.0.0.1", "PrivatePort": 82, "PublicPort": 9002, "Type": "tcp"},
          {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": 9000, "Type": "tcp"},
          {"IP": "127.0.0.1", "PrivatePort": 81, "PublicPort": 81, "Type": "udp"},
          {"PrivatePort": 81, "Type": "tcp"}],
         "81/tcp, 127.0.0.1:81->81/udp, 127.0.0.1:9000->80/tcp, 127.0.0.1:9002->82/tcp"),
        ([], ""),
    ]
    items = [{"Id": f"{i}" * 64, "Names": [f"/c{i}"], "Image": "busybox", "Command": "x",
              "Created": 0, "State": "running", "Status": "Up", "Ports": ports}
             for i, (ports, _) in enumerate(cases)]
    router = Router({"GET /containers/json": (200, items)})
    code, out, _ = run(router, "ps", "--format", "{{.Names}}|{{.Ports}}")
    assert code == 0
    assert out.splitlines() == [f"c{i}|{want}" for i, (_, want) in enumerate(cases)]


def test_inspect_finds_networks_and_volumes_after_containers_and_images():
    router = Router({"GET /networks/zeta": (200, NETS[0]),
                     "GET /volumes/vol": (200, {"Name": "vol", "Driver": "local"})})
    code, out, _ = run(router, "inspect", "-f", "{{.Name}}", "zeta", "vol")
    assert (code, out) == (0, "zeta\nvol\n")
    assert router.keys()[:4] == ["GET /containers/zeta/json", "GET /images/zeta/json",
                                 "GET /networks/zeta", "GET /containers/vol/json"]
    code, out, err = run(router, "inspect", "--type", "network", "nope")
    assert code == 1 and "page not found" in err
