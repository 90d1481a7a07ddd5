"""FakeSyscalls: a recording `Syscalls` for unit tests (youki's TestHelperSyscall).

Every call is appended to `calls` as (name, *args); nothing reaches the
kernel. `fail` maps a call name to an OSError to raise (once per matching
call, optionally only for a given first argument) so tests can drive error
paths. Query helpers keep assertions short: `mounts()`, `names()`.
"""

from __future__ import annotations

import errno
import os


class FakeSyscalls:
    def __init__(self, fail: dict[str, OSError] | None = None,
                 fail_on: dict[tuple[str, str], OSError] | None = None) -> None:
        self.calls: list[tuple] = []
        self.fail = dict(fail or {})
        self.fail_on = dict(fail_on or {})  # (name, first arg) -> error
        self.caps = (0, 0, 0)

    def _record(self, name: str, *args: object) -> None:
        self.calls.append((name, *args))
        if name in self.fail:
            raise self.fail[name]
        key = (name, str(args[1] if name == "mount" else args[0])) if args else None
        if key in self.fail_on:
            raise self.fail_on[key]

    # --- the Syscalls protocol -------------------------------------------
    def mount(self, source, target, fstype, flags=0, data=None) -> None:
        self._record("mount", source, target, fstype, flags, data)

    def umount2(self, target, flags=0) -> None:
        self._record("umount2", target, flags)

    def pivot_root(self, new_root, put_old) -> None:
        self._record("pivot_root", new_root, put_old)

    def unshare(self, flags) -> None:
        self._record("unshare", flags)

    def setns(self, fd, nstype=0) -> None:
        self._record("setns", fd, nstype)

    def sethostname(self, name) -> None:
        self._record("sethostname", name)

    def setdomainname(self, name) -> None:
        self._record("setdomainname", name)

    def prctl(self, option, arg2=0, arg3=0, arg4=0, arg5=0) -> int:
        self._record("prctl", option, arg2, arg3, arg4, arg5)
        return 0

    def capget(self, pid=0):
        self._record("capget", pid)
        return self.caps

    def capset(self, effective, permitted, inheritable) -> None:
        self._record("capset", effective, permitted, inheritable)
        self.caps = (effective, permitted, inheritable)

    def seccomp(self, operation, flags, program) -> int:
        self._record("seccomp", operation, flags, program)
        return 0

    def seccomp_prctl(self, program) -> None:
        self._record("seccomp_prctl", program)

    def bpf(self, cmd, attr) -> int:
        self._record("bpf", cmd, bytes(attr))
        return 3

    def address_of(self, data):
        return 0, bytes(data)

    def mknod(self, path, mode, device=0) -> None:
        self._record("mknod", path, mode, device)
        # leave a plain file so later steps (chmod/chown) behave as on the kernel
        if not os.path.lexists(path):
            with open(path, "w"):
                pass

    def chroot(self, path) -> None:
        self._record("chroot", path)

    # --- queries ---------------------------------------------------------
    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def mounts(self) -> list[tuple]:
        """(source, target, fstype, flags, data) of every mount call, in order."""
        return [c[1:] for c in self.calls if c[0] == "mount"]


EPERM = OSError(errno.EPERM, "Operation not permitted")
EINVAL = OSError(errno.EINVAL, "Invalid argument")
