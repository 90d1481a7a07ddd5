"""`run`/`create` flags and the container-create body they become (pure, no I/O but env files).

Owns: docker's flag set for creating a container, the parsers for its value
syntaxes (sizes "512m", durations "1m30s", ulimits "nofile=1024:2048",
--mount key=value lists, -p specs, detach keys), and the JSON body of
`POST /containers/create` as the docker CLI builds it (docker-api-flow.md §8).
Must not: talk to the daemon or print.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from dockyard.client.context import UsageError  # defined there so verbs need not import this

__all__ = ["UsageError", "add_create_flags", "build_create", "parse_size", "parse_duration",
           "parse_ulimit", "parse_mount", "parse_publish", "parse_expose", "parse_device",
           "parse_network", "network_settings", "parse_port_range", "parse_detach_keys",
           "parse_env_file", "parse_restart", "split_repo_tag"]



_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
               "p": 1 << 50}


def parse_size(value: str, flag: str = "size") -> int:
    """docker's RAMInBytes: "512m", "1g", "1024", "64MB" (binary multiples)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtpb]?)(?:i?b)?\s*", value, re.I)
    if not m:
        raise UsageError(f"invalid {flag} {value!r}: use a number with an optional unit "
                         "(b, k, m, g), e.g. 512m")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


