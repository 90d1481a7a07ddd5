"""Errors: one clear line (or one JSON record), exit 1, nothing left behind."""

from __future__ import annotations

import json
import os

import pytest
from helpers import busybox

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]


def one_error(res) -> str:
    assert res.returncode == 1, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_invalid_json(shim):
    bundle = shim.bundle()
    (bundle / "config.json").write_text("{not json")
    line = one_error(shim("create", "--bundle", str(bundle), shim.container()))
    assert "config.json" in line and "invalid JSON" in line


@pytest.mark.parametrize("mutate, phrase", [
    (lambda c: c["process"].update(args=[]), "process.args"),
    (lambda c: c["process"].update(cwd="relative"), "process.cwd"),
    (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "namespace type"),
    (lambda c: c["linux"]["namespaces"].append({"type": "pid"}), "duplicate namespace"),
    (lambda c: c["process"]["capabilities"]["bounding"].append("CAP_NOPE"), "CAP_NOPE"),
    (lambda c: c["process"]["rlimits"].append(c["process"]["rlimits"][0]), "duplicate rlimit"),
    (lambda c: c.pop("root"), "root"),
])
def test_invalid_config(shim, mutate, phrase):
    cfg = busybox.base_config(["true"])
    mutate(cfg)
    line = one_error(shim("create", "--bundle", str(shim.bundle(cfg)), shim.container()))
    assert "invalid config.json" in line and phrase in line


def test_missing_rootfs_and_bundle(shim, tmp_path):
    bundle = shim.bundle()
    os.rename(bundle / "rootfs", bundle / "elsewhere")
    line = one_error(shim("create", "--bundle", str(bundle), shim.container()))
    assert "rootfs" in line and "does not exist" in line
    line = one_error(shim("create", "--bundle", str(tmp_path / "nope"), shim.container()))
    assert "no such" in line


def test_unknown_id(shim):
    for verb in ("state", "start", "kill", "delete", "pause", "resume", "ps"):
        line = one_error(shim(verb, "dy-unknown"))
        assert "container does not exist" in line, verb


def test_duplicate_id(shim):
    cid, _ = shim.create(busybox.base_config(["sleep", "30"]))
    line = one_error(shim("create", "--bundle", str(shim.bundle()), cid))
    assert "already exists" in line
    assert shim.state(cid)["status"] == "created"  # the first one is untouched


@pytest.mark.parametrize("bad", ["../escape", "a/b", "..", ".hidden", "with space"])
def test_invalid_id(shim, bad):
    line = one_error(shim("create", "--bundle", str(shim.bundle()), bad))
    assert "invalid container id" in line
    assert not os.path.exists(os.path.join(shim.root, bad))
    one_error(shim("state", bad))


def test_json_log_format_to_stderr_and_file(shim, tmp_path):
    res = shim("state", "dy-unknown", log_args=("--log-format", "json"))
    record = json.loads(one_error(res))
    assert record["level"] == "error" and record["msg"] == "container does not exist"
    assert record["time"].endswith("Z")
    log = tmp_path / "log.json"
    res = shim("state", "dy-unknown", log_args=("--log", str(log), "--log-format", "json"))
    assert res.returncode == 1
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["msg"] == "container does not exist"


def test_systemd_cgroup_refused(shim):
    line = one_error(shim("list", log_args=("--systemd-cgroup",)))
    assert "systemd" in line


def test_usage_errors(shim):
    assert shim("nosuchverb").returncode == 2
    assert shim("kill").returncode == 2
    assert shim("state", "--bogus", "x").returncode == 2


def test_failed_create_leaves_nothing(shim):
    cfg = busybox.base_config(["true"])
    # the 3rd mount fails after the init has unshared, mounted and joined its cgroup
    cfg["mounts"].insert(2, {"destination": "/bad", "type": "nosuchfs", "source": "x"})
    cid = shim.container()
    bundle = shim.bundle(cfg)
    line = one_error(shim("create", "--bundle", str(bundle), cid))
    assert "nosuchfs" in line and "/bad" in line
    assert not os.path.exists(os.path.join(shim.root, cid))
    assert shim.cgroup_dirs(cid) == []
    assert shim.mounts_under(str(bundle)) == []


def test_failed_create_bad_cgroup_resource(shim):
    cfg = busybox.base_config(["true"])
    cfg["linux"]["resources"]["cpu"] = {"cpus": "9999"}
    cid = shim.container()
    res = shim("create", "--bundle", str(shim.bundle(cfg)), cid)
    assert res.returncode == 1
    assert not os.path.exists(os.path.join(shim.root, cid))
    assert shim.cgroup_dirs(cid) == []


def test_start_when_init_died(shim):
    cid, pid = shim.create(busybox.base_config(["true"]))
    os.kill(pid, 9)
    shim.reap(pid)
    line = one_error(shim("start", cid))
    assert "stopped" in line


def test_corrupt_state_json(shim):
    cid, pid = shim.create(busybox.base_config(["sleep", "30"]))
    state_file = os.path.join(shim.root, cid, "state.json")
    good = open(state_file).read()
    with open(state_file, "w") as f:
        f.write("{broken")
    line = one_error(shim("state", cid))
    assert "state.json is corrupt" in line
    assert shim("delete", cid).returncode == 1
    with open(state_file, "w") as f:
        f.write(good)  # restore so teardown can kill the init and remove the cgroup
