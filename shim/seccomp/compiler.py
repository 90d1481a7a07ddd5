"""OCI `linux.seccomp` -> a classic BPF seccomp program (struct sock_filter[]).

Owns the translation libseccomp does for runc, written out by hand:

    LD  arch                        ; seccomp_data.arch
    JEQ AUDIT_ARCH_X86_64 ? -> x86_64 section
    JEQ AUDIT_ARCH_I386   ? -> i386 section       (one pair per listed arch)
    RET KILL_PROCESS                ; an architecture the profile does not list
  x86_64 section:
    LD  nr
    JGE 0x40000000 ? -> x32 section (or KILL_PROCESS when x32 is not listed)
    JGT <highest nr in the profile> ? RET ERRNO(ENOSYS)   ; runc's stub, see _section
    JEQ nr1 / JEQ nr2 / ... -> RET ALLOW    ; unconditional syscalls, by action,
                                            ; in chunks that keep u8 jumps in range
    JEQ nrN ? -> clause 1: LD arg hi/lo words, compare ... RET action
                 clause 2: ...
                 RET <fallback>             ; conditional syscalls
    RET <defaultAction>

Semantics follow runc + libseccomp: unknown syscall names are skipped; the
native architecture is always filtered; rules whose action is the default
action are skipped (runc); the conditions of one rule are ANDed, unless one
argument index repeats, in which case each condition becomes its own rule
(ORed), as runc does. Per syscall, as libseccomp's rule database merges
them: the first unconditional rule wins over every other rule for it; without
one, argument rules are tried in profile order (libseccomp merges
overlapping argument rules into a tree; profiles whose argument rules
overlap with different actions may resolve differently) and the default
action applies when none matches. 64-bit argument comparisons use both
32-bit halves (only the low half on i386).

Must stay linear and cheap to import (struct only): the shim compiles
Docker's ~350-syscall profile on every container start.
"""

from __future__ import annotations

import errno as _errno
import os
import struct

from dockyard.errdefs import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ACTIONS", "ARCHES", "ARCHS", "FLAGS", "OPERATORS", "compile_filter",
           "filter_flags", "syscall_table"]

# seccomp return values (linux/seccomp.h)
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

ACTIONS = {
    "SCMP_ACT_KILL": RET_KILL_THREAD,  # libseccomp's SCMP_ACT_KILL kills the thread
    "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS,
    "SCMP_ACT_TRAP": RET_TRAP,
    "SCMP_ACT_ERRNO": RET_ERRNO,
    "SCMP_ACT_TRACE": RET_TRACE,
    "SCMP_ACT_LOG": RET_LOG,
    "SCMP_ACT_ALLOW": RET_ALLOW,
}
OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
             "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1 << 0,
    "SECCOMP_FILTER_FLAG_LOG": 1 << 1,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 1 << 2,
}

# SCMP_ARCH_* -> (table name, AUDIT_ARCH_* token, 64-bit args)
ARCHES: dict[str, tuple[str, int, bool]] = {
    "SCMP_ARCH_X86_64": ("x86_64", 0xC000003E, True),
    "SCMP_ARCH_X86": ("i386", 0x40000003, False),
    "SCMP_ARCH_X32": ("x32", 0xC000003E, True),
    "SCMP_ARCH_AARCH64": ("aarch64", 0xC00000B7, True),
    "SCMP_ARCH_ARM": ("arm", 0x40000028, False),
}
# What `features` reports as supported (ARCHES minus those without a table).
ARCHS = ("SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64")
# Architectures libseccomp knows that this compiler has no table for; a
# profile may list them (Docker's archMap does), they are left out of the
# filter, so their syscalls meet the bad-architecture action.
_FOREIGN = {"SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
            "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
            "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
            "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
            "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB"}
# Which syscall tables a CPU can run (the kernel reports only these arches).
_RUNNABLE = {"x86_64": ("x86_64", "i386", "x32"), "aarch64": ("aarch64", "arm")}
_NATIVE_SCMP = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}
_X32_BIT = 0x40000000
_BAD_ARCH = RET_KILL_PROCESS
_MAX_INSNS = 4096  # BPF_MAXINSNS

