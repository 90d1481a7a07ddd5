"""Fake cgroupfs trees for the manager unit tests (STYLE: managers take their root).

A fake tree holds plain files where the kernel has control files; `fill_*`
plays the kernel's part of making a new cgroup's files after `create()`.
`writes` records every write_file call in order, as the device and
memory-ordering tests need.
"""

from __future__ import annotations

import os

import pytest

V1_HIERARCHIES = ("blkio", "cpu,cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory",
                  "pids", "systemd")

V1_FILES = {
    "blkio": {"blkio.bfq.weight": "100", "blkio.weight_device": "",
              "blkio.throttle.read_bps_device": "", "blkio.throttle.write_bps_device": "",
              "blkio.throttle.read_iops_device": "", "blkio.throttle.write_iops_device": "",
              "blkio.throttle.io_service_bytes_recursive": "", "blkio.throttle.io_serviced_recursive": ""},
    "cpu,cpuacct": {"cpu.shares": "1024", "cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000",
                    "cpu.cfs_burst_us": "0", "cpu.rt_runtime_us": "0", "cpu.rt_period_us": "1000000",
                    "cpu.idle": "0", "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
                    "cpuacct.usage": "0", "cpuacct.usage_percpu": "0 0 ", "cpuacct.stat": "user 0\nsystem 0\n",
                    "cpuacct.usage_all": "cpu user system\n0 0 0\n1 0 0\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.sched_load_balance": "1",
               "cpuset.sched_relax_domain_level": "-1"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    "freezer": {"freezer.state": "THAWED"},
    "hugetlb": {"hugetlb.2MB.limit_in_bytes": "9223372036854771712", "hugetlb.2MB.usage_in_bytes": "0",
                "hugetlb.2MB.max_usage_in_bytes": "0", "hugetlb.2MB.failcnt": "0"},
    "memory": {"memory.limit_in_bytes": "9223372036854771712",
               "memory.memsw.limit_in_bytes": "9223372036854771712",
               "memory.soft_limit_in_bytes": "9223372036854771712", "memory.swappiness": "60",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
               "memory.usage_in_bytes": "0", "memory.max_usage_in_bytes": "0", "memory.failcnt": "0",
               "memory.memsw.usage_in_bytes": "0", "memory.memsw.max_usage_in_bytes": "0",
               "memory.memsw.failcnt": "0", "memory.stat": "cache 0\nrss 0\n"},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "systemd": {},
}


def write_tree(base: str, files: dict[str, str]) -> None:
    os.makedirs(base, exist_ok=True)
    for name, content in files.items():
        with open(os.path.join(base, name), "w") as f:
            f.write(content)


@pytest.fixture
def v1_root(tmp_path) -> str:
    root = tmp_path / "cgroup"
    for h in V1_HIERARCHIES:
        write_tree(str(root / h), {"cgroup.procs": ""})
    (root / "cpu").symlink_to("cpu,cpuacct")
    (root / "cpuacct").symlink_to("cpu,cpuacct")
    write_tree(str(root / "cpuset"), {"cpuset.cpus": "0-1\n", "cpuset.mems": "0\n"})
    return str(root)


def fill_v1(mgr) -> None:
    """What the kernel does on mkdir: every new cgroup dir gets its files."""
    for name, path in mgr.paths.items():
        files = {"cgroup.procs": "", **V1_FILES.get(name, {})}
        for directory in _new_dirs(path):
            for fname, content in files.items():
                if not os.path.exists(os.path.join(directory, fname)):
                    write_tree(directory, {fname: content})


def _new_dirs(path: str) -> list[str]:
    out = []
    while not os.path.exists(os.path.join(path, "cgroup.procs")):
        out.append(path)
        path = os.path.dirname(path)
    out.append(path)
    return out


V2_FILES = {
    "cgroup.procs": "", "cgroup.freeze": "0", "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.controllers": "cpuset cpu io memory pids", "cgroup.subtree_control": "",
    "cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0", "cpu.idle": "0",
    "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\n"
                "nr_throttled 2\nthrottled_usec 30\n",
    "cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpus.effective": "0-3\n",
    "cpuset.mems.effective": "0\n",
    "memory.max": "max", "memory.low": "0", "memory.swap.max": "max", "memory.current": "4096",
    "memory.swap.current": "0", "memory.peak": "8192", "memory.stat": "anon 4096\nfile 0\n",
    "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
    "pids.max": "max", "pids.current": "2",
    "io.weight": "default 100", "io.max": "", "io.stat": "8:0 rbytes=4096 wbytes=0 rios=1 wios=0\n",
}


@pytest.fixture
def v2_root(tmp_path) -> str:
    root = tmp_path / "unified"
    write_tree(str(root), {"cgroup.controllers": "cpuset cpu io memory pids",
                           "cgroup.subtree_control": "", "cgroup.procs": ""})
    return str(root)


def fill_v2(mgr) -> None:
    for directory in _new_dirs(mgr.path):
        for fname, content in V2_FILES.items():
            if not os.path.exists(os.path.join(directory, fname)):
                write_tree(directory, {fname: content})


@pytest.fixture
def writes(monkeypatch) -> list[tuple[str, str]]:
    """Record (path, value) of every cgroup file write, still performing it."""
    from dockyard.shim.cgroups import _base, v1, v2

    log: list[tuple[str, str]] = []
    real = _base.write_file

    def recording(path: str, value: str) -> None:
        log.append((path, value))
        real(path, value)

    for mod in (_base, v1, v2):
        monkeypatch.setattr(mod, "write_file", recording)
    return log


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


class _Kernel:
    """The kernel's side of a fake tree, handed to tests as the `kernel` fixture."""

    fill_v1 = staticmethod(fill_v1)
    fill_v2 = staticmethod(fill_v2)
    read = staticmethod(read)
    write_tree = staticmethod(write_tree)


@pytest.fixture
def kernel() -> _Kernel:
    return _Kernel()


@pytest.fixture
def v1_mgr(v1_root, kernel):
    from dockyard.shim.cgroups import open_manager

    mgr = open_manager("/dockyard/c1", "c1", root=v1_root)
    mgr.create()
    kernel.fill_v1(mgr)
    return mgr


@pytest.fixture
def v2_mgr(v2_root, kernel):
    from dockyard.shim.cgroups import open_manager

    mgr = open_manager("/dockyard/c1", "c1", root=v2_root)
    mgr.create()
    kernel.fill_v2(mgr)
    return mgr
