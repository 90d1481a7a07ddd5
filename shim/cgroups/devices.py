"""The device cgroup: which device nodes a container may open or mknod.

Security critical: without it a root process in the container could mknod
and open the host's disks. Owns the OCI `linux.resources.devices` rule list
in both kernel forms:

* v1: lines for devices.deny / devices.allow, starting from `deny a`; on
  an existing deny-by-default list (update) only the difference, computed
  from the kernel's devices.list, which `v1_list` emulates;
* v2: a BPF_PROG_TYPE_CGROUP_DEVICE eBPF program, written here as raw
  bytecode, loaded with bpf(BPF_PROG_LOAD) and attached to the cgroup with
  BPF_F_ALLOW_MULTI, replacing the program a previous `set` attached.

Rule semantics (both forms): rules apply in order and a later matching rule
overrides an earlier one; a rule `{type a, major/minor wildcard, access rwm}`
resets the default (allow or deny everything) and forgets earlier rules.
An allow rule matches a request only when it grants every requested access
bit; a deny rule matches when it names any of them. What no rule matches is
denied. (A v1 kernel quirk: in deny-by-default mode a deny rule only removes
an *identical* earlier allow, so `allow c *:* rwm; deny c 1:3 rwm` still
allows 1:3 on v1 but not on v2. Docker's and runc's lists never rely on it.)

It must not decide which devices a container gets: `with_defaults()` offers
runc's policy for the caller to apply.
"""

from __future__ import annotations

import struct

from dockyard.errdefs import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DEFAULT_ALLOWED",
    "DeviceRule",
    "attach_program",
    "compile_program",
    "parse_rules",
    "v1_list",
    "v1_update",
    "v1_writes",
    "with_defaults",
]

WILDCARD = -1
_ACCESS_BITS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD/READ/WRITE
_TYPE_BPF = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK / _CHAR

# runc's AllowedDevices (libcontainer/specconv): what every container may use
# whatever its config says, appended after the config's own rules.
DEFAULT_ALLOWED: list[dict[str, Any]] = [
    {"allow": True, "type": "c", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "b", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},    # null
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},    # random
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},    # full
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},    # tty
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},    # zero
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},    # urandom
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},    # console
    {"allow": True, "type": "c", "major": 136, "minor": None, "access": "rwm"},  # pts/*
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},    # ptmx
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # net/tun
]


class DeviceRule:
    """One normalised rule; major/minor -1 mean any, access is a subset of 'rwm'.

    A plain slotted class rather than a dataclass: `dataclasses` costs
    milliseconds to import and this runs on every container start.
    """

    __slots__ = ("allow", "type", "major", "minor", "access")

    def __init__(self, allow: bool, type: str, major: int, minor: int, access: str) -> None:
        self.allow = allow
        self.type = type
        self.major = major
        self.minor = minor
        self.access = access

    def _key(self) -> tuple:
        return (self.allow, self.type, self.major, self.minor, self.access)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeviceRule) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return ("DeviceRule(allow={!r}, type={!r}, major={!r}, minor={!r}, "
                "access={!r})".format(*self._key()))

    @property
    def access_bits(self) -> int:
        bits = 0
        for ch in self.access:
            bits |= _ACCESS_BITS[ch]
        return bits

    @property
    def resets(self) -> bool:
        """`a *:* rwm`: sets the default and forgets every earlier rule."""
        return (self.type == "a" and self.major == WILDCARD and self.minor == WILDCARD
                and self.access_bits == 7)


def _number(rule: dict[str, Any], key: str, i: int) -> int:
    value = rule.get(key)
    if value is None or value == WILDCARD:
        return WILDCARD
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0x7FFFFFFF:
        raise InvalidArgument(f"linux.resources.devices[{i}].{key}: invalid device "
                              f"number {value!r}")
    return value


def parse_rules(rules: list[dict[str, Any]] | None) -> list[DeviceRule]:
    """Validate OCI device rules.

    Raises:
        InvalidArgument: naming the bad entry (missing `allow`, unknown type or access).
    """
    if rules is not None and not isinstance(rules, list):
        raise InvalidArgument("linux.resources.devices must be a list of rules")
    out: list[DeviceRule] = []
    for i, rule in enumerate(rules or []):
        if not isinstance(rule, dict) or not isinstance(rule.get("allow"), bool):
            raise InvalidArgument(f"linux.resources.devices[{i}]: `allow` (bool) is required")
        dtype = rule.get("type") or "a"
        if dtype not in ("a", "b", "c"):
            raise InvalidArgument(f"linux.resources.devices[{i}].type: {dtype!r} is not "
                                  "one of a, b, c")
        access = rule.get("access") or "rwm"
        if not isinstance(access, str) or not set(access) <= set("rwm"):
            raise InvalidArgument(f"linux.resources.devices[{i}].access: {access!r} is not "
                                  "a combination of r, w, m")
        access = "".join(ch for ch in "rwm" if ch in access)
        out.append(DeviceRule(rule["allow"], dtype, _number(rule, "major", i),
                              _number(rule, "minor", i), access))
    return out


