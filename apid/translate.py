"""Docker create bodies -> OCI runtime specs, with dockerd's defaults. Pure.

Owns the mapping moby does in `daemon/oci_linux.go`: the image config merged
with the create Config, then an OCI spec built as a default spec plus small
options, each owning one concern (STYLE.md, containerd `oci.SpecOpts`):

    spec = default_spec(container_id)
    for opt in (with_process(...), with_capabilities(...), ...):
        opt(spec)

Nothing here does I/O: files the spec refers to (hosts, resolv.conf, the image's
/etc/passwd) are read or written by the caller and passed in as text or paths.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dockyard.apid import seccomp
from dockyard.apid.devices import ContainerDevice

from dockyard.errdefs import EngineError, InvalidArgument

__all__ = [
    "host_capabilities", "DEFAULT_CAPS", "ALL_CAPS", "DEFAULT_PATH", "MASKED_PATHS", "READONLY_PATHS",
    "DEFAULT_SHM_SIZE", "SpecInputs", "SpecOpt", "build_spec", "default_spec", "merge_config",
    "resolve_user", "parse_bytes", "parse_signal", "hosts_file", "resolv_conf",
    "normalize_caps", "effective_caps", "parse_security_opts", "SecurityOpts", "split_bind",
    "check_namespace_modes", "container_mode", "with_devices", "with_ipc_mounts",
    "with_namespaces",
]

SpecOpt = Callable[[dict], None]

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024  # daemon/config DefaultShmSize

# oci/caps/defaults.go: the 14 capabilities a default container keeps
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]
# capability(7) numbers 0..40, in order
ALL_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
    "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON",
    "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]

# oci/defaults.go (moby 28)
MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# cgroup device rules dockerd writes (oci/defaults.go + daemon/oci_linux.go)
_DEFAULT_DEVICE_RULES: list[dict[str, Any]] = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
]

_SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8,
    "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
    "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
    "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
    "POLL": 29, "PWR": 30, "SYS": 31,
}

_RLIMITS = {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
            "nproc", "rss", "rtprio", "rttime", "sigpending", "stack", "as"}


def parse_signal(value: str | int | None, default: int = 15) -> int:
    """`SIGTERM`, `TERM`, `15` or `SIGRTMIN+3` -> number (signal.ParseSignal)."""
    if value is None or value == "":
        return default
    if isinstance(value, int):
        return value
    text = str(value).strip().upper()
    if text.isdigit():
        num = int(text)
        if 0 < num <= 64:
            return num
        raise InvalidArgument(f"Invalid signal: {value}")
    name = text[3:] if text.startswith("SIG") else text
    if name in _SIGNALS:
        return _SIGNALS[name]
    match = re.fullmatch(r"RTMIN(?:\+(\d+))?|RTMAX(?:-(\d+))?", name)
    if match:
        if name.startswith("RTMIN"):
            return 34 + int(match.group(1) or 0)
        return 64 - int(match.group(2) or 0)
    raise InvalidArgument(f"Invalid signal: {value}")


def parse_bytes(value: str | int) -> int:
    """`64m`, `1g`, `512k`, `100` -> bytes (go-units RAMInBytes)."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?\s*", str(value), re.I)
    if not match:
        raise InvalidArgument(f"invalid size: '{value}'")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
    return int(float(match.group(1)) * mult[match.group(2).lower()])


# --- config merge (daemon/commit.go merge + create defaults) -------------------------------


