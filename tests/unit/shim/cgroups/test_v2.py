"""cgroup v2 manager against a fake unified tree: conversions, create, set, freeze, stats."""

from __future__ import annotations

import os

import pytest
from dockyard.shim import cgroups
from dockyard.shim.cgroups import _base, devices
from dockyard.shim.cgroups.v2 import V2Manager, cpu_weight, io_weight, plan, swap_max

from dockyard import errdefs


@pytest.mark.parametrize("shares,weight", [(2, 1), (1024, 39), (262144, 10000), (512, 20)])
def test_cpu_weight_uses_runcs_formula(shares, weight):
    assert cpu_weight(shares) == weight == 1 + ((shares - 2) * 9999) // 262142


def test_io_weight_maps_10_1000_to_1_10000():
    assert io_weight(10) == 1 and io_weight(1000) == 10000 and io_weight(500) == 4950


def test_swap_max_is_swap_minus_limit():
    assert swap_max(128, 64) == 64
    assert swap_max(0, -1) == -1  # unlimited memory lifts swap
    assert swap_max(-1, 64) == -1 and swap_max(0, 64) == 0
    with pytest.raises(errdefs.InvalidArgument, match=">= memory.limit"):
        swap_max(32, 64)
    with pytest.raises(errdefs.InvalidArgument, match="needs a memory limit"):
        swap_max(64, 0)


def test_plan_converts_oci_resources():
    assert plan({
        "memory": {"limit": 64, "swap": 128, "reservation": 32},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1"},
        "pids": {"limit": -1},
        "blockIO": {"weight": 500, "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 10}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "unified": {"memory.high": "100"},
    }) == [
        ("memory.swap.max", "64"), ("memory.max", "64"), ("memory.low", "32"),
        ("cpu.weight", "39"), ("cpu.max", "50000 100000"), ("cpuset.cpus", "0-1"),
        ("pids.max", "max"), ("io.weight", "500"), ("io.max", "8:0 wiops=10"),
        ("hugetlb.2MB.max", "0"), ("memory.high", "100"),
    ]
    assert plan({"cpu": {"quota": -1}}) == [("cpu.max", "max")]
    assert plan({"cpu": {"period": 20000}}) == [("cpu.max", "max 20000")]
    assert plan({"memory": {"limit": -1}}) == [("memory.swap.max", "max"), ("memory.max", "max")]


@pytest.mark.parametrize("resources,match", [
    ({"memory": {"disableOOMKiller": True}}, "disableOOMKiller"),
    ({"cpu": {"realtimeRuntime": 5}}, "realtime"),
    ({"cpu": {"shares": 1}}, "2..262144"),
    ({"network": {"classID": 1}}, "net_cls"),
    ({"unified": {"../escape": "1"}}, "invalid file name"),
    ({"pids": {"limit": "many"}}, "pids.limit"),
])
def test_plan_refuses_what_v2_cannot_do(resources, match):
    with pytest.raises(errdefs.InvalidArgument, match=match):
        plan(resources)


def test_open_detects_v2(v2_root, monkeypatch):
    mgr = cgroups.open_manager("/dockyard/c1", "c1", root=v2_root)
    assert isinstance(mgr, V2Manager) and cgroups.is_v2(v2_root)
    assert mgr.paths == {"": os.path.join(v2_root, "dockyard/c1")}
    monkeypatch.setattr(_base, "own_cgroups", lambda pid="self": {"": "/user.slice/sess"})
    assert cgroups.open_manager(None, "c2", root=v2_root).path == \
        os.path.join(v2_root, "user.slice/sess/c2")


def test_create_enables_available_controllers_in_each_ancestor(v2_root, kernel, writes):
    mgr = cgroups.open_manager("/dockyard/c1", "c1", root=v2_root)
    kernel.write_tree(os.path.join(v2_root, "dockyard"), {
        "cgroup.controllers": "cpu memory pids", "cgroup.subtree_control": "memory"})
    mgr.create()
    assert os.path.isdir(mgr.path)
    got = [(os.path.relpath(p, v2_root), v) for p, v in writes]
    # root delegates all it has; dockyard/ only what it lacks; never the leaf
    assert got == [("cgroup.subtree_control", "+cpuset"), ("cgroup.subtree_control", "+cpu"),
                   ("cgroup.subtree_control", "+io"), ("cgroup.subtree_control", "+memory"),
                   ("cgroup.subtree_control", "+pids"),
                   ("dockyard/cgroup.subtree_control", "+cpu"),
                   ("dockyard/cgroup.subtree_control", "+pids")]


def test_set_writes_files_and_prefers_bfq_weight(v2_mgr, kernel):
    v2_mgr.set({"memory": {"limit": 1 << 20, "swap": 3 << 20}, "cpu": {"shares": 512},
                "pids": {"limit": 9}, "blockIO": {"weight": 500}})
    f = lambda name: kernel.read(os.path.join(v2_mgr.path, name))  # noqa: E731
    assert (f("memory.max"), f("memory.swap.max"), f("cpu.weight"), f("pids.max"),
            f("io.weight")) == (str(1 << 20), str(2 << 20), "20", "9", "4950")
    kernel.write_tree(v2_mgr.path, {"io.bfq.weight": "100"})
    v2_mgr.set({"blockIO": {"weight": 500}})
    assert f("io.bfq.weight") == "500"


def test_set_without_swap_accounting_says_so(v2_mgr):
    os.unlink(os.path.join(v2_mgr.path, "memory.swap.max"))
    with pytest.raises(errdefs.InvalidArgument, match="swap accounting"):
        v2_mgr.set({"memory": {"limit": 1 << 20, "swap": 3 << 20}})


def test_set_devices_attaches_a_compiled_program(v2_mgr, monkeypatch):
    calls = []

    def fake_attach(path, program, sys=None):
        calls.append((path, program))
        return os.open("/dev/null", os.O_RDONLY)

    monkeypatch.setattr(devices, "attach_program", fake_attach)
    rules = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1,
                                                 "minor": 3, "access": "rwm"}]
    v2_mgr.set({"devices": rules})
    assert calls == [(v2_mgr.path, devices.compile_program(devices.parse_rules(rules)))]


