"""The slice of ctypes the shim's syscall layer uses, built on `_ctypes` alone.

`import ctypes` runs ctypes/__init__.py, which also loads struct, types and
_endian and builds dozens of classes: about 3 ms of a runtime whose whole
budget is ~25 ms. The C module underneath (`_ctypes`) is all the calls
need; this module defines the handful of C types and the libc handle on
it. Names and behaviour match ctypes (c_int, Structure, byref, ...), so
code reads the same. Only syscalls.py may import it.
"""

from __future__ import annotations

import _ctypes
from _ctypes import (  # noqa: F401 - re-exported with ctypes' names
    Structure,
    _SimpleCData,
    addressof,
    byref,
    get_errno,
    set_errno,
    sizeof,
)

__all__ = ["c_char", "c_char_p", "c_int", "c_uint", "c_uint32", "c_long", "c_ulong",
           "c_ushort", "c_size_t", "c_void_p", "Structure", "byref", "addressof",
           "get_errno", "set_errno", "sizeof", "create_string_buffer", "libc"]


class c_char(_SimpleCData):
    _type_ = "c"


class c_char_p(_SimpleCData):
    _type_ = "z"


class c_void_p(_SimpleCData):
    _type_ = "P"


class c_int(_SimpleCData):
    _type_ = "i"


class c_uint(_SimpleCData):
    _type_ = "I"


class c_long(_SimpleCData):
    _type_ = "l"


class c_ulong(_SimpleCData):
    _type_ = "L"


class c_ushort(_SimpleCData):
    _type_ = "H"


c_uint32 = c_uint  # Linux: int is 32 bits on every architecture we run on
c_size_t = c_ulong  # LP64


def create_string_buffer(data: bytes, size: int | None = None) -> object:
    """A mutable char array holding a copy of data (no NUL added when size fits)."""
    size = len(data) if size is None else size
    buf = (c_char * size)()
    if data:
        (c_char * len(data)).from_buffer(buf)[:] = data
    return buf


class _Function(_ctypes.CFuncPtr):
    # cdecl, errno saved after each call for get_errno() (ctypes' use_errno=True)
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _Library:
    """The C library already mapped into the process (dlopen(NULL))."""

    def __init__(self) -> None:
        self._handle = _ctypes.dlopen(None, 0)

    def __getattr__(self, name: str) -> _Function:
        if name.startswith("_"):
            raise AttributeError(name)
        func = _Function((name, self))
        setattr(self, name, func)
        return func


def libc() -> _Library:
    return _Library()
