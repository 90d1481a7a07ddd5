"""`dockyard volume ...` through httpx.MockTransport: requests, docker's output (the
expected texts are docker CLI 28's for the same answers) and exit codes."""

from __future__ import annotations

import json

from .test_commands import Router, run

VOLS = {"Volumes": [
    {"Name": "vol10", "Driver": "local", "Mountpoint": "/var/lib/x/vol10/_data",
     "Labels": {"a": "b"}, "Scope": "local"},
    {"Name": "vol9", "Driver": "local", "Mountpoint": "/m/vol9", "Labels": None,
     "Scope": "local"}], "Warnings": None}


def test_volume_ls_table_json_quiet_and_template():
    router = Router({"GET /volumes": (200, VOLS)})
    assert run(router, "volume", "ls")[1] == ("DRIVER    VOLUME NAME\nlocal     vol9\n"
                                              "local     vol10\n")
    out = run(router, "volume", "ls", "--format", "json")[1]
    assert out.splitlines()[0] == (
        '{"Availability":"N/A","Driver":"local","Group":"N/A","Labels":"","Links":"N/A",'
        '"Mountpoint":"/m/vol9","Name":"vol9","Scope":"local","Size":"N/A","Status":"N/A"}')
    assert run(router, "volume", "list", "-q", "-f", "dangling=true")[1] == "vol9\nvol10\n"
    assert json.loads(router.calls[-1].url.params["filters"]) == {"dangling": {"true": True}}
    out = run(router, "volume", "ls", "--format",
              "table {{.Name}}\t{{.Mountpoint}}\t{{.Labels}}\t{{.Links}}")[1]
    assert out == ("VOLUME NAME   MOUNTPOINT               LABELS    LINKS\n"
                   "vol9          /m/vol9                            N/A\n"
                   "vol10         /var/lib/x/vol10/_data   a=b       N/A\n")


def test_volume_create_body_and_name():
    router = Router({"POST /volumes/create": (201, {"Name": "data", "Driver": "local"})})
    code, out, _ = run(router, "volume", "create", "--label", "dy=1", "-o", "type=tmpfs",
                       "data")
    assert (code, out) == (0, "data\n")
    assert json.loads(router.calls[0].content) == {
        "Name": "data", "Driver": "local", "DriverOpts": {"type": "tmpfs"},
        "Labels": {"dy": "1"}}
    code, out, err = run(router, "volume", "create", "--name", "a", "b")
    assert code == 125 and "conflicting options" in err
    code, _, err = run(router, "volume", "create", "--label", "=x", "c")
    assert code == 125 and "'=x' for --label" in err
    assert err.endswith("See 'dockyard volume create --help'.\n")  # as network create's
    assert len(router.calls) == 1  # nothing sent


def test_volume_rm_force_inspect_and_prune():
    router = Router({"DELETE /volumes/vol9": (204, None),
                     "DELETE /volumes/nope": (404, {"message": "get nope: no such volume"}),
                     "GET /volumes/vol9": (200, VOLS["Volumes"][1]),
                     "POST /volumes/prune": (200, {"VolumesDeleted": ["v1", "v2"],
                                                   "SpaceReclaimed": 123456})})
    code, out, err = run(router, "volume", "rm", "vol9", "nope")
    assert (code, out, err) == (1, "vol9\n", "Error response from daemon: get nope: no such "
                                             "volume\n")
    assert run(router, "volume", "rm", "-f", "nope")[:2] == (0, "nope\n")
    assert router.calls[-1].url.params["force"] == "1"
    code, out, _ = run(router, "volume", "inspect", "-f", "{{.Mountpoint}}", "vol9")
    assert (code, out) == (0, "/m/vol9\n")
    code, out, _ = run(router, "volume", "prune", "-a", "-f")
    assert out == "Deleted Volumes:\nv1\nv2\n\nTotal reclaimed space: 123.5kB\n"
    assert json.loads(router.calls[-1].url.params["filters"]) == {"all": {"true": True}}
    calls = len(router.calls)
    code, out, _ = run(router, "volume", "prune", stdin="no\n")
    assert code == 0 and out.startswith("WARNING! This will remove anonymous local volumes")
    assert len(router.calls) == calls
