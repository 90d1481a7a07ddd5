"""shim/lean.py against the full CLI: same states, same effects, hand-over when unsure.

`shim` (tests/oci/conftest.py) runs the installed form of the launcher, so
start/state/kill/delete go through lean.py whenever it can; `full` runs the
same checkout through cli.py only. Both act on the same --root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from dockyard.shim import lean
from helpers import busybox

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]


@pytest.fixture
def full(shim, shim_full_bin):
    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([shim_full_bin, "--root", shim.root, *args], capture_output=True,
                              text=True, timeout=30)
    return call


def _lean_ran(shim, *args: str) -> bool:
    """Whether lean.main() takes `args` itself (it hands over by returning None before
    acting: a dry look needs a copy of the state, so this only parses)."""
    return lean._parse(["--root", shim.root, *args]) is not None


def test_state_prints_what_the_full_cli_prints(shim, full):
    cfg = busybox.base_config(["sleep", "60"])
    cfg["annotations"] = {"org.dockyard.test": "ü \"quoted\""}
    cid, pid = shim.create(cfg)
    for step in ("created", "running", "stopped"):
        ours, theirs = shim("state", cid, check=True), full("state", cid)
        assert ours.stdout == theirs.stdout and theirs.returncode == 0
        assert json.loads(ours.stdout)["status"] == step
        if step == "created":
            shim("start", cid, check=True)
        elif step == "running":
            shim("kill", cid, "KILL", check=True)
            shim.reap(pid)
    shim("delete", cid, check=True)
    assert not os.path.exists(os.path.join(shim.root, cid))
    assert not shim.cgroup_dirs(cid)


def test_lifecycle_through_the_lean_path(shim):
    cid, pid = shim.create(busybox.base_config(["sleep", "60"]))
    assert _lean_ran(shim, "start", cid)
    shim("start", cid, check=True)
    assert shim.state(cid)["status"] == "running"
    assert not os.path.exists(os.path.join(shim.root, cid, "exec.fifo"))
    shim("kill", cid, "15", check=True)  # sleep as pid 1 ignores TERM: still running
    assert shim.state(cid)["status"] == "running"
    shim("kill", cid, "sigkill", check=True)
    shim.reap(pid)
    shim("delete", cid, check=True)
    assert not os.path.exists(os.path.join(shim.root, cid)) and not shim.cgroup_dirs(cid)


@pytest.mark.parametrize("args, rc, message", [
    (("state", "dy-nosuch"), 1, "container does not exist"),
    (("start", "dy-nosuch"), 1, "container does not exist"),
    (("kill", "dy-nosuch"), 1, "container does not exist"),
    (("delete", "dy-nosuch"), 1, "container does not exist"),
    (("state", "../x"), 1, "invalid"),
    (("kill", "dy-x", "SIGNOPE"), 1, ""),
])
def test_errors_come_from_the_full_cli(shim, full, args, rc, message):
    ours, theirs = shim(*args), full(*args)
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr.replace(
        theirs.stderr[6:36], ours.stderr[6:36]))  # same record, up to its timestamp
    assert ours.returncode == rc and message in ours.stderr


def test_wrong_states_are_refused_with_the_full_message(shim, full):
    cid, pid = shim.create(busybox.base_config(["sleep", "60"]))
    shim("start", cid, check=True)
    res = shim("start", cid)
    assert res.returncode == 1 and "cannot start an already running container" in res.stderr
    res = shim("delete", cid)
    assert res.returncode == 1 and "that is not stopped: running" in res.stderr
    res = shim("kill", cid, "SIGNOPE")
    assert res.returncode == 1 and "unknown signal" in res.stderr
    shim("delete", "--force", cid, check=True)  # a live container: the full CLI kills it
    shim.reap(pid)
    assert not os.path.exists(os.path.join(shim.root, cid)) and not shim.cgroup_dirs(cid)
    assert full("delete", "--force", cid).returncode == 0  # gone: --force is quiet


def test_start_of_an_init_that_died_reports_stopped(shim):
    cid, pid = shim.create(busybox.base_config(["sleep", "60"]))
    os.kill(pid, 9)
    shim.reap(pid)
    res = shim("start", cid)
    assert res.returncode == 1 and "stopped" in res.stderr
    shim("delete", cid, check=True)


def test_hooks_hand_over_to_the_full_cli(shim, tmp_path):
    log = tmp_path / "poststop.log"
    cfg = busybox.base_config(["true"])
    cfg["hooks"] = {"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {log}"]}]}
    cid, pid = shim.create(cfg)
    shim("start", cid, check=True)
    shim.reap(pid)
    shim("delete", cid, check=True)
    assert json.loads(log.read_text())["status"] == "stopped"


def test_traced_and_debug_calls_hand_over():
    assert lean._parse(["--debug", "state", "x"]) is None
    env = dict(os.environ, TRACEPARENT=f"00-{'1' * 32}-{'2' * 16}-01")
    out = subprocess.run([sys.executable, "-c", "import sys; from dockyard.shim import lean; "
                          "print(lean.main(['state', 'x']))"], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "None"
