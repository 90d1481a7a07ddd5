"""cgroup v2: one directory in the unified hierarchy.

Owns the v2 file names, the v1->v2 value conversions runc defines (cpu
shares -> cpu.weight, blkio weight -> io.weight, memory+swap -> swap.max),
enabling controllers in the ancestors' cgroup.subtree_control, the
cgroup.freeze protocol, and hands device rules to the eBPF compiler.
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
from dockyard.shim.cgroups.v1 import _int, _omit_zero, cpuset_stats, section

from dockyard.errdefs import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["V2Manager", "cpu_weight", "io_weight", "plan", "swap_max"]

_UNLIMITED = 0xFFFFFFFFFFFFFFFF
# Controllers a container's resources can need; enabled top-down when available.
_WANTED = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")


def cpu_weight(shares: int) -> int:
    """cpu.shares (2..262144) -> cpu.weight (1..10000), runc's linear map."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def io_weight(blkio_weight: int) -> int:
    """blkio weight (10..1000) -> io.weight (1..10000), runc's linear map."""
    if blkio_weight == 0:
        return 0
    return 1 + (blkio_weight - 10) * 9999 // 990


def swap_max(swap: int, limit: int) -> int:
    """OCI memory.swap (memory+swap, v1 style) -> memory.swap.max (swap only).

    Returns -1 for unlimited, 0 for "leave alone".
    """
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    if limit in (0, -1):
        raise InvalidArgument("memory.swap: a swap limit needs a memory limit")
    if swap < limit:
        raise InvalidArgument(f"memory.swap ({swap}) must be >= memory.limit ({limit})")
    return swap - limit


def _max(value: int) -> str:
    return "max" if value == -1 else str(value)


def plan(resources: dict[str, Any]) -> list[tuple[str, str]]:
    """(file, value) writes for `resources`, in order (pure).

    `io.weight` is listed for blockIO.weight; the manager switches it to
    io.bfq.weight (which takes the unconverted value) when the kernel has it.
    """
    writes: list[tuple[str, str]] = []
    mem = section(resources, "memory")
    limit = _int(mem, "limit", "memory")
    swap = swap_max(_int(mem, "swap", "memory"), limit)
    if swap:
        # Before memory.max, so a lower swap never meets a stale higher limit.
        writes.append(("memory.swap.max", _max(swap)))
    if limit:
        writes.append(("memory.max", _max(limit)))
    reservation = _int(mem, "reservation", "memory")
    if reservation:
        writes.append(("memory.low", _max(reservation)))
    if mem.get("disableOOMKiller"):
        raise InvalidArgument("memory.disableOOMKiller is not supported on cgroup v2")
    cpu = section(resources, "cpu")
    shares = _int(cpu, "shares", "cpu")
    if shares:
        if not 2 <= shares <= 262144:
            raise InvalidArgument(f"cpu.shares: {shares} is not 2..262144")
        writes.append(("cpu.weight", str(cpu_weight(shares))))
    quota, period = _int(cpu, "quota", "cpu"), _int(cpu, "period", "cpu")
    if quota or period:
        value = str(quota) if quota > 0 else "max"
        if period:
            value += f" {period}"
        writes.append(("cpu.max", value))
    burst = cpu.get("burst")
    if burst is not None:
        writes.append(("cpu.max.burst", str(_int(cpu, "burst", "cpu"))))
    if cpu.get("idle") is not None:
        writes.append(("cpu.idle", str(_int(cpu, "idle", "cpu"))))
    if _int(cpu, "realtimeRuntime", "cpu") or _int(cpu, "realtimePeriod", "cpu"):
        raise InvalidArgument("cpu.realtimeRuntime/realtimePeriod are not supported on "
                              "cgroup v2")
    for key in ("cpus", "mems"):
        if cpu.get(key):
            writes.append((f"cpuset.{key}", str(cpu[key])))
    pids = section(resources, "pids")
    plimit = _int(pids, "limit", "pids")
    if plimit:
        writes.append(("pids.max", str(plimit) if plimit > 0 else "max"))
    blk = section(resources, "blockIO")
    weight = _int(blk, "weight", "blockIO")
    if weight:
        if not 10 <= weight <= 1000:
            raise InvalidArgument(f"blockIO.weight: {weight} is not 10..1000")
        writes.append(("io.weight", str(weight)))
    for i, dev in enumerate(blk.get("weightDevice") or []):
        if dev.get("weight"):
            writes.append(("io.bfq.weight", _dev(dev, "weight", i, "weightDevice", "")))
    for field, key in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                       ("throttleReadIOPSDevice", "riops"),
                       ("throttleWriteIOPSDevice", "wiops")):
        for i, dev in enumerate(blk.get(field) or []):
            writes.append(("io.max", _dev(dev, "rate", i, field, key)))
    for i, huge in enumerate(resources.get("hugepageLimits") or []):
        size, hlimit = (huge.get("pageSize"), huge.get("limit")) if isinstance(huge, dict) \
            else (None, None)
        if not isinstance(size, str) or not size or "/" in size or not isinstance(hlimit, int):
            raise InvalidArgument(f"linux.resources.hugepageLimits[{i}]: needs pageSize "
                                  "(e.g. 2MB) and an integer limit")
        writes.append((f"hugetlb.{size}.max", str(hlimit)))
    if (section(resources, "network")):
        raise InvalidArgument("linux.resources.network (net_cls/net_prio) is not "
                              "supported on cgroup v2")
    for name, value in section(resources, "unified").items():
        if not isinstance(name, str) or "/" in name or name.startswith(".") or not name:
            raise InvalidArgument(f"linux.resources.unified: invalid file name {name!r}")
        writes.append((name, str(value)))
    return writes