# classic BPF opcodes
_LD_W_ABS = 0x20
_JA = 0x05
_JEQ = 0x15
_JGT = 0x25
_JGE = 0x35
_AND = 0x54
_RET = 0x06
_FAIL = -1  # placeholder jump target: the end of the current clause

_pack = struct.Struct("<HBBI").pack
_tables: dict[str, dict[str, int]] = {}


_FAMILY = {"x86_64": "x86", "i386": "x86", "x32": "x86", "aarch64": "arm"}


def syscall_table(arch: str) -> dict[str, int]:
    """name -> number for 'x86_64', 'i386', 'x32' or 'aarch64' (generated modules)."""
    table = _tables.get(arch)
    if table is None:
        family = _FAMILY.get(arch)
        if family is None:
            raise InvalidArgument(f"seccomp: no syscall table for architecture {arch}")
        # __import__, not importlib: the importlib package costs ~1 ms to load
        mod = __import__(f"dockyard.shim.seccomp._nr_{family}", fromlist=["_"])
        base, names = getattr(mod, arch.upper())
        words = names.split()
        table = dict(zip(words, range(base, base + len(words)), strict=True))
        table.pop("-", None)  # gaps in the numbering
        _tables[arch] = table
    return table


def _load_native_tables() -> None:
    # Loaded at import: the shim imports this package before fork, and the
    # container's init compiles the filter after pivot_root, when the shim's
    # own files can no longer be imported. Costs one import (~1 ms) that
    # compile_filter would pay anyway.
    for table in _RUNNABLE.get(os.uname().machine, ()):
        if table in _FAMILY:
            syscall_table(table)


def filter_flags(names: list[str] | None) -> int:
    """OCI seccomp `flags` -> the seccomp(2) flag bits."""
    bits = 0
    for name in names or ():
        try:
            bits |= FLAGS[name]
        except (KeyError, TypeError):
            raise InvalidArgument(f"seccomp: unsupported flag {name!r} (supported: "
                                  f"{', '.join(FLAGS)})") from None
    return bits


def _errno_value(value: Any, where: str) -> int:
    if value is None:
        return _errno.EPERM
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4095:
        raise InvalidArgument(f"seccomp: {where}: errnoRet {value!r} is not 0..4095")
    return value


def _action(name: Any, errno_ret: Any, where: str) -> int:
    if name == "SCMP_ACT_NOTIFY":
        raise InvalidArgument(f"seccomp: {where}: SCMP_ACT_NOTIFY (user notification) is "
                              "not supported")
    ret = ACTIONS.get(name) if isinstance(name, str) else None
    if ret is None:
        raise InvalidArgument(f"seccomp: {where}: unknown action {name!r}")
    if ret in (RET_ERRNO, RET_TRACE):
        return ret | _errno_value(errno_ret, where)
    if errno_ret is not None:
        raise InvalidArgument(f"seccomp: {where}: errnoRet is only valid with "
                              "SCMP_ACT_ERRNO and SCMP_ACT_TRACE")
    return ret


