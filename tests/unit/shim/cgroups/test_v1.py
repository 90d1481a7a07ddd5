"""cgroup v1 manager against a fake tree: paths, create, set, freezer, stats, destroy."""

from __future__ import annotations

import os

import pytest
from dockyard.shim import cgroups
from dockyard.shim.cgroups import _base
from dockyard.shim.cgroups.v1 import V1Manager, plan

from dockyard import errdefs


def test_open_detects_v1_and_maps_each_hierarchy_once(v1_root):
    mgr = cgroups.open_manager("/dockyard/c1", "c1", root=v1_root)
    assert isinstance(mgr, V1Manager) and not cgroups.is_v2(v1_root)
    # the cpu/cpuacct symlinks collapse onto the real co-mounted hierarchy
    assert set(mgr.paths) == {"blkio", "cpu,cpuacct", "cpuset", "devices", "freezer",
                              "hugetlb", "memory", "pids", "systemd"}
    assert mgr.paths["memory"] == os.path.join(v1_root, "memory/dockyard/c1")
    assert mgr.path("cpu") == mgr.path("cpuacct") == os.path.join(v1_root, "cpu,cpuacct/dockyard/c1")
    assert mgr.path("net_cls") is None


def test_relative_and_missing_paths_sit_under_our_own_cgroup(v1_root, monkeypatch):
    monkeypatch.setattr(_base, "own_cgroups", lambda pid="self": {
        "memory": "/process_api/x", "cpu,cpuacct": "/", "name=systemd": "/user.slice"})
    mgr = cgroups.open_manager(None, "c1", root=v1_root)
    assert mgr.paths["memory"] == os.path.join(v1_root, "memory/process_api/x/c1")
    assert mgr.paths["systemd"] == os.path.join(v1_root, "systemd/user.slice/c1")
    assert mgr.paths["pids"] == os.path.join(v1_root, "pids/c1")
    rel = cgroups.open_manager("dockyard/c1", "c1", root=v1_root)
    assert rel.paths["memory"] == os.path.join(v1_root, "memory/process_api/x/dockyard/c1")


@pytest.mark.parametrize("bad", ["/a/../b", "../x", "system.slice:docker:c1", "/", "a\0b"])
def test_bad_cgroups_paths_are_refused(v1_root, bad):
    with pytest.raises(errdefs.InvalidArgument) as exc:
        cgroups.open_manager(bad, "c1", root=v1_root)
    assert "cgroupsPath" in str(exc.value)


def test_no_hierarchy_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        cgroups.open_manager("/x", "x", root=str(tmp_path))
    assert "no cgroup hierarchy" in str(exc.value)


def test_create_copies_cpuset_from_the_parent(v1_root, kernel):
    mgr = cgroups.open_manager("/dockyard/c1", "c1", root=v1_root)
    mgr.create()
    kernel.fill_v1(mgr)  # the kernel makes the files (empty cpus/mems) at mkdir
    mgr.create()  # idempotent; fills what the kernel left empty
    for d in (os.path.join(v1_root, "cpuset/dockyard"), mgr.path("cpuset")):
        assert kernel.read(os.path.join(d, "cpuset.cpus")) == "0-1"
        assert kernel.read(os.path.join(d, "cpuset.mems")) == "0"


def test_add_writes_the_pid_to_every_hierarchy(v1_mgr, kernel):
    v1_mgr.add(4242)
    for path in v1_mgr.paths.values():
        assert kernel.read(os.path.join(path, "cgroup.procs")) == "4242"


def test_set_writes_the_oci_resources(v1_mgr, kernel):
    v1_mgr.set({
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20,
                   "swappiness": 10, "disableOOMKiller": True},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 50},
        "blockIO": {"weight": 300, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 21}],
    })
    mem, cpu = v1_mgr.path("memory"), v1_mgr.path("cpu")
    expect = {
        (mem, "memory.limit_in_bytes"): str(64 << 20),
        (mem, "memory.soft_limit_in_bytes"): str(32 << 20),
        (mem, "memory.memsw.limit_in_bytes"): str(128 << 20),
        (mem, "memory.swappiness"): "10",
        (mem, "memory.oom_control"): "1",
        (cpu, "cpu.shares"): "512",
        (cpu, "cpu.cfs_quota_us"): "50000",
        (cpu, "cpu.cfs_period_us"): "100000",
        (v1_mgr.path("cpuset"), "cpuset.cpus"): "0",
        (v1_mgr.path("pids"), "pids.max"): "50",
        (v1_mgr.path("blkio"), "blkio.bfq.weight"): "300",  # no CFQ here: BFQ's file
        (v1_mgr.path("blkio"), "blkio.throttle.read_bps_device"): "8:0 1048576",
        (v1_mgr.path("hugetlb"), "hugetlb.2MB.limit_in_bytes"): str(4 << 21),
    }
    for (d, name), value in expect.items():
        assert kernel.read(os.path.join(d, name)) == value, name


