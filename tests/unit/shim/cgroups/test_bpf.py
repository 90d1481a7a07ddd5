"""bpf(2) attr layouts and the replace logic of the v2 device program, on a fake Syscalls.

The real kernel path (one old program, BPF_F_REPLACE) runs in
tests/oci/test_kernel_cgroups.py; here the other branches: several old
programs, a kernel without BPF_F_REPLACE, a rejected program.
"""

from __future__ import annotations

import errno
import os
import struct

import pytest
from dockyard.shim._sys import consts
from dockyard.shim.cgroups import _bpf


class Buf:
    def __init__(self, data: bytes) -> None:
        self.raw = bytearray(data)


class FakeSys:
    def __init__(self, attached: list[int], replace_ok: bool = True,
                 reject: bool = False) -> None:
        self.attached = attached
        self.replace_ok = replace_ok
        self.reject = reject
        self.bufs: dict[int, Buf] = {}
        self.calls: list[tuple] = []
        self.fds: list[int] = []
        self.next_addr = 0x1000

    def address_of(self, data: bytes | bytearray) -> tuple[int, object]:
        self.next_addr += 0x1000
        self.bufs[self.next_addr] = buf = Buf(bytes(data))
        return self.next_addr, buf

    def _fd(self) -> int:
        fd = os.open("/dev/null", os.O_RDONLY)
        self.fds.append(fd)
        return fd

    def bpf(self, cmd: int, attr: bytearray) -> int:
        if cmd == consts.BPF_PROG_LOAD:
            ptype, cnt, insns, lic, level, size, log = struct.unpack_from("<IIQQIIQ", attr)
            self.calls.append(("load", ptype, cnt, bytes(self.bufs[lic].raw), level))
            if self.reject:
                if level:
                    msg = b"R0 !read_ok\0"
                    self.bufs[log].raw[:len(msg)] = msg
                raise OSError(errno.EACCES, "denied")
            return self._fd()
        if cmd == consts.BPF_PROG_QUERY:
            _, atype, _, _, ids_addr, cnt = struct.unpack_from("<IIIIQI", attr)
            struct.pack_into(f"<{len(self.attached)}I", self.bufs[ids_addr].raw, 0,
                             *self.attached)
            struct.pack_into("<I", attr, 24, len(self.attached))
            self.calls.append(("query", atype))
            return 0
        if cmd == consts.BPF_PROG_GET_FD_BY_ID:
            self.calls.append(("get_fd", struct.unpack_from("<I", attr)[0]))
            return self._fd()
        if cmd == consts.BPF_PROG_ATTACH:
            _, _, atype, flags, replace = struct.unpack_from("<IIIII", attr)
            self.calls.append(("attach", atype, flags, replace != 0))
            if flags & consts.BPF_F_REPLACE and not self.replace_ok:
                raise OSError(errno.EINVAL, "no replace")
            return 0
        if cmd == consts.BPF_PROG_DETACH:
            self.calls.append(("detach", struct.unpack_from("<III", attr)[2]))
            return 0
        raise AssertionError(cmd)


PROGRAM = b"\xb7\x00\x00\x00\x01\x00\x00\x00" + b"\x95" + b"\x00" * 7  # r0 = 1; exit


@pytest.fixture
def cgdir(tmp_path):
    return str(tmp_path)


def test_first_attach_loads_with_gpl_and_allow_multi(cgdir):
    sys = FakeSys(attached=[])
    fd = _bpf.load_and_attach(cgdir, PROGRAM, sys)
    os.close(fd)
    assert sys.calls == [("load", consts.BPF_PROG_TYPE_CGROUP_DEVICE, 2, b"GPL\0", 0),
                         ("query", consts.BPF_CGROUP_DEVICE),
                         ("attach", consts.BPF_CGROUP_DEVICE, consts.BPF_F_ALLOW_MULTI, False)]


def test_one_old_program_is_replaced_atomically(cgdir):
    sys = FakeSys(attached=[7])
    os.close(_bpf.load_and_attach(cgdir, PROGRAM, sys))
    assert sys.calls[2:] == [("get_fd", 7), ("attach", consts.BPF_CGROUP_DEVICE,
                                              consts.BPF_F_ALLOW_MULTI | consts.BPF_F_REPLACE,
                                              True)]


def test_without_replace_support_attach_then_detach_the_old(cgdir):
    sys = FakeSys(attached=[7], replace_ok=False)
    os.close(_bpf.load_and_attach(cgdir, PROGRAM, sys))
    assert [c[0] for c in sys.calls] == ["load", "query", "get_fd", "attach", "attach", "detach"]
    assert sys.calls[4] == ("attach", consts.BPF_CGROUP_DEVICE, consts.BPF_F_ALLOW_MULTI, False)


def test_several_old_programs_are_all_detached_after_the_new_one_is_on(cgdir):
    sys = FakeSys(attached=[3, 4, 5])
    os.close(_bpf.load_and_attach(cgdir, PROGRAM, sys))
    assert [c[0] for c in sys.calls] == ["load", "query", "get_fd", "get_fd", "get_fd",
                                         "attach", "detach", "detach", "detach"]
    # every fd we opened for the old programs is closed again
    assert all(not _is_open(fd) for fd in sys.fds[1:])


def test_a_rejected_program_reports_the_verifier_log(cgdir):
    sys = FakeSys(attached=[], reject=True)
    with pytest.raises(OSError) as exc:
        _bpf.load_and_attach(cgdir, PROGRAM, sys)
    assert exc.value.errno == errno.EACCES and "R0 !read_ok" in str(exc.value)
    assert [c[4] for c in sys.calls] == [0, 1]  # retried with log_level 1


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_a_missing_cgroup_closes_the_program(tmp_path):
    sys = FakeSys(attached=[])
    with pytest.raises(FileNotFoundError):
        _bpf.load_and_attach(str(tmp_path / "gone"), PROGRAM, sys)
    assert not _is_open(sys.fds[0])