def _u64(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise InvalidArgument(f"seccomp: {where}: {value!r} is not an unsigned 64-bit value")
    return value


def _parse_args(args: list[dict[str, Any]], where: str) -> list[tuple]:
    """Validate one rule's `args`; returns the clauses (tuples of conditions) it makes."""
    conds = []
    for j, arg in enumerate(args):
        w = f"{where}.args[{j}]"
        if not isinstance(arg, dict):
            raise InvalidArgument(f"seccomp: {w}: expected an object")
        index = arg.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
            raise InvalidArgument(f"seccomp: {w}.index: {index!r} is not 0..5")
        op = arg.get("op")
        if op not in OPERATORS:
            raise InvalidArgument(f"seccomp: {w}.op: unknown operator {op!r}")
        conds.append((index, op, _u64(arg.get("value"), f"{w}.value"),
                      _u64(arg.get("valueTwo"), f"{w}.valueTwo")))
    indexes = [c[0] for c in conds]
    if len(set(indexes)) != len(indexes):
        # runc: several conditions on one argument are separate (ORed) rules.
        return [(c,) for c in conds]
    return [tuple(conds)]


def _cond_insns(cond: tuple, wide: bool) -> list[list[int]]:
    """One condition; jumps to _FAIL leave the clause, falling through means 'true'."""
    index, op, value, two = cond
    lo_off, hi_off = 16 + 8 * index, 20 + 8 * index
    if not wide:
        v = value & 0xFFFFFFFF
        ld = [_LD_W_ABS, 0, 0, lo_off]
        if op == "SCMP_CMP_EQ":
            return [ld, [_JEQ, 0, _FAIL, v]]
        if op == "SCMP_CMP_NE":
            return [ld, [_JEQ, _FAIL, 0, v]]
        if op == "SCMP_CMP_GT":
            return [ld, [_JGT, 0, _FAIL, v]]
        if op == "SCMP_CMP_GE":
            return [ld, [_JGE, 0, _FAIL, v]]
        if op == "SCMP_CMP_LT":
            return [ld, [_JGE, _FAIL, 0, v]]
        if op == "SCMP_CMP_LE":
            return [ld, [_JGT, _FAIL, 0, v]]
        return [ld, [_AND, 0, 0, v], [_JEQ, 0, _FAIL, two & 0xFFFFFFFF]]  # MASKED_EQ
    vh, vl = value >> 32, value & 0xFFFFFFFF
    ld_hi, ld_lo = [_LD_W_ABS, 0, 0, hi_off], [_LD_W_ABS, 0, 0, lo_off]
    if op == "SCMP_CMP_EQ":
        return [ld_hi, [_JEQ, 0, _FAIL, vh], ld_lo, [_JEQ, 0, _FAIL, vl]]
    if op == "SCMP_CMP_NE":
        return [ld_hi, [_JEQ, 0, 2, vh], ld_lo, [_JEQ, _FAIL, 0, vl]]
    if op == "SCMP_CMP_GT":
        return [ld_hi, [_JGT, 3, 0, vh], [_JEQ, 0, _FAIL, vh], ld_lo, [_JGT, 0, _FAIL, vl]]
    if op == "SCMP_CMP_GE":
        return [ld_hi, [_JGT, 3, 0, vh], [_JEQ, 0, _FAIL, vh], ld_lo, [_JGE, 0, _FAIL, vl]]
    if op == "SCMP_CMP_LT":
        return [ld_hi, [_JGT, _FAIL, 0, vh], [_JEQ, 0, 2, vh], ld_lo, [_JGE, _FAIL, 0, vl]]
    if op == "SCMP_CMP_LE":
        return [ld_hi, [_JGT, _FAIL, 0, vh], [_JEQ, 0, 2, vh], ld_lo, [_JGT, _FAIL, 0, vl]]
    # MASKED_EQ: value is the mask, valueTwo the datum (runc's order)
    th, tl = two >> 32, two & 0xFFFFFFFF
    return [ld_hi, [_AND, 0, 0, vh], [_JEQ, 0, _FAIL, th],
            ld_lo, [_AND, 0, 0, vl], [_JEQ, 0, _FAIL, tl]]


def _conditional_block(nr: int, clauses: list[tuple[tuple, int]], fallback: int,
                       wide: bool) -> list[bytes]:
    body: list[list[int]] = []
    for conds, action in clauses:
        clause: list[list[int]] = []
        for cond in conds:
            clause.extend(_cond_insns(cond, wide))
        clause.append([_RET, 0, 0, action])
        n = len(clause)
        for i, ins in enumerate(clause):
            # _FAIL -> first instruction after this clause's RET
            if ins[1] == _FAIL:
                ins[1] = n - i - 1
            if ins[2] == _FAIL:
                ins[2] = n - i - 1
        body.extend(clause)
    body.append([_RET, 0, 0, fallback])
    if len(body) <= 255:
        head = [_pack(_JEQ, 0, len(body), nr)]
    else:
        head = [_pack(_JEQ, 1, 0, nr), _pack(_JA, 0, 0, len(body))]
    return head + [_pack(c, jt, jf, k & 0xFFFFFFFF) for c, jt, jf, k in body]


def _section(summary: dict[str, list], numbers: dict[str, int], default: int,
             wide: bool, enosys_names: set[str] | None) -> list[bytes]:
    """The checks for one architecture (A holds the syscall number on entry).

    With `enosys_names`, syscalls numbered above every one those names have
    in this table fail with ENOSYS instead of the default action (runc's
    patchbpf stub): they are newer than the profile, and libc falls back
    from ENOSYS (clone3 -> clone, faccessat2 -> faccessat) but not from EPERM.
    """
    out: list[bytes] = []
    if enosys_names:
        known = [numbers[n] for n in enosys_names if n in numbers]
        if known:
            out += [_pack(_JGT, 0, 1, max(known)), _pack(_RET, 0, 0, RET_ERRNO | _errno.ENOSYS)]
    per_nr: dict[int, list] = {}
    for name, entry in summary.items():
        nr = numbers.get(name)
        if nr is None:
            continue  # unknown names are skipped, as libseccomp does
        prev = per_nr.get(nr)
        if prev is None:
            per_nr[nr] = entry
        else:  # two names for one number in this table: merge
            per_nr[nr] = [prev[0] + entry[0], prev[1] if prev[1] is not None else entry[1]]
    plain: dict[int, list[int]] = {}
    blocks: list[bytes] = []
    for nr in sorted(per_nr):
        conds, unconditional = per_nr[nr]
        if unconditional is not None:
            # libseccomp: an unconditional rule replaces the syscall's argument
            # rules, and argument rules added after it are dropped
            plain.setdefault(unconditional, []).append(nr)
        elif conds:
            blocks.extend(_conditional_block(nr, conds, default, wide))
    for action, nrs in plain.items():
        for start in range(0, len(nrs), 255):
            chunk = nrs[start:start + 255]
            n = len(chunk)
            out.extend([_pack(_JEQ, n - j, 0, nr) for j, nr in enumerate(chunk)])
            out.append(_pack(_JA, 0, 0, 1))
            out.append(_pack(_RET, 0, 0, action))
    out.extend(blocks)
    out.append(_pack(_RET, 0, 0, default))
    return out


def _native(arch: str | None) -> str:
    if arch is None:
        arch = os.uname().machine
    for scmp, (table, _, _) in ARCHES.items():
        if arch in (scmp, table):
            arch = table
    if arch not in _RUNNABLE:
        raise InvalidArgument(f"seccomp: unsupported native architecture {arch!r}")
    return arch


def compile_filter(seccomp: dict[str, Any], arch: str | None = None) -> bytes:
    """Compile OCI `linux.seccomp` into a seccomp BPF program.

    Args:
        seccomp: the `linux.seccomp` object.
        arch: the native architecture (`x86_64`, `aarch64` or an SCMP_ARCH_
            name); defaults to this machine's.

    Returns:
        The packed struct sock_filter array for `install_filter`.

    Raises:
        InvalidArgument: naming the bad field (unknown action, operator,
            architecture, flag; SCMP_ACT_NOTIFY; errnoRet out of range; a
            filter over the kernel's 4096-instruction limit).
    """
    if not isinstance(seccomp, dict):
        raise InvalidArgument("seccomp: linux.seccomp must be an object")
    for key in ("architectures", "flags", "syscalls"):
        if seccomp.get(key) is not None and not isinstance(seccomp[key], list):
            raise InvalidArgument(f"seccomp: {key} must be a list")
    native = _native(arch)
    default = _action(seccomp.get("defaultAction"), seccomp.get("defaultErrnoRet"),
                      "defaultAction")
    filter_flags(seccomp.get("flags"))
    if seccomp.get("listenerPath"):
        raise InvalidArgument("seccomp: listenerPath (SCMP_ACT_NOTIFY) is not supported")

    # Which tables to filter, in the order their dispatch is emitted.
    tables = [native]
    for name in seccomp.get("architectures") or ():
        if name in ARCHES:
            table = ARCHES[name][0]
            if table in _RUNNABLE[native] and table not in tables:
                tables.append(table)
        elif name not in _FOREIGN:
            raise InvalidArgument(f"seccomp: unknown architecture {name!r}")
    tables = [t for t in tables if t == native or _has_table(t)]

    # name -> [conditional clauses [(conds, action)], unconditional action or None]
    summary: dict[str, list] = {}
    all_names: set[str] = set()
    for i, rule in enumerate(seccomp.get("syscalls") or ()):
        where = f"syscalls[{i}]"
        if not isinstance(rule, dict):
            raise InvalidArgument(f"seccomp: {where}: expected an object")
        names = rule.get("names")
        if not isinstance(names, list) or not names:
            raise InvalidArgument(f"seccomp: {where}.names: a non-empty list is required")
        action = _action(rule.get("action"), rule.get("errnoRet"), where)
        args = rule.get("args")
        if args is not None and not isinstance(args, list):
            raise InvalidArgument(f"seccomp: {where}.args must be a list")
        clauses = [(c, action) for c in _parse_args(args, where)] if args else None
        all_names.update(names)
        if action == default:
            continue  # redundant: runc skips it (libseccomp would refuse it)
        for name in names:
            entry = summary.get(name)
            if entry is None:
                entry = summary[name] = [[], None]
            if clauses:
                entry[0] = entry[0] + clauses
            elif entry[1] is None:
                # libseccomp keeps the first unconditional rule of a syscall and
                # drops later ones, whatever their action
                entry[1] = action

    # runc's -ENOSYS stub, unless the default already allows, logs, traces or is ENOSYS
    enosys = None
    if default & 0xFFFF0000 not in (RET_ALLOW, RET_LOG, RET_TRACE) and \
            default != RET_ERRNO | _errno.ENOSYS:
        enosys = all_names
    sections = [_section(summary, syscall_table(t), default, ARCHES[_scmp(t)][2], enosys)
                for t in tables]
    x32 = next((s for t, s in zip(tables, sections, strict=True) if t == "x32"), None)
    dispatch: list[tuple[int, list[bytes]]] = []
    for table, body in zip(tables, sections, strict=True):
        if table == "x32":
            continue
        head = [_pack(_LD_W_ABS, 0, 0, 0)]  # A = seccomp_data.nr
        if table == "x86_64":
            # x32 syscalls arrive with AUDIT_ARCH_X86_64 and bit 30 set in nr.
            if x32 is not None:
                head += [_pack(_JGE, 0, 1, _X32_BIT), _pack(_JA, 0, 0, len(body))]
                body = body + x32
            else:
                head += [_pack(_JGE, 0, 1, _X32_BIT), _pack(_RET, 0, 0, _BAD_ARCH)]
        dispatch.append((ARCHES[_scmp(table)][1], head + body))
    # LD arch; per section: JEQ token ? (fall into JA section) : (skip the JA)
    prog: list[bytes] = [_pack(_LD_W_ABS, 0, 0, 4)]
    tail = 0
    for i, (token, body) in enumerate(dispatch):
        prog.append(_pack(_JEQ, 0, 1, token))
        prog.append(_pack(_JA, 0, 0, 2 * (len(dispatch) - i - 1) + 1 + tail))
        tail += len(body)
    prog.append(_pack(_RET, 0, 0, _BAD_ARCH))
    for _, body in dispatch:
        prog.extend(body)
    if len(prog) > _MAX_INSNS:
        raise InvalidArgument(f"seccomp: the profile compiles to {len(prog)} BPF "
                              f"instructions, above the kernel's limit of {_MAX_INSNS}")
    return b"".join(prog)


def _scmp(table: str) -> str:
    for scmp, (name, _, _) in ARCHES.items():
        if name == table:
            return scmp
    raise KeyError(table)


def _has_table(table: str) -> bool:
    try:
        syscall_table(table)
        return True
    except InvalidArgument:
        return False


_load_native_tables()
