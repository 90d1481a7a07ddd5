"""Get the cgroup migration lock's grace period out of the way early.

Every write to a cgroup.procs file takes the kernel's global
cgroup_threadgroup_rwsem for writing. When no migration happened recently
that waits for a full RCU grace period (rcu_sync_enter, kernel/rcu/sync.c):
8-30 ms on the shared test machine, as long as the rest of `runc exec`
(runc pays it too). A writer that comes while that grace period runs waits
only for its rest, and one that comes within about one grace period after
the previous writer left (~10 ms here) does not wait at all.

So `exec` starts a writer as soon as it knows its verb (`start()`, called
by shim/lean.py before cli.py even loads): a spawned `/bin/echo 0` with its
stdout opened on the cgroup.procs of the cgroup the shim is in, i.e. a no-op
migration of itself. It waits out the grace period while the shim imports
its modules and reads state.json; the exec child's cgroup.procs writes,
after the fork, then find the lock warm or the period nearly over.
`reap()` collects it before the shim exits.

Only `exec`: its child has little to do before it needs the join, so the
grace period is on its critical path. `create` and `run` start the period
with their own first cgroup.procs write right after the fork, and the
init's own set-up (unshare, mounts, devices, pivot_root: ~15 ms) overlaps
it; a writer would cost them ~3 ms of CPU on this VM (one exec of
/bin/echo) for little gain, which on a saturated machine is wall time too
(create CPU 36.8 -> 32.0 ms without it, medians of 15).

A separate process rather than a thread of ours: the shim forks right
after its imports, never in a multi-threaded process (STYLE.md), and a
thread stuck in that grace period had to be joined first, which put the
wait right back in front of the fork. posix_spawn (vfork + exec) costs the
shim ~0.2 ms. Any failure is ignored: the real write still works, only
slower. It must do nothing else.

Built-in modules only (`posix`, not `os`): shim/lean.py loads this file by
path and starts the writer before the full CLI is even imported.
"""

from __future__ import annotations

import posix
import time

__all__ = ["start", "reap", "cgroup_root"]

_ECHO = "/bin/echo"
_FRESH = 0.005  # s: a writer spawned this recently has warmed the lock or is still at it
_pids: list[int] = []
_last = -1.0  # time.monotonic() of the last spawn
_procs: str | None = None  # our cgroup.procs; "" when there is none to write


def cgroup_root() -> str:
    """Where cgroupfs is mounted: $DOCKYARD_CGROUP_ROOT or /sys/fs/cgroup
    (container.cgroup_root without `os`)."""
    return (posix.environ.get(b"DOCKYARD_CGROUP_ROOT") or b"/sys/fs/cgroup").decode()


def _exists(path: str) -> bool:
    try:
        posix.stat(path)
    except OSError:
        return False
    return True


def _own_procs(root: str) -> str:
    """cgroup.procs of the cgroup this process is in (the unified line preferred)."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    v1 = ""
    for line in lines:
        hier, ctrls, path = line.split(":", 2)
        if hier == "0" and not ctrls:
            unified = root if _exists(f"{root}/cgroup.procs") else f"{root}/unified"
            return f"{unified}{path.rstrip('/')}/cgroup.procs"
        if not v1 and ctrls and not ctrls.startswith("name="):
            v1 = f"{root}/{ctrls}{path.rstrip('/')}/cgroup.procs"
    return v1


def start(root: str | None = None) -> None:
    """Spawn a no-op migration, unless the previous one is still waiting or has
    only just been spawned (lean.py's, when cli.py asks again)."""
    global _procs, _last
    if _procs is None:
        _procs = _own_procs(root or cgroup_root())
    if not _procs:
        return
    reap(block=False)
    now = time.monotonic()
    if _pids or now - _last < _FRESH:
        return  # still in its grace period (a second writer would only wait with it)
    _last = now
    try:
        # stderr to /dev/null: a refused write must not add a line to the shim's own
        _pids.append(posix.posix_spawn(_ECHO, ["echo", "0"], {}, file_actions=[
            (posix.POSIX_SPAWN_OPEN, 1, _procs, posix.O_WRONLY, 0),
            (posix.POSIX_SPAWN_OPEN, 2, "/dev/null", posix.O_WRONLY, 0)]))
    except OSError:
        pass


def reap(block: bool = True) -> None:
    """Collect the writers that ended (all of them with `block`)."""
    for pid in list(_pids):
        try:
            done, _ = posix.waitpid(pid, 0 if block else posix.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _pids.remove(pid)
