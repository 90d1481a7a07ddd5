"""spec, features, hooks, update and events: the remaining verbs."""

from __future__ import annotations

import json
import subprocess

import pytest
from helpers import busybox

from dockyard.oci.spec import default_spec

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]


def test_spec_writes_runc_default(shim, tmp_path):
    bundle = tmp_path / "b"
    bundle.mkdir()
    shim("spec", "--bundle", str(bundle), check=True)
    cfg = json.loads((bundle / "config.json").read_text())
    assert cfg == default_spec()
    assert cfg["process"]["terminal"] is True and cfg["hostname"] == "runc"
    res = shim("spec", "--bundle", str(bundle))
    assert res.returncode == 1 and "exists" in res.stderr


def test_spec_bundle_runs(shim, tmp_path):
    bundle = tmp_path / "b"
    bundle.mkdir()
    shim("spec", "--bundle", str(bundle), check=True)
    busybox.make_rootfs(bundle / "rootfs")
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"].update(terminal=False, args=["sh", "-c", "hostname; echo ok"])
    (bundle / "config.json").write_text(json.dumps(cfg))
    cid = shim.container()
    res = shim("run", "--bundle", str(bundle), cid)
    assert res.stdout.split() == ["runc", "ok"], res.stderr


def test_features(shim):
    feats = json.loads(shim("features", check=True).stdout)
    assert feats["ociVersionMax"] == "1.0.2-dev"
    assert "rbind" in feats["mountOptions"] and "rslave" in feats["mountOptions"]
    assert set(feats["linux"]["namespaces"]) >= {"pid", "network", "mount", "cgroup"}
    assert "user" not in feats["linux"]["namespaces"]
    assert feats["linux"]["cgroup"]["v1"] is True and feats["linux"]["cgroup"]["systemd"] is False
    assert len(feats["linux"]["capabilities"]) == 41


def test_version(shim):
    out = shim("--version", check=True).stdout
    assert "version" in out and "spec: 1.0.2-dev" in out


def test_hooks(shim, tmp_path):
    log = tmp_path / "hooks.log"
    script = tmp_path / "hook.sh"
    script.write_text(f"#!/bin/sh\necho \"$1 $(cat)\" >> {log}\n")
    script.chmod(0o755)
    cfg = busybox.base_config(["sleep", "60"])
    kinds = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
             "poststop")
    cfg["hooks"] = {kind: [{"path": str(script), "args": ["hook.sh", kind]}] for kind in kinds}
    # startContainer resolves its path inside the container: give it the script there
    cfg["hooks"]["startContainer"] = [{"path": "/bin/sh", "args": [
        "sh", "-c", "echo \"startContainer $(cat)\" > /dev/shm/hook; "
        "grep -q . /dev/shm/hook"]}]
    cfg["hooks"]["poststart"] = [{"path": "/bin/sh", "args": [
        "sh", "-c", f"sleep 0.2; cat /proc/$(cat | sed 's/.*pid.:\\([0-9]*\\).*/\\1/')"
        f"/root/dev/shm/hook >> {log}; echo poststart >> {log}"]}]
    cid, pid = shim.create(cfg)
    shim("start", cid, check=True)
    shim("delete", "--force", cid, check=True)
    shim.reap(pid)
    entries = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert [e[0] for e in entries] == ["prestart", "createRuntime", "createContainer",
                                       "startContainer", "poststart", "poststop"]
    states = {e[0]: json.loads(e[1]) for e in entries if len(e) > 1}
    assert states["prestart"]["id"] == cid and states["prestart"]["pid"] == pid
    assert states["prestart"]["status"] == "creating"
    assert states["createContainer"]["pid"] == 1  # the container's view
    assert states["startContainer"]["status"] == "created"
    assert states["poststop"]["status"] == "stopped"


def test_failing_hook_fails_create_and_cleans_up(shim, tmp_path):
    cfg = busybox.base_config(["sleep", "60"])
    cfg["hooks"] = {"prestart": [{"path": "/bin/false"}]}
    cid = shim.container()
    res = shim.detached("create", "--bundle", str(shim.bundle(cfg)), cid, check=False)
    assert res.returncode == 1 and "prestart hook" in res.stderr
    assert shim("state", cid).returncode == 1
    assert shim.cgroup_dirs(cid) == []


def test_update_and_events(shim):
    cid, pid = shim.create(busybox.base_config(["sleep", "60"]))
    shim("start", cid, check=True)
    shim("update", "--resources", "-", cid, check=True,
         input=json.dumps({"memory": {"limit": 64 << 20}, "pids": {"limit": 50}}))
    shim("update", "--cpu-shares", "512", "--memory", "96m", cid, check=True)
    with open(f"/sys/fs/cgroup/memory/dockyard/{cid}/memory.limit_in_bytes") as f:
        assert int(f.read()) == 96 << 20
    with open(f"/sys/fs/cgroup/pids/dockyard/{cid}/pids.max") as f:
        assert f.read().strip() == "50"
    with open(f"/sys/fs/cgroup/cpu/dockyard/{cid}/cpu.shares") as f:
        assert f.read().strip() == "512"
    stats = json.loads(shim("events", "--stats", cid, check=True).stdout)
    assert stats["type"] == "stats" and stats["id"] == cid
    assert stats["data"]["pids"]["current"] >= 1
    # the stream: one stats record per interval until we stop reading
    proc = subprocess.Popen([shim.binary, "--root", shim.root, "events", "--interval", "100ms",
                             cid], stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        second = json.loads(proc.stdout.readline())
        assert first["type"] == second["type"] == "stats"
    finally:
        proc.kill()
        proc.wait()


def test_ps_table(shim):
    cid, pid = shim.create(busybox.base_config(["sleep", "60"]))
    shim("start", cid, check=True)
    lines = shim("ps", cid, check=True).stdout.splitlines()
    assert "PID" in lines[0].split()
    assert len(lines) == 2 and str(pid) in lines[1].split()


def test_events_stream_reports_oom(shim):
    # a memory hog in a 16 MiB cgroup: the OOM killer fires, `events` says so
    cfg = busybox.base_config(["sh", "-c", "sleep 0.5; tail /dev/zero; sleep 60"])
    cfg["linux"]["resources"]["memory"] = {"limit": 16 << 20, "swap": 16 << 20}
    cid, pid = shim.create(cfg)
    proc = subprocess.Popen([shim.binary, "--root", shim.root, "events", "--interval", "200ms",
                             cid], stdout=subprocess.PIPE, text=True)
    try:
        shim("start", cid, check=True)
        kinds = []
        for _ in range(50):
            line = proc.stdout.readline()
            if not line:
                break
            kinds.append(json.loads(line)["type"])
            if "oom" in kinds:
                break
        assert "oom" in kinds, kinds
    finally:
        proc.kill()
        proc.wait()
