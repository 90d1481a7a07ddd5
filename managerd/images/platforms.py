"""Platforms (os/architecture/variant) and choosing one manifest from an index.

Rules from containerd's `platforms` package: Go architecture names, arm64
without a variant means v8, arm variants match downwards (a v7 host runs
v6 images), entries for `unknown/unknown` (BuildKit attestations) never match.
"""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass

from dockyard.errdefs import InvalidArgument, NotFound

__all__ = ["Platform", "host", "parse", "select"]

_ARCH = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
         "armel": "arm", "i386": "386", "i686": "386", "armv7l": "arm", "armv6l": "arm"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def normalized(self) -> Platform:
        arch = _ARCH.get(self.architecture, self.architecture)
        variant = self.variant
        if arch == "arm64" and variant in ("", "8"):
            variant = "v8"
        if arch == "arm" and variant.isdigit():
            variant = "v" + variant
        if arch == "arm" and not variant:
            variant = "v7"
        if arch == "amd64" and variant == "v1":
            variant = ""
        return Platform(self.os.lower(), arch, variant)

    @classmethod
    def from_dict(cls, d: dict | None) -> Platform:
        d = d or {}
        return cls(d.get("os", ""), d.get("architecture", ""), d.get("variant", "") or "")

    def to_dict(self) -> dict:
        out = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            out["variant"] = self.variant
        return out


def host() -> Platform:
    """The platform of this machine (`uname -m` mapped to Go names)."""
    machine = _platform.machine()
    variant = {"armv6l": "v6", "armv7l": "v7"}.get(machine, "")
    return Platform("linux", _ARCH.get(machine, machine), variant).normalized()


def parse(text: str) -> Platform:
    """`linux/arm64`, `linux/arm/v7`, `arm64` (os linux) -> Platform.

    Raises:
        InvalidArgument: empty or more than three parts.
    """
    parts = [p for p in text.strip().split("/")]
    if not text or not all(parts) or len(parts) > 3:
        raise InvalidArgument(f"invalid platform {text!r}: want os[/arch[/variant]]")
    if len(parts) == 1:
        if parts[0] in ("linux", "windows", "darwin", "freebsd"):
            return Platform(parts[0], host().architecture, host().variant).normalized()
        return Platform("linux", parts[0]).normalized()
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "").normalized()


def _score(want: Platform, have: Platform) -> int | None:
    """Lower is better; None when have cannot run on want."""
    have = have.normalized()
    if have.os in ("unknown", "") or have.architecture in ("unknown", ""):
        return None
    if have.os != want.os or have.architecture != want.architecture:
        return None
    if have.variant == want.variant:
        return 0
    if want.architecture == "arm" and have.variant[1:].isdigit() and want.variant[1:].isdigit():
        lower = int(have.variant[1:]) < int(want.variant[1:])
        return int(want.variant[1:]) - int(have.variant[1:]) if lower else None
    return None


def select(manifests: list[dict], want: Platform) -> dict:
    """The best descriptor of an index's `manifests` for the wanted platform.

    Raises:
        NotFound: no manifest matches (message lists the platforms on offer).
    """
    want = want.normalized()
    best, best_score = None, None
    for desc in manifests:
        score = _score(want, Platform.from_dict(desc.get("platform")))
        if score is not None and (best_score is None or score < best_score):
            best, best_score = desc, score
    if best is None:
        offered = ", ".join(str(Platform.from_dict(d.get("platform"))) for d in manifests)
        raise NotFound(f"no matching manifest for {want} in the manifest list entries "
                       f"(available: {offered or 'none'})")
    return best
