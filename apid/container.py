"""The Docker-level container record apid keeps, and its JSON round trip.

Owns `Container` and `State` (what dockerd keeps in `config.v2.json`): name,
Config, HostConfig, state timestamps, restart count, health. apid stores the
record as one JSON extension of managerd's container (`EXTENSION`) so a
restarted apid finds everything again. Must not talk to managerd.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["Container", "State", "ExecRecord", "EXTENSION", "NAME_LABEL", "ZERO_TIME", "now_rfc3339",
           "rfc3339", "parse_time"]

EXTENSION = "io.dockyard.apid.container.v1"
NAME_LABEL = "io.dockyard.apid.name"
ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ts: float) -> str:
    """Unix seconds -> RFC3339Nano UTC as Go prints it (nanoseconds, trailing Z)."""
    if not ts:
        return ZERO_TIME
    whole = int(ts)
    nanos = int(round((ts - whole) * 1e9))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    base = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}Z" if nanos else f"{base}Z"


def now_rfc3339() -> str:
    import time

    return rfc3339(time.time())


def parse_time(text: str) -> float:
    """RFC3339(Nano) in UTC -> unix seconds (0 for Go's zero time)."""
    if not text or text.startswith("0001-01-01"):
        return 0.0
    main, _, frac = text.rstrip("Z").partition(".")
    base = datetime.strptime(main[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    digits = "".join(ch for ch in frac if ch.isdigit())
    return base + (int(digits) / 10 ** len(digits) if digits else 0.0)


@dataclass
class State:
    status: str = "created"  # created|running|paused|restarting|removing|exited|dead
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    oom_killed: bool = False
    health: dict[str, Any] | None = None  # {Status, FailingStreak, Log[]}

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused")

    def to_docker(self) -> dict[str, Any]:
        out = {
            "Status": self.status, "Running": self.status in ("running", "paused"),
            "Paused": self.status == "paused", "Restarting": self.status == "restarting",
            "OOMKilled": self.oom_killed, "Dead": self.status == "dead", "Pid": self.pid,
            "ExitCode": self.exit_code, "Error": self.error,
            "StartedAt": rfc3339(self.started_at), "FinishedAt": rfc3339(self.finished_at),
        }
        if self.health is not None:
            out["Health"] = self.health
        return out


@dataclass
class Container:
    id: str
    name: str  # with the leading "/"
    created: float
    image: str  # as the user typed it
    image_id: str  # sha256:<config digest>
    image_ref: str  # normalised reference managerd knows
    config: dict[str, Any]
    host_config: dict[str, Any]
    networking_config: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    args: list[str] = field(default_factory=list)
    state: State = field(default_factory=State)
    restart_count: int = 0
    manually_stopped: bool = False
    snapshot_key: str = ""
    root: str = ""  # <data-root>/containers/<id>
    platform: str = "linux"
    exec_ids: list[str] = field(default_factory=list)
    # named/anonymous volumes mounted: {Name, Destination, Source, RW, Anonymous}
    volumes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def hostname_path(self) -> str:
        return f"{self.root}/hostname"

    @property
    def hosts_path(self) -> str:
        return f"{self.root}/hosts"

    @property
    def resolv_path(self) -> str:
        return f"{self.root}/resolv.conf"

    @property
    def log_path(self) -> str:
        return f"{self.root}/{self.id}-json.log"

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Container:
        raw = json.loads(data)
        raw["state"] = State(**raw.get("state") or {})
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass
class ExecRecord:
    """An exec instance (dockerd keeps these in memory only)."""

    id: str
    container_id: str
    config: dict[str, Any]
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    started: bool = False

    def to_docker(self) -> dict[str, Any]:
        cmd = list(self.config.get("Cmd") or [])
        return {
            "ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
            "ProcessConfig": {"tty": bool(self.config.get("Tty")),
                              "entrypoint": cmd[0] if cmd else "", "arguments": cmd[1:],
                              "privileged": bool(self.config.get("Privileged")),
                              "user": self.config.get("User") or ""},
            "OpenStdin": bool(self.config.get("AttachStdin")),
            "OpenStderr": bool(self.config.get("AttachStderr")),
            "OpenStdout": bool(self.config.get("AttachStdout")),
            "CanRemove": not self.running and self.started, "ContainerID": self.container_id,
            "DetachKeys": self.config.get("DetachKeys") or "", "Pid": self.pid,
        }
