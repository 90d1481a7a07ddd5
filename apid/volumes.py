"""Named volumes with Docker's `local` driver: directories under <data-root>/volumes.

Owns the volume store: `<data-root>/volumes/<name>/_data` is what containers
bind-mount, `<data-root>/volumes/<name>/volume.json` keeps Name, Labels,
Options, CreatedAt and whether it is anonymous (created for a container's
`-v /path` without a name). Which containers use a volume is not stored:
the daemon computes it from its container records. Names follow Docker's rule
`[a-zA-Z0-9][a-zA-Z0-9_.-]+`; anonymous ones are 64 hex digits.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from dockyard.apid.container import rfc3339

from dockyard import errdefs

__all__ = ["Volume", "VolumeStore"]

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


@dataclass
class Volume:
    name: str
    mountpoint: str
    created: float
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False

    def to_docker(self, ref_count: int | None = None) -> dict[str, Any]:
        out = {"Name": self.name, "Driver": "local", "Mountpoint": self.mountpoint,
               "CreatedAt": rfc3339(self.created), "Labels": self.labels or None,
               "Scope": "local", "Options": self.options or None, "Status": None}
        if ref_count is not None:
            out["UsageData"] = {"Size": -1, "RefCount": ref_count}
        return out


class VolumeStore:
    def __init__(self, root: str) -> None:
        self.root = root

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def get(self, name: str) -> Volume:
        if not _NAME.match(name or ""):
            raise errdefs.NotFound(f"get {name}: no such volume")
        try:
            with open(os.path.join(self._dir(name), "volume.json")) as f:
                raw = json.load(f)
        except (FileNotFoundError, ValueError):
            raise errdefs.NotFound(f"get {name}: no such volume") from None
        return Volume(**raw)

    def list(self) -> list[Volume]:
        out = []
        if os.path.isdir(self.root):
            for name in sorted(os.listdir(self.root)):
                try:
                    out.append(self.get(name))
                except errdefs.NotFound:
                    continue
        return out

    def create(self, name: str = "", labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None, anonymous: bool = False) -> Volume:
        """Create (or return the existing) volume; `name` "" makes an anonymous one."""
        if options:
            raise errdefs.InvalidArgument("volume options (type, device, o) are not supported "
                                          "by this engine's local driver yet")
        if not name:
            name, anonymous = os.urandom(32).hex(), True
        if not _NAME.match(name):
            raise errdefs.InvalidArgument(
                f"create {name}: \"{name}\" includes invalid characters for a local volume name, "
                "only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host "
                "directory, use absolute path")
        try:
            return self.get(name)
        except errdefs.NotFound:
            pass
        vol = Volume(name=name, mountpoint=os.path.join(self._dir(name), "_data"),
                     created=time.time(), labels=dict(labels or {}), anonymous=anonymous)
        # 0700 root: volumes hold image content (setuid binaries, after a copy-up) that
        # host users must not reach (moby CVE-2021-41091)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.makedirs(vol.mountpoint, mode=0o755, exist_ok=True)
        tmp = os.path.join(self._dir(name), ".volume.json.tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(vol), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self._dir(name), "volume.json"))
        return vol

    def remove(self, name: str) -> None:
        self.get(name)
        # rename first so a half-removed volume is never found (containerd atomicDelete)
        hidden = os.path.join(self.root, f".removing-{name}-{os.urandom(4).hex()}")
        os.rename(self._dir(name), hidden)
        shutil.rmtree(hidden, ignore_errors=True)

    def size(self, name: str) -> int:
        total = 0
        for dirpath, _, files in os.walk(self.get(name).mountpoint):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
                except OSError:
                    continue
        return total
