"""Fixtures for driving the real dockyard-shim binary on busybox bundles.

`shim` gives each test its own --root under tmp_path and a `Shim` helper
(crun's `run_and_get_output`, runc's bats `runc` function). Every container
a test makes is force-deleted and its init reaped at teardown, then the
leak check runs: no state dir, no mount under tmp_path, no process, no
cgroup. The test process is made a child subreaper so that orphaned
container inits come back to it (nothing else on these machines reaps
them) and can be reaped by pid.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import busybox

PR_SET_CHILD_SUBREAPER = 36
CGROUP_ROOT = "/sys/fs/cgroup"
TIMEOUT = 30


def _subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def new_id(prefix: str = "dy") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def reap(*pids: int, timeout: float = 10.0) -> None:
    """Wait for adopted container processes (our children as subreaper) and reap them.

    All at once: a dying pid-namespace init waits until every process of its
    namespace is reaped, and an exec'd process's zombie is ours to reap.
    """
    left = set(pids)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid  # not ours (already reaped, or reparented elsewhere)
            if done:
                left.discard(pid)
        if left:
            time.sleep(0.01)
    if left:
        raise AssertionError(f"processes {sorted(left)} did not exit")


def cgroup_dirs(container_id: str) -> list[str]:
    """Where the shim's cgroup for `container_id` would be, in every hierarchy."""
    out = []
    for name in os.listdir(CGROUP_ROOT):
        path = os.path.join(CGROUP_ROOT, name, "dockyard", container_id)
        if os.path.exists(path):
            out.append(path)
    if os.path.exists(os.path.join(CGROUP_ROOT, "dockyard", container_id)):
        out.append(os.path.join(CGROUP_ROOT, "dockyard", container_id))
    return out


def mounts_under(prefix: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


class Shim:
    """One test's runtime: `--root` in tmp_path, bundles, and cleanup."""

    def __init__(self, binary: str, tmp_path: Path) -> None:
        self.binary = binary
        self.tmp = tmp_path
        self.root = str(tmp_path / "root")
        self.ids: set[str] = set()
        self.pids: set[int] = set()
        self._rootfs: Path | None = None

    def __call__(self, *args: str, check: bool = False, input: str | None = None,
                 timeout: float = TIMEOUT, log_args: tuple[str, ...] = (),
                 stdin=None) -> subprocess.CompletedProcess:
        """Run `dockyard-shim --root R <args>`; stdout/stderr captured as text.

        Only for commands whose container does not keep our pipes open:
        attached `run`/`exec`, or anything with stdio redirected by the caller.
        """
        cmd = [self.binary, "--root", self.root, *log_args, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, input=input,
                             timeout=timeout, stdin=stdin)
        if check and res.returncode != 0:
            raise AssertionError(f"{args}: rc={res.returncode} stderr={res.stderr!r}")
        return res

    def detached(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """create/run -d/exec -d: the container inherits stdio, so give it files
        (a pipe would stay open until the container exits)."""
        out = self.tmp / f"out-{uuid.uuid4().hex[:6]}"
        err = self.tmp / f"err-{uuid.uuid4().hex[:6]}"
        with open(out, "w+") as f, open(err, "w+") as e, open(os.devnull) as null:
            res = subprocess.run([self.binary, "--root", self.root, *args], stdin=null,
                                 stdout=f, stderr=e, text=True, timeout=TIMEOUT)
        res.stdout = out.read_text()
        res.stderr = err.read_text()
        if check and res.returncode != 0:
            raise AssertionError(f"{args}: rc={res.returncode} stderr={res.stderr!r}")
        return res

    cgroup_dirs = staticmethod(cgroup_dirs)
    mounts_under = staticmethod(mounts_under)

    @staticmethod
    def reap(*pids: int, timeout: float = 10.0) -> None:
        reap(*pids, timeout=timeout)

    def rootfs(self) -> Path:
        """One busybox tree per test, copied into each bundle."""
        if self._rootfs is None:
            self._rootfs = busybox.make_rootfs(self.tmp / "rootfs-src")
        return self._rootfs

    def bundle(self, config: dict | None = None, name: str | None = None) -> Path:
        path = self.tmp / (name or f"bundle-{uuid.uuid4().hex[:6]}")
        busybox.make_bundle(path, config or busybox.base_config(), rootfs=self.rootfs())
        return path

    def container(self) -> str:
        cid = new_id()
        self.ids.add(cid)
        return cid

    def state(self, cid: str) -> dict:
        res = self("state", cid, check=True)
        return json.loads(res.stdout)

    def create(self, config: dict, cid: str | None = None, *extra: str) -> tuple[str, int]:
        """create a container from config; returns (id, init pid)."""
        cid = cid or self.container()
        bundle = self.bundle(config)
        self.detached("create", "--bundle", str(bundle), *extra, cid)
        pid = self.state(cid)["pid"]
        self.pids.add(pid)
        return cid, pid

    def run(self, args: list[str], **process) -> subprocess.CompletedProcess:
        """`run` a busybox container attached; returns the finished process."""
        return self.run_config(busybox.base_config(args, **process))

    def run_config(self, config: dict) -> subprocess.CompletedProcess:
        cid = self.container()
        return self("run", "--bundle", str(self.bundle(config)), cid)

    def cleanup(self) -> None:
        for cid in list(self.ids):
            try:
                pid = self.state(cid)["pid"]
                if pid:
                    self.pids.add(pid)
            except (AssertionError, ValueError):
                pass
            self("delete", "--force", cid)
        reap(*self.pids)

    def leaks(self) -> list[str]:
        found = []
        if os.path.isdir(self.root) and os.listdir(self.root):
            found.append(f"state dirs left: {os.listdir(self.root)}")
        mounts = mounts_under(str(self.tmp))
        if mounts:
            found.append(f"mounts left: {mounts}")
        for cid in self.ids:
            dirs = cgroup_dirs(cid)
            if dirs:
                found.append(f"cgroups left: {dirs}")
        for pid in self.pids:
            if os.path.exists(f"/proc/{pid}"):
                found.append(f"process left: {pid}")
        return found


@pytest.fixture(scope="session")
def shim_lean_bin(tmp_path_factory) -> str:
    """dockyard-shim as scripts/install.sh writes it: shim/lean.py for the common
    start/state/kill/delete, shim/cli.py for everything else (python -I -S)."""
    from dockyard.shim.lean import launcher

    path = tmp_path_factory.mktemp("bin-lean") / "dockyard-shim"
    path.write_text(launcher(sys.executable, str(Path(__file__).resolve().parents[2])))
    path.chmod(0o755)
    return str(path)


@pytest.fixture(scope="session")
def shim_full_bin(shim_bin) -> str:
    """The launcher that always runs the full CLI (tests/conftest.py's)."""
    return shim_bin


@pytest.fixture
def shim(shim_lean_bin, tmp_path):
    _subreaper()
    runtime = Shim(shim_lean_bin, tmp_path)
    yield runtime
    runtime.cleanup()
    leaks = runtime.leaks()
    assert not leaks, leaks
