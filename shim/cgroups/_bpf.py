"""bpf(2) plumbing for the v2 device program: load, query, attach, detach.

Builds the `union bpf_attr` layouts by hand (linux/bpf.h); the calls go
through `Syscalls.bpf`. Imported only on v2 `set()` with device rules.
"""

from __future__ import annotations

import errno
import os
import struct

from dockyard.shim._sys import consts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_ATTR_SIZE = 128  # the kernel accepts a shorter attr if the tail it knows is zero
_LOG_SIZE = 65536
_PROG_NAME = b"dockyard_dev"


def _sys(sys: Any) -> Any:
    if sys is None:
        from dockyard.shim._sys.syscalls import default
        return default()
    return sys


def load(program: bytes, sys: Any = None) -> int:
    """BPF_PROG_LOAD a BPF_PROG_TYPE_CGROUP_DEVICE program; returns its fd."""
    sys = _sys(sys)
    insns_addr, insns_buf = sys.address_of(program)
    lic_addr, lic_buf = sys.address_of(b"GPL\0")
    log_addr, log_buf = sys.address_of(bytes(_LOG_SIZE))
    attr = bytearray(_ATTR_SIZE)
    # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf,
    # kern_version, prog_flags, prog_name[16], prog_ifindex, expected_attach_type
    struct.pack_into("<IIQQIIQII16sII", attr, 0, consts.BPF_PROG_TYPE_CGROUP_DEVICE,
                     len(program) // 8, insns_addr, lic_addr, 0, 0, 0, 0, 0,
                     _PROG_NAME, 0, consts.BPF_CGROUP_DEVICE)
    try:
        return sys.bpf(consts.BPF_PROG_LOAD, attr)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EACCES):
            raise OSError(err.errno, f"load device cgroup eBPF program: {err.strerror}") from err
    # Load again with the verifier log on, to say why it was refused.
    struct.pack_into("<IIQ", attr, 24, 1, _LOG_SIZE, log_addr)
    try:
        return sys.bpf(consts.BPF_PROG_LOAD, attr)
    except OSError as err:
        log = bytes(log_buf.raw).split(b"\0", 1)[0].decode(errors="replace")
        raise OSError(err.errno, f"load device cgroup eBPF program: {err.strerror}: "
                      f"{log.strip()}") from err
    finally:
        # The kernel read these through raw addresses: keep them alive until here.
        del insns_buf, lic_buf


def query(cgroup_fd: int, sys: Any = None) -> list[int]:
    """Ids of the device programs attached directly to a cgroup."""
    sys = _sys(sys)
    ids = bytes(4 * 64)
    ids_addr, ids_buf = sys.address_of(ids)
    attr = bytearray(_ATTR_SIZE)
    # target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt
    struct.pack_into("<IIIIQI", attr, 0, cgroup_fd, consts.BPF_CGROUP_DEVICE, 0, 0,
                     ids_addr, 64)
    sys.bpf(consts.BPF_PROG_QUERY, attr)
    count = struct.unpack_from("<I", attr, 24)[0]
    raw = bytes(ids_buf.raw)
    return list(struct.unpack_from(f"<{count}I", raw, 0))


def _get_fd_by_id(prog_id: int, sys: Any) -> int:
    attr = bytearray(_ATTR_SIZE)
    struct.pack_into("<I", attr, 0, prog_id)
    return sys.bpf(consts.BPF_PROG_GET_FD_BY_ID, attr)


def _attach(cgroup_fd: int, prog_fd: int, flags: int, replace_fd: int, sys: Any) -> None:
    attr = bytearray(_ATTR_SIZE)
    # target_fd, attach_bpf_fd, attach_type, attach_flags, replace_bpf_fd
    struct.pack_into("<IIIII", attr, 0, cgroup_fd, prog_fd, consts.BPF_CGROUP_DEVICE,
                     flags, replace_fd)
    sys.bpf(consts.BPF_PROG_ATTACH, attr)


def _detach(cgroup_fd: int, prog_fd: int, sys: Any) -> None:
    attr = bytearray(_ATTR_SIZE)
    struct.pack_into("<III", attr, 0, cgroup_fd, prog_fd, consts.BPF_CGROUP_DEVICE)
    sys.bpf(consts.BPF_PROG_DETACH, attr)


def load_and_attach(cgroup_dir: str, program: bytes, sys: Any = None) -> int:
    """Attach `program` to `cgroup_dir` in place of the programs already there.

    With one old program the swap is atomic (BPF_F_REPLACE). Otherwise the
    new one is attached first and the old ones detached after: in between
    every attached program must allow an access (ALLOW_MULTI semantics), so
    the container never gets more than either rule set grants.
    """
    sys = _sys(sys)
    prog_fd = load(program, sys)
    try:
        cgroup_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        os.close(prog_fd)
        raise
    try:
        old_ids = query(cgroup_fd, sys)
        old_fds = [_get_fd_by_id(i, sys) for i in old_ids]
        try:
            if len(old_fds) == 1:
                try:
                    _attach(cgroup_fd, prog_fd, consts.BPF_F_ALLOW_MULTI | consts.BPF_F_REPLACE,
                            old_fds[0], sys)
                    return prog_fd
                except OSError as err:
                    if err.errno not in (errno.EINVAL, errno.ENOENT):
                        raise
            _attach(cgroup_fd, prog_fd, consts.BPF_F_ALLOW_MULTI, 0, sys)
            for fd in old_fds:
                _detach(cgroup_fd, fd, sys)
        finally:
            for fd in old_fds:
                os.close(fd)
    except OSError as err:
        os.close(prog_fd)
        raise OSError(err.errno, f"attach device eBPF program to {cgroup_dir}: "
                      f"{err.strerror}") from err
    finally:
        os.close(cgroup_fd)
    return prog_fd
