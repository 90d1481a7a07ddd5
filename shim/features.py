"""`dockyard-shim features`: what this runtime actually implements.

Owns the runtime-spec features document (features.md, features-linux.md),
built from the tables the implementing modules export, so it cannot claim
more than the code does. It must not probe the kernel beyond cheap file
checks.
"""

from __future__ import annotations

import os

__all__ = ["features"]

_HOOKS = ["prestart", "createRuntime", "poststart", "poststop"]


def features() -> dict:
    from dockyard.shim.rootfs import _FLAGS, PROPAGATION

    from dockyard.oci.spec import CAPABILITIES

    seccomp: dict = {"enabled": False}
    try:
        from dockyard.shim import seccomp as sc  # shim-kernel's package
        if hasattr(sc, "compile_filter"):
            seccomp = {"enabled": True}
            for key in ("actions", "operators", "archs"):
                value = getattr(sc, key.upper(), None)
                if value:
                    seccomp[key] = sorted(value)
    except ImportError:
        pass
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers") or \
        os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers")
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.0.2-dev",
        "hooks": _HOOKS,
        "mountOptions": sorted([*_FLAGS, *PROPAGATION]),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "uts"],
            "capabilities": list(CAPABILITIES),
            "cgroup": {"v1": True, "v2": v2, "systemd": False, "systemdUser": False},
            "seccomp": seccomp,
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"io.github.dockyard.shim.version": "0.1.0"},
    }