def test_zero_values_mean_unset_as_in_runc(v1_mgr, writes):
    # Docker sends cpu.shares 0, blockIO.weight 0, pids.limit 0 for "not set".
    v1_mgr.set({"cpu": {"shares": 0, "quota": 0}, "blockIO": {"weight": 0},
                "pids": {"limit": 0}, "memory": {"limit": 0}})
    assert writes == []


def test_negative_pids_limit_is_max(v1_mgr, kernel):
    v1_mgr.set({"pids": {"limit": -1}})
    assert kernel.read(os.path.join(v1_mgr.path("pids"), "pids.max")) == "max"


def test_memory_and_swap_write_order_keeps_memsw_above_limit(v1_mgr, kernel, writes):
    mem = v1_mgr.path("memory")
    kernel.write_tree(mem, {"memory.limit_in_bytes": str(256 << 20)})
    v1_mgr.set({"memory": {"limit": 64 << 20, "swap": 128 << 20}})  # shrinking: limit first
    assert [os.path.basename(p) for p, _ in writes] == ["memory.limit_in_bytes",
                                                         "memory.memsw.limit_in_bytes"]
    writes.clear()
    v1_mgr.set({"memory": {"limit": 512 << 20, "swap": 1024 << 20}})  # growing: memsw first
    assert [os.path.basename(p) for p, _ in writes] == ["memory.memsw.limit_in_bytes",
                                                         "memory.limit_in_bytes"]
    writes.clear()
    v1_mgr.set({"memory": {"limit": -1}})  # unlimited memory lifts swap too (runc)
    assert [(os.path.basename(p), v) for p, v in writes] == [
        ("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", "-1")]


def test_devices_start_from_deny_all_then_follow_the_rules_in_order(v1_mgr, writes):
    v1_mgr.set({"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": True, "type": "c", "major": 136, "minor": None, "access": "rw"},
        {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
    ]})
    got = [(os.path.basename(p), v) for p, v in writes]
    assert got == [("devices.deny", "a"), ("devices.deny", "a"),
                   ("devices.allow", "c 1:3 rwm"), ("devices.allow", "c 136:* rw"),
                   ("devices.deny", "c 10:229 rwm")]


def test_unified_and_unknown_values_are_refused_on_v1(v1_mgr):
    with pytest.raises(errdefs.InvalidArgument, match="cgroup v2"):
        v1_mgr.set({"unified": {"memory.high": "1M"}})
    with pytest.raises(errdefs.InvalidArgument, match="memory.limit"):
        v1_mgr.set({"memory": {"limit": "64M"}})
    with pytest.raises(errdefs.InvalidArgument, match="blockIO.weight"):
        v1_mgr.set({"blockIO": {"weight": 5}})
    with pytest.raises(errdefs.InvalidArgument, match="devices\\[0\\]"):
        v1_mgr.set({"devices": [{"access": "rwm"}]})


def test_a_missing_controller_is_named(v1_mgr):
    with pytest.raises(errdefs.InvalidArgument, match="net_cls"):
        v1_mgr.set({"network": {"classID": 7}})


def test_a_missing_control_file_is_named(v1_mgr, kernel):
    os.unlink(os.path.join(v1_mgr.path("memory"), "memory.memsw.limit_in_bytes"))
    with pytest.raises(errdefs.InvalidArgument, match="swap accounting"):
        v1_mgr.set({"memory": {"limit": 1 << 20, "swap": 2 << 20}})
    os.unlink(os.path.join(v1_mgr.path("pids"), "pids.max"))
    with pytest.raises(OSError, match="pids.max does not exist"):
        v1_mgr.set({"pids": {"limit": 5}})


def test_freeze_thaw_and_state(v1_mgr, kernel):
    assert v1_mgr.state() == cgroups.THAWED
    v1_mgr.freeze()
    assert kernel.read(os.path.join(v1_mgr.path("freezer"), "freezer.state")) == "FROZEN"
    assert v1_mgr.state() == cgroups.FROZEN
    v1_mgr.thaw()
    assert v1_mgr.state() == cgroups.THAWED


def test_pids_include_sub_cgroups(v1_mgr, kernel):
    kernel.write_tree(v1_mgr.path("pids"), {"cgroup.procs": "10\n11\n"})
    kernel.write_tree(os.path.join(v1_mgr.path("pids"), "sub"), {"cgroup.procs": "12\n"})
    assert sorted(v1_mgr.pids()) == [10, 11, 12]


def test_oom_count_reads_oom_kill(v1_mgr, kernel):
    assert v1_mgr.oom_count() == 0
    kernel.write_tree(v1_mgr.path("memory"),
                      {"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"})
    assert v1_mgr.oom_count() == 3


