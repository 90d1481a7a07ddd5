"""OCI container state: statuses, their predicates, and runc's `state` JSON.

Owns the status vocabulary (runtime-spec runtime.md plus runc's `paused`),
the guards every verb checks (`can_start`, `can_kill`, ...), and the shape
of the object `state` and `list` print (runc 1.1: ociVersion, id, pid,
status, bundle, rootfs, created, annotations?, owner). It must not decide a
status itself: the shim refreshes it from the kernel.

Plain classes rather than dataclasses/enum on purpose: both modules import
`re`/`inspect`, which would triple the runtime's start-up time.
"""

from __future__ import annotations

import time

__all__ = ["Status", "CREATING", "CREATED", "RUNNING", "PAUSED", "STOPPED", "State",
           "format_time"]

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"


class Status:
    """The status enum (strings, as runc prints them) and what each allows."""

    ALL = (CREATING, CREATED, RUNNING, PAUSED, STOPPED)

    @staticmethod
    def can_start(status: str) -> bool:
        return status == CREATED

    @staticmethod
    def can_kill(status: str) -> bool:
        return status in (CREATED, RUNNING, PAUSED)

    @staticmethod
    def can_delete(status: str, force: bool = False) -> bool:
        # runc deletes a `created` container without --force (it kills the waiting init)
        return force or status in (STOPPED, CREATED, CREATING)

    @staticmethod
    def can_pause(status: str) -> bool:
        return status in (RUNNING, CREATED)

    @staticmethod
    def can_resume(status: str) -> bool:
        return status == PAUSED

    @staticmethod
    def can_exec(status: str) -> bool:
        return status in (CREATED, RUNNING)


def format_time(ns: int) -> str:
    """Nanoseconds since the epoch as Go's RFC3339Nano in UTC (trailing zeros trimmed)."""
    sec, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    digits = f"{frac:09d}".rstrip("0")
    return f"{text}.{digits}Z" if digits else f"{text}Z"


class State:
    """The public state of one container (what `runc state` prints)."""

    __slots__ = ("oci_version", "id", "pid", "status", "bundle", "rootfs", "created",
                 "annotations", "owner")

    def __init__(self, id: str, pid: int, status: str, bundle: str, rootfs: str,
                 created: str, annotations: dict | None = None, owner: str = "",
                 oci_version: str = "1.0.2-dev") -> None:
        self.oci_version = oci_version
        self.id = id
        self.pid = pid
        self.status = status
        self.bundle = bundle
        self.rootfs = rootfs
        self.created = created
        self.annotations = annotations
        self.owner = owner

    def to_dict(self) -> dict:
        """runc's key order; `pid` is 0 once stopped, `annotations` only when set."""
        out = {"ociVersion": self.oci_version, "id": self.id,
               "pid": 0 if self.status == STOPPED else self.pid, "status": self.status,
               "bundle": self.bundle, "rootfs": self.rootfs, "created": self.created}
        if self.annotations:
            out["annotations"] = self.annotations
        out["owner"] = self.owner
        return out

    def hook_dict(self) -> dict:
        """The object hooks read on stdin (runtime-spec config.md#posix-platform-hooks)."""
        out = {"ociVersion": self.oci_version, "id": self.id, "status": self.status,
               "bundle": self.bundle}
        if self.pid and self.status != STOPPED:
            out["pid"] = self.pid
        if self.annotations:
            out["annotations"] = self.annotations
        return out
