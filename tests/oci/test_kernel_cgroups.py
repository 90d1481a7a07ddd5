"""cgroup managers against the real kernel: v1 hierarchies under /sys/fs/cgroup and
the cgroup2 mount at /sys/fs/cgroup/unified (the v2 code path, device eBPF included).

Each test makes its cgroups as `dockyard-test-<uuid>` and registers cleanup at
creation (thaw, SIGKILL what is left inside, rmdir). Processes placed in them are
fresh python children that wait for "go" on stdin, so nothing runs before it is
inside the cgroup.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from dockyard.shim import cgroups
from dockyard.shim.cgroups import _bpf, devices

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]

SRC = str(Path(__file__).resolve().parents[2] / "src")
UNIFIED = "/sys/fs/cgroup/unified"


class Child:
    """`python -I -S -c code`; the code's first line waits for 'go' on stdin."""

    def __init__(self, code: str) -> None:
        prelude = (f"import sys, os, json, errno\nsys.path.insert(0, {SRC!r})\n"
                   "assert sys.stdin.readline() == 'go\\n'\n")
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c",
                                      prelude + textwrap.dedent(code)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid

    def go(self, timeout: float = 30) -> tuple[int, dict | None, str]:
        out, err = self.proc.communicate("go\n", timeout=timeout)
        lines = out.strip().splitlines()
        return self.proc.returncode, (json.loads(lines[-1]) if lines else None), err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def _cleanup(mgr: cgroups.Manager) -> None:
    if not mgr.exists():
        return
    try:
        mgr.thaw()
    except OSError:
        pass
    for pid in mgr.pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while mgr.pids() and time.monotonic() < deadline:
        time.sleep(0.02)
    mgr.destroy()


@pytest.fixture
def make_cgroup(request):
    made: list[cgroups.Manager] = []

    def make(root: str = "/sys/fs/cgroup") -> cgroups.Manager:
        name = f"dockyard-test-{uuid.uuid4().hex[:10]}"
        mgr = cgroups.open_manager(f"/{name}", name, root=root)
        made.append(mgr)  # registered before anything exists on disk
        mgr.create()
        return mgr

    yield make
    for mgr in reversed(made):
        _cleanup(mgr)
        assert not mgr.exists(), f"cgroup left behind: {mgr.paths}"


@pytest.fixture
def children():
    made: list[Child] = []

    def spawn(code: str) -> Child:
        child = Child(code)
        made.append(child)
        return child

    yield spawn
    for child in made:
        child.kill()


OPEN_PROBE = """
res = {}
for path, flags in PROBES:
    try:
        os.close(os.open(path, flags))
        res[path + ":" + str(flags)] = 0
    except OSError as e:
        res[path + ":" + str(flags)] = e.errno
for path, dev in MKNODS:
    try:
        os.mknod(path, 0o600 | 0o020000, dev)
        res["mknod:" + path] = 0
    except OSError as e:
        res["mknod:" + path] = e.errno
print(json.dumps(res), flush=True)
"""


def probe(children, mgr, probes, mknods=()) -> dict:
    code = f"PROBES = {list(probes)!r}\nMKNODS = {list(mknods)!r}\n" + OPEN_PROBE
    child = children(code)
    mgr.add(child.pid)
    rc, res, err = child.go()
    assert rc == 0, err
    return res


def test_v1_limits_land_in_the_kernel_files(make_cgroup):
    mgr = make_cgroup()
    assert mgr.version == 1 and os.path.isdir(mgr.path("memory"))
    mgr.set({"memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 64 << 20},
             "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0", "mems": "0"},
             "pids": {"limit": 42}, "blockIO": {"weight": 300}})

    def rd(ctrl: str, name: str) -> str:
        with open(os.path.join(mgr.path(ctrl), name)) as f:
            return f.read().strip()

    assert rd("memory", "memory.limit_in_bytes") == str(64 << 20)
    assert rd("memory", "memory.memsw.limit_in_bytes") == str(64 << 20)
    assert rd("memory", "memory.soft_limit_in_bytes") == str(32 << 20)
    assert (rd("cpu", "cpu.shares"), rd("cpu", "cpu.cfs_quota_us"),
            rd("cpu", "cpu.cfs_period_us")) == ("512", "20000", "100000")
    assert (rd("cpuset", "cpuset.cpus"), rd("cpuset", "cpuset.mems")) == ("0", "0")
    assert rd("pids", "pids.max") == "42"
    assert rd("blkio", "blkio.bfq.weight").split()[-1] == "300"
    # update: growing memory+swap must succeed in either order
    mgr.set({"memory": {"limit": 256 << 20, "swap": 512 << 20}})
    assert rd("memory", "memory.limit_in_bytes") == str(256 << 20)
    with pytest.raises(Exception, match="cpu.shares"):
        mgr.set({"cpu": {"shares": 1}})  # the kernel clamps it: reported


