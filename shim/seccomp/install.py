"""Install a compiled seccomp program on the calling thread(s).

Owns the seccomp(2) call and its error messages; falls back to
prctl(PR_SET_SECCOMP) on kernels without seccomp(2) (only when no flags are
asked for, since prctl cannot pass them). The caller must have set
no_new_privs or hold CAP_SYS_ADMIN, and installs the filter as late as
possible: after it, only the profile's syscalls work (runc installs it
right before execve when noNewPrivileges is set).
"""

from __future__ import annotations

import errno

from dockyard.shim.seccomp.compiler import filter_flags

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install_filter"]

_SECCOMP_SET_MODE_FILTER = 1
_TSYNC = 1


def install_filter(program: bytes, flags: list[str] | None = None, sys: Any = None) -> None:
    """Load `program` (from `compile_filter`) as this process's seccomp filter.

    Args:
        program: packed struct sock_filter array.
        flags: OCI seccomp flags (SECCOMP_FILTER_FLAG_TSYNC, _LOG, _SPEC_ALLOW).
        sys: a `Syscalls` (tests pass a fake).

    Raises:
        InvalidArgument: an unknown flag or an empty/misaligned program.
        PermissionError: neither no_new_privs nor CAP_SYS_ADMIN.
        OSError: the kernel refused the program or a flag.
    """
    from dockyard.errdefs import InvalidArgument

    bits = filter_flags(flags)
    if not program or len(program) % 8:
        raise InvalidArgument("seccomp: the program must be a non-empty array of "
                              "8-byte sock_filter records")
    if sys is None:
        from dockyard.shim._sys.syscalls import default
        sys = default()
    try:
        ret = sys.seccomp(_SECCOMP_SET_MODE_FILTER, bits, program)
    except OSError as err:
        if err.errno == errno.ENOSYS and not bits:
            sys.seccomp_prctl(program)
            return
        if err.errno == errno.EACCES:
            raise PermissionError(err.errno, "seccomp: installing a filter needs "
                                  "no_new_privs or CAP_SYS_ADMIN") from err
        if err.errno == errno.EINVAL and bits:
            raise OSError(err.errno, f"seccomp: the kernel refused the filter or the flags "
                          f"{flags}: {err.strerror}") from err
        raise OSError(err.errno, f"seccomp(SECCOMP_SET_MODE_FILTER): {err.strerror}") from err
    if bits & _TSYNC and ret > 0:
        raise OSError(errno.EBUSY, f"seccomp: thread {ret} could not be synchronised (TSYNC)")
