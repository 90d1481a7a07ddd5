"""OCI runtime-spec configuration: the default spec and config.json loading.

Owns `default_spec()` (what `runc spec` writes), `load_config()` (read and
validate a bundle's config.json) and `validate()` (the checks every
runtime must make before building anything, each failing with a message
that names the field). It must not touch the kernel: applying a spec is the
shim's job. Imports stay cheap (the shim loads this on every create).
"""

from __future__ import annotations

import os

from dockyard.errdefs import InvalidArgument, NotFound
from dockyard.oci import _json

__all__ = ["OCI_VERSION", "NAMESPACES", "CAPABILITIES", "RLIMITS", "default_spec",
           "load_config", "validate"]

OCI_VERSION = "1.0.2-dev"

# OCI namespace type -> the /proc/<pid>/ns/ entry (runtime-spec config-linux.md)
NAMESPACES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc",
              "uts": "uts", "user": "user", "cgroup": "cgroup"}

# index = capability number (linux/capability.h); shim/caps.py relies on it
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)

# RLIMIT_* name -> resource number (asm-generic/resource.h)
RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default_spec() -> dict:
    """The starter config.json `runc spec` (1.1.5) writes: busybox-friendly `sh` on a tty."""
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": list(_DEFAULT_CAPS), "effective": list(_DEFAULT_CAPS),
                             "permitted": list(_DEFAULT_CAPS), "ambient": list(_DEFAULT_CAPS)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
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
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


def load_config(bundle: str) -> dict:
    """Read and validate `<bundle>/config.json`.

    Raises:
        NotFound: the bundle or its config.json does not exist.
        InvalidArgument: the file is not JSON or breaks a rule of the spec.
    """
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFound(f"open {path}: no such file or directory") from None
    except IsADirectoryError:
        raise InvalidArgument(f"read {path}: is a directory") from None
    try:
        config = _json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidArgument(f"parse {path}: invalid JSON: {err}") from None
    validate(config)
    return config


def _fail(field: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"invalid config.json: {field}: {problem}")


def _expect(value: object, kind: type | tuple[type, ...], field: str, what: str) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _fail(field, f"must be {what}")


def _strings(value: object, field: str) -> None:
    _expect(value, list, field, "a list of strings")
    for item in value:  # type: ignore[union-attr]
        _expect(item, str, field, "a list of strings")


def validate(config: object, *, need_process: bool = True) -> None:
    """Check the parts of a config the shim relies on.

    Raises:
        InvalidArgument: naming the first offending field and what is wrong.
    """
    _expect(config, dict, "config", "a JSON object")
    assert isinstance(config, dict)
    version = config.get("ociVersion")
    if not isinstance(version, str) or not version:
        raise _fail("ociVersion", "is required (a version string such as 1.0.2)")
    root = config.get("root")
    _expect(root, dict, "root", "an object with a path")
    if not isinstance(root.get("path"), str) or not root["path"]:
        raise _fail("root.path", "is required")
    if "readonly" in root:
        _expect(root["readonly"], bool, "root.readonly", "a boolean")
    process = config.get("process")
    if process is None:
        if need_process:
            raise _fail("process", "is required")
    else:
        validate_process(process)
    mounts = config.get("mounts", [])
    _expect(mounts, list, "mounts", "a list")
    for i, m in enumerate(mounts):
        _expect(m, dict, f"mounts[{i}]", "an object")
        dest = m.get("destination")
        if not isinstance(dest, str) or not dest.startswith("/"):
            raise _fail(f"mounts[{i}].destination", f"must be an absolute path, got {dest!r}")
        for key in ("type", "source"):
            if key in m:
                _expect(m[key], str, f"mounts[{i}].{key}", "a string")
        if "options" in m:
            _strings(m["options"], f"mounts[{i}].options")
    for key in ("hostname", "domainname"):
        if key in config:
            _expect(config[key], str, key, "a string")
    if "annotations" in config:
        _expect(config["annotations"], dict, "annotations", "an object of strings")
    hooks = config.get("hooks", {})
    _expect(hooks, dict, "hooks", "an object")
    for name, entries in hooks.items():
        _expect(entries, list, f"hooks.{name}", "a list")
        for i, hook in enumerate(entries):
            if not isinstance(hook, dict) or not str(hook.get("path", "")).startswith("/"):
                raise _fail(f"hooks.{name}[{i}].path", "must be an absolute path")
    linux = config.get("linux", {})
    _expect(linux, dict, "linux", "an object")
    _validate_linux(linux, config)


