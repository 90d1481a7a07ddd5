"""Docker's stats JSON (GET /containers/{id}/stats) from managerd's task metrics.

Owns the shape the CLI computes CPU% and memory from (docker-api-flow.md §5):
cpu_stats/precpu_stats, memory_stats, pids_stats, blkio_stats, networks.
managerd's metrics are the cgroup figures the shim reads, in runc's `events
--stats` shape (cpu.usage.{total,percpu,kernel,user}, memory.usage.{usage,max},
memory.raw, pids.current, blkio...); missing parts are reported as zeros.
"""

from __future__ import annotations

import os
import time
from typing import Any

from dockyard.apid.container import Container, rfc3339

from dockyard import errdefs

__all__ = ["sample", "to_docker", "system_cpu_usage"]


def system_cpu_usage() -> int:
    """Host CPU time in ns from /proc/stat's first line (what dockerd reports)."""
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()[1:8]
        ticks = os.sysconf("SC_CLK_TCK")
        return sum(int(p) for p in parts) * 1_000_000_000 // ticks
    except (OSError, ValueError):
        return 0


def _empty_cpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def to_docker(metrics: dict[str, Any], c: Container, prev: dict[str, Any] | None,
              now: float | None = None) -> dict[str, Any]:
    """One stats object; `prev` (the previous object) fills precpu_stats."""
    now = now or time.time()
    cpu = metrics.get("cpu") or {}
    usage = cpu.get("usage") or {}
    throttle = cpu.get("throttling") or {}
    online = os.cpu_count() or 1
    cpu_stats = {
        "cpu_usage": {"total_usage": int(usage.get("total", 0)),
                      "usage_in_kernelmode": int(usage.get("kernel", 0)),
                      "usage_in_usermode": int(usage.get("user", 0))},
        "system_cpu_usage": system_cpu_usage(), "online_cpus": online,
        "throttling_data": {"periods": int(throttle.get("periods", 0)),
                            "throttled_periods": int(throttle.get("throttled_periods", 0)),
                            "throttled_time": int(throttle.get("throttled_time", 0))},
    }
    if usage.get("percpu"):
        cpu_stats["cpu_usage"]["percpu_usage"] = list(usage["percpu"])
    mem = metrics.get("memory") or {}
    mem_usage = mem.get("usage") or {}
    raw = {k: int(v) for k, v in (mem.get("raw") or mem.get("stats") or {}).items()
           if isinstance(v, int | float)}
    memory_stats: dict[str, Any] = {}
    if mem:
        memory_stats = {"usage": int(mem_usage.get("usage", 0)),
                        "max_usage": int(mem_usage.get("max", 0)),
                        "stats": raw, "limit": _limit(int(mem_usage.get("limit", 0)))}
        if mem_usage.get("failcnt") is not None:
            memory_stats["failcnt"] = int(mem_usage["failcnt"])
    pids = metrics.get("pids") or {}
    blkio = metrics.get("blkio") or {}
    out = {
        "name": c.name, "id": c.id, "read": rfc3339(now),
        "preread": prev["read"] if prev else "0001-01-01T00:00:00Z",
        "pids_stats": {"current": int(pids.get("current", 0))} if pids else {},
        "blkio_stats": {"io_service_bytes_recursive": blkio.get("ioServiceBytesRecursive"),
                        "io_serviced_recursive": blkio.get("ioServicedRecursive"),
                        "io_queue_recursive": None, "io_service_time_recursive": None,
                        "io_wait_time_recursive": None, "io_merged_recursive": None,
                        "io_time_recursive": None, "sectors_recursive": None},
        "num_procs": 0, "storage_stats": {}, "cpu_stats": cpu_stats,
        "precpu_stats": prev["cpu_stats"] if prev else _empty_cpu(),
        "memory_stats": memory_stats,
    }
    if pids.get("limit"):
        out["pids_stats"]["limit"] = int(pids["limit"])
    return out


def _limit(limit: int) -> int:
    """An unlimited cgroup (v1: 2^63 - page) reports the host's memory, as dockerd does."""
    host = _host_mem()
    return host if not limit or (host and limit > host) else limit


def _host_mem() -> int:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0


async def sample(daemon: Any, c: Container, prev: dict[str, Any] | None) -> dict[str, Any]:
    """Stats now; a stopped container gets zeros, as with dockerd."""
    metrics: dict[str, Any] = {}
    if c.state.status in ("running", "paused"):
        try:
            metrics = await daemon.manager.metrics(c.id)
        except errdefs.EngineError:
            metrics = {}
    return to_docker(metrics, c, prev)
