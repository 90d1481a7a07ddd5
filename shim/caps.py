"""Linux capabilities of the container process: names, bounding set, capset, ambient.

Owns the CAP_* name <-> number table and the order of the calls, as runc's
init does it (libcontainer/init_linux.go finalizeNamespace):

1. `apply_bounding(caps["bounding"])` - drop from the bounding set what is
   not listed (needs CAP_SETPCAP, so it comes while the process still has it);
2. `prctl(PR_SET_KEEPCAPS, 1)`, setgroups/setgid/setuid to the container
   user, `prctl(PR_SET_KEEPCAPS, 0)` - so a non-root user keeps its permitted set;
3. `apply_sets(caps)` - capset(2) effective/permitted/inheritable (version 3,
   two 32-bit words), then the ambient set through prctl(PR_CAP_AMBIENT).

`apply_capabilities()` runs the whole sequence; the shim's init may instead
call the steps itself around its own user switch. Capabilities the running
kernel does not know (above /proc/sys/kernel/cap_last_cap) are left out, as
runc does. The module must not change uids itself: `change_user` is the
caller's.
"""

from __future__ import annotations

from dockyard.errdefs import InvalidArgument
from dockyard.oci.spec import CAPABILITIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

__all__ = [
    "CAPABILITIES",
    "apply_bounding",
    "apply_capabilities",
    "apply_sets",
    "last_cap",
    "mask",
    "name_of",
    "names_of",
    "number",
]

# Index = capability number (linux/capability.h); one table for every layer.
_NUMBERS = {name: i for i, name in enumerate(CAPABILITIES)}
_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")

# prctl options (linux/prctl.h); duplicated from _sys.consts so that the
# table functions above need no import of the syscall layer.
_PR_CAPBSET_READ = 23
_PR_CAPBSET_DROP = 24
_PR_SET_KEEPCAPS = 8
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_PR_CAP_AMBIENT_CLEAR_ALL = 4

_last_cap: int | None = None


def number(name: str) -> int:
    """CAP_* name -> number.

    Raises:
        InvalidArgument: for a name that is not a Linux capability.
    """
    try:
        return _NUMBERS[name]
    except (KeyError, TypeError):
        raise InvalidArgument(f"unknown capability {name!r} (expected a CAP_* name such "
                              "as CAP_CHOWN)") from None


def name_of(num: int) -> str:
    """Number -> CAP_* name (unknown numbers read `CAP_<n>`)."""
    return CAPABILITIES[num] if 0 <= num < len(CAPABILITIES) else f"CAP_{num}"


def mask(names: Iterable[str] | None) -> int:
    """A 64-bit mask of capability names, validated."""
    out = 0
    for name in names or ():
        out |= 1 << number(name)
    return out


def names_of(bits: int) -> list[str]:
    """The names set in a mask, lowest number first."""
    return [name_of(i) for i in range(64) if bits >> i & 1]


def last_cap(sys: Any = None) -> int:
    """The highest capability the running kernel knows.

    Read from /proc/sys/kernel/cap_last_cap; where that is not mounted (a
    container init after pivot_root into a root without /proc), probe the
    bounding set with PR_CAPBSET_READ, which fails with EINVAL past the last.
    """
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                _last_cap = int(f.read())
        except (OSError, ValueError):
            sys = _sys(sys)
            last = 0
            for cap in range(1, 64):
                try:
                    sys.prctl(_PR_CAPBSET_READ, cap)
                except OSError:
                    break
                last = cap
            _last_cap = last
    return _last_cap


def _known(bits: int) -> int:
    return bits & ((1 << (last_cap() + 1)) - 1)


def _sys(sys: Any) -> Any:
    if sys is None:
        from dockyard.shim._sys.syscalls import default
        return default()
    return sys


def validate(caps: dict[str, Any] | None) -> None:
    """Check every set of an OCI `process.capabilities` object; raises InvalidArgument."""
    for key, names in (caps or {}).items():
        if key not in _SETS:
            raise InvalidArgument(f"process.capabilities: unknown set {key!r}")
        if names is not None and not isinstance(names, list):
            raise InvalidArgument(f"process.capabilities.{key} must be a list of names")
        try:
            mask(names)
        except InvalidArgument as err:
            raise InvalidArgument(f"process.capabilities.{key}: {err}") from None


def apply_bounding(names: Iterable[str] | None, sys: Any = None) -> None:
    """Drop every capability not in `names` from the bounding set.

    Raises:
        InvalidArgument: an unknown name.
        OSError: prctl failed (EPERM without CAP_SETPCAP).
    """
    keep = mask(names)
    sys = _sys(sys)
    for cap in range(last_cap(sys) + 1):
        if keep >> cap & 1:
            continue
        try:
            sys.prctl(_PR_CAPBSET_DROP, cap)
        except OSError as err:
            raise OSError(err.errno, f"drop {name_of(cap)} from the bounding set: "
                          f"{err.strerror}") from err


def apply_sets(caps: dict[str, Any] | None, sys: Any = None) -> None:
    """capset(effective, permitted, inheritable), then the ambient set.

    Ambient capabilities must be permitted and inheritable; any that are
    not are skipped, as runc skips them (its default spec lists ambient
    caps without inheritable ones).

    Raises:
        InvalidArgument: an unknown name, or effective not within permitted.
        OSError: capset or prctl failed.
    """
    caps = caps or {}
    sys = _sys(sys)
    last_cap(sys)
    effective = _known(mask(caps.get("effective")))
    permitted = _known(mask(caps.get("permitted")))
    inheritable = _known(mask(caps.get("inheritable")))
    ambient = _known(mask(caps.get("ambient")))
    if effective & ~permitted:
        raise InvalidArgument("process.capabilities: effective "
                              f"{names_of(effective & ~permitted)} not in permitted")
    try:
        sys.capset(effective, permitted, inheritable)
    except OSError as err:
        raise OSError(err.errno, f"capset(effective={effective:#x}, permitted={permitted:#x}, "
                      f"inheritable={inheritable:#x}): {err.strerror}") from err
    sys.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in range(last_cap() + 1):
        if ambient >> cap & 1 and permitted >> cap & 1 and inheritable >> cap & 1:
            try:
                sys.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap)
            except OSError as err:
                raise OSError(err.errno, f"raise ambient {name_of(cap)}: "
                              f"{err.strerror}") from err


def apply_capabilities(caps: dict[str, Any] | None, keep_uid_change: bool = False,
                       change_user: Callable[[], None] | None = None,
                       sys: Any = None) -> None:
    """The whole sequence: bounding, [keep-caps, change_user(), no keep-caps], sets.

    Args:
        caps: OCI `process.capabilities`; None or {} drops everything.
        keep_uid_change: set PR_SET_KEEPCAPS around the user switch so a
            non-root user keeps the permitted set through setuid (implied
            when `change_user` is given).
        change_user: the caller's setgroups/setgid/setuid, run in the middle.
        sys: a `Syscalls` (tests pass a fake).
    """
    validate(caps)
    caps = caps or {}
    sys = _sys(sys)
    apply_bounding(caps.get("bounding"), sys)
    if keep_uid_change or change_user is not None:
        sys.prctl(_PR_SET_KEEPCAPS, 1)
        if change_user is not None:
            change_user()
            sys.prctl(_PR_SET_KEEPCAPS, 0)
    apply_sets(caps, sys)
