"""FastAPI dependencies: the daemon and the manager client of the running app.

Tests override `get_manager` / `get_daemon` (app.dependency_overrides) or build
the app on a Daemon over a FakeManager. Also Docker's query-string booleans.
"""

from __future__ import annotations

from typing import Annotated

from dockyard.apid.daemon import Daemon
from dockyard.apid.manager import Manager
from fastapi import Depends, Request

__all__ = ["get_daemon", "get_manager", "qbool", "api_version", "DaemonDep"]


# async on purpose: FastAPI runs a plain-def dependency in its thread pool, a thread hop
# (and a wake-up of a worker thread) on every request for an attribute read
async def get_daemon(request: Request) -> Daemon:
    return request.app.state.daemon


async def get_manager(request: Request) -> Manager:
    return request.app.state.manager


def api_version(request: Request) -> str:
    return getattr(request.state, "api_version", "1.51")


def qbool(value: str | None, default: bool = False) -> bool:
    """dockerd's boolValue: "", 0, no, false, none are false; anything else is true."""
    if value is None:
        return default
    return value.strip().lower() not in ("", "0", "no", "false", "none")


DaemonDep = Annotated[Daemon, Depends(get_daemon)]