def test_v1_add_pids_stats_and_destroy(make_cgroup, children):
    mgr = make_cgroup()
    child = children("sum(range(3_000_000))\nprint(json.dumps({'ok': 1}), flush=True)\n"
                     "sys.stdin.readline()\n")
    mgr.add(child.pid)
    assert mgr.pids() == [child.pid]
    with open(f"/proc/{child.pid}/cgroup") as f:
        text = f.read()
    assert f"memory:/{os.path.basename(mgr.path('memory'))}" in text
    child.proc.stdin.write("go\n")
    child.proc.stdin.flush()
    assert json.loads(child.proc.stdout.readline()) == {"ok": 1}
    stats = mgr.stats()
    assert stats["cpu"]["usage"]["total"] > 0 and len(stats["cpu"]["usage"]["percpu"]) >= 1
    assert stats["memory"]["usage"]["usage"] > 0 and stats["pids"]["current"] == 1
    json.dumps(stats)  # plain JSON types only
    child.proc.stdin.write("\n")
    child.proc.stdin.flush()
    child.proc.wait(timeout=10)
    mgr.destroy()
    assert not mgr.exists()


def test_v1_devices_deny_host_devices(make_cgroup, children, tmp_path):
    mgr = make_cgroup()
    mgr.set({"devices": [{"allow": False, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "r"}]})
    with open(os.path.join(mgr.path("devices"), "devices.list")) as f:
        assert f.read().split("\n")[:2] == ["c 1:3 rwm", "c 1:9 r"]
    zero = str(tmp_path / "zero")
    os.mknod(zero, 0o666 | 0o020000, os.makedev(1, 5))  # made outside the cgroup
    res = probe(children, mgr,
                [("/dev/null", os.O_RDWR), ("/dev/zero", os.O_RDONLY), (zero, os.O_RDONLY),
                 ("/dev/urandom", os.O_RDONLY), ("/dev/urandom", os.O_WRONLY)],
                [(str(tmp_path / "mem"), os.makedev(1, 1)),
                 (str(tmp_path / "null2"), os.makedev(1, 3))])
    assert res == {f"/dev/null:{os.O_RDWR}": 0, f"/dev/zero:{os.O_RDONLY}": errno.EPERM,
                   f"{zero}:{os.O_RDONLY}": errno.EPERM,
                   f"/dev/urandom:{os.O_RDONLY}": 0, f"/dev/urandom:{os.O_WRONLY}": errno.EPERM,
                   f"mknod:{tmp_path / 'mem'}": errno.EPERM, f"mknod:{tmp_path / 'null2'}": 0}


