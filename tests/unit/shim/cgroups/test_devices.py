"""Device rules: validation, v1 lines, and the v2 eBPF program run by a tiny interpreter.

The interpreter executes exactly the instructions `compile_program` emits,
so rule semantics are checked exhaustively here; tests/oci/test_kernel_cgroups.py
loads the same programs into the real kernel.
"""

from __future__ import annotations

import struct

import pytest
from dockyard.shim.cgroups import devices

from dockyard import errdefs

C, B = 2, 1  # BPF_DEVCG_DEV_CHAR / _BLOCK
M, R, W = 1, 2, 4  # BPF_DEVCG_ACC_MKNOD / _READ / _WRITE
U64 = (1 << 64) - 1


def run(program: bytes, dtype: int, access: int, major: int, minor: int) -> int:
    """Execute a cgroup-device eBPF program on one request; returns r0."""
    ctx = struct.pack("<III", access << 16 | dtype, major, minor)
    insns = [struct.unpack_from("<BBhi", program, i) for i in range(0, len(program), 8)]
    regs = [0] * 11
    pc = 0
    for _ in range(10000):
        code, regs_byte, off, imm = insns[pc]
        dst, src = regs_byte & 0xF, regs_byte >> 4
        pc += 1
        k = imm & U64  # imm is sign-extended to 64 bits
        if code == 0x61:  # ldxw dst, [src+off]
            assert src == 1, "only the context is read"
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == 0xBC:  # mov32 dst, src
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif code == 0x54:  # and32 dst, imm
            regs[dst] = regs[dst] & imm & 0xFFFFFFFF
        elif code == 0x74:  # rsh32 dst, imm
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif code == 0xB7:  # mov64 dst, imm
            regs[dst] = k
        elif code == 0x15:  # jeq dst, imm
            pc += off if regs[dst] == k else 0
        elif code == 0x55:  # jne dst, imm
            pc += off if regs[dst] != k else 0
        elif code == 0x95:  # exit
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("program did not exit")


def prog(rules):
    return devices.compile_program(devices.parse_rules(rules))


DENY_ALL = {"allow": False, "access": "rwm"}


def test_deny_all_but_null():
    p = prog([DENY_ALL, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}])
    assert run(p, C, R | W, 1, 3) == 1
    assert run(p, C, M, 1, 3) == 1
    assert run(p, C, R, 1, 5) == 0  # /dev/zero
    assert run(p, B, R, 1, 3) == 0  # same numbers, block device
    assert run(p, B, R | W, 8, 0) == 0  # a host disk


def test_no_rules_denies_everything():
    p = prog([])
    assert all(run(p, t, a, 1, 3) == 0 for t in (B, C) for a in (M, R, W, R | W))


