"""Resource limits (`process.rlimits`) and the OOM score (`process.oomScoreAdj`).

Owns the RLIMIT_* name table and validation. Runs in the container's init
before exec; it must not fork or touch anything but the calling process.
Raising a hard limit above the current one needs CAP_SYS_RESOURCE, and
lowering oom_score_adj too: both fail with an error naming the value.
"""

from __future__ import annotations

import errno
import resource

from dockyard.errdefs import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["RLIMITS", "apply", "oom_score_adj", "parse"]

RLIMITS: dict[str, int] = {
    name: getattr(resource, name)
    for name in ("RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
                 "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
                 "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
                 "RLIMIT_RTPRIO", "RLIMIT_RTTIME")
    if hasattr(resource, name)
}
_U64_MAX = 0xFFFFFFFFFFFFFFFF


def _value(raw: Any, where: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= _U64_MAX:
        raise InvalidArgument(f"{where}: {raw!r} is not an unsigned 64-bit integer")
    # OCI spells "unlimited" as 2^64-1 (RLIM_INFINITY on 64-bit Linux).
    return resource.RLIM_INFINITY if raw >= 1 << 63 else raw


def parse(rlimits: list[dict[str, Any]] | None) -> list[tuple[str, int, int]]:
    """Validate OCI rlimits -> [(name, soft, hard)].

    Raises:
        InvalidArgument: unknown or duplicate type, soft above hard, bad value.
    """
    if rlimits is not None and not isinstance(rlimits, list):
        raise InvalidArgument("process.rlimits must be a list")
    out: list[tuple[str, int, int]] = []
    seen: set[str] = set()
    for i, entry in enumerate(rlimits or []):
        where = f"process.rlimits[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{where}: expected an object with type, soft, hard")
        name = entry.get("type")
        if name not in RLIMITS:
            raise InvalidArgument(f"{where}.type: unknown rlimit {name!r}")
        if name in seen:
            raise InvalidArgument(f"{where}: duplicate rlimit {name}")
        seen.add(name)
        soft = _value(entry.get("soft"), f"{where}.soft ({name})")
        hard = _value(entry.get("hard"), f"{where}.hard ({name})")
        if _cmp(soft) > _cmp(hard):
            raise InvalidArgument(f"{name}: soft limit {entry['soft']} exceeds hard "
                                  f"limit {entry['hard']}")
        out.append((name, soft, hard))
    return out


def _cmp(value: int) -> int:
    return _U64_MAX if value == resource.RLIM_INFINITY else value


def _show(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def apply(rlimits: list[dict[str, Any]] | None) -> None:
    """setrlimit each OCI rlimit on the calling process.

    Raises:
        InvalidArgument: a bad entry (see `parse`).
        PermissionError: a hard limit above the current one without
            CAP_SYS_RESOURCE; the message names the limit and both values.
    """
    for name, soft, hard in parse(rlimits):
        try:
            resource.setrlimit(RLIMITS[name], (soft, hard))
        except (ValueError, OSError) as err:
            cur_soft, cur_hard = resource.getrlimit(RLIMITS[name])
            if _cmp(hard) > _cmp(cur_hard):
                raise PermissionError(
                    errno.EPERM, f"setrlimit {name}: hard limit {_show(hard)} exceeds the "
                    f"current hard limit {_show(cur_hard)} (raising it needs "
                    "CAP_SYS_RESOURCE)") from err
            if name == "RLIMIT_NOFILE":
                raise OSError(errno.EPERM, f"setrlimit {name} to {_show(soft)}/{_show(hard)}: "
                              "above fs.nr_open") from err
            raise OSError(getattr(err, "errno", None) or errno.EINVAL,
                          f"setrlimit {name} to {_show(soft)}/{_show(hard)}: {err}") from err


def oom_score_adj(value: int, pid: int | str = "self") -> None:
    """Write /proc/<pid>/oom_score_adj (-1000..1000).

    Raises:
        InvalidArgument: out of range.
        PermissionError: lowering it without CAP_SYS_RESOURCE.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not -1000 <= value <= 1000:
        raise InvalidArgument(f"process.oomScoreAdj: {value!r} is not -1000..1000")
    path = f"/proc/{pid}/oom_score_adj"
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except PermissionError as err:
        raise PermissionError(errno.EACCES, f"write oomScoreAdj {value} to {path}: lowering "
                              "the OOM score needs CAP_SYS_RESOURCE") from err
    except OSError as err:
        raise OSError(err.errno, f"write oomScoreAdj {value} to {path}: "
                      f"{err.strerror}") from err