def test_freeze_waits_for_cgroup_events(v2_mgr, kernel, monkeypatch):
    monkeypatch.setattr(_base, "FREEZE_TIMEOUT", 0.05)
    from dockyard.shim.cgroups import v2
    monkeypatch.setattr(v2, "FREEZE_TIMEOUT", 0.05)
    # The fake kernel never reports frozen: freeze must time out, naming the cgroup.
    with pytest.raises(OSError, match="not FROZEN"):
        v2_mgr.freeze()
    assert v2_mgr.state() == cgroups.FREEZING
    kernel.write_tree(v2_mgr.path, {"cgroup.events": "populated 1\nfrozen 1\n"})
    v2_mgr.freeze()
    assert v2_mgr.state() == cgroups.FROZEN
    kernel.write_tree(v2_mgr.path, {"cgroup.events": "populated 1\nfrozen 0\n"})
    v2_mgr.thaw()
    assert v2_mgr.state() == cgroups.THAWED
    assert kernel.read(os.path.join(v2_mgr.path, "cgroup.freeze")) == "0"


def test_stats_oom_and_pids(v2_mgr, kernel):
    kernel.write_tree(v2_mgr.path, {"cgroup.procs": "5\n6\n"})
    assert v2_mgr.pids() == [5, 6]
    assert v2_mgr.oom_count() == 1
    stats = v2_mgr.stats()
    assert stats["cpu"] == {"usage": {"total": 1_500_000, "kernel": 500_000, "user": 1_000_000},
                            "throttling": {"periods": 4, "throttledPeriods": 2,
                                           "throttledTime": 30_000}}
    assert stats["memory"]["usage"] == {"limit": 2**64 - 1, "usage": 4096, "max": 8192,
                                        "failcnt": 3}
    assert stats["memory"]["swap"] == {"limit": 2**64 - 1, "usage": 4096, "failcnt": 0}
    assert stats["memory"]["raw"] == {"anon": 4096, "file": 0}
    assert stats["pids"] == {"current": 2}
    assert stats["cpuset"]["cpus"] == [0, 1, 2, 3] and stats["cpuset"]["mems"] == [0]
    assert stats["network_interfaces"] is None and stats["intel_rdt"] == {}
    assert stats["blkio"] == {
        "ioServiceBytesRecursive": [{"major": 8, "op": "Read", "value": 4096},
                                    {"major": 8, "op": "Write"}],
        "ioServicedRecursive": [{"major": 8, "op": "Read", "value": 1}, {"major": 8, "op": "Write"}]}


def test_destroy_and_round_trip(v2_mgr):
    again = cgroups.Manager.from_dict(v2_mgr.to_dict())
    assert isinstance(again, V2Manager) and again.path == v2_mgr.path
    os.makedirs(os.path.join(v2_mgr.path, "inner"))
    v2_mgr.destroy()
    assert not v2_mgr.exists()
    v2_mgr.destroy()


@pytest.mark.parametrize("resources,match", [
    ({"memory": 5}, "linux.resources.memory must be an object"),
    ({"cpu": {"idle": "yes"}}, "cpu.idle"),
    ({"hugepageLimits": ["2MB"]}, "hugepageLimits\\[0\\]"),
    ({"unified": ["memory.high"]}, "unified must be an object"),
])
def test_malformed_sections_are_named(resources, match):
    with pytest.raises(errdefs.InvalidArgument, match=match):
        plan(resources)


def test_malformed_devices_are_named(v2_mgr):
    with pytest.raises(errdefs.InvalidArgument, match="devices must be a list"):
        v2_mgr.set({"devices": {"allow": False}})
    with pytest.raises(errdefs.InvalidArgument, match="must be an object"):
        v2_mgr.set("memory")
