"""seccomp for the container process: compile OCI `linux.seccomp`, install it.

`compile_filter(seccomp, arch=None) -> bytes` turns the profile into a
classic BPF program (see compiler.py for the layout and semantics);
`install_filter(program, flags)` loads it with seccomp(2). Nothing here
imports ctypes until `install_filter` runs.

Usage (shim-runtime, in the container init, after capabilities)::

    prog = seccomp.compile_filter(spec["linux"]["seccomp"])   # before fork is fine
    ...
    seccomp.install_filter(prog, spec["linux"]["seccomp"].get("flags"))
"""

from __future__ import annotations

from dockyard.shim.seccomp.compiler import (
    ACTIONS,
    ARCHES,
    ARCHS,
    FLAGS,
    OPERATORS,
    compile_filter,
    filter_flags,
    syscall_table,
)
from dockyard.shim.seccomp.install import install_filter

__all__ = ["ACTIONS", "ARCHES", "ARCHS", "FLAGS", "OPERATORS", "compile_filter", "filter_flags",
           "install_filter", "syscall_table"]