def merge_config(config: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """Merge the create Config with the image's config as dockerd does.

    Args:
        config: the create body's Config fields (Cmd, Entrypoint, Env, ...).
        image: the image config's `config` object (may be empty).

    Returns:
        A new merged Config; Env from the image with create entries overriding by key,
        Cmd/Entrypoint inherited only when the create body leaves them unset.
    """
    out = copy.deepcopy(config)
    image = image or {}
    if not out.get("User") and image.get("User"):
        out["User"] = image["User"]
    exposed = dict(image.get("ExposedPorts") or {})
    exposed.update(out.get("ExposedPorts") or {})
    out["ExposedPorts"] = exposed or None
    env = list(image.get("Env") or [])
    keys = {e.split("=", 1)[0]: i for i, e in enumerate(env)}
    for entry in out.get("Env") or []:
        key = entry.split("=", 1)[0]
        if key in keys:
            env[keys[key]] = entry
        else:
            keys[key] = len(env)
            env.append(entry)
    out["Env"] = env
    labels = dict(image.get("Labels") or {})
    labels.update(out.get("Labels") or {})
    out["Labels"] = labels
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = image.get("Cmd")
        if out.get("Entrypoint") is None:
            out["Entrypoint"] = image.get("Entrypoint")
    if not out.get("WorkingDir"):
        out["WorkingDir"] = image.get("WorkingDir") or ""
    volumes = dict(image.get("Volumes") or {})
    volumes.update(out.get("Volumes") or {})
    out["Volumes"] = volumes or None
    if not out.get("StopSignal") and image.get("StopSignal"):
        out["StopSignal"] = image["StopSignal"]
    if not out.get("Shell") and image.get("Shell"):
        out["Shell"] = image["Shell"]
    hc = out.get("Healthcheck")
    ihc = image.get("Healthcheck")
    if ihc:
        if not hc:
            out["Healthcheck"] = copy.deepcopy(ihc)
        else:
            merged = dict(hc)
            if not merged.get("Test"):
                merged["Test"] = ihc.get("Test")
            for key in ("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
                if not merged.get(key):
                    merged[key] = ihc.get(key, 0)
            out["Healthcheck"] = merged
    if not out.get("OnBuild") and image.get("OnBuild"):
        out["OnBuild"] = image["OnBuild"]
    return out


def command_of(config: dict[str, Any]) -> list[str]:
    """Entrypoint + Cmd, the container's argv (400 "No command specified" when empty)."""
    args = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
    if not args:
        raise InvalidArgument("No command specified")
    return args


# --- users (daemon's getUser: image /etc/passwd and /etc/group) ----------------------------


def _parse_colon_file(text: str | None) -> list[list[str]]:
    rows = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def resolve_user(user: str, passwd: str | None, group: str | None,
                 group_add: Iterable[str] = ()) -> tuple[int, int, list[int]]:
    """Resolve Docker's `User` (`name`, `uid`, `name:group`, `uid:gid`) against image files.

    Returns:
        (uid, gid, additional gids) as dockerd puts them in process.user: the user's
        supplementary groups from /etc/group plus GroupAdd, with the primary gid first.

    Raises:
        InvalidArgument: a name that the image's files do not know (moby's
        "unable to find user NAME: no matching entries in passwd file").
    """
    users = _parse_colon_file(passwd)
    groups = _parse_colon_file(group)
    spec_user, _, spec_group = (user or "").partition(":")
    uid, gid, name = 0, 0, "root"
    if spec_user:
        if spec_user.isdigit():
            uid = int(spec_user)
            name = ""
            for row in users:
                if len(row) > 3 and row[2] == spec_user:
                    name, gid = row[0], int(row[3]) if row[3].isdigit() else 0
                    break
        else:
            for row in users:
                if row[0] == spec_user and len(row) > 3:
                    uid, gid, name = int(row[2]), int(row[3]), row[0]
                    break
            else:
                raise InvalidArgument(
                    f"unable to find user {spec_user}: no matching entries in passwd file")
    else:
        for row in users:
            if row[0] == "root" and len(row) > 3:
                gid = int(row[3])
                break
    if spec_group:
        if spec_group.isdigit():
            gid = int(spec_group)
        else:
            for row in groups:
                if row[0] == spec_group and len(row) > 2:
                    gid = int(row[2])
                    break
            else:
                raise InvalidArgument(
                    f"unable to find group {spec_group}: no matching entries in group file")
    extra: list[int] = [gid]
    if name and not spec_group:
        for row in groups:
            if len(row) > 3 and name in row[3].split(",") and row[2].isdigit():
                if int(row[2]) not in extra:
                    extra.append(int(row[2]))
    for g in group_add:
        if str(g).isdigit():
            num = int(g)
        else:
            for row in groups:
                if row[0] == g and len(row) > 2:
                    num = int(row[2])
                    break
            else:
                raise InvalidArgument(f"Unable to find group {g}: no matching entries in group file")
        if num not in extra:
            extra.append(num)
    return uid, gid, extra


# --- capabilities and security options -----------------------------------------------------


def host_capabilities(cap_bnd_hex: str) -> list[str]:
    """Capability names of a `CapBnd:` mask from /proc/self/status (caller reads it)."""
    mask = int(cap_bnd_hex, 16)
    return [name for bit, name in enumerate(ALL_CAPS) if mask >> bit & 1]


def normalize_caps(caps: Iterable[str] | None) -> list[str]:
    """`net_admin`, `CAP_NET_ADMIN`, `ALL` -> canonical names (400 on unknown)."""
    out = []
    for cap in caps or []:
        text = cap.strip().upper()
        if text == "ALL":
            out.append("ALL")
            continue
        if not text.startswith("CAP_"):
            text = "CAP_" + text
        if text not in ALL_CAPS:
            raise InvalidArgument(f"unknown capability: \"{cap}\"")
        out.append(text)
    return out


def effective_caps(cap_add: Iterable[str] | None, cap_drop: Iterable[str] | None,
                   privileged: bool = False, host_caps: list[str] | None = None) -> list[str]:
    """The capability set after CapAdd/CapDrop (oci/caps TweakCapabilities).

    "ALL" and --privileged mean every capability the host can grant (`host_caps`,
    the daemon's bounding set; all known ones when not given), as dockerd's
    caps.GetAllCapabilities does.
    """
    every = list(host_caps) if host_caps is not None else list(ALL_CAPS)
    if privileged:
        return every
    add = normalize_caps(cap_add)
    drop = normalize_caps(cap_drop)
    if "ALL" in add:
        base = every
    elif "ALL" in drop:
        base = []
    else:
        base = list(DEFAULT_CAPS)
    base = [c for c in base if c not in drop or "ALL" in add and c in add]
    for cap in add:
        if cap != "ALL" and cap not in base:
            base.append(cap)
    return base


@dataclass
class SecurityOpts:
    """What `HostConfig.SecurityOpt` asks for."""

    seccomp: str = "default"  # "default", "unconfined" or a profile's JSON text
    no_new_privileges: bool = False
    systempaths_unconfined: bool = False
    label: list[str] = field(default_factory=list)


def parse_security_opts(opts: Iterable[str] | None) -> SecurityOpts:
    """Parse `seccomp=…`, `no-new-privileges[=bool]`, `systempaths=unconfined`, `label=…`."""
    out = SecurityOpts()
    for opt in opts or []:
        if opt == "no-new-privileges":
            out.no_new_privileges = True
            continue
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")  # the deprecated `seccomp:unconfined` form
        if not sep:
            raise InvalidArgument(f"Invalid --security-opt: \"{opt}\"")
        if key == "seccomp":
            out.seccomp = value if value in ("unconfined", "default") else value
        elif key == "no-new-privileges":
            if value.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid --security-opt 2: \"{opt}\"")
            out.no_new_privileges = value.lower() in ("true", "1")
        elif key == "systempaths":
            if value != "unconfined":
                raise InvalidArgument(f"invalid --security-opt: \"{opt}\"")
            out.systempaths_unconfined = True
        elif key in ("label", "apparmor"):
            out.label.append(value)  # no SELinux/AppArmor on this engine: accepted, ignored
        else:
            raise InvalidArgument(f"Invalid --security-opt: \"{opt}\"")
    return out


# --- /etc files ----------------------------------------------------------------------------


def hosts_file(hostname: str, ip: str | None = None, extra_hosts: Iterable[str] = (),
               gateway: str | None = None) -> str:
    """The container's /etc/hosts as dockerd writes it (tab separated)."""
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "ff00::0\tip6-mcastprefix",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
    ]
    for entry in extra_hosts:
        name, sep, addr = entry.partition(":") if "=" not in entry else entry.partition("=")
        if not sep or not name or not addr:
            raise InvalidArgument(f"invalid IP address in add-host: \"{entry}\"")
        if addr == "host-gateway":
            if not gateway:
                raise InvalidArgument("unable to derive the IP value for host-gateway")
            addr = gateway
        addr = addr.strip("[]")
        lines.append(f"{addr}\t{name}")
    if ip:
        lines.append(f"{ip}\t{hostname}")
    return "\n".join(lines) + "\n"


