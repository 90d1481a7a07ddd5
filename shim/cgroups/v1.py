"""cgroup v1: one directory per mounted hierarchy (memory, cpu, pids, ...).

Owns the v1 file names and write orders (runc libcontainer/cgroups/fs).
A hierarchy may carry several controllers (`cpu,cpuacct`); named ones
(`name=systemd` mounted at `systemd/`) and a hybrid host's `unified/`
cgroup2 mount are joined too, as runc does, so tools inside see a
consistent picture.
"""

from __future__ import annotations

import errno
import os
import time

from dockyard.shim.cgroups import _base, devices
from dockyard.shim.cgroups._base import (
    FREEZE_TIMEOUT,
    FREEZING,
    FROZEN,
    THAWED,
    Manager,
    read_file,
    read_int,
    read_keyed,
    write_file,
)

from dockyard.errdefs import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["V1Manager", "cpuset_stats", "parse_list", "plan"]

_UNLIMITED = 0xFFFFFFFFFFFFFFFF


def _hierarchies(root: str) -> dict[str, str]:
    """Hierarchy name -> its directory under root, one per real mount."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    try:
        entries = sorted(os.scandir(root), key=lambda e: (e.is_symlink(), e.name))
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"no cgroup hierarchy under {root}") from None
    for entry in entries:
        if not entry.is_dir():
            continue
        # `cpu -> cpu,cpuacct` symlinks point at a hierarchy seen already (real
        # directories sort first); readlink, not realpath: realpath lstat()s every
        # component of every entry, ~80 lstat calls on sysfs per create
        real = os.path.normpath(os.path.join(root, os.readlink(entry.path))) \
            if entry.is_symlink() else os.path.normpath(entry.path)
        if real in seen:
            continue
        seen.add(real)
        out[entry.name] = entry.path
    if not out:
        raise FileNotFoundError(errno.ENOENT, f"no cgroup hierarchy under {root}")
    return out


def _own_key(name: str) -> str:
    # /proc/self/cgroup spells hierarchies as `cpu,cpuacct`, `name=systemd`, ''.
    if name == "unified":
        return ""
    if name in ("systemd", "elogind"):
        return f"name={name}"
    return name


class V1Manager(Manager):
    """A container's cgroup in every v1 hierarchy."""

    version = 1

    def __init__(self, root: str, paths: dict[str, str]) -> None:
        self.root = root
        self._paths = paths

    @classmethod
    def open(cls, cgroups_path: str | None, container_id: str, root: str) -> V1Manager:
        inner = _base.resolve_path(cgroups_path, container_id)
        hierarchies = _hierarchies(root)
        own = _base.own_cgroups() if not inner.startswith("/") else {}
        paths = {}
        for name, hdir in hierarchies.items():
            base = own.get(_own_key(name), "/") if own else "/"
            paths[name] = os.path.normpath(os.path.join(hdir, base.lstrip("/"),
                                                        inner.lstrip("/")))
        return cls(root, paths)

    @property
    def paths(self) -> dict[str, str]:
        return dict(self._paths)

    def path(self, controller: str) -> str | None:
        """The directory of the hierarchy carrying `controller`, if mounted."""
        for name, path in self._paths.items():
            if controller in name.split(","):
                return path
        return None

    def _need(self, controller: str) -> str:
        path = self.path(controller)
        if path is None:
            raise InvalidArgument(f"cgroup v1 controller `{controller}` is not mounted "
                                  f"under {self.root}")
        return path

    # --- lifecycle

    def create(self) -> None:
        for path in self._paths.values():
            os.makedirs(path, exist_ok=True)
        cpuset = self.path("cpuset")
        if cpuset:
            self._init_cpuset(cpuset)

    def _init_cpuset(self, leaf: str) -> None:
        """New v1 cpuset cgroups start with empty cpus/mems and refuse tasks:
        copy them down from the nearest ancestor (runc ensureParent)."""
        hroot = next(h for n, h in _hierarchies(self.root).items() if "cpuset" in n.split(","))
        chain = []
        cur = leaf
        while os.path.normpath(cur) != os.path.normpath(hroot):
            if os.path.dirname(cur) == cur:
                return  # not below the hierarchy root: nothing to inherit from
            chain.append(cur)
            cur = os.path.dirname(cur)
        parent = hroot
        for directory in reversed(chain):
            for name in ("cpuset.cpus", "cpuset.mems"):
                path = os.path.join(directory, name)
                try:
                    if read_file(path).strip():
                        continue
                except FileNotFoundError:
                    continue
                write_file(path, read_file(os.path.join(parent, name)).strip() or "\n")
            parent = directory

    def add(self, pid: int) -> None:
        for path in self._paths.values():
            write_file(os.path.join(path, "cgroup.procs"), str(pid))

    def exists(self) -> bool:
        return any(os.path.isdir(p) for p in self._paths.values())

    def destroy(self) -> None:
        errors = []
        for path in self._paths.values():
            try:
                _base.remove_tree(path)
            except OSError as err:
                errors.append(err)
        if errors:
            raise errors[0]

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "root": self.root, "paths": dict(self._paths)}

    # --- resources

    def set(self, resources: dict[str, Any]) -> None:
        if not resources:
            return
        if not isinstance(resources, dict):
            raise InvalidArgument("linux.resources must be an object")
        if resources.get("unified"):
            raise InvalidArgument("linux.resources.unified needs cgroup v2; this host "
                                  "runs cgroup v1")
        if resources.get("rdma"):
            raise InvalidArgument("linux.resources.rdma is not supported")
        mem = section(resources, "memory")
        if mem:
            self._set_memory(mem)
        cpu = section(resources, "cpu")
        if cpu:
            self._set_cpu(cpu)
        for controller, name, value in plan(resources):
            directory = self._need(controller)
            if controller == "blkio" and name == "blkio.weight":
                name = _blkio_weight_file(directory)
            write_file(os.path.join(directory, name), value)
        if resources.get("devices") is not None:
            directory = self._need("devices")
            rules = devices.parse_rules(resources["devices"])
            current = _lines(os.path.join(directory, "devices.list"))
            # On a deny-by-default list (an update) change only what differs:
            # the full rewrite starts with `deny a`, which a running
            # container would feel for a moment.
            writes = devices.v1_update(current, rules) if current else None
            for name, line in devices.v1_writes(rules) if writes is None else writes:
                write_file(os.path.join(directory, name), line)

    def _set_memory(self, mem: dict[str, Any]) -> None:
        limit = _int(mem, "limit", "memory")
        swap = _int(mem, "swap", "memory")
        if limit == -1 and not swap:
            swap = -1  # runc: an unlimited memory limit lifts the swap limit too
        directory = self._need("memory") if (limit or swap) else None
        if directory:
            lim_file = os.path.join(directory, "memory.limit_in_bytes")
            sw_file = os.path.join(directory, "memory.memsw.limit_in_bytes")
            if swap and not os.path.exists(sw_file):
                raise InvalidArgument("memory.swap: the kernel has no swap accounting "
                                      "(memory.memsw.limit_in_bytes missing)")
            if limit and swap:
                # memsw must stay >= limit at every step: raise memsw first when
                # growing, lower the limit first when shrinking.
                current = read_int(lim_file)
                if swap == -1 or current < swap:
                    write_file(sw_file, str(swap))
                    write_file(lim_file, str(limit))
                else:
                    write_file(lim_file, str(limit))
                    write_file(sw_file, str(swap))
            elif limit:
                write_file(lim_file, str(limit))
            elif swap:
                write_file(sw_file, str(swap))
        reservation = _int(mem, "reservation", "memory")
        if reservation:
            write_file(os.path.join(self._need("memory"), "memory.soft_limit_in_bytes"),
                       str(reservation))
        if mem.get("disableOOMKiller"):
            write_file(os.path.join(self._need("memory"), "memory.oom_control"), "1")
        swappiness = mem.get("swappiness")
        if swappiness is not None and swappiness != -1:
            if not isinstance(swappiness, int) or not 0 <= swappiness <= 100:
                raise InvalidArgument(f"memory.swappiness: {swappiness!r} is not 0..100")
            write_file(os.path.join(self._need("memory"), "memory.swappiness"),
                       str(swappiness))

    def _set_cpu(self, cpu: dict[str, Any]) -> None:
        shares = _int(cpu, "shares", "cpu")
        quota = _int(cpu, "quota", "cpu")
        period = _int(cpu, "period", "cpu")
        if shares or quota or period:
            directory = self._need("cpu")
        if shares:
            path = os.path.join(directory, "cpu.shares")
            write_file(path, str(shares))
            got = read_int(path)
            if got != shares:
                # The kernel clamps to 2..262144 silently; say so (runc does).
                raise InvalidArgument(f"cpu.shares: {shares} is out of range, the kernel "
                                      f"set {got}")
        period_failed = None
        if period:
            try:
                write_file(os.path.join(directory, "cpu.cfs_period_us"), str(period))
            except OSError as err:
                # A smaller period can exceed the parent's quota/period ratio
                # until the new quota is written: retry after it.
                if err.errno != errno.EINVAL or not quota:
                    raise
                period_failed = err
        if quota:
            write_file(os.path.join(directory, "cpu.cfs_quota_us"), str(quota))
        if period_failed is not None:
            write_file(os.path.join(directory, "cpu.cfs_period_us"), str(period))
        for key, name in (("burst", "cpu.cfs_burst_us"), ("realtimePeriod", "cpu.rt_period_us"),
                          ("realtimeRuntime", "cpu.rt_runtime_us")):
            value = _int(cpu, key, "cpu")
            if value:
                write_file(os.path.join(self._need("cpu"), name), str(value))
        if cpu.get("idle") is not None:
            write_file(os.path.join(self._need("cpu"), "cpu.idle"), str(_int(cpu, "idle", "cpu")))
        for key in ("cpus", "mems"):
            if cpu.get(key):
                write_file(os.path.join(self._need("cpuset"), f"cpuset.{key}"),
                           str(cpu[key]))

    # --- freezer

    def freeze(self) -> None:
        path = os.path.join(self._need("freezer"), "freezer.state")
        deadline = time.monotonic() + FREEZE_TIMEOUT
        delay = 0.001
        while True:
            # Re-writing FROZEN kicks tasks that were mid-fork (runc does the same).
            write_file(path, FROZEN)
            if read_file(path).strip() == FROZEN:
                return
            if time.monotonic() > deadline:
                write_file(path, THAWED)
                raise OSError(errno.EBUSY, f"freeze {os.path.dirname(path)}: still "
                              f"{FREEZING} after {FREEZE_TIMEOUT:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def thaw(self) -> None:
        write_file(os.path.join(self._need("freezer"), "freezer.state"), THAWED)

    def state(self) -> str:
        path = self.path("freezer")
        if path is None:
            return THAWED
        try:
            return read_file(os.path.join(path, "freezer.state")).strip()
        except FileNotFoundError:
            return THAWED

    # --- introspection

    def pids(self) -> list[int]:
        for controller in ("pids", "freezer", "devices", "memory", "cpu"):
            path = self.path(controller)
            if path and os.path.isdir(path):
                return _base.read_pids(path)
        return []

    def oom_count(self) -> int:
        path = self.path("memory")
        if path is None:
            return 0
        return read_keyed(os.path.join(path, "memory.oom_control")).get("oom_kill", 0)

    def stats(self) -> dict[str, Any]:
        path = self.path("cpuset")
        return {"cpu": self._cpu_stats(),
                "cpuset": cpuset_stats(path, "") if path else cpuset_stats(None, ""),
                "memory": self._memory_stats(), "pids": self._pids_stats(),
                "blkio": self._blkio_stats(), "hugetlb": self._hugetlb_stats(),
                "intel_rdt": {}, "network_interfaces": None}

    def _cpu_stats(self) -> dict[str, Any]:
        usage: dict[str, Any] = {"kernel": 0, "user": 0}
        throttling: dict[str, Any] = {}
        acct = self.path("cpuacct")
        if acct:
            usage["total"] = read_int(os.path.join(acct, "cpuacct.usage"))
            percpu = _ints(os.path.join(acct, "cpuacct.usage_percpu"))
            if percpu:
                usage["percpu"] = percpu
            kern, user = _percpu_split(os.path.join(acct, "cpuacct.usage_all"))
            if kern:
                usage["percpu_kernel"], usage["percpu_user"] = kern, user
            # cpuacct.stat is in USER_HZ ticks; runc reports nanoseconds.
            st = read_keyed(os.path.join(acct, "cpuacct.stat"))
            tick_ns = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") or 100)
            usage["kernel"] = st.get("system", 0) * tick_ns
            usage["user"] = st.get("user", 0) * tick_ns
        cpu = self.path("cpu")
        if cpu:
            st = read_keyed(os.path.join(cpu, "cpu.stat"))
            throttling = {"periods": st.get("nr_periods", 0),
                          "throttledPeriods": st.get("nr_throttled", 0),
                          "throttledTime": st.get("throttled_time", 0)}
        return {"usage": _omit_zero(usage, keep=("kernel", "user")),
                "throttling": _omit_zero(throttling)}

    def _memory_stats(self) -> dict[str, Any]:
        path = self.path("memory")
        if path is None:
            return {}
        raw = read_keyed(os.path.join(path, "memory.stat"))

        def entry(prefix: str) -> dict[str, int]:
            p = os.path.join(path, prefix)
            return _omit_zero({"limit": read_int(p + "limit_in_bytes"),
                               "usage": read_int(p + "usage_in_bytes"),
                               "max": read_int(p + "max_usage_in_bytes"),
                               "failcnt": read_int(p + "failcnt")},
                              keep=("limit", "failcnt"))

        out: dict[str, Any] = {"cache": raw.get("cache", 0),
                               "usage": entry("memory."), "swap": entry("memory.memsw."),
                               "kernel": entry("memory.kmem."),
                               "kernelTCP": entry("memory.kmem.tcp."), "raw": raw}
        return _omit_zero(out, keep=("usage", "swap", "kernel", "kernelTCP"))

    def _pids_stats(self) -> dict[str, int]:
        path = self.path("pids")
        if path is None:
            return {}
        limit = read_int(os.path.join(path, "pids.max"))
        return _omit_zero({"current": read_int(os.path.join(path, "pids.current")),
                           "limit": 0 if limit == _UNLIMITED else limit})

    def _blkio_stats(self) -> dict[str, Any]:
        path = self.path("blkio")
        if path is None:
            return {}
        out: dict[str, Any] = {}
        for key, names in (
                ("ioServiceBytesRecursive", ("blkio.io_service_bytes_recursive",
                                             "blkio.bfq.io_service_bytes_recursive",
                                             "blkio.throttle.io_service_bytes_recursive")),
                ("ioServicedRecursive", ("blkio.io_serviced_recursive",
                                         "blkio.bfq.io_serviced_recursive",
                                         "blkio.throttle.io_serviced_recursive"))):
            for name in names:
                entries = _blkio_entries(os.path.join(path, name))
                if entries is not None:
                    if entries:
                        out[key] = entries
                    break
        return out

    def _hugetlb_stats(self) -> dict[str, Any]:
        path = self.path("hugetlb")
        out: dict[str, Any] = {}
        if path is None or not os.path.isdir(path):
            return out
        for name in sorted(os.listdir(path)):
            if name.startswith("hugetlb.") and name.endswith(".usage_in_bytes"):
                size = name[len("hugetlb."):-len(".usage_in_bytes")]
                p = os.path.join(path, f"hugetlb.{size}.")
                out[size] = _omit_zero({"usage": read_int(p + "usage_in_bytes"),
                                        "max": read_int(p + "max_usage_in_bytes"),
                                        "failcnt": read_int(p + "failcnt")},
                                       keep=("failcnt",))
        return out


def section(resources: dict[str, Any], key: str) -> dict[str, Any]:
    """One object of OCI linux.resources ({} when absent), type-checked."""
    value = resources.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"linux.resources.{key} must be an object, not {value!r}")
    return value