def test_stats_have_runcs_shape(v1_mgr, kernel):
    acct, mem, pids = v1_mgr.path("cpuacct"), v1_mgr.path("memory"), v1_mgr.path("pids")
    kernel.write_tree(acct, {"cpuacct.usage": "3000", "cpuacct.usage_percpu": "1000 2000 ",
                             "cpuacct.usage_all": "cpu user system\n0 600 400\n1 1500 500\n",
                             "cpuacct.stat": "user 2\nsystem 1\n"})
    kernel.write_tree(v1_mgr.path("cpu"), {"cpu.stat": "nr_periods 10\nnr_throttled 4\nthrottled_time 99\n"})
    kernel.write_tree(mem, {"memory.usage_in_bytes": "8192", "memory.max_usage_in_bytes": "16384",
                            "memory.limit_in_bytes": "1048576", "memory.failcnt": "2",
                            "memory.stat": "cache 4096\nrss 4096\ntotal_rss 4096\n"})
    kernel.write_tree(pids, {"pids.current": "3", "pids.max": "50"})
    kernel.write_tree(v1_mgr.path("cpuset"), {"cpuset.cpus": "0-1\n", "cpuset.mems": "0\n"})
    kernel.write_tree(v1_mgr.path("blkio"), {
        "blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n"})
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    stats = v1_mgr.stats()
    assert stats["cpu"] == {
        "usage": {"total": 3000, "percpu": [1000, 2000], "percpu_kernel": [400, 500],
                  "percpu_user": [600, 1500], "kernel": tick, "user": 2 * tick},
        "throttling": {"periods": 10, "throttledPeriods": 4, "throttledTime": 99}}
    assert stats["memory"]["usage"] == {"limit": 1048576, "usage": 8192, "max": 16384, "failcnt": 2}
    assert stats["memory"]["cache"] == 4096 and stats["memory"]["raw"]["rss"] == 4096
    assert stats["memory"]["swap"]["limit"] == 9223372036854771712
    assert stats["pids"] == {"current": 3, "limit": 50}
    assert stats["blkio"] == {"ioServiceBytesRecursive": [
        {"major": 8, "op": "Read", "value": 4096}, {"major": 8, "op": "Write"}]}
    assert stats["hugetlb"] == {"2MB": {"failcnt": 0}}
    # the same top-level keys as runc 1.1's `events --stats`
    assert set(stats) == {"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt",
                          "network_interfaces"}
    assert stats["cpuset"]["cpus"] == [0, 1] and stats["cpuset"]["mems"] == [0]


def test_parse_list():
    from dockyard.shim.cgroups.v1 import parse_list
    assert parse_list("0-2,4,7-8\n") == [0, 1, 2, 4, 7, 8] and parse_list("\n") == []


def test_destroy_removes_every_directory_and_is_idempotent(v1_mgr):
    os.makedirs(os.path.join(v1_mgr.path("memory"), "child"))
    assert v1_mgr.exists()
    v1_mgr.destroy()
    assert not v1_mgr.exists()
    assert not any(os.path.exists(p) for p in v1_mgr.paths.values())
    v1_mgr.destroy()


def test_to_dict_round_trip(v1_mgr):
    data = v1_mgr.to_dict()
    again = cgroups.Manager.from_dict(data)
    assert isinstance(again, V1Manager) and again.paths == v1_mgr.paths
    with pytest.raises(errdefs.InvalidArgument):
        cgroups.manager_from_dict({"version": 9})


def test_plan_is_pure_and_validates():
    assert plan({"pids": {"limit": 7}, "network": {"classID": 3,
                                                   "priorities": [{"name": "eth0", "priority": 5}]}}) == [
        ("pids", "pids.max", "7"), ("net_cls", "net_cls.classid", "3"),
        ("net_prio", "net_prio.ifpriomap", "eth0 5")]
    with pytest.raises(errdefs.InvalidArgument, match="hugepageLimits\\[0\\]"):
        plan({"hugepageLimits": [{"pageSize": "../x", "limit": 1}]})
    with pytest.raises(errdefs.InvalidArgument, match="throttleReadBpsDevice\\[0\\]"):
        plan({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}})


def test_unchanged_device_rules_are_not_rewritten(v1_mgr, kernel, writes):
    from dockyard.shim.cgroups import devices
    rules = devices.with_defaults(None)
    expected = devices.v1_list(devices.parse_rules(rules))
    kernel.write_tree(v1_mgr.path("devices"), {"devices.list": "\n".join(expected) + "\n"})
    v1_mgr.set({"devices": rules})
    assert writes == []  # no transient `deny a` for a running container
    v1_mgr.set({"devices": rules[:-1] + [{"allow": True, "type": "c", "major": 10,
                                          "minor": 229, "access": "rw"}]})
    dev = v1_mgr.path("devices")
    # only the difference, removals first
    assert writes == [(os.path.join(dev, "devices.deny"), "c 10:200 rwm"),
                      (os.path.join(dev, "devices.allow"), "c 10:229 rw")]
    writes.clear()
    kernel.write_tree(dev, {"devices.list": "a *:* rwm\n"})  # allow-by-default: rewrite all
    v1_mgr.set({"devices": rules})
    assert writes[0] == (os.path.join(dev, "devices.deny"), "a")


def test_bad_network_priorities_are_named():
    with pytest.raises(errdefs.InvalidArgument, match="priorities\\[0\\]"):
        plan({"network": {"priorities": [{"priority": 3}]}})
    with pytest.raises(errdefs.InvalidArgument, match="network.classID"):
        plan({"network": {"classID": "x"}})
