"""install_filter with a recording fake Syscalls: flags, fallbacks, error messages."""

from __future__ import annotations

import errno
import os

import pytest
from dockyard.shim import seccomp
from fakes.syscalls import FakeSyscalls

from dockyard import errdefs

PROGRAM = b"\x06\x00\x00\x00\x00\x00\xff\x7f"  # RET ALLOW


def FakeSys(fail: int | None = None, ret: int = 0) -> FakeSyscalls:  # noqa: N802
    """The shared recording fake, failing seccomp(2) with `fail` or returning `ret`."""
    sys = FakeSyscalls(fail={"seccomp": OSError(fail, os.strerror(fail))} if fail else None)
    if ret:
        sys.seccomp = lambda op, flags, program: (sys._record("seccomp", op, flags, program),
                                                  ret)[1]
    return sys


def test_flags_are_passed_to_seccomp():
    sys = FakeSys()
    seccomp.install_filter(PROGRAM, ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"], sys)
    assert sys.calls == [("seccomp", 1, 3, PROGRAM)]


def test_old_kernels_fall_back_to_prctl_without_flags():
    sys = FakeSys(fail=errno.ENOSYS)
    seccomp.install_filter(PROGRAM, None, sys)
    assert sys.calls[-1] == ("seccomp_prctl", PROGRAM)
    with pytest.raises(OSError, match="SECCOMP_SET_MODE_FILTER"):
        seccomp.install_filter(PROGRAM, ["SECCOMP_FILTER_FLAG_LOG"], FakeSys(fail=errno.ENOSYS))


def test_missing_no_new_privs_is_explained():
    with pytest.raises(PermissionError, match="no_new_privs or CAP_SYS_ADMIN"):
        seccomp.install_filter(PROGRAM, [], FakeSys(fail=errno.EACCES))


def test_tsync_failure_names_the_thread():
    with pytest.raises(OSError, match="thread 4321"):
        seccomp.install_filter(PROGRAM, ["SECCOMP_FILTER_FLAG_TSYNC"], FakeSys(ret=4321))


@pytest.mark.parametrize("program", [b"", b"\x00" * 7])
def test_malformed_programs_are_refused(program):
    with pytest.raises(errdefs.InvalidArgument, match="sock_filter"):
        seccomp.install_filter(program, [], FakeSys())
