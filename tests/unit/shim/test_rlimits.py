"""rlimits and oom_score_adj: validation, and setrlimit in a forked child."""

from __future__ import annotations

import os
import resource

import pytest
from dockyard.shim import rlimits

from dockyard import errdefs


def in_child(fn) -> int:
    """Run fn in a forked child; returns its exit status (fn's int or 99 on error)."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(fn())
        except BaseException:
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_parse_validates_and_maps_infinity():
    assert rlimits.parse([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20},
                          {"type": "RLIMIT_CORE", "soft": 2**64 - 1, "hard": 2**64 - 1}]) == [
        ("RLIMIT_NOFILE", 10, 20), ("RLIMIT_CORE", resource.RLIM_INFINITY, resource.RLIM_INFINITY)]


@pytest.mark.parametrize("entries,match", [
    ([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}], "unknown rlimit 'RLIMIT_BOGUS'"),
    ([{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}] * 2, "duplicate rlimit RLIMIT_NOFILE"),
    ([{"type": "RLIMIT_NOFILE", "soft": 30, "hard": 20}], "soft limit 30 exceeds hard"),
    ([{"type": "RLIMIT_NOFILE", "soft": -1, "hard": 20}], "RLIMIT_NOFILE"),
    ([{"type": "RLIMIT_NOFILE", "soft": "1", "hard": 20}], "unsigned 64-bit"),
    ({"type": "RLIMIT_NOFILE"}, "must be a list"),
])
def test_bad_rlimits_are_named(entries, match):
    with pytest.raises(errdefs.InvalidArgument, match=match):
        rlimits.parse(entries)


def test_apply_sets_the_limits_of_the_calling_process():
    def child() -> int:
        rlimits.apply([{"type": "RLIMIT_NOFILE", "soft": 64, "hard": 128},
                       {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}])
        ok = (resource.getrlimit(resource.RLIMIT_NOFILE) == (64, 128)
              and resource.getrlimit(resource.RLIMIT_CORE) == (0, 0))
        return 0 if ok else 1
    assert in_child(child) == 0


def test_raising_a_hard_limit_without_cap_sys_resource_names_the_limit():
    def child() -> int:
        resource.setrlimit(resource.RLIMIT_NOFILE, (32, 64))
        try:
            rlimits.apply([{"type": "RLIMIT_NOFILE", "soft": 32, "hard": 4096}])
        except PermissionError as err:
            text = str(err)
            return 0 if ("RLIMIT_NOFILE" in text and "4096" in text and "64" in text
                         and "CAP_SYS_RESOURCE" in text) else 2
        # root with CAP_SYS_RESOURCE may raise it: nothing to check then
        return 0 if os.geteuid() == 0 else 3
    assert in_child(child) == 0


def test_oom_score_adj_range_and_write():
    with pytest.raises(errdefs.InvalidArgument, match="oomScoreAdj"):
        rlimits.oom_score_adj(1001)

    def child() -> int:
        with open("/proc/self/oom_score_adj") as f:
            current = int(f.read())
        target = min(current + 100, 1000)
        rlimits.oom_score_adj(target)  # raising is always allowed
        with open("/proc/self/oom_score_adj") as f:
            return 0 if int(f.read()) == target else 1
    assert in_child(child) == 0
