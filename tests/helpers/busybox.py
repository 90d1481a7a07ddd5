"""Root filesystems and OCI bundles built from Debian's busybox-static.

Every test image starts here: a static busybox with its applet links, the
minimum /etc, and (for bundles) a config.json close to `runc spec`'s default.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX = "/bin/busybox"

__all__ = ["BUSYBOX", "applets", "make_rootfs", "base_config", "make_bundle"]


@functools.cache
def applets() -> tuple[str, ...]:
    """Names busybox can run as (`busybox --list-full` gives bin/sh, usr/bin/env, ...)."""
    out = subprocess.run([BUSYBOX, "--list-full"], check=True, capture_output=True, text=True)
    return tuple(line for line in out.stdout.split() if line)


def make_rootfs(dest: str | os.PathLike) -> Path:
    """Write a busybox root filesystem into dest (created) and return its path."""
    root = Path(dest)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "etc",
              "root", "var", "run", "home"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for rel in applets():
        link = root / rel
        if rel == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        depth = rel.count("/")
        link.symlink_to("../" * depth + "bin/busybox" if depth > 1 else "busybox")
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (root / "etc/group").write_text("root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n")
    (root / "etc/hostname").write_text("busybox\n")
    return root


_BASE = {
    "ociVersion": "1.0.2",
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"],
        "cwd": "/",
        "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                         for k in ("bounding", "effective", "permitted")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "dockyard",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                        "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                          "/proc/sysrq-trigger"],
    },
}


def base_config(args: list[str] | None = None, **process: object) -> dict:
    """A fresh copy of runc's default spec (busybox `sh`), with args and process fields set."""
    cfg = copy.deepcopy(_BASE)
    if args is not None:
        cfg["process"]["args"] = list(args)
    cfg["process"].update(process)
    return cfg


def make_bundle(dest: str | os.PathLike, config: dict | None = None,
                rootfs: str | os.PathLike | None = None) -> Path:
    """Write an OCI bundle (config.json + rootfs/) into dest and return its path.

    rootfs, if given, is copied instead of building a fresh busybox tree.
    """
    bundle = Path(dest)
    bundle.mkdir(parents=True, exist_ok=True)
    if rootfs is None:
        make_rootfs(bundle / "rootfs")
    else:
        shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    (bundle / "config.json").write_text(json.dumps(config or base_config(), indent=2))
    return bundle