_LOCAL_NS = re.compile(r"^\s*nameserver\s+(127\.\S+|::1)\s*$")


def resolv_conf(host_text: str, dns: Iterable[str] = (), search: Iterable[str] = (),
                options: Iterable[str] = ()) -> str:
    """The container's /etc/resolv.conf from the host's, minus localhost nameservers."""
    dns, search, options = list(dns), list(search), list(options)
    keep: list[str] = []
    servers: list[str] = []
    for line in host_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("nameserver"):
            if not _LOCAL_NS.match(stripped):
                servers.append(stripped.split()[1])
            continue
        if stripped.startswith(("search", "domain")) and search:
            continue
        if stripped.startswith("options") and options:
            continue
        keep.append(line)
    if dns:
        servers = dns
    if not servers:
        servers = ["8.8.8.8", "8.8.4.4"]
    out = [line for line in keep if line.strip()]
    if search:
        out.append("search " + " ".join(search))
    out += [f"nameserver {s}" for s in servers]
    if options:
        out.append("options " + " ".join(options))
    return "\n".join(out) + "\n"


# --- the spec ------------------------------------------------------------------------------


@dataclass
class SpecInputs:
    """Everything build_spec needs besides the create body; all resolved by the caller."""

    container_id: str
    config: dict[str, Any]  # merged Config
    host_config: dict[str, Any]
    hostname: str
    user: tuple[int, int, list[int]] = (0, 0, [0])
    etc_files: dict[str, str] = field(default_factory=dict)  # /etc/hosts -> host path
    init_path: str | None = None  # host path of docker-init (tini) for HostConfig.Init
    seccomp_profile: str | None = None  # JSON text of a `seccomp=<file>` profile
    cgroup_parent: str = "/dockyard"
    netns_path: str | None = None  # join this netns instead of a new one
    devices: list[ContainerDevice] = field(default_factory=list)  # HostConfig.Devices, read
    ns_joins: dict[str, str] = field(default_factory=dict)  # "ipc"/"pid" -> path to join
    shm_source: str | None = None  # host dir bound at /dev/shm (IpcMode host/shareable/container)
    arch: str | None = None
    kernel: str | None = None
    host_caps: list[str] | None = None  # the daemon's bounding set (for ALL / --privileged)


