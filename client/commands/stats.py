"""`stats`: live (or --no-stream) resource usage of containers, computed as docker does.

Owns: turning the daemon's stats samples into docker's columns (CPU % from the
delta to the previous sample, memory without page cache, network and block
I/O totals, pids) and redrawing the table once a second on a terminal.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from dockyard.client import api, output
from dockyard.client.api import q
from dockyard.client.context import CLIError, Context, add_verb

__all__ = ["register", "stats_row"]

HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
           "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
           "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
TABLE = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t"
         "{{.BlockIO}}\t{{.PIDs}}")


def stats_row(s: dict[str, Any], container: str, trunc: bool = True) -> dict[str, str]:
    """The template fields for one stats sample (docker's stats formatter)."""
    cpu = s.get("cpu_stats") or {}
    pre = s.get("precpu_stats") or {}
    usage = (cpu.get("cpu_usage") or {}).get("total_usage") or 0
    pre_usage = (pre.get("cpu_usage") or {}).get("total_usage") or 0
    system = cpu.get("system_cpu_usage") or 0
    pre_system = pre.get("system_cpu_usage") or 0
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage")
                                         or []) or 1
    cpu_pct = 0.0
    if system > pre_system and usage >= pre_usage:
        cpu_pct = (usage - pre_usage) / (system - pre_system) * cpus * 100.0
    mem = s.get("memory_stats") or {}
    mstats = mem.get("stats") or {}
    used = mem.get("usage") or 0
    for key in ("total_inactive_file", "inactive_file"):  # v1, then v2
        if key in mstats and mstats[key] < used:
            used -= mstats[key]
            break
    limit = mem.get("limit") or 0
    rx = tx = 0
    for net in (s.get("networks") or {}).values():
        rx += net.get("rx_bytes") or 0
        tx += net.get("tx_bytes") or 0
    read = write = 0
    for entry in (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = (entry.get("op") or "").lower()
        if op == "read":
            read += entry.get("value") or 0
        elif op == "write":
            write += entry.get("value") or 0
    ident = s.get("id") or container
    running = bool(s.get("read")) and not str(s.get("read")).startswith("0001")
    return {
        "ID": ident[:12] if trunc else ident,
        "Container": container,
        "Name": (s.get("name") or "").lstrip("/") or "--",
        "CPUPerc": f"{cpu_pct:.2f}%" if running else "--",
        "MemUsage": f"{output.bytes_size(used)} / {output.bytes_size(limit)}"
        if running else "-- / --",
        "MemPerc": f"{used / limit * 100:.2f}%" if limit and running else "--" if not running
        else "0.00%",
        "NetIO": f"{output.human_size(rx, 3)} / {output.human_size(tx, 3)}" if running
        else "-- / --",
        "BlockIO": f"{output.human_size(read, 3)} / {output.human_size(write, 3)}"
        if running else "-- / --",
        "PIDs": str((s.get("pids_stats") or {}).get("current") or 0) if running else "--",
    }


class _Follower(threading.Thread):
    def __init__(self, ctx: Context, name: str, trunc: bool):
        super().__init__(daemon=True, name=f"dockyard-stats-{name}")
        self.ctx = ctx
        self.name_ = name
        self.trunc = trunc
        self.row: dict[str, str] | None = None
        self.error: str | None = None

    def run(self) -> None:
        try:
            resp = self.ctx.client.request("GET", f"/containers/{q(self.name_)}/stats",
                                           params={"stream": True})
            for sample in resp.iter_json():
                self.row = stats_row(sample, self.name_, self.trunc)
        except api.APIError as e:
            self.error = e.message
        except Exception as e:  # noqa: BLE001 -- shown in the table's place
            self.error = str(e)


def _watch_events(ctx: Context, followers: list[_Follower], lock: threading.Lock,
                  trunc: bool, show_all: bool) -> None:
    filters = {"type": {"container": True},
               "event": {"start": True, "die": True, "destroy": True}}
    try:
        resp = ctx.client.request("GET", "/events", params={"filters": filters})
        for ev in resp.iter_json():
            cid = (ev.get("Actor") or {}).get("ID") or ev.get("id") or ""
            action = ev.get("Action") or ev.get("status")
            with lock:
                known = {f.name_ for f in followers}
                if action == "start" and cid and cid not in known:
                    f = _Follower(ctx, cid, trunc)
                    followers.append(f)
                    f.start()
                elif action == "destroy" or (action == "die" and not show_all):
                    followers[:] = [f for f in followers if f.name_ != cid]
    except Exception:  # noqa: BLE001 -- the table keeps what it has
        return


def _render(ctx: Context, rows: list[dict[str, str]], fmt: str | None) -> None:
    try:
        output.render_rows(rows, fmt, TABLE, HEADERS, ctx.out)
    except output.TemplateError as e:
        raise CLIError(f"dockyard: template parsing error: {e}", 125) from e


def stats(ctx: Context, ns: argparse.Namespace) -> int:
    names = list(ns.containers)
    if not names:
        items = ctx.client.get("/containers/json", params={"all": ns.all or None}) or []
        names = [c["Id"] for c in items]
    trunc = not ns.no_trunc
    if ns.no_stream:
        rows = []
        failed = False
        for name in names:
            try:
                sample = ctx.client.get(f"/containers/{q(name)}/stats",
                                        params={"stream": False})
            except api.APIError as e:
                ctx.err.write(f"Error response from daemon: {e.message}\n")
                failed = True
                continue
            rows.append(stats_row(sample, name, trunc))
        _render(ctx, rows, ns.format)
        return 1 if failed and not rows else 0
    followers = [_Follower(ctx, n, trunc) for n in names]
    for f in followers:
        f.start()
    lock = threading.Lock()
    if not ns.containers:
        # like docker: containers that start later join the table, removed ones leave it
        threading.Thread(target=_watch_events, args=(ctx, followers, lock, trunc, ns.all),
                         daemon=True, name="dockyard-stats-events").start()
    tty = False
    try:
        import os

        tty = os.isatty(ctx.out.fileno())
    except (OSError, AttributeError, ValueError):
        pass
    while True:
        time.sleep(1.0)
        with lock:
            current = list(followers)
        errors = [f for f in current if f.error]
        if errors and len(errors) == len(current) and ns.containers:
            raise CLIError("\n".join(f"Error response from daemon: {f.error}" for f in errors),
                           1)
        rows = [f.row for f in current if f.row is not None and not f.error]
        if tty:
            ctx.out.write("\x1b[2J\x1b[H")
        _render(ctx, rows, ns.format)
        ctx.out.flush()
        if ns.containers and not any(f.is_alive() for f in current):
            return 0


def register(subparsers: Any) -> None:
    p = add_verb(subparsers, "stats", stats, "[OPTIONS] [CONTAINER...]",
                 "Display a live stream of container(s) resource usage statistics")
    p.add_argument("-a", "--all", action="store_true",
                   help="Show all containers (default shows just running)")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("--no-stream", action="store_true",
                   help="Disable streaming stats and only pull the first result")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate output")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