def _int(section: dict[str, Any], key: str, where: str) -> int:
    value = section.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"linux.resources.{where}.{key}: {value!r} is not an integer")
    return value


def _blkio_weight_file(directory: str) -> str:
    for name in ("blkio.weight", "blkio.bfq.weight"):
        if os.path.exists(os.path.join(directory, name)):
            return name
    raise InvalidArgument(f"blockIO.weight: the kernel offers no blkio.weight or "
                          f"blkio.bfq.weight in {directory} (no CFQ/BFQ scheduler)")


def _dev_rate(entry: dict[str, Any], key: str, i: int, field: str) -> str:
    try:
        return f"{int(entry['major'])}:{int(entry['minor'])} {int(entry[key])}"
    except (KeyError, TypeError, ValueError):
        raise InvalidArgument(f"linux.resources.blockIO.{field}[{i}]: needs integer "
                              f"major, minor and {key}") from None


def plan(resources: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(controller, file, value) writes for the simple v1 keys (pure; memory and
    cpu quota/shares need read-backs and are applied by the manager)."""
    writes: list[tuple[str, str, str]] = []
    pids = section(resources, "pids")
    limit = _int(pids, "limit", "pids")
    if limit:
        writes.append(("pids", "pids.max", str(limit) if limit > 0 else "max"))
    blk = section(resources, "blockIO")
    weight = _int(blk, "weight", "blockIO")
    if weight:
        if not 10 <= weight <= 1000:
            raise InvalidArgument(f"blockIO.weight: {weight} is not 10..1000")
        writes.append(("blkio", "blkio.weight", str(weight)))
    leaf = _int(blk, "leafWeight", "blockIO")
    if leaf:
        writes.append(("blkio", "blkio.leaf_weight", str(leaf)))
    for i, dev in enumerate(blk.get("weightDevice") or []):
        if dev.get("weight"):
            writes.append(("blkio", "blkio.weight_device",
                           _dev_rate(dev, "weight", i, "weightDevice")))
        if dev.get("leafWeight"):
            writes.append(("blkio", "blkio.leaf_weight_device",
                           _dev_rate(dev, "leafWeight", i, "weightDevice")))
    for field, name in (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
                        ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
                        ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
                        ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device")):
        for i, dev in enumerate(blk.get(field) or []):
            writes.append(("blkio", name, _dev_rate(dev, "rate", i, field)))
    for i, huge in enumerate(resources.get("hugepageLimits") or []):
        size, hlimit = (huge.get("pageSize"), huge.get("limit")) if isinstance(huge, dict) \
            else (None, None)
        if not isinstance(size, str) or not size or "/" in size or not isinstance(hlimit, int):
            raise InvalidArgument(f"linux.resources.hugepageLimits[{i}]: needs pageSize "
                                  "(e.g. 2MB) and an integer limit")
        writes.append(("hugetlb", f"hugetlb.{size}.limit_in_bytes", str(hlimit)))
    net = section(resources, "network")
    if net.get("classID") is not None:
        writes.append(("net_cls", "net_cls.classid", str(_int(net, "classID", "network"))))
    for i, prio in enumerate(net.get("priorities") or []):
        name, value = (prio.get("name"), prio.get("priority")) if isinstance(prio, dict) \
            else (None, None)
        if not isinstance(name, str) or not name or " " in name or not isinstance(value, int):
            raise InvalidArgument(f"linux.resources.network.priorities[{i}]: needs an "
                                  "interface name and an integer priority")
        writes.append(("net_prio", "net_prio.ifpriomap", f"{name} {value}"))
    return writes


_CPUSET_FLAGS = ("cpu_exclusive", "mem_hardwall", "mem_exclusive", "memory_migrate",
                 "memory_spread_page", "memory_spread_slab", "memory_pressure",
                 "sched_load_balance", "sched_relax_domain_level")


def parse_list(text: str) -> list[int]:
    """A kernel cpu/node list ("0-2,4") -> [0, 1, 2, 4]."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def cpuset_stats(path: str | None, suffix: str) -> dict[str, Any]:
    """runc's `cpuset` stats object (v2 passes suffix '.effective')."""
    out: dict[str, Any] = {}
    for key in ("cpus", "mems"):
        try:
            values = parse_list(read_file(os.path.join(path, f"cpuset.{key}{suffix}"))) \
                if path else []
        except (FileNotFoundError, ValueError):
            values = []
        if values:
            out[key] = values
    for flag in _CPUSET_FLAGS:
        out[flag] = read_int(os.path.join(path, f"cpuset.{flag}")) if path else 0
    return out


def _lines(path: str) -> list[str]:
    try:
        return [line.strip() for line in read_file(path).splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _ints(path: str) -> list[int]:
    try:
        return [int(x) for x in read_file(path).split()]
    except FileNotFoundError:
        return []


def _percpu_split(path: str) -> tuple[list[int], list[int]]:
    """cpuacct.usage_all: 'cpu user system' header, then one line per cpu."""
    kern: list[int] = []
    user: list[int] = []
    try:
        lines = read_file(path).splitlines()[1:]
    except FileNotFoundError:
        return kern, user
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            user.append(int(parts[1]))
            kern.append(int(parts[2]))
    return kern, user


def _blkio_entries(path: str) -> list[dict[str, Any]] | None:
    """Parse 'maj:min Op value' lines; None when the file does not exist."""
    try:
        text = read_file(path)
    except FileNotFoundError:
        return None
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue
        major, minor = parts[0].split(":")
        out.append(_omit_zero({"major": int(major), "minor": int(minor),
                               "op": parts[1], "value": int(parts[2])}))
    return out


def _omit_zero(d: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Drop zero/empty values as Go's `omitempty` does (runc's JSON shape)."""
    return {k: v for k, v in d.items() if k in keep or v}