def default_spec(container_id: str, hostname: str = "") -> dict[str, Any]:
    """The OCI spec every container starts from (oci/defaults.go DefaultLinuxSpec)."""
    return {
        "ociVersion": "1.1.0",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": [],
            "env": [],
            "cwd": "/",
            "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
            "oomScoreAdj": 0,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": hostname or container_id[:12],
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["ro", "nosuid", "noexec", "nodev"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={DEFAULT_SHM_SIZE}"]},
        ],
        "linux": {
            "resources": {"devices": copy.deepcopy(_DEFAULT_DEVICE_RULES)},
            "namespaces": [{"type": t} for t in ("mount", "network", "uts", "pid", "ipc")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "sysctl": {},
        },
    }


def with_process(config: dict[str, Any], hostname: str) -> SpecOpt:
    """argv, env (+HOSTNAME, TERM, PATH), cwd and terminal from the merged Config."""
    def opt(spec: dict) -> None:
        proc = spec["process"]
        proc["args"] = command_of(config)
        env = [f"HOSTNAME={hostname}"] if not any(
            e.startswith("HOSTNAME=") for e in config.get("Env") or []) else []
        if config.get("Tty") and not any(e.startswith("TERM=") for e in config.get("Env") or []):
            env.append("TERM=xterm")
        env += [e for e in config.get("Env") or []]
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, DEFAULT_PATH)
        proc["env"] = env
        cwd = config.get("WorkingDir") or "/"
        if not cwd.startswith("/"):
            raise InvalidArgument(f"the working directory '{cwd}' is invalid, it needs to be an absolute path")
        proc["cwd"] = cwd
        proc["terminal"] = bool(config.get("Tty"))
    return opt


def with_user(uid: int, gid: int, additional: list[int]) -> SpecOpt:
    def opt(spec: dict) -> None:
        spec["process"]["user"] = {"uid": uid, "gid": gid, "additionalGids": list(additional)}
    return opt


def with_capabilities(caps: list[str]) -> SpecOpt:
    """bounding = effective = permitted; never inheritable or ambient (CVE-2022-24769)."""
    def opt(spec: dict) -> None:
        spec["process"]["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted")}
    return opt


def with_privileged() -> SpecOpt:
    """--privileged: no masked/readonly paths, rw /sys and cgroups, every device allowed."""
    def opt(spec: dict) -> None:
        linux = spec["linux"]
        linux["maskedPaths"] = []
        linux["readonlyPaths"] = []
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        for m in spec["mounts"]:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
    return opt


def with_system_paths_unconfined() -> SpecOpt:
    def opt(spec: dict) -> None:
        spec["linux"]["maskedPaths"] = []
        spec["linux"]["readonlyPaths"] = []
    return opt


def with_seccomp(profile: dict[str, Any] | None, caps: list[str], arch: str | None = None,
                 kernel: str | None = None) -> SpecOpt:
    """Docker's default profile (or a user's) filtered for caps/arch; None = unconfined."""
    def opt(spec: dict) -> None:
        if profile is None:
            spec["linux"].pop("seccomp", None)
            return
        spec["linux"]["seccomp"] = seccomp.to_oci(profile, caps=caps, arch=arch, kernel=kernel)
    return opt


def with_no_new_privileges(enabled: bool) -> SpecOpt:
    def opt(spec: dict) -> None:
        if enabled:
            spec["process"]["noNewPrivileges"] = True
    return opt


def with_hostname(hostname: str, domainname: str = "") -> SpecOpt:
    def opt(spec: dict) -> None:
        spec["hostname"] = hostname
        if domainname:
            spec["domainname"] = domainname
    return opt


def with_shm_size(size: int | None) -> SpecOpt:
    def opt(spec: dict) -> None:
        if not size:
            return
        if size < 0:
            raise InvalidArgument("SHM size can not be less than 0")
        for m in spec["mounts"]:
            if m["destination"] == "/dev/shm":
                m["options"] = [o for o in m["options"] if not o.startswith("size=")] + [f"size={size}"]
    return opt


def with_etc_files(files: dict[str, str]) -> SpecOpt:
    """Bind the container's own resolv.conf, hostname and hosts (container dir -> /etc)."""
    def opt(spec: dict) -> None:
        for dest in ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts"):
            if dest in files:
                spec["mounts"].append({"destination": dest, "type": "bind", "source": files[dest],
                                       "options": ["rbind", "rprivate"]})
    return opt


