"""Keep the cgroup migration lock warm while the shim starts up.

Every write to a cgroup.procs file takes the kernel's global
cgroup_threadgroup_rwsem for writing. When no migration happened recently
that waits for a full RCU grace period (rcu_sync_enter, kernel/rcu/sync.c):
5-25 ms here, about as long as the rest of `runc run` together (runc pays
it too). A writer that comes within roughly one grace period after the
previous writer left skips the wait.

So `create`, `run` and `exec` start a thread that re-writes this process
into the cgroup it is already in (a no-op migration), first while the main
thread imports modules and reads config.json/state.json, then again every
couple of milliseconds until the main thread is about to fork (`stop()`).
`create` restarts it right after the fork, while it makes the container's
cgroup directories, and stops it just before adding the init. The
container's own cgroup.procs write then finds the lock warm and takes
~0.4 ms instead of a grace period.

The thread is always stopped and joined before the shim forks, so no fork
ever happens in a multi-threaded process (STYLE.md). Any failure is
ignored: the real write still works, only slower. It must do nothing else.
"""

from __future__ import annotations

import _thread
import os

__all__ = ["start", "stop"]

_REPEAT = 0.002  # s between no-op migrations: well inside a grace period
_done = None  # released by the thread when it has finished
_wake = None  # held while running; stop() releases it to cut the thread's pause short
_running = False


def _own_procs(root: str) -> str | None:
    """cgroup.procs of the cgroup this process is in (the unified line preferred)."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    v1 = None
    for line in lines:
        hier, ctrls, path = line.split(":", 2)
        if hier == "0" and not ctrls:
            unified = root if os.path.exists(f"{root}/cgroup.procs") else f"{root}/unified"
            return f"{unified}{path.rstrip('/')}/cgroup.procs"
        if v1 is None and ctrls and not ctrls.startswith("name="):
            v1 = f"{root}/{ctrls}{path.rstrip('/')}/cgroup.procs"
    return v1


def _loop(path: str, done: _thread.LockType, wake: _thread.LockType) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            while True:
                os.write(fd, b"0")
                # pause between writes, but wake at once when stop() releases
                # `wake`: a plain sleep made every stop() wait ~1 ms on average
                if not _running or wake.acquire(True, _REPEAT):
                    break
        finally:
            os.close(fd)
    except OSError:
        pass
    finally:
        done.release()


def start(root: str = "/sys/fs/cgroup") -> None:
    """Begin the no-op migrations in a thread (again after a `stop()`)."""
    global _done, _wake, _running
    if _running:
        return
    path = _own_procs(root)
    if path is None:
        return
    _done = _thread.allocate_lock()
    _done.acquire()
    _wake = _thread.allocate_lock()
    _wake.acquire()
    _running = True
    try:
        _thread.start_new_thread(_loop, (path, _done, _wake))
    except RuntimeError:
        _running = False
        _done.release()


def stop() -> None:
    """End the loop after its current write and join the thread (before any fork)."""
    global _running
    if _running:
        _running = False
        _wake.release()
    if _done is not None:
        _done.acquire()
        _done.release()
