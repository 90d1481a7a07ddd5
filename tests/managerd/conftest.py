"""Fixtures that run a real dockyard-managerd on temporary roots (the daemon class
is tests/helpers/managerd.py: `from helpers.managerd import ManagerdProcess`).

- ``managerd``: one daemon per test session/worker (module files share it;
  isolate with a unique namespace: ``managerd.client(unique_ns)``).
- ``managerd_factory``: start extra daemons (restart tests, custom flags);
  each is stopped at the end of the test.
- ``ns``: a fresh namespace name for one test.
"""

from __future__ import annotations

import os
import uuid

import pytest
from helpers.managerd import ManagerdProcess

__all__ = ["ManagerdProcess"]


@pytest.fixture(scope="session")
def managerd(tmp_path_factory) -> ManagerdProcess:
    """A shared daemon for this test session (per xdist worker)."""
    if os.geteuid() != 0:
        pytest.skip("managerd needs root (mounts, snapshots)")
    proc = ManagerdProcess(tmp_path_factory.mktemp("managerd"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def managerd_factory(tmp_path):
    """Start more daemons: ``managerd_factory(extra_args=[...])``; stopped after the test."""
    if os.geteuid() != 0:
        pytest.skip("managerd needs root (mounts, snapshots)")
    started: list[ManagerdProcess] = []

    def start(extra_args: list[str] | None = None, env: dict[str, str] | None = None,
              name: str | None = None) -> ManagerdProcess:
        proc = ManagerdProcess(tmp_path / (name or f"m{len(started)}"), extra_args, env)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def ns() -> str:
    """A namespace no other test uses."""
    return f"dy-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(managerd, ns):
    """A client of the shared daemon in a fresh namespace."""
    with managerd.client(ns) as c:
        yield c


@pytest.fixture(params=["shim", "runc"])
def runtime(request, shim_bin, runc_bin):
    """Each task test runs on dockyard-shim and on Debian's runc."""
    return shim_bin if request.param == "shim" else runc_bin