def _check_destination(dest: str) -> str:
    """A container path may not climb with `..` nor be `/` (moby: "destination can't be '/'")."""
    if ".." in dest.split("/"):
        raise InvalidArgument(f"invalid mount path: '{dest}' must not contain '..'")
    if not dest.strip("/"):
        raise InvalidArgument("invalid specification: destination can't be '/'")
    return dest


def split_bind(bind: str) -> dict[str, Any]:
    """`/host:/ctr[:ro|rw|z|Z|shared|slave|private|…]` -> an OCI bind mount (named volumes: 400)."""
    parts = bind.split(":")
    if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
        raise InvalidArgument(f"invalid volume specification: '{bind}'")
    src, dest = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 and parts[2] else []
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid volume specification: '{bind}': invalid mount config for "
                              "type \"bind\": invalid mount path: '{dest}' mount path must be absolute")
    _check_destination(dest)
    if not src.startswith("/"):
        raise InvalidArgument(f"invalid volume specification: '{bind}': named volumes are not "
                              "supported by this engine yet")
    opts = ["rbind"]
    prop = "rprivate"
    for mode in modes:
        if mode in ("ro", "rw"):
            opts.append(mode)
        elif mode in ("shared", "rshared", "slave", "rslave", "private", "rprivate"):
            prop = mode
        elif mode in ("z", "Z", "nocopy", "consistent", "cached", "delegated"):
            continue
        else:
            raise InvalidArgument(f"invalid mode: {mode}")
    return {"destination": dest, "type": "bind", "source": src, "options": opts + [prop]}


def _mount_from_api(m: dict[str, Any]) -> dict[str, Any]:
    kind = m.get("Type") or ""
    target = m.get("Target") or m.get("Destination") or ""
    if not target.startswith("/"):
        raise InvalidArgument(f"invalid mount config for type \"{kind}\": invalid mount path: "
                              f"'{target}' mount path must be absolute")
    _check_destination(target)
    ro = bool(m.get("ReadOnly"))
    if kind == "bind":
        src = m.get("Source") or ""
        if not src.startswith("/"):
            raise InvalidArgument(f"invalid mount config for type \"bind\": invalid mount path: "
                                  f"'{src}' mount path must be absolute")
        prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
        recursive = not (m.get("BindOptions") or {}).get("NonRecursive")
        opts = ["rbind" if recursive else "bind", "ro" if ro else "rw", prop]
        return {"destination": target, "type": "bind", "source": src, "options": opts}
    if kind == "tmpfs":
        topts = m.get("TmpfsOptions") or {}
        opts = ["nosuid", "nodev", "noexec"]
        if topts.get("SizeBytes"):
            opts.append(f"size={int(topts['SizeBytes'])}")
        if topts.get("Mode"):
            opts.append(f"mode={int(topts['Mode']):o}")
        if ro:
            opts.append("ro")
        return {"destination": target, "type": "tmpfs", "source": "tmpfs", "options": opts}
    raise InvalidArgument(f"mount type \"{kind}\" is not supported by this engine "
                          "(bind and tmpfs are)")


def with_user_mounts(binds: Iterable[str] | None, mounts: Iterable[dict] | None,
                     tmpfs: dict[str, str] | None) -> SpecOpt:
    """Binds, Mounts (bind, tmpfs) and Tmpfs, sorted by destination depth; they replace
    a default mount at the same destination (e.g. `--tmpfs /dev/shm`)."""
    def opt(spec: dict) -> None:
        extra: list[dict[str, Any]] = []
        for b in binds or []:
            extra.append(split_bind(b))
        for m in mounts or []:
            extra.append(_mount_from_api(m))
        for dest, options in (tmpfs or {}).items():
            if not dest.startswith("/"):
                raise InvalidArgument(f"invalid mount path: '{dest}' mount path must be absolute")
            _check_destination(dest)
            opts = ["noexec", "nosuid", "nodev"]
            for o in [o for o in (options or "").split(",") if o]:
                opts = [x for x in opts if x != {"exec": "noexec", "suid": "nosuid",
                                                 "dev": "nodev"}.get(o)]
                if o not in ("exec", "suid", "dev"):
                    opts.append(o)
            extra.append({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts})
        seen = set()
        for m in extra:
            dest = m["destination"].rstrip("/") or "/"
            if dest in seen:
                raise InvalidArgument(f"Duplicate mount point: {dest}")
            seen.add(dest)
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] not in seen]
        extra.sort(key=lambda m: m["destination"].rstrip("/").count("/"))
        spec["mounts"] += extra
    return opt


def with_readonly_rootfs(readonly: bool) -> SpecOpt:
    def opt(spec: dict) -> None:
        spec["root"]["readonly"] = bool(readonly)
    return opt


