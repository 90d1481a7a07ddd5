"""Fixtures for the break-out tests: the real shim (tests/oci's `Shim` helper, with its
leak check) and a host-side marker directory that nothing may touch."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from oci.conftest import Shim, _subreaper


@pytest.fixture
def shim(shim_bin, tmp_path):
    """tests/oci's runtime helper: own --root, bundles, force-delete and leak check."""
    _subreaper()
    runtime = Shim(shim_bin, tmp_path)
    yield runtime
    runtime.cleanup()
    leaks = runtime.leaks()
    assert not leaks, leaks


class HostMarker(type(Path())):
    """A host directory holding one sentinel file; nothing a container does may change it."""

    def assert_untouched(self) -> None:
        assert sorted(os.listdir(self)) == ["sentinel"], f"host dir {self} was written to"
        assert (self / "sentinel").read_text() == "host"
        assert self.stat().st_mtime_ns == self.mtime, f"host dir {self} was modified"


@pytest.fixture
def host_marker(tmp_path) -> HostMarker:
    marker = HostMarker(tmp_path / f"dy-host-{uuid.uuid4().hex[:8]}")
    marker.mkdir()
    (marker / "sentinel").write_text("host")
    os.utime(marker, ns=(10**18, 10**18))
    marker.mtime = marker.stat().st_mtime_ns
    return marker


# apid's integration stack (registry + managerd + apid), loaded from its conftest by path:
# `apid` as a module name would be the repo's own package
def _load_apid_stack():
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "apid" / "integration" / "conftest.py"
    spec = importlib.util.spec_from_file_location("dy_security_apid_stack", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_apid_stack = _load_apid_stack()
stack = _apid_stack.stack
busybox = _apid_stack.busybox
registry = _apid_stack.registry