@pytest.mark.parametrize("rules", [
    devices.with_defaults(None),
    [{"allow": False, "access": "rwm"},
     {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
     {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "w"},
     {"allow": True, "type": "b", "major": 8, "minor": None, "access": "rwm"},
     {"allow": False, "type": "b", "major": 8, "minor": None, "access": "w"},
     {"allow": True, "type": "a", "major": 7, "minor": 1, "access": "m"}],
    [{"allow": True, "access": "rwm"}],
])
def test_v1_devices_list_matches_the_emulation(make_cgroup, monkeypatch, rules):
    mgr = make_cgroup()
    mgr.set({"devices": rules})
    with open(os.path.join(mgr.path("devices"), "devices.list")) as f:
        assert f.read().split("\n")[:-1] == devices.v1_list(devices.parse_rules(rules))
    from dockyard.shim.cgroups import v1
    written = []
    monkeypatch.setattr(v1, "write_file", lambda path, value: written.append(path))
    mgr.set({"devices": rules})
    assert written == []  # the same rules again: left alone
    monkeypatch.undo()
    # a changed deny-by-default list is patched in place, and ends as a rewrite would
    if devices.v1_list(devices.parse_rules(rules)) != ["a *:* rwm"]:
        changed = rules[:2] + [{"allow": True, "type": "c", "major": 4, "minor": 1,
                                "access": "rw"}]
        mgr.set({"devices": changed})
        with open(os.path.join(mgr.path("devices"), "devices.list")) as f:
            assert sorted(f.read().split("\n")[:-1]) == \
                sorted(devices.v1_list(devices.parse_rules(changed)))


def test_v1_oom_killer_and_oom_count(make_cgroup, children):
    mgr = make_cgroup()
    mgr.set({"memory": {"limit": 48 << 20, "swap": 48 << 20}})
    assert mgr.oom_count() == 0
    hog = children("x = b'x' * (256 << 20)\nprint(json.dumps({'survived': len(x)}))\n")
    mgr.add(hog.pid)
    rc, res, _ = hog.go()
    assert rc == -signal.SIGKILL and res is None
    assert mgr.oom_count() >= 1
    # (failcnt stays 0 on recent kernels; the peak shows the limit was hit)
    assert mgr.stats()["memory"]["usage"]["max"] == 48 << 20


def test_v1_pids_limit_holds_a_fork_bomb(make_cgroup, children):
    mgr = make_cgroup()
    mgr.set({"pids": {"limit": 8}})
    bomb = children("""
        r, w = os.pipe()
        kids, err = [], None
        for _ in range(64):
            try:
                pid = os.fork()
            except OSError as e:
                err = e.errno
                break
            if pid == 0:
                os.close(w)
                os.read(r, 1)
                os._exit(0)
            kids.append(pid)
        print(json.dumps({"forked": len(kids), "errno": err}), flush=True)
        os.close(w)
        for k in kids:
            os.waitpid(k, 0)
    """)
    mgr.add(bomb.pid)
    rc, res, err = bomb.go()
    assert rc == 0, err
    assert res == {"forked": 7, "errno": errno.EAGAIN}  # 8 tasks: the bomb and 7 children


def test_v1_freeze_and_thaw(make_cgroup, children):
    mgr = make_cgroup()
    echo = children("for line in sys.stdin:\n    print(line.strip(), flush=True)\n")
    mgr.add(echo.pid)
    echo.proc.stdin.write("go\nping\n")
    echo.proc.stdin.flush()
    assert echo.proc.stdout.readline() == "ping\n"
    mgr.freeze()
    assert mgr.state() == cgroups.FROZEN
    with open(f"/proc/{echo.pid}/status") as f:
        assert "State:" in f.read()
    echo.proc.stdin.write("while-frozen\n")
    echo.proc.stdin.flush()
    os.set_blocking(echo.proc.stdout.fileno(), False)
    time.sleep(0.3)
    assert echo.proc.stdout.readline() == ""  # frozen: no answer
    os.set_blocking(echo.proc.stdout.fileno(), True)
    mgr.thaw()
    assert mgr.state() == cgroups.THAWED
    assert echo.proc.stdout.readline() == "while-frozen\n"


# --- v2: the cgroup2 mount beside the v1 hierarchies


@pytest.fixture
def unified():
    if not cgroups.is_v2(UNIFIED):
        pytest.skip(f"no cgroup2 mount at {UNIFIED}")
    return UNIFIED


def test_v2_add_pids_freeze_thaw(make_cgroup, children, unified):
    mgr = make_cgroup(unified)
    assert mgr.version == 2 and os.path.isdir(mgr.path)
    echo = children("for line in sys.stdin:\n    print(line.strip(), flush=True)\n")
    mgr.add(echo.pid)
    assert mgr.pids() == [echo.pid]
    echo.proc.stdin.write("go\nping\n")
    echo.proc.stdin.flush()
    assert echo.proc.stdout.readline() == "ping\n"
    mgr.freeze()
    assert mgr.state() == cgroups.FROZEN
    with open(os.path.join(mgr.path, "cgroup.events")) as f:
        assert "frozen 1" in f.read()
    echo.proc.stdin.write("later\n")
    echo.proc.stdin.flush()
    os.set_blocking(echo.proc.stdout.fileno(), False)
    time.sleep(0.3)
    assert echo.proc.stdout.readline() == ""
    os.set_blocking(echo.proc.stdout.fileno(), True)
    mgr.thaw()
    assert mgr.state() == cgroups.THAWED
    assert echo.proc.stdout.readline() == "later\n"
    assert cgroups.Manager.from_dict(mgr.to_dict()).pids() == [echo.pid]


def _attached(path: str) -> list[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return _bpf.query(fd)
    finally:
        os.close(fd)


def test_v2_device_program_is_enforced_and_replaced(make_cgroup, children, unified, tmp_path):
    mgr = make_cgroup(unified)
    null_only = [{"allow": False, "access": "rwm"},
                 {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]
    mgr.set({"devices": null_only})
    assert len(_attached(mgr.path)) == 1
    zero = str(tmp_path / "zero")
    os.mknod(zero, 0o666 | 0o020000, os.makedev(1, 5))
    probes = [("/dev/null", os.O_RDWR), ("/dev/zero", os.O_RDONLY), (zero, os.O_RDONLY)]
    res = probe(children, mgr, probes, [(str(tmp_path / "full"), os.makedev(1, 7))])
    assert res == {f"/dev/null:{os.O_RDWR}": 0, f"/dev/zero:{os.O_RDONLY}": errno.EPERM,
                   f"{zero}:{os.O_RDONLY}": errno.EPERM,
                   f"mknod:{tmp_path / 'full'}": errno.EPERM}
    # update: the new program replaces ours instead of stacking on it
    first = _attached(mgr.path)
    mgr.set({"devices": null_only + [{"allow": True, "type": "c", "major": 1, "minor": 5,
                                      "access": "r"}]})
    second = _attached(mgr.path)
    assert len(second) == 1 and second != first
    res = probe(children, mgr, [("/dev/zero", os.O_RDONLY), ("/dev/zero", os.O_WRONLY)])
    assert res == {f"/dev/zero:{os.O_RDONLY}": 0, f"/dev/zero:{os.O_WRONLY}": errno.EPERM}


def test_v2_limits_need_enabled_controllers(make_cgroup, unified):
    mgr = make_cgroup(unified)
    with open(os.path.join(unified, "cgroup.controllers")) as f:
        available = f.read().split()
    if "pids" in available:
        pytest.skip("this cgroup2 mount has controllers; covered by the v1 tests")
    with pytest.raises(OSError, match="pids.max does not exist"):
        mgr.set({"pids": {"limit": 5}})