def with_resources(hc: dict[str, Any]) -> SpecOpt:
    """Memory, MemorySwap, NanoCpus, CpuShares, CpuPeriod/Quota, CpusetCpus/Mems, PidsLimit,
    BlkioWeight, OomKillDisable, MemoryReservation, MemorySwappiness."""
    def opt(spec: dict) -> None:
        res = spec["linux"]["resources"]
        mem: dict[str, Any] = {}
        memory = int(hc.get("Memory") or 0)
        swap = int(hc.get("MemorySwap") or 0)
        if memory:
            if memory < 6 * 1024 * 1024:
                raise InvalidArgument("Minimum memory limit allowed is 6MB")
            mem["limit"] = memory
            # docker: swap unset => twice the memory (swap = memory), -1 => unlimited
            mem["swap"] = swap if swap else memory * 2
        elif swap > 0:
            raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit")
        if swap and swap != -1 and memory and swap < memory:
            raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, "
                                  "see usage")
        if hc.get("MemoryReservation"):
            mem["reservation"] = int(hc["MemoryReservation"])
        swappiness = hc.get("MemorySwappiness")
        if swappiness is not None and swappiness != -1:
            if not 0 <= int(swappiness) <= 100:
                raise InvalidArgument(f"Invalid value: {swappiness}, valid memory swappiness "
                                      "range is 0-100")
            mem["swappiness"] = int(swappiness)
        if hc.get("OomKillDisable"):
            mem["disableOOMKiller"] = True
        if mem:
            res["memory"] = mem
        cpu: dict[str, Any] = {}
        nano = int(hc.get("NanoCpus") or 0)
        if nano:
            if hc.get("CpuQuota") or hc.get("CpuPeriod"):
                raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both "
                                      "be set")
            cpu["period"] = 100000
            cpu["quota"] = nano * 100000 // 1_000_000_000
        if hc.get("CpuShares"):
            cpu["shares"] = int(hc["CpuShares"])
        if hc.get("CpuPeriod"):
            cpu["period"] = int(hc["CpuPeriod"])
        if hc.get("CpuQuota"):
            quota = int(hc["CpuQuota"])
            if 0 < quota < 1000:
                raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
            cpu["quota"] = quota
        if hc.get("CpusetCpus"):
            if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", hc["CpusetCpus"]):
                raise InvalidArgument(f"Invalid value {hc['CpusetCpus']} for cpuset cpus")
            cpu["cpus"] = hc["CpusetCpus"]
        if hc.get("CpusetMems"):
            cpu["mems"] = hc["CpusetMems"]
        if cpu:
            res["cpu"] = cpu
        pids = hc.get("PidsLimit")
        if pids:
            res["pids"] = {"limit": int(pids) if int(pids) > 0 else -1}
        if hc.get("BlkioWeight"):
            res["blockIO"] = {"weight": int(hc["BlkioWeight"])}
    return opt


def with_ulimits(ulimits: Iterable[dict[str, Any]] | None) -> SpecOpt:
    def opt(spec: dict) -> None:
        out = []
        for u in ulimits or []:
            name = str(u.get("Name", "")).lower()
            if name not in _RLIMITS:
                raise InvalidArgument(f"invalid ulimit type: {name}")
            soft, hard = int(u.get("Soft", 0)), int(u.get("Hard", 0))
            if soft > hard:
                raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard "
                                      f"limit: {soft} > {hard}")
            out.append({"type": f"RLIMIT_{name.upper()}", "soft": soft, "hard": hard})
        if out:
            spec["process"]["rlimits"] = out
    return opt


def with_oom_score_adj(value: int | None) -> SpecOpt:
    def opt(spec: dict) -> None:
        v = int(value or 0)
        if not -1000 <= v <= 1000:
            raise InvalidArgument(f"Invalid value {v}, range for oom score adj is [-1000, 1000]")
        spec["process"]["oomScoreAdj"] = v
    return opt


def with_sysctls(sysctls: dict[str, str] | None, host_network: bool = False) -> SpecOpt:
    """dockerd's two network sysctls (not with --net=host) plus HostConfig.Sysctls."""
    def opt(spec: dict) -> None:
        sc = spec["linux"].setdefault("sysctl", {})
        if not host_network:
            sc["net.ipv4.ip_unprivileged_port_start"] = "0"
            sc["net.ipv4.ping_group_range"] = "0 2147483647"
        for k, v in (sysctls or {}).items():
            sc[k] = str(v)
    return opt


