"""The one module of the shim that calls libc (youki's `Syscall` trait).

`Syscalls` is the protocol code depends on; `LinuxSyscalls` implements it with
ctypes' C core (through `_ffi`, which skips ctypes/__init__'s ~3 ms) and
raises `OSError(errno, strerror, path)` when a call returns -1. Tests pass a
recording fake (tests/fakes/) instead. Callers on a hot path still import
this module lazily.

It must not hold policy: no decisions, no retries, just the calls.
"""

from __future__ import annotations

import os

from dockyard.shim._sys import _ffi as ctypes
from dockyard.shim._sys import consts

# `typing` costs ~10 ms at import (it loads `re`); the protocol only matters to
# type checkers, so at run time it is a plain base class.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object

__all__ = ["Syscalls", "LinuxSyscalls", "default"]


class Syscalls(Protocol):
    """The kernel calls the shim makes that Python's `os` module lacks."""

    def mount(self, source: str | None, target: str, fstype: str | None,
              flags: int = 0, data: str | None = None) -> None: ...
    def umount2(self, target: str, flags: int = 0) -> None: ...
    def pivot_root(self, new_root: str, put_old: str) -> None: ...
    def unshare(self, flags: int) -> None: ...
    def setns(self, fd: int, nstype: int = 0) -> None: ...
    def sethostname(self, name: str) -> None: ...
    def setdomainname(self, name: str) -> None: ...
    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
              arg5: int = 0) -> int: ...
    def capget(self, pid: int = 0) -> tuple[int, int, int]: ...
    def capset(self, effective: int, permitted: int, inheritable: int) -> None: ...
    def seccomp(self, operation: int, flags: int, program: bytes) -> int: ...
    def seccomp_prctl(self, program: bytes) -> None: ...
    def bpf(self, cmd: int, attr: bytearray) -> int: ...
    def address_of(self, data: bytes | bytearray) -> tuple[int, object]: ...
    def mknod(self, path: str, mode: int, device: int = 0) -> None: ...
    def chroot(self, path: str) -> None: ...


def _check(ret: int, path: str | None = None) -> int:
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return ret


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class LinuxSyscalls:
    """`Syscalls` on the real kernel through glibc (ctypes)."""

    def __init__(self) -> None:
        self._libc = libc = ctypes.libc()
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                               ctypes.c_ulong, ctypes.c_char_p]
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        libc.unshare.argtypes = [ctypes.c_int]
        libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                               ctypes.c_ulong, ctypes.c_ulong]
        libc.syscall.restype = ctypes.c_long

    @staticmethod
    def _b(value: str | None) -> bytes | None:
        return None if value is None else os.fsencode(value)

    def mount(self, source: str | None, target: str, fstype: str | None,
              flags: int = 0, data: str | None = None) -> None:
        _check(self._libc.mount(self._b(source), self._b(target), self._b(fstype),
                                flags, self._b(data)), target)

    def umount2(self, target: str, flags: int = 0) -> None:
        _check(self._libc.umount2(self._b(target), flags), target)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        _check(self._libc.syscall(consts.SYS_pivot_root, self._b(new_root),
                                  self._b(put_old)), new_root)

    def unshare(self, flags: int) -> None:
        _check(self._libc.unshare(flags))

    def setns(self, fd: int, nstype: int = 0) -> None:
        _check(self._libc.setns(fd, nstype))

    def sethostname(self, name: str) -> None:
        raw = name.encode()
        _check(self._libc.sethostname(raw, len(raw)))

    def setdomainname(self, name: str) -> None:
        raw = name.encode()
        _check(self._libc.setdomainname(raw, len(raw)))

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
              arg5: int = 0) -> int:
        return _check(self._libc.prctl(option, arg2, arg3, arg4, arg5))

    def capget(self, pid: int = 0) -> tuple[int, int, int]:
        """Returns (effective, permitted, inheritable) as 64-bit masks."""
        hdr = _CapHeader(consts.LINUX_CAPABILITY_VERSION_3, pid)
        data = (_CapData * 2)()
        _check(self._libc.capget(ctypes.byref(hdr), data))
        return (data[0].effective | data[1].effective << 32,
                data[0].permitted | data[1].permitted << 32,
                data[0].inheritable | data[1].inheritable << 32)

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        # Version 3 takes two 32-bit words per set (capabilities 0-31, 32-63).
        hdr = _CapHeader(consts.LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        for i in (0, 1):
            shift = 32 * i
            data[i].effective = (effective >> shift) & 0xFFFFFFFF
            data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
            data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
        _check(self._libc.capset(ctypes.byref(hdr), data))

    def seccomp(self, operation: int, flags: int, program: bytes) -> int:
        """seccomp(2) with a classic BPF program (8-byte sock_filter records)."""
        buf = ctypes.create_string_buffer(program, len(program))
        prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
        return _check(self._libc.syscall(consts.SYS_seccomp, ctypes.c_uint(operation),
                                         ctypes.c_uint(flags), ctypes.byref(prog)))

    def seccomp_prctl(self, program: bytes) -> None:
        """The pre-3.17 way to install a filter: prctl(PR_SET_SECCOMP)."""
        buf = ctypes.create_string_buffer(program, len(program))
        prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
        _check(self._libc.prctl(consts.PR_SET_SECCOMP, consts.SECCOMP_MODE_FILTER,
                                ctypes.addressof(prog), 0, 0))

    def bpf(self, cmd: int, attr: bytearray) -> int:
        """bpf(2); `attr` is the packed union bpf_attr, updated in place by the kernel."""
        buf = (ctypes.c_char * len(attr)).from_buffer(attr)
        return _check(self._libc.syscall(consts.SYS_bpf, ctypes.c_int(cmd), buf,
                                         ctypes.c_uint(len(attr))))

    def mknod(self, path: str, mode: int, device: int = 0) -> None:
        os.mknod(path, mode, device)

    def chroot(self, path: str) -> None:
        os.chroot(path)

    @staticmethod
    def address_of(data: bytes | bytearray) -> tuple[int, object]:
        """The address of a buffer holding `data`, and the buffer (keep it alive)."""
        buf = ctypes.create_string_buffer(bytes(data), len(data))
        return ctypes.addressof(buf), buf


_default: LinuxSyscalls | None = None


def default() -> LinuxSyscalls:
    """The process-wide `LinuxSyscalls` (created on first use)."""
    global _default
    if _default is None:
        _default = LinuxSyscalls()
    return _default
