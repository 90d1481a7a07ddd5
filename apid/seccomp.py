"""Docker's seccomp profiles turned into an OCI `linux.seccomp` section.

Owns the default profile (package data `seccomp_default.json`, moby's
`profiles/seccomp/default.json` semantics) and the filtering dockerd does
before it hands the profile to the runtime: rules whose `includes` /
`excludes` name capabilities, architectures or a minimum kernel are kept or
dropped for this container and this host. Pure: the caller passes arch,
kernel release and capabilities. Must not apply anything itself (the shim does).
"""

from __future__ import annotations

import copy
import functools
import json
import platform
import re
from importlib import resources
from typing import Any

from dockyard.errdefs import InvalidArgument

__all__ = ["default_profile", "to_oci", "host_arch", "load_profile"]

# Go's GOARCH names used in profiles (`arches`) for Python's platform.machine()
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64"}
# the libseccomp name of the native architecture, keyed by GOARCH
_SCMP_NATIVE = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM",
                "386": "SCMP_ARCH_X86", "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X",
                "riscv64": "SCMP_ARCH_RISCV64", "mips64": "SCMP_ARCH_MIPS64"}
# the GOARCH names an arch-conditional rule may use that also match this host
_ALIASES = {"amd64": {"amd64", "x86_64"}, "arm64": {"arm64", "aarch64"}}


def host_arch() -> str:
    """The GOARCH-style name of this machine (amd64, arm64, ...)."""
    machine = platform.machine()
    return _GOARCH.get(machine, machine)


@functools.cache
def _default_text() -> str:
    return resources.files("dockyard.apid").joinpath("seccomp_default.json").read_text()


def default_profile() -> dict[str, Any]:
    """A fresh copy of Docker's default profile (the unfiltered JSON)."""
    return json.loads(_default_text())


def load_profile(text: str) -> dict[str, Any]:
    """Parse a user profile given with `--security-opt seccomp=<file>` (its JSON text)."""
    try:
        profile = json.loads(text)
    except ValueError as err:
        raise InvalidArgument(f"decoding seccomp profile failed: {err}") from err
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise InvalidArgument("decoding seccomp profile failed: no defaultAction")
    return profile


def _kernel_at_least(release: str, wanted: str) -> bool:
    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", text)[:2])
    return parts(release) >= parts(wanted)


def _matches(cond: dict[str, Any] | None, arch: str, caps: set[str], kernel: str,
             include: bool) -> bool:
    """For `includes`: every listed condition holds. For `excludes`: any one holds."""
    if not cond:
        return include
    arches = _ALIASES.get(arch, {arch})
    checks = []
    if cond.get("arches"):
        checks.append(bool(arches & set(cond["arches"])))
    if cond.get("caps"):
        hits = [c in caps for c in cond["caps"]]
        checks.append(all(hits) if include else any(hits))
    if cond.get("minKernel"):
        checks.append(_kernel_at_least(kernel, cond["minKernel"]))
    if not checks:
        return include
    return all(checks) if include else any(checks)


def to_oci(profile: dict[str, Any], *, caps: list[str], arch: str | None = None,
           kernel: str | None = None) -> dict[str, Any]:
    """Filter a Docker profile for this container and return OCI `linux.seccomp`.

    Args:
        profile: a Docker-format profile (default_profile() or a user's).
        caps: the container's effective capabilities (CAP_ names).
        arch: GOARCH name of the host, default host_arch().
        kernel: kernel release, default platform.release().

    Returns:
        The OCI seccomp object: defaultAction, defaultErrnoRet, architectures, syscalls.
    """
    arch = arch or host_arch()
    kernel = kernel or platform.release()
    capset = set(caps)
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    native = _SCMP_NATIVE.get(arch)
    arches: list[str] = []
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == native:
            arches = [native] + list(entry.get("subArchitectures") or [])
    if not arches and profile.get("architectures"):
        arches = list(profile["architectures"])
    if arches:
        out["architectures"] = arches
    if profile.get("flags"):
        out["flags"] = list(profile["flags"])
    rules = []
    for rule in profile.get("syscalls") or []:
        if not _matches(rule.get("includes"), arch, capset, kernel, include=True):
            continue
        if rule.get("excludes") and _matches(rule["excludes"], arch, capset, kernel, include=False):
            continue
        names = list(rule.get("names") or ([rule["name"]] if rule.get("name") else []))
        oci = {"names": names, "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            oci["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            oci["args"] = copy.deepcopy(rule["args"])
        rules.append(oci)
    out["syscalls"] = rules
    return out