def with_devices(devices: Iterable[ContainerDevice] | None,
                 rules: Iterable[str] | None) -> SpecOpt:
    """`--device` nodes and `--device-cgroup-rule` lines (moby WithDevices).

    Each device (read from the host by `apid/devices.py`) becomes a `linux.devices`
    entry with the host node's type, numbers, mode and owner, plus a cgroup allow
    rule with exactly its CgroupPermissions, appended after dockerd's default
    rules; the cgroup rules follow. A fifo gets its node but no rule (the device
    cgroup knows only block and char devices).
    """
    def opt(spec: dict) -> None:
        nodes = spec["linux"].setdefault("devices", [])
        allow = spec["linux"]["resources"]["devices"]
        for d in devices or []:
            nodes.append({"path": d.path, "type": d.type, "major": d.major, "minor": d.minor,
                          "fileMode": d.file_mode, "uid": d.uid, "gid": d.gid})
            if d.type in ("c", "b"):
                allow.append({"allow": True, "type": d.type, "major": d.major,
                              "minor": d.minor, "access": d.access})
        if not nodes:
            del spec["linux"]["devices"]
        for rule in rules or []:
            m = re.fullmatch(r"([abc]) (\d+|\*):(\d+|\*) ([rwm]{1,3})", str(rule).strip())
            if not m:
                raise InvalidArgument(f"invalid device cgroup rule format: '{rule}'")
            entry: dict[str, Any] = {"allow": True, "type": m.group(1), "access": m.group(4)}
            if m.group(2) != "*":
                entry["major"] = int(m.group(2))
            if m.group(3) != "*":
                entry["minor"] = int(m.group(3))
            allow.append(entry)
    return opt


def _go_list(value: Any) -> str:
    """Go's %v of a [][]string: [[gpu utility] [compute]]."""
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_go_list(v) for v in value) + "]"
    return str(value)


def with_device_requests(requests: Iterable[dict[str, Any]] | None) -> SpecOpt:
    """`--gpus` / HostConfig.DeviceRequests: this engine registers no device driver
    (no NVIDIA or CDI hooks), so any request fails as dockerd's does without one: a 500
    `could not select device driver "<driver>" with capabilities: [[gpu]]`."""
    def opt(spec: dict) -> None:
        for req in requests or []:
            req = req if isinstance(req, dict) else {}
            raise EngineError(f"could not select device driver \"{req.get('Driver') or ''}\" "
                              f"with capabilities: {_go_list(req.get('Capabilities') or [])}")
    return opt


def with_init(init_path: str | None) -> SpecOpt:
    """HostConfig.Init: bind docker-init (tini) at /sbin/docker-init and run the command
    under it (`docker-init -- cmd...`), as dockerd does."""
    def opt(spec: dict) -> None:
        if not init_path:
            return
        spec["mounts"].append({"destination": "/sbin/docker-init", "type": "bind",
                               "source": init_path, "options": ["bind", "ro"]})
        spec["process"]["args"] = ["/sbin/docker-init", "--"] + spec["process"]["args"]
    return opt


def with_cgroups_path(parent: str, container_id: str) -> SpecOpt:
    def opt(spec: dict) -> None:
        spec["linux"]["cgroupsPath"] = f"{parent.rstrip('/')}/{container_id}"
    return opt


def container_mode(mode: str) -> str | None:
    """The name or id of `container:<name|id>`, None for any other mode."""
    kind, sep, ref = (mode or "").partition(":")
    return ref if sep and kind == "container" else None


def check_namespace_modes(hostname: str | None, host_config: dict[str, Any]) -> None:
    """IpcMode, PidMode and UTSMode as moby's Valid() methods accept them (400 otherwise).

    Raises:
        InvalidArgument: "invalid IPC mode: x", "invalid PID mode: x", "invalid UTS mode: x",
            or "conflicting options: hostname and the UTS mode" (a hostname with --uts host).
    """
    modes = {key: host_config.get(key) or "" for key in ("IpcMode", "PidMode", "UTSMode")}
    for key, label in (("IpcMode", "IPC"), ("PidMode", "PID"), ("UTSMode", "UTS")):
        if not isinstance(modes[key], str):
            raise InvalidArgument(f"invalid {label} mode: {modes[key]}")
    ipc, pid, uts = modes["IpcMode"], modes["PidMode"], modes["UTSMode"]
    if ipc not in ("", "none", "private", "host", "shareable") and container_mode(ipc) is None:
        raise InvalidArgument(f"invalid IPC mode: {ipc}")
    if pid not in ("", "host") and not container_mode(pid):
        raise InvalidArgument(f"invalid PID mode: {pid}")
    if uts not in ("", "host"):
        raise InvalidArgument(f"invalid UTS mode: {uts}")
    if uts == "host" and hostname:
        raise InvalidArgument("conflicting options: hostname and the UTS mode")