def with_defaults(rules: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """runc's effective list: the config's rules, then DEFAULT_ALLOWED. With no
    rules at all the container starts from deny-all. `linux.devices` nodes get
    no rule of their own (as with runc and crun): the config's rules say what
    each node may do, e.g. Docker's `--device /dev/x:/dev/x:r` is read-only."""
    out = list(rules or [])
    if not out:
        out.append({"allow": False, "access": "rwm"})
    out.extend(DEFAULT_ALLOWED)
    return out


def _v1_line(rule: DeviceRule, dtype: str) -> str:
    major = "*" if rule.major == WILDCARD else str(rule.major)
    minor = "*" if rule.minor == WILDCARD else str(rule.minor)
    return f"{dtype} {major}:{minor} {rule.access}"


def v1_writes(rules: list[DeviceRule]) -> list[tuple[str, str]]:
    """(file, line) pairs for the v1 devices controller, in order.

    The first is always ('devices.deny', 'a'): the kernel then forgets every
    inherited exception, so only the listed rules grant anything.
    """
    writes = [("devices.deny", "a")]
    for rule in rules:
        name = "devices.allow" if rule.allow else "devices.deny"
        if rule.resets:
            writes.append((name, "a"))
        elif rule.type == "a":
            # v1 reads any "a ..." line as "everything"; spell it per type.
            writes.append((name, _v1_line(rule, "c")))
            writes.append((name, _v1_line(rule, "b")))
        else:
            writes.append((name, _v1_line(rule, rule.type)))
    return writes


def v1_list(rules: list[DeviceRule]) -> list[str] | None:
    """What devices.list shows after `v1_writes(rules)`, emulating the kernel
    (security/device_cgroup.c): exceptions keyed by type/major/minor, merged
    and trimmed bit by bit, in insertion order. None when the result is
    allow-by-default with exceptions, which devices.list does not show.

    Lets `set` skip rewriting an unchanged list: the rewrite starts with
    `deny a`, which a running container would feel for a moment.
    """
    allow_default = False
    exceptions: dict[tuple[str, str], set[str]] = {}
    for name, line in v1_writes(rules):
        allow = name == "devices.allow"
        if line == "a":
            allow_default, exceptions = allow, {}
            continue
        dtype, numbers, access = line.split()
        key = (dtype, numbers)
        if allow != allow_default:  # an exception to the default
            exceptions.setdefault(key, set()).update(access)
        elif key in exceptions:  # back to the default: only an identical key is trimmed
            exceptions[key].difference_update(access)
            if not exceptions[key]:
                del exceptions[key]
    if allow_default:
        return None if exceptions else ["a *:* rwm"]
    return [f"{t} {n} {''.join(c for c in 'rwm' if c in acc)}"
            for (t, n), acc in exceptions.items()]


def _parse_list(lines: list[str]) -> dict[tuple[str, str], set[str]] | None:
    out: dict[tuple[str, str], set[str]] = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("b", "c") or not set(parts[2]) <= set("rwm"):
            return None  # `a *:* rwm` (allow-by-default) or something unexpected
        out[(parts[0], parts[1])] = set(parts[2])
    return out


def v1_update(current: list[str], rules: list[DeviceRule]) -> list[tuple[str, str]] | None:
    """The fewest writes taking a deny-by-default devices.list `current` to
    `rules`, or None when only a full rewrite (`v1_writes`) can.

    Removals come first, so at no moment does the container hold more than
    either the old or the new list grants. [] means nothing to do.
    """
    expected = v1_list(rules)
    if expected == current:
        return []
    have = _parse_list(current)
    want = _parse_list(expected) if expected is not None else None
    if have is None or want is None:
        return None
    writes = []
    for (dtype, numbers), access in have.items():
        extra = access - want.get((dtype, numbers), set())
        if extra:
            writes.append(("devices.deny",
                           f"{dtype} {numbers} {''.join(c for c in 'rwm' if c in extra)}"))
    for (dtype, numbers), access in want.items():
        missing = access - have.get((dtype, numbers), set())
        if missing:
            writes.append(("devices.allow",
                           f"{dtype} {numbers} {''.join(c for c in 'rwm' if c in missing)}"))
    return writes


# --- eBPF bytecode (struct bpf_insn: u8 code, u8 dst:4|src:4, s16 off, s32 imm)
_LDX_W = 0x61      # BPF_LDX | BPF_MEM | BPF_W
_MOV32_X = 0xBC    # BPF_ALU | BPF_MOV | BPF_X
_AND32_K = 0x54    # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74    # BPF_ALU | BPF_RSH | BPF_K
_MOV64_K = 0xB7    # BPF_ALU64 | BPF_MOV | BPF_K
_JEQ_K = 0x15      # BPF_JMP | BPF_JEQ | BPF_K
_JNE_K = 0x55      # BPF_JMP | BPF_JNE | BPF_K
_EXIT = 0x95       # BPF_JMP | BPF_EXIT
_SKIP = object()   # placeholder offset: "to the end of this rule's block"


def _insn(code: int, dst: int = 0, src: int = 0, off: Any = 0, imm: int = 0) -> list:
    return [code, dst, src, off, imm]


def compile_program(rules: list[DeviceRule]) -> bytes:
    """The cgroup device eBPF program for `rules` (returns 1 = allow, 0 = deny).

    Context is struct bpf_cgroup_dev_ctx {u32 access_type (type | access << 16);
    u32 major; u32 minor}. Rules are tested last to first, so the first match
    is the rule that wins.
    """
    default = 0
    live: list[DeviceRule] = []
    for rule in rules:
        if rule.resets:
            default, live = int(rule.allow), []
        else:
            live.append(rule)
    prog = [
        _insn(_LDX_W, 2, 1, 0),        # r2 = ctx->access_type
        _insn(_MOV32_X, 3, 2),         # r3 = r2
        _insn(_AND32_K, 3, imm=0xFFFF),  # r3 = device type
        _insn(_RSH32_K, 2, imm=16),    # r2 = requested access bits
        _insn(_LDX_W, 4, 1, 4),        # r4 = ctx->major
        _insn(_LDX_W, 5, 1, 8),        # r5 = ctx->minor
    ]
    for rule in reversed(live):
        block: list[list] = []
        if rule.type != "a":
            block.append(_insn(_JNE_K, 3, off=_SKIP, imm=_TYPE_BPF[rule.type]))
        bits = rule.access_bits
        if rule.allow and bits != 7:
            # Skip unless every requested bit is granted: (req & ~bits) == 0.
            block.append(_insn(_MOV32_X, 0, 2))
            block.append(_insn(_AND32_K, 0, imm=~bits & 7))
            block.append(_insn(_JNE_K, 0, off=_SKIP, imm=0))
        elif not rule.allow and bits != 7:
            # Skip unless some requested bit is denied: (req & bits) != 0.
            block.append(_insn(_MOV32_X, 0, 2))
            block.append(_insn(_AND32_K, 0, imm=bits))
            block.append(_insn(_JEQ_K, 0, off=_SKIP, imm=0))
        if rule.major != WILDCARD:
            block.append(_insn(_JNE_K, 4, off=_SKIP, imm=rule.major))
        if rule.minor != WILDCARD:
            block.append(_insn(_JNE_K, 5, off=_SKIP, imm=rule.minor))
        block.append(_insn(_MOV64_K, 0, imm=int(rule.allow)))
        block.append(_insn(_EXIT))
        for i, ins in enumerate(block):
            if ins[3] is _SKIP:
                ins[3] = len(block) - i - 1
        prog.extend(block)
    prog.append(_insn(_MOV64_K, 0, imm=default))
    prog.append(_insn(_EXIT))
    pack = struct.Struct("<BBhi").pack
    return b"".join(pack(c, (s << 4) | d, o, imm) for c, d, s, o, imm in prog)


def attach_program(cgroup_dir: str, program: bytes, sys: Any = None) -> int:
    """Load `program` and attach it to `cgroup_dir` (v2), detaching the programs
    a previous call attached there. Returns the new program's fd (caller may close).

    Raises:
        OSError: from bpf(2), with the verifier log for a rejected program.
    """
    from dockyard.shim.cgroups import _bpf
    return _bpf.load_and_attach(cgroup_dir, program, sys)