def _dev(dev: dict[str, Any], key: str, i: int, field: str, prefix: str) -> str:
    try:
        value = int(dev[key])
        head = f"{int(dev['major'])}:{int(dev['minor'])}"
    except (KeyError, TypeError, ValueError):
        raise InvalidArgument(f"linux.resources.blockIO.{field}[{i}]: needs integer "
                              f"major, minor and {key}") from None
    return f"{head} {prefix}={value}" if prefix else f"{head} {value}"


class V2Manager(Manager):
    """A container's cgroup in the unified hierarchy mounted at `root`."""

    version = 2

    def __init__(self, root: str, path: str) -> None:
        self.root = root
        self.path = path

    @classmethod
    def open(cls, cgroups_path: str | None, container_id: str, root: str) -> V2Manager:
        inner = _base.resolve_path(cgroups_path, container_id)
        if not inner.startswith("/"):
            inner = os.path.join(_base.own_cgroups().get("", "/"), inner)
        return cls(root, os.path.normpath(os.path.join(root, inner.lstrip("/"))))

    @property
    def paths(self) -> dict[str, str]:
        return {"": self.path}

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # --- lifecycle

    def create(self) -> None:
        rel = os.path.relpath(self.path, self.root)
        parent = self.root
        for part in rel.split("/"):
            self._enable_controllers(parent)
            parent = os.path.join(parent, part)
            try:
                os.mkdir(parent)
            except FileExistsError:
                pass

    @staticmethod
    def _enable_controllers(directory: str) -> None:
        """Delegate what `directory` has to its children (runc enableControllers)."""
        try:
            available = read_file(os.path.join(directory, "cgroup.controllers")).split()
            enabled = read_file(os.path.join(directory, "cgroup.subtree_control")).split()
        except FileNotFoundError:
            return
        missing = [c for c in _WANTED if c in available and c not in enabled]
        if missing:
            # One write per controller: a controller the kernel refuses here
            # (e.g. cpu with realtime tasks) must not block the others.
            for ctrl in missing:
                try:
                    write_file(os.path.join(directory, "cgroup.subtree_control"), f"+{ctrl}")
                except OSError as err:
                    if err.errno == errno.EBUSY:
                        raise OSError(err.errno, f"enable cgroup controller {ctrl} in "
                                      f"{directory}: it has processes of its own (cgroup v2 "
                                      "allows controllers only on inner nodes without "
                                      "tasks)") from err
                    continue

    def add(self, pid: int) -> None:
        write_file(self._file("cgroup.procs"), str(pid))

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def destroy(self) -> None:
        _base.remove_tree(self.path)

    def to_dict(self) -> dict[str, Any]:
        return {"version": 2, "root": self.root, "path": self.path}

    # --- resources

    def set(self, resources: dict[str, Any], sys: Any = None) -> None:
        if not resources:
            return
        if not isinstance(resources, dict):
            raise InvalidArgument("linux.resources must be an object")
        for name, value in plan(resources):
            if name == "io.weight" and os.path.exists(self._file("io.bfq.weight")):
                name = "io.bfq.weight"  # BFQ takes the blkio 10..1000 scale as is
            elif name == "io.weight":
                value = str(io_weight(int(value)))
            if name == "memory.swap.max" and not os.path.exists(self._file(name)):
                raise InvalidArgument("memory.swap: the kernel has no swap accounting "
                                      f"({self._file(name)} missing)")
            write_file(self._file(name), value)
        if resources.get("devices") is not None:
            rules = devices.parse_rules(resources["devices"])
            fd = devices.attach_program(self.path, devices.compile_program(rules), sys)
            os.close(fd)

    # --- freezer

    def freeze(self) -> None:
        self._freeze("1", FROZEN)

    def thaw(self) -> None:
        self._freeze("0", THAWED)

    def _freeze(self, value: str, want: str) -> None:
        write_file(self._file("cgroup.freeze"), value)
        deadline = time.monotonic() + FREEZE_TIMEOUT
        delay = 0.001
        while self.state() != want:
            if time.monotonic() > deadline:
                raise OSError(errno.EBUSY, f"{'freeze' if value == '1' else 'thaw'} "
                              f"{self.path}: not {want} after {FREEZE_TIMEOUT:.0f}s")
            # cgroup.events changes are pollable too, but a short sleep loop
            # is simpler and freezing takes well under a millisecond here.
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def state(self) -> str:
        try:
            wanted = read_file(self._file("cgroup.freeze")).strip()
        except FileNotFoundError:
            return THAWED
        frozen = read_keyed(self._file("cgroup.events")).get("frozen", 0)
        if wanted == "1":
            return FROZEN if frozen else FREEZING
        return THAWED if not frozen else FREEZING

    # --- introspection

    def pids(self) -> list[int]:
        return _base.read_pids(self.path)

    def oom_count(self) -> int:
        return read_keyed(self._file("memory.events")).get("oom_kill", 0)

    def stats(self) -> dict[str, Any]:
        cpu = read_keyed(self._file("cpu.stat"))
        usage = {"total": cpu.get("usage_usec", 0) * 1000,
                 "kernel": cpu.get("system_usec", 0) * 1000,
                 "user": cpu.get("user_usec", 0) * 1000}
        throttling = {"periods": cpu.get("nr_periods", 0),
                      "throttledPeriods": cpu.get("nr_throttled", 0),
                      "throttledTime": cpu.get("throttled_usec", 0) * 1000}
        data: dict[str, Any] = {
            "cpu": {"usage": _omit_zero(usage, keep=("kernel", "user")),
                    "throttling": _omit_zero(throttling)},
            "cpuset": cpuset_stats(self.path, ".effective"),
            "memory": self._memory_stats(),
            "pids": self._pids_stats(),
            "blkio": self._io_stats(),
            "hugetlb": self._hugetlb_stats(),
            "intel_rdt": {},
            "network_interfaces": None,
        }
        return data

    def _memory_stats(self) -> dict[str, Any]:
        raw = read_keyed(self._file("memory.stat"))
        events = read_keyed(self._file("memory.events"))
        usage = read_int(self._file("memory.current"))
        limit = read_int(self._file("memory.max"), _UNLIMITED)
        swap_cur = read_int(self._file("memory.swap.current"))
        swap_lim = read_int(self._file("memory.swap.max"), _UNLIMITED)
        # Like runc: report swap as v1's memory+swap so callers see one meaning.
        swap_total_lim = _UNLIMITED if _UNLIMITED in (limit, swap_lim) else limit + swap_lim
        out: dict[str, Any] = {
            "cache": raw.get("file", 0),
            "usage": _omit_zero({"limit": limit, "usage": usage,
                                 "max": read_int(self._file("memory.peak")),
                                 "failcnt": events.get("max", 0)}, keep=("limit", "failcnt")),
            "swap": _omit_zero({"limit": swap_total_lim, "usage": usage + swap_cur,
                                "failcnt": 0}, keep=("limit", "failcnt")),
            "kernel": {"limit": 0, "failcnt": 0},
            "kernelTCP": {"limit": 0, "failcnt": 0},
            "raw": raw,
        }
        return _omit_zero(out, keep=("usage", "swap", "kernel", "kernelTCP"))

    def _pids_stats(self) -> dict[str, int]:
        limit = read_int(self._file("pids.max"))
        return _omit_zero({"current": read_int(self._file("pids.current")),
                           "limit": 0 if limit == _UNLIMITED else limit})

    def _io_stats(self) -> dict[str, Any]:
        try:
            text = read_file(self._file("io.stat"))
        except FileNotFoundError:
            return {}
        service_bytes: list[dict[str, Any]] = []
        serviced: list[dict[str, Any]] = []
        for line in text.splitlines():
            parts = line.split()
            if not parts or ":" not in parts[0]:
                continue
            major, minor = (int(x) for x in parts[0].split(":"))
            fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            for key, op, target in (("rbytes", "Read", service_bytes),
                                    ("wbytes", "Write", service_bytes),
                                    ("rios", "Read", serviced), ("wios", "Write", serviced)):
                if key in fields:
                    target.append(_omit_zero({"major": major, "minor": minor, "op": op,
                                              "value": int(fields[key])}))
        out: dict[str, Any] = {}
        if service_bytes:
            out["ioServiceBytesRecursive"] = service_bytes
        if serviced:
            out["ioServicedRecursive"] = serviced
        return out

    def _hugetlb_stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        try:
            names = sorted(os.listdir(self.path))
        except FileNotFoundError:
            return out
        for name in names:
            if name.startswith("hugetlb.") and name.endswith(".current"):
                size = name[len("hugetlb."):-len(".current")]
                events = read_keyed(self._file(f"hugetlb.{size}.events"))
                out[size] = _omit_zero({"usage": read_int(self._file(name)),
                                        "failcnt": events.get("max", 0)}, keep=("failcnt",))
        return out
