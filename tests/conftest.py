"""Shared fixtures: privilege checks and where the repo's programs are."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # `from helpers import busybox`


def _can_unshare() -> bool:
    if os.geteuid() != 0:
        return False
    return subprocess.run(["unshare", "--mount", "--pid", "--fork", "true"],
                          capture_output=True).returncode == 0


CAN_UNSHARE = _can_unshare()


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs root with working unshare(2)")
    for item in items:
        if "privileged" in item.keywords and not CAN_UNSHARE:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shim_bin(tmp_path_factory) -> str:
    """An executable dockyard-shim that runs this checkout's source, as installed ones do
    (python -I -S), so managerd and the benchmarks can exec it by path."""
    path = tmp_path_factory.mktemp("bin") / "dockyard-shim"
    path.write_text(f"#!{sys.executable} -IS\n"
                    f"import sys\nsys.path.insert(0, {str(REPO / 'src')!r})\n"
                    "from dockyard.shim.cli import main\nsys.exit(main())\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture(scope="session")
def runc_bin() -> str:
    path = shutil.which("runc")
    if not path:
        pytest.skip("Debian's runc is not installed")
    return path


def pytest_sessionfinish(session, exitstatus):
    """Remove the empty `dockyard` parent cgroups the containers of this run shared.

    Containers remove their own cgroups; the parent is shared by all of them, so
    only the xdist controller (after every worker is done) may remove it.
    """
    if hasattr(session.config, "workerinput") or os.geteuid() != 0:
        return
    base = Path("/sys/fs/cgroup")
    for parent in [*base.glob("*/dockyard"), base / "dockyard"]:
        with contextlib.suppress(OSError):
            parent.rmdir()  # fails while a container cgroup (a leak) is still below it