_DUR_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
              "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_duration(value: str, flag: str = "duration") -> int:
    """Go's time.ParseDuration ("30s", "1m30s", "500ms") -> nanoseconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value)
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        if value.strip() == "0":
            return 0
        raise UsageError(f"invalid {flag} {value!r}: use a duration like 30s, 1m30s or 500ms")
    return int(sum(float(n) * _DUR_UNITS[u] for n, u in parts))


def parse_ulimit(value: str) -> dict[str, Any]:
    """"nofile=1024:2048" or "nproc=512" -> {"Name","Soft","Hard"}."""
    m = re.fullmatch(r"([a-z]+)=(-?\d+)(?::(-?\d+))?", value)
    if not m:
        raise UsageError(f"invalid ulimit {value!r}: use NAME=SOFT[:HARD], e.g. nofile=1024:2048")
    soft = int(m.group(2))
    hard = int(m.group(3)) if m.group(3) is not None else soft
    if soft > hard and hard != -1:
        raise UsageError(f"invalid ulimit {value!r}: soft limit {soft} exceeds hard limit {hard}")
    return {"Name": m.group(1), "Soft": soft, "Hard": hard}


def parse_restart(value: str) -> dict[str, Any]:
    """"no", "always", "unless-stopped", "on-failure[:N]" -> RestartPolicy."""
    name, _, count = value.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure", ""):
        raise UsageError(f"invalid restart policy {value!r}: use no, always, unless-stopped "
                         "or on-failure[:max-retries]")
    if count and name != "on-failure":
        raise UsageError(f"invalid restart policy {value!r}: only on-failure takes a "
                         "maximum retry count")
    try:
        retries = int(count) if count else 0
    except ValueError as err:
        raise UsageError(f"invalid restart policy {value!r}: maximum retry count must be "
                         "an integer") from err
    return {"Name": name or "no", "MaximumRetryCount": retries}


def parse_mount(value: str) -> dict[str, Any]:
    """--mount type=bind,source=/a,target=/b,readonly -> a HostConfig.Mounts entry."""
    mount: dict[str, Any] = {"Type": "volume"}
    for field in value.split(","):
        key, eq, val = field.partition("=")
        key = key.strip().lower()
        if key in ("type",):
            mount["Type"] = val
        elif key in ("source", "src"):
            mount["Source"] = val
        elif key in ("target", "destination", "dst"):
            mount["Target"] = val
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = (not eq) or val.lower() in ("1", "true", "yes")
        elif key == "bind-propagation":
            mount.setdefault("BindOptions", {})["Propagation"] = val
        elif key == "tmpfs-size":
            mount.setdefault("TmpfsOptions", {})["SizeBytes"] = parse_size(val, "tmpfs-size")
        elif key == "tmpfs-mode":
            mount.setdefault("TmpfsOptions", {})["Mode"] = int(val, 8)
        elif key == "volume-nocopy":
            mount.setdefault("VolumeOptions", {})["NoCopy"] = True
        elif key == "consistency":
            mount["Consistency"] = val
        else:
            raise UsageError(f"invalid --mount field {key!r} in {value!r}")
    if "Target" not in mount:
        raise UsageError(f"invalid --mount {value!r}: target is required")
    if mount["Type"] not in ("bind", "volume", "tmpfs"):
        raise UsageError(f"invalid --mount type {mount['Type']!r}: use bind, volume or tmpfs")
    if mount["Type"] == "bind" and not mount.get("Source"):
        raise UsageError(f"invalid --mount {value!r}: a bind mount needs source=")
    return mount


def parse_port_range(ports: str) -> tuple[int, int]:
    """"8000" -> (8000, 8000); "8000-8010" -> (8000, 8010) (go-connections' ParsePortRange).

    Raises:
        ValueError: not a port number or range (the caller words the message).
    """
    if not ports:
        raise ValueError("empty string specified for ports")
    lo, sep, hi = ports.partition("-")
    start = _uint16(lo)
    end = _uint16(hi.split("-")[0]) if sep else start
    if end < start:
        raise ValueError(f"invalid range specified for port: {ports}")
    return start, end


def _uint16(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"strconv.ParseUint: parsing {text!r}: invalid syntax")
    return int(text)


def split_proto_port(raw: str) -> tuple[str, str]:
    """"80/udp" -> ("udp", "80"); "80" -> ("tcp", "80"); "" -> ("", "") (nat.SplitProtoPort)."""
    parts = raw.split("/")
    if not raw or not parts[0]:
        return "", ""
    if len(parts) == 1 or not parts[1]:
        return "tcp", parts[0]
    return parts[1], parts[0]


def _valid_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return "%" not in text


def _long_publish(value: str) -> str:
    """-p mode=host,target=80,published=8080,protocol=udp -> "8080:80/udp" (docker's
    convertToStandardNotation)."""
    params = {"protocol": "tcp"}
    for param in value.split(","):
        key, eq, val = param.partition("=")
        if not eq or not key:
            raise UsageError(f"invalid publish opts format (should be name=value but got "
                             f"'{param}')")
        params[key] = val
    return f"{params.get('published', '')}:{params.get('target', '')}/{params['protocol']}"


def parse_publish(value: str) -> list[tuple[str, dict[str, str]]]:
    """One -p value -> [("80/tcp", {"HostIp","HostPort"}), ...] as docker's nat.ParsePortSpec.

    Accepts "[ip:][hostPort:]containerPort[/proto]", port ranges ("8000-8010:80-90",
    one container port with a host range "8000-8010:80") and the long syntax
    "target=80,published=8080,protocol=udp".
    """
    raw = _long_publish(value) if "=" in value else value
    parts = raw.split(":")
    if len(parts) == 1:
        ip, host, ctr = "", "", parts[0]
    elif len(parts) == 2:
        ip, host, ctr = "", parts[0], parts[1]
    else:
        ip, host, ctr = ":".join(parts[:-2]), parts[-2], parts[-1]
    proto, ctr = split_proto_port(ctr)
    if ip.startswith("["):
        if not ip.endswith("]"):
            raise UsageError(f"invalid IP address {ip}: missing ']' in address")
        ip = ip[1:-1]
    if ip and not _valid_ip(ip):
        raise UsageError(f"invalid IP address: {ip}")
    if not ctr:
        raise UsageError(f"no port specified: {raw}<empty>")
    try:
        start, end = parse_port_range(ctr)
    except ValueError as err:
        raise UsageError(f"invalid containerPort: {ctr}") from err
    host_start = host_end = 0
    if host:
        try:
            host_start, host_end = parse_port_range(host)
        except ValueError as err:
            raise UsageError(f"invalid hostPort: {host}") from err
        if end - start != host_end - host_start and end != start:
            raise UsageError(f"invalid ranges specified for container and host Ports: {ctr} "
                             f"and {host}")
    proto = proto.lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise UsageError(f"invalid proto: {proto}")
    count = end - start + 1
    out = []
    for i in range(count):
        host_port = ""
        if host:
            host_port = str(host_start + i)
            if count == 1 and host_start != host_end:
                host_port += f"-{host_end}"  # one container port: a range to pick from
        out.append((f"{start + i}/{proto}", {"HostIp": ip, "HostPort": host_port}))
    return out


def parse_expose(value: str) -> list[str]:
    """--expose 80, 80/udp, 8000-8010[/proto] -> ["80/tcp", ...] (docker's --expose rules)."""
    if ":" in value:
        raise UsageError(f"invalid port format for --expose: {value}")
    proto, port = split_proto_port(value)
    try:
        start, end = parse_port_range(port)
    except ValueError as err:
        raise UsageError(f"invalid range format for --expose: {value}, error: {err}") from err
    if proto.lower() not in ("tcp", "udp", "sctp"):
        raise UsageError(f"invalid proto: {proto}")
    return [f"{p}/{proto.lower()}" for p in range(start, end + 1)]


def _valid_device_mode(mode: str) -> bool:
    return bool(mode) and len(set(mode)) == len(mode) and set(mode) <= set("rwm")


def _clean(path: str) -> str:
    import posixpath

    return posixpath.normpath(path) if path else "."


def parse_device(value: str) -> dict[str, str]:
    """--device host[:container][:perms] -> a HostConfig.Devices entry (docker's
    validateLinuxPath + parseLinuxDevice: same messages, container path cleaned)."""
    if value.count(":") > 2 or not value.split(":")[0]:
        raise UsageError(f"bad format for path: {value}")
    split = value.split(":")
    perms = "rwm"
    if len(split) == 1:
        host = ctr = _clean(split[0])
        check = split[0]
    elif len(split) == 2:
        host = split[0]
        if _valid_device_mode(split[1]):
            check, ctr, perms = split[0], _clean(split[0]), split[1]
            host = ctr
        else:
            check = split[1]
            ctr = _clean(split[1])
    else:
        host, check, perms = split
        ctr = check
        if not _valid_device_mode(perms):
            raise UsageError(f"bad mode specified: {perms}")
    if not check.startswith("/"):
        raise UsageError(f"{check} is not an absolute path")
    return {"PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": perms}


_CGROUP_RULE = re.compile(r"[acb] ([0-9]+|\*):([0-9]+|\*) [rwm]{1,3}")


def check_device_cgroup_rule(value: str) -> str:
    """--device-cgroup-rule "c 1:3 rwm" (docker's regular expression, checked at parse)."""
    if not _CGROUP_RULE.fullmatch(value):
        raise UsageError(f"invalid argument \"{value}\" for \"--device-cgroup-rule\" flag: "
                         f"invalid device cgroup format '{value}'")
    return value


def check_dns(value: str) -> str:
    """--dns: an IP address, normalised (docker's ValidateIPAddress)."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise UsageError(f"invalid argument \"{value}\" for \"--dns\" flag: IP address is not "
                         f"correctly formatted: {value}") from None


_DOMAIN = re.compile(r"^((?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])"
                     r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9]))*)\.?\s*$")


def check_dns_search(value: str) -> str:
    """--dns-search: a domain or "." (docker's ValidateDNSSearch)."""
    val = value.strip(" ")
    if val == ".":
        return val
    m = _DOMAIN.match(val)
    if not re.search(r"[a-zA-Z]", val) or not m or len(m.group(1)) >= 255:
        raise UsageError(f"invalid argument \"{value}\" for \"--dns-search\" flag: {val} is "
                         "not a valid domain")
    return m.group(1)


_NETWORK_KEYS = ("name", "alias", "ip", "ip6", "mac-address", "link-local-ip", "driver-opt",
                 "gw-priority")


def parse_network(value: str) -> dict[str, Any]:
    """--network NAME or the advanced "name=n,alias=a,ip=1.2.3.4,driver-opt=k=v" form."""
    if "=" not in value and "," not in value:
        return {"Target": value}
    att: dict[str, Any] = {"Target": ""}
    for field in value.split(","):
        key, eq, val = field.partition("=")
        key = key.strip().lower()
        if not eq or key not in _NETWORK_KEYS:
            raise UsageError(f"invalid argument \"{value}\" for \"--network\" flag: invalid "
                             f"field key {key}" if eq else
                             f"invalid argument \"{value}\" for \"--network\" flag: invalid "
                             f"field '{field}' must be a key=value pair")
        if key == "name":
            att["Target"] = val
        elif key == "alias":
            att.setdefault("Aliases", []).append(val)
        elif key == "ip":
            att["IPv4Address"] = val
        elif key == "ip6":
            att["IPv6Address"] = val
        elif key == "mac-address":
            att["MacAddress"] = val
        elif key == "link-local-ip":
            att.setdefault("LinkLocalIPs", []).append(val)
        elif key == "gw-priority":
            try:
                att["GwPriority"] = int(val)
            except ValueError:
                raise UsageError(f"invalid argument \"{value}\" for \"--network\" flag: "
                                 f"invalid gw-priority {val!r}") from None
        else:
            k, eq2, v = val.partition("=")
            if not eq2:
                raise UsageError(f"invalid argument \"{value}\" for \"--network\" flag: "
                                 f"invalid key value pair format in driver options")
            att.setdefault("DriverOpts", {})[k.strip()] = v.strip()
    if not att["Target"]:
        raise UsageError(f"invalid argument \"{value}\" for \"--network\" flag: network "
                         "name/id is not specified")
    return att


def _user_defined(mode: str) -> bool:
    return mode not in ("default", "bridge", "host", "none") and not mode.startswith(
        "container:")


_MAC = re.compile(r"(?:[0-9A-Fa-f]{2}([:-]))(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}|"
                  r"(?:[0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}")


def network_settings(networks: list[str], aliases: list[str], ip: str | None,
                     ip6: str | None = None, mac: str | None = None
                     ) -> tuple[str, dict[str, dict]]:
    """--network (repeated), --network-alias, --ip, --ip6, --mac-address -> (NetworkMode,
    EndpointsConfig), as docker's parseNetworkOpts: the plain flags apply to the first
    network; a single network with no options sends no endpoint; the default network
    is "default"."""
    if mac and not _MAC.fullmatch(mac):
        raise UsageError(f"{mac} is not a valid mac address")
    atts = [parse_network(n) for n in networks] or [{"Target": "default"}]
    first = atts[0]
    if mac:
        if first.get("MacAddress"):
            raise UsageError("conflicting options: cannot specify both --mac-address and "
                             "per-network MAC address")
        first["MacAddress"] = mac
    if aliases:
        if first.get("Aliases"):
            raise UsageError("conflicting options: cannot specify both --network-alias and "
                             "per-network alias")
        first["Aliases"] = list(aliases)
    if ip:
        if first.get("IPv4Address"):
            raise UsageError("conflicting options: cannot specify both --ip and per-network "
                             "IPv4 address")
        first["IPv4Address"] = ip
    if ip6:
        if first.get("IPv6Address"):
            raise UsageError("conflicting options: cannot specify both --ip6 and per-network "
                             "IPv6 address")
        first["IPv6Address"] = ip6
    endpoints: dict[str, dict] = {}
    kinds = set()
    for i, att in enumerate(atts):
        target = att["Target"]
        if not target.strip():
            raise UsageError("no name set for network")
        if networks:
            kinds.add(_user_defined(target))
        if not _user_defined(target) and att.get("Aliases"):
            raise UsageError("network-scoped aliases are only supported for user-defined "
                             "networks")
        ep: dict[str, Any] = {}
        if att.get("Aliases"):
            ep["Aliases"] = att["Aliases"]
        if att.get("DriverOpts"):
            ep["DriverOpts"] = att["DriverOpts"]
        if att.get("IPv4Address") or att.get("IPv6Address") or att.get("LinkLocalIPs"):
            ep["IPAMConfig"] = {k: att[k] for k in ("IPv4Address", "IPv6Address",
                                                    "LinkLocalIPs") if att.get(k)}
        if att.get("MacAddress"):
            ep["MacAddress"] = att["MacAddress"]
        if att.get("GwPriority"):
            ep["GwPriority"] = att["GwPriority"]
        if target in endpoints:
            raise UsageError(f"network \"{target}\" is specified multiple times")
        if networks and i == 0 and len(atts) == 1 and not ep:
            continue  # docker sends no endpoint for one plain --network
        endpoints[target] = ep
    if len(kinds) > 1:
        raise UsageError("conflicting options: cannot attach both user-defined and "
                         "non-user-defined network-modes")
    return first["Target"], endpoints


def parse_detach_keys(value: str) -> bytes:
    """"ctrl-p,ctrl-q" -> b"\\x10\\x11" (docker's term.ToBytes)."""
    out = bytearray()
    for key in value.split(","):
        key = key.strip()
        if key.startswith("ctrl-") and len(key) == 6:
            c = key[5].lower()
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[c])
            else:
                raise UsageError(f"invalid detach key {key!r}")
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise UsageError(f"invalid detach keys {value!r}: use e.g. ctrl-p,ctrl-q or a,b")
    return bytes(out)


def parse_env_file(path: str) -> list[str]:
    """KEY=VALUE lines (KEY alone takes the value from this environment; # comments)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise UsageError(f"open {path}: {err.strerror}") from err
    env = []
    for n, line in enumerate(lines, 1):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, eq, _ = line.partition("=")
        if not key or " " in key.strip() or "\t" in key:
            raise UsageError(f"{path}:{n}: variable {key!r} contains whitespaces")
        if eq:
            env.append(line)
        elif key in os.environ:
            env.append(f"{key}={os.environ[key]}")
    return env


def _env_value(item: str) -> str | None:
    key, eq, _ = item.partition("=")
    if eq:
        return item
    if not key:
        raise UsageError("invalid environment variable: =")
    return f"{key}={os.environ[key]}" if key in os.environ else None


def split_repo_tag(ref: str) -> tuple[str, str]:
    """"reg:5000/a/b:v1" -> ("reg:5000/a/b", "v1"); digests stay in the tag; default latest."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, "latest"


def add_create_flags(p: argparse.ArgumentParser, run: bool) -> None:
    """Add docker's create/run flags to p (run adds -d, --rm, --sig-proxy, --detach-keys)."""
    a = p.add_argument
    if run:
        a("-d", "--detach", action="store_true", help="Run container in background and print "
                                                       "container ID")
        a("--sig-proxy", default="true", metavar="bool", help="Proxy received signals to the "
                                                              "process (default true)")
        a("--detach-keys", help="Override the key sequence for detaching a container")
    a("--rm", action="store_true", help="Automatically remove the container when it exits")
    a("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    a("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    a("-a", "--attach", action="append", default=[], choices=["stdin", "stdout", "stderr"],
      help="Attach to STDIN, STDOUT or STDERR")
    a("--name", help="Assign a name to the container")
    a("-e", "--env", action="append", default=[], help="Set environment variables")
    a("--env-file", action="append", default=[], help="Read in a file of environment variables")
    a("-v", "--volume", action="append", default=[], help="Bind mount a volume")
    a("--mount", action="append", default=[], help="Attach a filesystem mount to the container")
    a("--tmpfs", action="append", default=[], help="Mount a tmpfs directory")
    a("--volumes-from", action="append", default=[], help="Mount volumes from the specified "
                                                          "container(s)")
    a("-w", "--workdir", help="Working directory inside the container")
    a("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
    a("--group-add", action="append", default=[], help="Add additional groups to join")
    a("-h", "--hostname", help="Container host name")
    a("--domainname", help="Container NIS domain name")
    a("--entrypoint", help="Overwrite the default ENTRYPOINT of the image")
    a("-l", "--label", action="append", default=[], help="Set meta data on a container")
    a("--label-file", action="append", default=[], help="Read in a line delimited file of labels")
    a("--read-only", action="store_true", help="Mount the container's root filesystem as "
                                               "read only")
    a("-m", "--memory", help="Memory limit")
    a("--memory-swap", help="Swap limit equal to memory plus swap: '-1' to enable "
                            "unlimited swap")
    a("--memory-reservation", help="Memory soft limit")
    a("--memory-swappiness", type=int, help="Tune container memory swappiness (0 to 100)")
    a("--oom-kill-disable", action="store_true", help="Disable OOM Killer")
    a("--oom-score-adj", type=int, help="Tune host's OOM preferences (-1000 to 1000)")
    a("--cpus", help="Number of CPUs")
    a("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    a("--cpu-period", type=int, help="Limit CPU CFS (Completely Fair Scheduler) period")
    a("--cpu-quota", type=int, help="Limit CPU CFS (Completely Fair Scheduler) quota")
    a("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    a("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)")
    a("--blkio-weight", type=int, help="Block IO (relative weight), between 10 and 1000")
    a("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)")
    a("--ulimit", action="append", default=[], help="Ulimit options")
    a("--shm-size", help="Size of /dev/shm")
    a("--cap-add", action="append", default=[], help="Add Linux capabilities")
    a("--cap-drop", action="append", default=[], help="Drop Linux capabilities")
    a("--privileged", action="store_true", help="Give extended privileges to this container")
    a("--security-opt", action="append", default=[], help="Security Options")
    a("--device", action="append", default=[],
      help="Add a host device to the container (HOST[:CONTAINER][:PERMISSIONS], "
           "permissions a combination of r, w, m; default rwm)")
    a("--device-cgroup-rule", action="append", default=[],
      help="Add a rule to the cgroup allowed devices list (e.g. 'c 1:3 rwm')")
    a("--sysctl", action="append", default=[], help="Sysctl options")
    a("--add-host", action="append", default=[], help="Add a custom host-to-IP mapping "
                                                      "(host:ip)")
    a("--dns", action="append", default=[], help="Set custom DNS servers (IP addresses)")
    a("--dns-search", action="append", default=[], help="Set custom DNS search domains")
    a("--dns-option", action="append", default=[], help="Set DNS options")
    a("-p", "--publish", action="append", default=[],
      help="Publish a container's port(s) to the host "
           "([ip:][hostPort:]containerPort[/proto], ranges 8000-8010:80-90)")
    a("-P", "--publish-all", action="store_true", help="Publish all exposed ports to random "
                                                       "ports")
    a("--expose", action="append", default=[], help="Expose a port or a range of ports")
    a("--network", "--net", action="append", default=[],
      help="Connect a container to a network (bridge, host, none, container:<name|id>, "
           "a network's name, or name=NET,alias=A,ip=IP)")
    a("--network-alias", action="append", default=[],
      help="Add network-scoped alias for the container")
    a("--ip", help="IPv4 address (e.g., 172.30.100.104)")
    a("--ip6", help="IPv6 address (e.g., 2001:db8::33)")
    a("--mac-address", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)")
    a("--ipc", help="IPC mode to use (none, private, shareable, host, container:<name|id>)")
    a("--pid", help="PID namespace to use (host, container:<name|id>)")
    a("--uts", help="UTS namespace to use (host)")
    a("--cgroupns", choices=["host", "private"], help="Cgroup namespace to use")
    a("--cgroup-parent", help="Optional parent cgroup for the container")
    a("--init", action="store_true", help="Run an init inside the container that forwards "
                                          "signals and reaps processes")
    a("--restart", default="no", help="Restart policy to apply when a container exits")
    a("--health-cmd", help="Command to run to check health")
    a("--health-interval", help="Time between running the check (ms|s|m|h)")
    a("--health-timeout", help="Maximum time to allow one check to run (ms|s|m|h)")
    a("--health-retries", type=int, help="Consecutive failures needed to report unhealthy")
    a("--health-start-period", help="Start period for the container to initialize before "
                                    "starting health-retries countdown (ms|s|m|h)")
    a("--health-start-interval", help="Time between running the check during the start "
                                      "period (ms|s|m|h)")
    a("--no-healthcheck", action="store_true", help="Disable any container-specified "
                                                    "HEALTHCHECK")
    a("--stop-signal", help="Signal to stop the container")
    a("--stop-timeout", type=int, help="Timeout (in seconds) to stop a container")
    a("--log-driver", help="Logging driver for the container")
    a("--log-opt", action="append", default=[], help="Log driver options")
    a("--runtime", help="Runtime to use for this container")
    a("--platform", help="Set platform if server is multi-platform capable")
    a("--pull", default="missing", choices=["always", "missing", "never"],
      help="Pull image before running")
    a("--cidfile", help="Write the container ID to the file")
    a("-q", "--quiet", action="store_true", help="Suppress the pull output")
    a("image", metavar="IMAGE")
    a("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def _kv_list(items: list[str], files: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in files:
        for line in parse_env_file(path):
            k, _, v = line.partition("=")
            out[k] = v
    for item in items:
        k, _, v = item.partition("=")
        if not k:
            raise UsageError(f"invalid {what} {item!r}: use KEY=VALUE")
        out[k] = v
    return out


def _bool(value: str, flag: str) -> bool:
    v = value.lower()
    if v in ("1", "t", "true", "yes"):
        return True
    if v in ("0", "f", "false", "no"):
        return False
    raise UsageError(f"invalid argument {value!r} for {flag}: use true or false")


def build_create(ns: argparse.Namespace, run: bool = False,
                 console_size: tuple[int, int] | None = None) -> tuple[dict, dict]:
    """The create request for parsed run/create flags: (query params, JSON body).

    Raises:
        UsageError: a flag value that cannot be turned into the API's form.
    """
    detach = bool(getattr(ns, "detach", False))
    attach = set(ns.attach)
    if detach and attach:
        raise UsageError("conflicting options: cannot specify both --attach and --detach")
    if not detach and not attach:
        attach = {"stdout", "stderr"} | ({"stdin"} if ns.interactive else set())
    if not run and not ns.attach:
        # `create` attaches nothing but records -i as docker does
        attach = {"stdin", "stdout", "stderr"} if ns.interactive else {"stdout", "stderr"}
    if detach:
        attach = set()

    env: list[str] = []
    for path in ns.env_file:
        env += parse_env_file(path)
    for item in ns.env:
        value = _env_value(item)
        if value is not None:
            env.append(value)

    binds: list[str] = []
    volumes: dict[str, dict] = {}
    for v in ns.volume:
        parts = v.split(":")
        if len(parts) == 1:
            if not v.startswith("/"):
                raise UsageError(f"invalid volume specification {v!r}: a container path must "
                                 "be absolute")
            volumes[v] = {}
        elif len(parts) in (2, 3) and parts[0] and parts[1].startswith("/"):
            binds.append(v)
        else:
            raise UsageError(f"invalid volume specification {v!r}: use "
                             "[host-path|volume:]container-path[:ro|rw]")
    tmpfs: dict[str, str] = {}
    for t in ns.tmpfs:
        path, _, options = t.partition(":")
        if not path.startswith("/"):
            raise UsageError(f"invalid tmpfs {t!r}: the path must be absolute")
        tmpfs[path] = options

    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict]] = {}
    for spec in ns.publish:
        for port, binding in parse_publish(spec):
            exposed[port] = {}
            bindings.setdefault(port, []).append(binding)
    for e in ns.expose:
        for port in parse_expose(e):
            exposed.setdefault(port, {})
    network_mode, endpoints = network_settings(ns.network, ns.network_alias, ns.ip, ns.ip6,
                                             ns.mac_address)
    dns = [check_dns(d) for d in ns.dns]
    dns_search = [check_dns_search(d) for d in ns.dns_search]
    cgroup_rules = [check_device_cgroup_rule(r) for r in ns.device_cgroup_rule]

    health: dict[str, Any] | None = None
    if ns.no_healthcheck:
        if ns.health_cmd:
            raise UsageError("--no-healthcheck conflicts with --health-* options")
        health = {"Test": ["NONE"]}
    elif any(x is not None for x in (ns.health_cmd, ns.health_interval, ns.health_timeout,
                                     ns.health_retries, ns.health_start_period,
                                     ns.health_start_interval)):
        health = {"Test": ["CMD-SHELL", ns.health_cmd] if ns.health_cmd else None,
                  "Interval": parse_duration(ns.health_interval, "--health-interval")
                  if ns.health_interval else 0,
                  "Timeout": parse_duration(ns.health_timeout, "--health-timeout")
                  if ns.health_timeout else 0,
                  "StartPeriod": parse_duration(ns.health_start_period,
                                                "--health-start-period")
                  if ns.health_start_period else 0,
                  "StartInterval": parse_duration(ns.health_start_interval,
                                                  "--health-start-interval")
                  if ns.health_start_interval else 0,
                  "Retries": ns.health_retries or 0}
        if ns.health_retries is not None and ns.health_retries < 0:
            raise UsageError("--health-retries cannot be negative")

    entrypoint: list[str] | None = None
    if ns.entrypoint is not None:
        entrypoint = [ns.entrypoint] if ns.entrypoint else [""]

    memory = parse_size(ns.memory, "memory") if ns.memory else 0
    swap = 0
    if ns.memory_swap:
        swap = -1 if ns.memory_swap == "-1" else parse_size(ns.memory_swap, "memory-swap")
        if swap > 0 and memory and swap < memory:
            raise UsageError("Minimum memoryswap limit should be larger than memory limit, "
                             "see usage")
    nano_cpus = 0
    if ns.cpus:
        try:
            nano_cpus = int(round(float(ns.cpus) * 1e9))
        except ValueError as err:
            raise UsageError(f"invalid argument {ns.cpus!r} for --cpus: use a number like "
                             "1.5") from err
        if nano_cpus <= 0:
            raise UsageError(f"invalid argument {ns.cpus!r} for --cpus: must be positive")

    devices = [parse_device(d) for d in ns.device]

    tty = bool(ns.tty)
    host_config: dict[str, Any] = {
        "Binds": binds or None,
        "ContainerIDFile": ns.cidfile or "",
        "LogConfig": {"Type": ns.log_driver or "",
                      "Config": _kv_list(ns.log_opt, [], "log option")},
        "NetworkMode": network_mode,
        "PortBindings": bindings,
        "RestartPolicy": parse_restart(ns.restart),
        "AutoRemove": bool(ns.rm),
        "VolumesFrom": ns.volumes_from or None,
        "ConsoleSize": list(console_size) if console_size else [0, 0],
        "CapAdd": ns.cap_add or None,
        "CapDrop": ns.cap_drop or None,
        "CgroupnsMode": ns.cgroupns or "",
        "Dns": dns,
        "DnsOptions": ns.dns_option,
        "DnsSearch": dns_search,
        "ExtraHosts": ns.add_host or None,
        "GroupAdd": ns.group_add or None,
        "IpcMode": ns.ipc or "",
        "PidMode": ns.pid or "",
        "UTSMode": ns.uts or "",
        "OomScoreAdj": ns.oom_score_adj or 0,
        "Privileged": bool(ns.privileged),
        "PublishAllPorts": bool(ns.publish_all),
        "ReadonlyRootfs": bool(ns.read_only),
        "SecurityOpt": ns.security_opt or None,
        "ShmSize": parse_size(ns.shm_size, "shm-size") if ns.shm_size else 0,
        "CpuShares": ns.cpu_shares or 0,
        "Memory": memory,
        "NanoCpus": nano_cpus,
        "CgroupParent": ns.cgroup_parent or "",
        "BlkioWeight": ns.blkio_weight or 0,
        "CpuPeriod": ns.cpu_period or 0,
        "CpuQuota": ns.cpu_quota or 0,
        "CpusetCpus": ns.cpuset_cpus or "",
        "CpusetMems": ns.cpuset_mems or "",
        "Devices": devices,
        "DeviceCgroupRules": cgroup_rules or None,
        "MemoryReservation": parse_size(ns.memory_reservation, "memory-reservation")
        if ns.memory_reservation else 0,
        "MemorySwap": swap,
        "MemorySwappiness": ns.memory_swappiness if ns.memory_swappiness is not None else -1,
        "OomKillDisable": bool(ns.oom_kill_disable),
        "PidsLimit": ns.pids_limit or 0,
        "Ulimits": [parse_ulimit(u) for u in ns.ulimit],
        "Mounts": [parse_mount(m) for m in ns.mount] or None,
        "Tmpfs": tmpfs or None,
        "Sysctls": _kv_list(ns.sysctl, [], "sysctl") or None,
    }
    if ns.init:
        host_config["Init"] = True
    if ns.runtime:
        host_config["Runtime"] = ns.runtime
    body: dict[str, Any] = {
        "Hostname": ns.hostname or "",
        "Domainname": ns.domainname or "",
        "User": ns.user or "",
        "AttachStdin": "stdin" in attach,
        "AttachStdout": "stdout" in attach,
        "AttachStderr": "stderr" in attach,
        "ExposedPorts": exposed,
        "Tty": tty,
        "OpenStdin": bool(ns.interactive),
        "StdinOnce": bool(ns.interactive) and "stdin" in attach,
        "Env": env or None,
        "Cmd": list(ns.command) or None,
        "Image": ns.image,
        "Volumes": volumes,
        "WorkingDir": ns.workdir or "",
        "Entrypoint": entrypoint,
        "Labels": _kv_list(ns.label, ns.label_file, "label"),
        "HostConfig": host_config,
        "NetworkingConfig": {"EndpointsConfig": endpoints},
    }
    if health is not None:
        body["Healthcheck"] = health
    if ns.stop_signal:
        body["StopSignal"] = ns.stop_signal
    if ns.stop_timeout is not None:
        body["StopTimeout"] = ns.stop_timeout
    if run:
        _bool(ns.sig_proxy, "--sig-proxy")
        if ns.detach_keys:
            parse_detach_keys(ns.detach_keys)
    params: dict[str, Any] = {"name": ns.name, "platform": ns.platform}
    return params, body
