"""dockyard.oci: the default spec, config validation, state JSON, the fast JSON module."""

from __future__ import annotations

import json

import pytest

from dockyard.errdefs import InvalidArgument, NotFound
from dockyard.oci import _json, spec, state


def test_default_spec_is_valid_and_runc_shaped():
    cfg = spec.default_spec()
    spec.validate(cfg)
    assert cfg["ociVersion"] == "1.0.2-dev"
    assert cfg["process"]["capabilities"]["ambient"] == ["CAP_AUDIT_WRITE", "CAP_KILL",
                                                          "CAP_NET_BIND_SERVICE"]
    assert [ns["type"] for ns in cfg["linux"]["namespaces"]] == ["pid", "network", "ipc",
                                                                  "uts", "mount"]
    assert spec.default_spec() is not spec.default_spec()


def test_load_config_errors(tmp_path):
    with pytest.raises(NotFound, match="config.json: no such file"):
        spec.load_config(str(tmp_path))
    (tmp_path / "config.json").write_text("[1, 2")
    with pytest.raises(InvalidArgument, match="invalid JSON"):
        spec.load_config(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(spec.default_spec()))
    assert spec.load_config(str(tmp_path))["hostname"] == "runc"


@pytest.mark.parametrize("path, value, phrase", [
    (("process", "args"), "sh", "process.args"),
    (("process", "user"), {"uid": -1}, "process.user.uid"),
    (("process", "oomScoreAdj"), 5000, "oomScoreAdj"),
    (("process", "terminal"), "yes", "process.terminal"),
    (("linux", "rootfsPropagation"), "sideways", "rootfsPropagation"),
    (("linux", "sysctl"), {"../x": "1"}, "linux.sysctl"),
    (("linux", "devices"), [{"path": "/etc/x", "type": "c"}], "linux.devices"),
    (("linux", "namespaces"), [{"type": "user"}, {"type": "mount"}], "user namespaces"),
    (("linux", "namespaces"), [{"type": "pid"}], "mount namespace"),
    (("mounts",), [{"destination": "rel"}], "mounts[0].destination"),
    (("hooks",), {"prestart": [{"path": "rel"}]}, "hooks.prestart[0].path"),
])
def test_validate_names_the_field(path, value, phrase):
    cfg = spec.default_spec()
    target = cfg
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(InvalidArgument, match="invalid config.json") as err:
        spec.validate(cfg)
    assert phrase in str(err.value)


def test_hostname_needs_uts():
    cfg = spec.default_spec()
    cfg["linux"]["namespaces"] = [{"type": "mount"}]
    with pytest.raises(InvalidArgument, match="uts"):
        spec.validate(cfg)


def test_state_dict_and_predicates():
    st = state.State("c1", 42, state.STOPPED, "/b", "/b/rootfs", "t", {"a": "b"}, "root")
    d = st.to_dict()
    assert d["pid"] == 0 and d["annotations"] == {"a": "b"} and d["owner"] == "root"
    assert "annotations" not in state.State("c", 1, "running", "/b", "/r", "t").to_dict()
    assert state.Status.can_start(state.CREATED) and not state.Status.can_start(state.RUNNING)
    assert state.Status.can_delete(state.CREATED)
    assert not state.Status.can_delete(state.RUNNING)
    assert state.Status.can_delete(state.RUNNING, force=True)
    assert state.Status.can_kill(state.PAUSED) and not state.Status.can_kill(state.STOPPED)
    assert st.hook_dict() == {"ociVersion": "1.0.2-dev", "id": "c1", "status": "stopped",
                              "bundle": "/b", "annotations": {"a": "b"}}


def test_format_time():
    assert state.format_time(1_700_000_000_123_400_000) == "2023-11-14T22:13:20.1234Z"
    assert state.format_time(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize("obj", [
    {"a": [1, 2.5, {"b": None, "c": True}], "e": {}, "f": [], "g": "x\"é\n"},
    [], {}, "s", 0, -1.5, [[[]]], {"k": [{}]},
])
def test_json_matches_stdlib(obj):
    assert _json.dumps(obj) == json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    assert _json.dumps(obj, indent=2) == json.dumps(obj, indent=2, ensure_ascii=False)
    assert _json.loads(json.dumps(obj)) == obj


@pytest.mark.parametrize("bad", ["", "{", "[1,]", "{\"a\" 1}", "1 2", "nul"])
def test_json_errors_are_value_errors(bad):
    with pytest.raises(ValueError):
        _json.loads(bad)