def test_allow_needs_every_requested_bit():
    p = prog([DENY_ALL, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"}])
    assert run(p, C, R, 1, 3) == 1
    assert run(p, C, R | W, 1, 3) == 0
    assert run(p, C, M, 1, 3) == 0


def test_bits_granted_by_separate_rules_do_not_add_up_within_one_request():
    p = prog([DENY_ALL, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
              {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "w"}])
    assert run(p, C, R, 1, 3) == 1 and run(p, C, W, 1, 3) == 1
    assert run(p, C, R | W, 1, 3) == 0


def test_later_rules_override_earlier_ones():
    p = prog([{"allow": True, "access": "rwm"},  # allow all (reset)
              {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}])
    assert run(p, C, R, 1, 3) == 1
    assert run(p, C, W, 1, 3) == 0
    assert run(p, C, R | W, 1, 3) == 0  # a deny matches when it names any requested bit
    assert run(p, B, R | W, 8, 0) == 1
    p = prog([DENY_ALL, {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
              {"allow": True, "type": "c", "major": 1, "minor": None, "access": "rwm"}])
    assert run(p, C, R, 1, 3) == 1  # the later wildcard allow wins


def test_reset_forgets_earlier_rules():
    p = prog([{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}, DENY_ALL])
    assert run(p, C, R, 1, 3) == 0


def test_wildcards_and_type_a():
    p = prog([DENY_ALL, {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "rwm"},
              {"allow": True, "type": "a", "major": 7, "minor": None, "access": "r"}])
    assert run(p, C, R | W, 136, 4) == 1 and run(p, B, R, 136, 4) == 0
    assert run(p, C, R, 7, 1) == 1 and run(p, B, R, 7, 9) == 1 and run(p, B, W, 7, 9) == 0


def test_runc_defaults_allow_mknod_of_any_char_device_but_not_its_use():
    rules = devices.with_defaults([DENY_ALL, {"allow": False, "type": "c", "major": 10,
                                              "minor": 229, "access": "rwm"}])
    p = prog(rules)
    assert run(p, C, M, 10, 229) == 1  # `c *:* m` comes later and wins for mknod
    assert run(p, C, R | W, 10, 229) == 0  # fuse stays unusable
    assert run(p, C, R | W, 136, 0) == 1 and run(p, C, R | W, 5, 2) == 1  # pts, ptmx
    assert run(p, B, R, 8, 0) == 0 and run(p, B, M, 8, 0) == 1
    assert run(p, C, R | W, 1, 1) == 0  # /dev/mem


def test_with_defaults_starts_empty_lists_denied_and_grants_spec_nodes_nothing():
    rules = devices.with_defaults(None)
    assert rules[0] == DENY_ALL
    assert rules[1:] == devices.DEFAULT_ALLOWED
    # a node the spec maps read-only stays read-only: no rwm rule is added for it
    p = prog(devices.with_defaults([DENY_ALL, {"allow": True, "type": "c", "major": 10,
                                               "minor": 229, "access": "r"}]))
    assert run(p, C, R, 10, 229) == 1 and run(p, C, W, 10, 229) == 0


def test_v1_lines():
    rules = devices.parse_rules([
        DENY_ALL, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "wr"},
        {"allow": True, "type": "b", "major": None, "minor": None, "access": "m"},
        {"allow": True, "type": "a", "major": 7, "minor": 2, "access": "rwm"},
        {"allow": True, "access": "rwm"}])
    assert devices.v1_writes(rules) == [
        ("devices.deny", "a"), ("devices.deny", "a"), ("devices.allow", "c 1:3 rw"),
        ("devices.allow", "b *:* m"), ("devices.allow", "c 7:2 rwm"),
        ("devices.allow", "b 7:2 rwm"), ("devices.allow", "a")]


@pytest.mark.parametrize("rule,match", [
    ({"access": "rwm"}, "allow"),
    ({"allow": "yes"}, "allow"),
    ({"allow": True, "type": "p"}, "type"),
    ({"allow": True, "access": "rx"}, "access"),
    ({"allow": True, "type": "c", "major": -2}, "major"),
    ({"allow": True, "type": "c", "minor": 1 << 40}, "minor"),
    ("deny", "allow"),
])
def test_bad_rules_are_named(rule, match):
    with pytest.raises(errdefs.InvalidArgument) as exc:
        devices.parse_rules([DENY_ALL, rule])
    assert "devices[1]" in str(exc.value) and match in str(exc.value)


def test_rules_compare_by_value():
    a = devices.parse_rules([DENY_ALL])[0]
    assert a == devices.DeviceRule(False, "a", -1, -1, "rwm") and a.resets
    assert "allow=False" in repr(a) and len({a, devices.DeviceRule(False, "a", -1, -1, "rwm")}) == 1


def test_v1_list_emulates_the_kernels_exception_list():
    rules = devices.parse_rules([
        DENY_ALL, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "w"},   # merges
        {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "m"},  # trims
        {"allow": False, "type": "c", "major": 1, "minor": None, "access": "rwm"}])  # no match
    assert devices.v1_list(rules) == ["c 1:3 rw", "c 1:5 rw"]
    assert devices.v1_list(devices.parse_rules([{"allow": True, "access": "rwm"}])) == ["a *:* rwm"]
    # allow-by-default with exceptions: devices.list would hide them
    assert devices.v1_list(devices.parse_rules([
        {"allow": True, "access": "rwm"},
        {"allow": False, "type": "b", "major": 8, "minor": 0, "access": "w"}])) is None
    assert devices.v1_list([]) == []


def test_v1_update_changes_only_what_differs():
    rules = devices.parse_rules([DENY_ALL, {"allow": True, "type": "c", "major": 1, "minor": 3,
                                            "access": "rw"}])
    assert devices.v1_update(["c 1:3 rwm", "c 1:5 r"], rules) == [
        ("devices.deny", "c 1:3 m"), ("devices.deny", "c 1:5 r")]
    assert devices.v1_update([], rules) == [("devices.allow", "c 1:3 rw")]
    assert devices.v1_update(["c 1:3 rw"], rules) == []
    assert devices.v1_update(["a *:* rwm"], rules) is None  # allow-by-default: full rewrite
    allow_all = devices.parse_rules([{"allow": True, "access": "rwm"}])
    assert devices.v1_update(["a *:* rwm"], allow_all) == []
    assert devices.v1_update(["c 1:3 rw"], allow_all) is None
