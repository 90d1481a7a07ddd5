"""translate.py's namespace options: --ipc, --pid, --uts (pure; the daemon side is in
integration/test_namespaces_cli.py)."""

from __future__ import annotations

import pytest
from dockyard.apid import translate

from dockyard import errdefs

CID = "cd" * 32


def spec_for(host_config=None, config=None, **kw):
    cfg = translate.merge_config(dict(config or {}), {"Cmd": ["sh"]})
    cfg.setdefault("Hostname", CID[:12])
    return translate.build_spec(translate.SpecInputs(
        container_id=CID, config=cfg, host_config=dict(host_config or {}),
        hostname=cfg["Hostname"], arch="amd64", kernel="6.1.0", **kw))


def namespaces(spec):
    return {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}


def shm(spec):
    return [m for m in spec["mounts"] if m["destination"] == "/dev/shm"]


@pytest.mark.parametrize("hc", [
    {"IpcMode": "private"}, {"IpcMode": "none"}, {"IpcMode": "host"}, {"IpcMode": "shareable"},
    {"IpcMode": "container:abc"}, {"IpcMode": "container:"}, {"PidMode": "host"},
    {"PidMode": "container:abc"}, {"UTSMode": "host"}, {}])
def test_valid_modes(hc):
    translate.check_namespace_modes("", hc)


@pytest.mark.parametrize("hc,message", [
    ({"IpcMode": "bogus"}, "invalid IPC mode: bogus"),
    ({"IpcMode": "container"}, "invalid IPC mode: container"),
    ({"PidMode": "private"}, "invalid PID mode: private"),
    ({"PidMode": "container:"}, "invalid PID mode: container:"),
    ({"UTSMode": "private"}, "invalid UTS mode: private"),
    ({"IpcMode": 3}, "invalid IPC mode: 3")])
def test_invalid_modes_are_400(hc, message):
    with pytest.raises(errdefs.InvalidArgument) as err:
        translate.check_namespace_modes("", hc)
    assert str(err.value) == message


def test_uts_host_conflicts_with_hostname_and_drops_it():
    with pytest.raises(errdefs.InvalidArgument, match="hostname and the UTS mode"):
        translate.check_namespace_modes("myhost", {"UTSMode": "host"})
    spec = spec_for({"UTSMode": "host"})
    assert "uts" not in namespaces(spec) and "hostname" not in spec
    assert f"HOSTNAME={CID[:12]}" in spec["process"]["env"]  # dockerd keeps the short id here


def test_ipc_modes_shape_namespace_and_dev_shm():
    private = spec_for({"IpcMode": "private", "ShmSize": 1 << 20})
    assert namespaces(private)["ipc"] is None
    assert shm(private)[0]["type"] == "tmpfs" and f"size={1 << 20}" in shm(private)[0]["options"]
    none = spec_for({"IpcMode": "none"})
    assert "ipc" in namespaces(none) and shm(none) == []
    host = spec_for({"IpcMode": "host"}, shm_source="/dev/shm")
    assert "ipc" not in namespaces(host)
    assert shm(host) == [{"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                          "options": ["rbind", "rprivate"]}]
    share = spec_for({"IpcMode": "shareable"}, shm_source="/data/c/mounts/shm")
    assert namespaces(share)["ipc"] is None and shm(share)[0]["source"] == "/data/c/mounts/shm"
    joined = spec_for({"IpcMode": "container:" + "ef" * 32}, shm_source="/data/d/mounts/shm",
                      ns_joins={"ipc": "/run/nsjoin/x/ipc"})
    assert namespaces(joined)["ipc"] == "/run/nsjoin/x/ipc"
    assert shm(joined)[0]["source"] == "/data/d/mounts/shm"
    # a user's own /dev/shm wins over the IPC one
    own = spec_for({"IpcMode": "shareable", "Tmpfs": {"/dev/shm": "size=1m"}},
                   shm_source="/data/c/mounts/shm")
    assert [m["type"] for m in shm(own)] == ["tmpfs"]
    with pytest.raises(errdefs.InvalidArgument):
        spec_for({"IpcMode": "container:x"})  # the daemon must resolve the join path


def test_pid_modes_and_init():
    host = spec_for({"PidMode": "host", "Init": True}, init_path="/usr/bin/tini")
    assert "pid" not in namespaces(host)
    assert host["process"]["args"] == ["sh"]  # no docker-init outside a pid ns of its own
    joined = spec_for({"PidMode": "container:x", "Init": True}, init_path="/usr/bin/tini",
                      ns_joins={"pid": "/run/nsjoin/y/pid"})
    assert namespaces(joined)["pid"] == "/run/nsjoin/y/pid"
    assert joined["process"]["args"] == ["sh"]
    own = spec_for({"Init": True}, init_path="/usr/bin/tini")
    assert own["process"]["args"][:2] == ["/sbin/docker-init", "--"]


def test_container_mode():
    assert translate.container_mode("container:abc") == "abc"
    assert translate.container_mode("container:") == ""
    assert translate.container_mode("host") is None
    assert translate.container_mode("containers:x") is None