def with_namespaces(netns_path: str | None, host_config: dict[str, Any],
                    joins: dict[str, str] | None = None) -> SpecOpt:
    """Private mount/uts/pid/ipc/net (moby WithNamespaces); `host` modes share the host's
    (and --uts host leaves the hostname alone); `container:` modes join by path: the
    network one at `netns_path`, ipc/pid at `joins[kind]` (resolved by the daemon)."""
    joins = joins or {}

    def opt(spec: dict) -> None:
        ns = spec["linux"]["namespaces"]
        modes = {"network": host_config.get("NetworkMode") or "default",
                 "pid": host_config.get("PidMode") or "", "ipc": host_config.get("IpcMode") or "",
                 "uts": host_config.get("UTSMode") or ""}
        for kind, mode in modes.items():
            if mode == "host":
                ns[:] = [n for n in ns if n["type"] != kind]
                if kind == "uts":
                    spec.pop("hostname", None)
                    spec.pop("domainname", None)
            elif container_mode(mode) is not None and kind != "network":
                if kind not in joins:
                    raise InvalidArgument(f"{kind} mode {mode!r}: the namespace to join is "
                                          "not known")
                for n in ns:
                    if n["type"] == kind:
                        n["path"] = joins[kind]
            elif container_mode(mode) is not None and not netns_path:
                raise InvalidArgument(f"{kind} mode {mode!r} needs a network namespace path")
        if netns_path and any(n["type"] == "network" for n in ns):
            for n in ns:
                if n["type"] == "network":
                    n["path"] = netns_path
        if (host_config.get("CgroupnsMode") or "") == "private":
            ns.append({"type": "cgroup"})
    return opt


def with_ipc_mounts(ipc_mode: str, shm_source: str | None) -> SpecOpt:
    """/dev/shm by IpcMode (moby setupIPCDirs + withMounts): private keeps the spec's own
    tmpfs, none drops it, host/shareable/container: bind `shm_source` (the host's
    /dev/shm, or the donor's host-side shm tmpfs, which the daemon mounts)."""
    def opt(spec: dict) -> None:
        mode = ipc_mode or "private"
        if mode == "private":
            return
        keep = [m for m in spec["mounts"] if m["destination"] != "/dev/shm"]
        if mode != "none":
            if not shm_source:
                raise InvalidArgument(f"IPC mode {mode!r}: no /dev/shm source")
            keep.append({"destination": "/dev/shm", "type": "bind", "source": shm_source,
                         "options": ["rbind", "rprivate"]})
        spec["mounts"] = keep
    return opt


def build_spec(inputs: SpecInputs) -> dict[str, Any]:
    """The OCI spec for one container, dockerd's defaults plus the create body's options.

    Raises:
        InvalidArgument: any invalid field, with Docker's message where it has one.
    """
    cfg, hc = inputs.config, inputs.host_config
    sec = parse_security_opts(hc.get("SecurityOpt"))
    privileged = bool(hc.get("Privileged"))
    caps = effective_caps(hc.get("CapAdd"), hc.get("CapDrop"), privileged, inputs.host_caps)
    if privileged or sec.seccomp == "unconfined":
        profile = None
    elif sec.seccomp == "default":
        profile = seccomp.default_profile()
    else:
        profile = seccomp.load_profile(inputs.seccomp_profile or sec.seccomp)
    spec = default_spec(inputs.container_id, inputs.hostname)
    host_net = (hc.get("NetworkMode") or "") == "host"
    opts: list[SpecOpt] = [
        with_process(cfg, inputs.hostname),
        with_user(*inputs.user),
        with_hostname(inputs.hostname, cfg.get("Domainname") or ""),
        with_capabilities(caps),
        with_shm_size(hc.get("ShmSize")),
        with_ipc_mounts(hc.get("IpcMode") or "", inputs.shm_source),
        with_etc_files(inputs.etc_files),
        with_user_mounts(hc.get("Binds"), hc.get("Mounts"), hc.get("Tmpfs")),
        with_readonly_rootfs(hc.get("ReadonlyRootfs", False)),
        with_resources(hc),
        with_ulimits(hc.get("Ulimits")),
        with_oom_score_adj(hc.get("OomScoreAdj")),
        with_sysctls(hc.get("Sysctls"), host_net),
        with_devices(inputs.devices, hc.get("DeviceCgroupRules")),
        with_device_requests(hc.get("DeviceRequests")),
        # docker-init only as pid 1 of a pid namespace of the container's own
        with_init(inputs.init_path if hc.get("Init") and not hc.get("PidMode") else None),
        with_cgroups_path(hc.get("CgroupParent") or inputs.cgroup_parent, inputs.container_id),
        with_namespaces(inputs.netns_path, hc, inputs.ns_joins),
        with_seccomp(profile, caps, inputs.arch, inputs.kernel),
        with_no_new_privileges(sec.no_new_privileges),
    ]
    if privileged:
        opts.append(with_privileged())
    elif sec.systempaths_unconfined:
        opts.append(with_system_paths_unconfined())
    for opt in opts:
        opt(spec)
    return spec


def healthcheck_command(test: list[str], shell: list[str] | None = None) -> list[str] | None:
    """`["CMD", ...]` / `["CMD-SHELL", "cmd"]` -> argv; None for NONE or empty."""
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return list(test[1:])
    if test[0] == "CMD-SHELL":
        return list(shell or ["/bin/sh", "-c"]) + [" ".join(test[1:])]
    return ["/bin/sh", "-c", shlex.join(test)]