def validate_process(process: object, field: str = "process") -> None:
    """Check an OCI `process` object (also the `exec --process` file)."""
    _expect(process, dict, field, "an object")
    assert isinstance(process, dict)
    args = process.get("args")
    if not isinstance(args, list) or not args:
        raise _fail(f"{field}.args", "must be a non-empty list")
    _strings(args, f"{field}.args")
    if "env" in process:
        _strings(process["env"], f"{field}.env")
    cwd = process.get("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise _fail(f"{field}.cwd", f"must be an absolute path, got {cwd!r}")
    user = process.get("user", {})
    _expect(user, dict, f"{field}.user", "an object")
    for key in ("uid", "gid", "umask"):
        if key in user:
            _expect(user[key], int, f"{field}.user.{key}", "an integer")
            if user[key] < 0:
                raise _fail(f"{field}.user.{key}", "must not be negative")
    for gid in user.get("additionalGids") or []:
        _expect(gid, int, f"{field}.user.additionalGids", "a list of integers")
    caps = process.get("capabilities") or {}
    _expect(caps, dict, f"{field}.capabilities", "an object")
    for kind, names in caps.items():
        if kind not in ("bounding", "effective", "inheritable", "permitted", "ambient"):
            raise _fail(f"{field}.capabilities", f"unknown set {kind!r}")
        _strings(names or [], f"{field}.capabilities.{kind}")
        for name in names or []:
            if name not in CAPABILITIES:
                raise _fail(f"{field}.capabilities.{kind}", f"unknown capability {name!r}")
    seen = set()
    rlimits = process.get("rlimits") or []
    _expect(rlimits, list, f"{field}.rlimits", "a list")
    for rl in rlimits:
        kind = rl.get("type") if isinstance(rl, dict) else None
        if kind not in RLIMITS:
            raise _fail(f"{field}.rlimits", f"unknown rlimit type {kind!r}")
        if kind in seen:
            raise _fail(f"{field}.rlimits", f"duplicate rlimit type {kind}")
        seen.add(kind)
        for key in ("soft", "hard"):
            _expect(rl.get(key), int, f"{field}.rlimits.{kind}.{key}", "an integer")
    for key in ("terminal", "noNewPrivileges"):
        if key in process:
            _expect(process[key], bool, f"{field}.{key}", "a boolean")
    if "oomScoreAdj" in process:
        _expect(process["oomScoreAdj"], int, f"{field}.oomScoreAdj", "an integer")
        if not -1000 <= process["oomScoreAdj"] <= 1000:
            raise _fail(f"{field}.oomScoreAdj", "must be between -1000 and 1000")


# sysctls a new ipc namespace isolates (runc validator.go); fs.mqueue.* too
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def _check_sysctl_namespace(name: str, types: set[str], namespaces: list[dict]) -> None:
    """Only sysctls of a namespace the container does not share with the host
    (runc's rule): anything else, e.g. kernel.core_pattern, would change the host."""
    if name in _IPC_SYSCTLS or name.startswith("fs.mqueue."):
        if "ipc" in types:
            return
        raise _fail("linux.sysctl", f"{name!r} is not allowed in the host's ipc namespace")
    if name.startswith("net."):
        path = next((ns.get("path") for ns in namespaces if ns.get("type") == "network"), None)
        if "network" in types and not (path and _same_file(path, "/proc/self/ns/net")):
            return
        raise _fail("linux.sysctl", f"{name!r} is not allowed in the host's network namespace")
    if name == "kernel.domainname" and "uts" in types:
        return
    raise _fail("linux.sysctl", f"{name!r} is not in a separate kernel namespace")


def _same_file(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _validate_linux(linux: dict, config: dict) -> None:
    types = set()
    namespaces = linux.get("namespaces") or []
    _expect(namespaces, list, "linux.namespaces", "a list")
    for ns in namespaces:
        kind = ns.get("type") if isinstance(ns, dict) else None
        if kind not in NAMESPACES:
            raise _fail("linux.namespaces", f"unknown namespace type {kind!r}")
        if kind in types:
            raise _fail("linux.namespaces", f"duplicate namespace type {kind}")
        types.add(kind)
        path = ns.get("path")
        if path is not None and (not isinstance(path, str) or not path.startswith("/")):
            raise _fail(f"linux.namespaces[{kind}].path", "must be an absolute path")
    if "user" in types:
        raise _fail("linux.namespaces", "user namespaces are not supported by dockyard-shim")
    if "mount" not in types:
        raise _fail("linux.namespaces", "a mount namespace is required to set up the rootfs")
    if (config.get("hostname") or config.get("domainname")) and "uts" not in types:
        raise _fail("hostname", "setting a hostname needs a new uts namespace")
    for key in ("maskedPaths", "readonlyPaths"):
        for path in linux.get(key) or []:
            if not isinstance(path, str) or not path.startswith("/"):
                raise _fail(f"linux.{key}", f"{path!r} is not an absolute path")
    sysctl = linux.get("sysctl") or {}
    _expect(sysctl, dict, "linux.sysctl", "an object")
    for name, value in sysctl.items():
        _expect(value, str, f"linux.sysctl.{name}", "a string")
        if "/" in name or ".." in name:
            raise _fail("linux.sysctl", f"invalid name {name!r}")
        _check_sysctl_namespace(name, types, namespaces)
    for i, dev in enumerate(linux.get("devices") or []):
        # normalised: "/dev/../etc/x" would put a device node in the image's /etc
        if not isinstance(dev, dict) or \
                not os.path.normpath(str(dev.get("path", ""))).startswith("/dev/"):
            raise _fail(f"linux.devices[{i}].path", "must be a path under /dev")
        if dev.get("type") not in ("c", "b", "u", "p"):
            raise _fail(f"linux.devices[{i}].type", "must be one of c, b, u, p")
        if dev["type"] != "p":
            for key in ("major", "minor"):
                _expect(dev.get(key), int, f"linux.devices[{i}].{key}", "an integer")
    prop = linux.get("rootfsPropagation")
    if prop not in (None, "", "private", "rprivate", "slave", "rslave", "shared", "rshared",
                    "unbindable", "runbindable"):
        raise _fail("linux.rootfsPropagation", f"unknown propagation {prop!r}")
    path = linux.get("cgroupsPath")
    if path is not None:
        _expect(path, str, "linux.cgroupsPath", "a string")
    if "resources" in linux:
        _expect(linux["resources"], dict, "linux.resources", "an object")
    if "seccomp" in linux and linux["seccomp"] is not None:
        _expect(linux["seccomp"], dict, "linux.seccomp", "an object")
