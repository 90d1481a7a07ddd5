"""Docker-shaped JSON for containers and images: inspect, list entries, filters. Pure.

Owns the shapes of docker-api-flow.md §5 and §9 (what docker-py and the CLI
read). Takes apid's records and returns dicts; no I/O.
"""

from __future__ import annotations

import re
import time
from typing import Any

from dockyard.apid import translate
from dockyard.apid.container import Container, rfc3339
from dockyard.apid.manager import ImageInfo

from dockyard.errdefs import InvalidArgument

__all__ = ["container_inspect", "container_summary", "human_status", "match_container",
           "CONTAINER_FILTERS", "image_summary", "image_inspect", "human_duration"]

CONTAINER_FILTERS = {"id", "name", "label", "status", "exited", "ancestor", "before", "since",
                     "network", "volume", "health", "publish", "expose", "is-task"}


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: "Less than a second", "3 seconds", "About a minute", ..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def human_status(c: Container, now: float | None = None) -> str:
    now = now or time.time()
    st = c.state
    if st.status == "running":
        health = ""
        if st.health:
            h = st.health.get("Status")
            health = " (health: starting)" if h == "starting" else f" ({h})"
        return f"Up {human_duration(now - st.started_at)}{health}"
    if st.status == "paused":
        return f"Up {human_duration(now - st.started_at)} (Paused)"
    if st.status == "restarting":
        return f"Restarting ({st.exit_code}) {human_duration(now - st.finished_at)} ago"
    if st.status == "removing":
        return "Removal In Progress"
    if st.status == "dead":
        return "Dead"
    if st.status == "exited" or st.finished_at:
        return f"Exited ({st.exit_code}) {human_duration(now - st.finished_at)} ago"
    return "Created"


def _mounts(c: Container) -> list[dict[str, Any]]:
    out = []
    for b in c.host_config.get("Binds") or []:
        m = translate.split_bind(b) if b.startswith("/") else None
        if m:
            rw = "ro" not in m["options"]
            mode = b.split(":")[2] if b.count(":") >= 2 else ""
            out.append({"Type": "bind", "Source": m["source"], "Destination": m["destination"],
                        "Mode": mode, "RW": rw, "Propagation": m["options"][-1]})
    for m in c.host_config.get("Mounts") or []:
        if m.get("Type") == "volume":
            continue  # listed from c.volumes below
        entry = {"Type": m.get("Type"), "Source": m.get("Source") or "",
                 "Destination": m.get("Target") or "", "Mode": "",
                 "RW": not m.get("ReadOnly"), "Propagation": ""}
        if m.get("Type") == "bind":
            entry["Propagation"] = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
        out.append(entry)
    for v in c.volumes:
        out.append({"Type": "volume", "Name": v["Name"], "Source": v["Source"],
                    "Destination": v["Destination"], "Driver": "local", "Mode": "z",
                    "RW": bool(v["RW"]), "Propagation": ""})
    for dest in c.host_config.get("Tmpfs") or {}:
        out.append({"Type": "tmpfs", "Source": "", "Destination": dest, "Mode": "", "RW": True,
                    "Propagation": ""})
    return out


_ENDPOINT = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "",
             "DriverOpts": None, "NetworkID": "", "EndpointID": "", "Gateway": "",
             "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
             "GlobalIPv6PrefixLen": 0, "DNSNames": None}


def _network_settings(c: Container) -> dict[str, Any]:
    mode = c.host_config.get("NetworkMode") or "default"
    net_name = "bridge" if mode == "default" else mode
    endpoint = dict(_ENDPOINT)
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": {},
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": {net_name: endpoint}}


def _host_config_view(c: Container) -> dict[str, Any]:
    hc = dict(c.host_config)
    defaults = {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no",
                                                                        "MaximumRetryCount": 0},
        "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0],
        "CapAdd": None, "CapDrop": None, "CgroupnsMode": "host", "Dns": [], "DnsOptions": [],
        "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private",
        "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False,
        "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "",
        "UsernsMode": "", "ShmSize": translate.DEFAULT_SHM_SIZE, "Runtime": "runc",
        "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
        "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [],
        "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
        "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None,
        "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0,
        "MemorySwappiness": None, "OomKillDisable": None, "PidsLimit": None, "Ulimits": [],
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "MaskedPaths": [] if hc.get("Privileged") else list(translate.MASKED_PATHS),
        "ReadonlyPaths": [] if hc.get("Privileged") else list(translate.READONLY_PATHS),
        "Init": None,
    }
    for k, v in defaults.items():
        if hc.get(k) is None or (k in ("ShmSize",) and not hc.get(k)):
            hc[k] = v
    if hc.get("Memory") and not hc.get("MemorySwap"):
        hc["MemorySwap"] = hc["Memory"] * 2
    return hc


def container_inspect(c: Container, size_rw: int | None = None,
                      size_root: int | None = None) -> dict[str, Any]:
    """GET /containers/{id}/json."""
    out: dict[str, Any] = {
        "Id": c.id, "Created": rfc3339(c.created), "Path": c.path, "Args": list(c.args),
        "State": c.state.to_docker(), "Image": c.image_id, "ResolvConfPath": c.resolv_path,
        "HostnamePath": c.hostname_path, "HostsPath": c.hosts_path, "LogPath": c.log_path,
        "Name": c.name, "RestartCount": c.restart_count, "Driver": "overlay2",
        "Platform": c.platform, "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": list(c.exec_ids) or None, "HostConfig": _host_config_view(c),
        "GraphDriver": {"Name": "overlay2", "Data": None}, "Mounts": _mounts(c),
        "Config": _config_view(c), "NetworkSettings": _network_settings(c),
    }
    if size_rw is not None:
        out["SizeRw"] = size_rw
        out["SizeRootFs"] = size_root or size_rw
    return out


def _config_view(c: Container) -> dict[str, Any]:
    cfg = dict(c.config)
    defaults = {"Hostname": c.id[:12], "Domainname": "", "User": "", "AttachStdin": False,
                "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
                "StdinOnce": False, "Env": [], "Cmd": None, "Image": c.image, "Volumes": None,
                "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": {}}
    for k, v in defaults.items():
        if k not in cfg or cfg[k] is None and v is not None:
            cfg[k] = v
    return cfg


def container_summary(c: Container, size_rw: int | None = None,
                      now: float | None = None) -> dict[str, Any]:
    """One entry of GET /containers/json."""
    cmd = [c.path] + list(c.args) if c.path else []
    mode = c.host_config.get("NetworkMode") or "default"
    hc = c.host_config
    mounts = _mounts(c) if hc.get("Binds") or hc.get("Mounts") or hc.get("Tmpfs") or \
        c.volumes else []
    out = {
        "Id": c.id, "Names": [c.name], "Image": c.image, "ImageID": c.image_id,
        "Command": " ".join(cmd), "Created": int(c.created), "Ports": [],
        "Labels": c.config.get("Labels") or {}, "State": c.state.status,
        "Status": human_status(c, now), "HostConfig": {"NetworkMode": mode},
        "NetworkSettings": {"Networks": {"bridge" if mode == "default" else mode: dict(
            _ENDPOINT)}}, "Mounts": mounts,
    }
    if size_rw is not None:
        out["SizeRw"] = size_rw
        out["SizeRootFs"] = size_rw
    return out


def _label_match(labels: dict[str, str], wants: list[str]) -> bool:
    for want in wants:
        k, sep, v = want.partition("=")
        if k not in labels or (sep and labels[k] != v):
            return False
    return True


def match_container(c: Container, filters: dict[str, list[str]],
                    by_ref: dict[str, Container]) -> bool:
    """Docker's `docker ps --filter` semantics (values of one key are OR-ed)."""
    st = c.state
    if "id" in filters and not any(c.id.startswith(v) for v in filters["id"]):
        return False
    if "name" in filters:
        name = c.name.lstrip("/")
        if not any(_regex_search(v, name) for v in filters["name"]):
            return False
    if "label" in filters and not _label_match(c.config.get("Labels") or {}, filters["label"]):
        return False
    if "status" in filters:
        for v in filters["status"]:
            if v not in ("created", "restarting", "running", "removing", "paused", "exited",
                         "dead"):
                raise InvalidArgument(f"Invalid filter 'status={v}'")
        if st.status not in filters["status"]:
            return False
    if "exited" in filters:
        if st.status != "exited" or str(st.exit_code) not in filters["exited"]:
            return False
    if "ancestor" in filters:
        if not any(v in (c.image, c.image_id, c.image_ref) or c.image_id.startswith(
                "sha256:" + v) or c.image_ref.startswith(v + ":") for v in filters["ancestor"]):
            return False
    if "health" in filters:
        h = (st.health or {}).get("Status", "none")
        if h not in filters["health"]:
            return False
    for key, cmp in (("before", lambda o: c.created < o.created),
                     ("since", lambda o: c.created > o.created)):
        if key in filters:
            for v in filters[key]:
                other = by_ref.get(v)
                if other is None:
                    raise InvalidArgument(f"No such container: {v}")
                if not cmp(other):
                    return False
    if "network" in filters:
        mode = c.host_config.get("NetworkMode") or "default"
        net = "bridge" if mode == "default" else mode
        if net not in filters["network"]:
            return False
    if "volume" in filters:
        dests = {m["Destination"] for m in _mounts(c)} | {m["Source"] for m in _mounts(c)}
        if not any(v in dests for v in filters["volume"]):
            return False
    if "is-task" in filters and any(v.lower() in ("1", "true") for v in filters["is-task"]):
        return False  # no swarm: no container is a task
    if "expose" in filters or "publish" in filters:
        exposed = set((c.config.get("ExposedPorts") or {}).keys())
        for v in filters.get("expose", []):
            if v not in exposed and f"{v}/tcp" not in exposed:
                return False
        if filters.get("publish"):
            return False
    return True


def _regex_search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return pattern in text


# --- images --------------------------------------------------------------------------------


def _repo_tags(names: list[str]) -> tuple[list[str], list[str]]:
    tags, digests = [], []
    for n in names:
        if "@" in n:
            digests.append(n)
        else:
            tags.append(familiar(n))
    return tags, digests


def familiar(name: str) -> str:
    """docker.io/library/busybox:latest -> busybox:latest (Docker's FamiliarString)."""
    if name.startswith("docker.io/library/"):
        return name[len("docker.io/library/"):]
    if name.startswith("docker.io/"):
        return name[len("docker.io/"):]
    return name


def image_summary(img: ImageInfo, names: list[str], containers: int = -1) -> dict[str, Any]:
    tags, _ = _repo_tags(names)
    repo_digests = sorted({f"{familiar(n).rsplit(':', 1)[0] if ':' in n.rsplit('/', 1)[-1] else familiar(n)}@{img.digest}"
                           for n in names})
    created = img.config.get("created")
    return {"Id": img.config_digest, "ParentId": "", "RepoTags": tags,
            "RepoDigests": repo_digests,
            "Created": int(_parse_created(created) or img.created_at), "Size": img.size,
            "SharedSize": -1, "VirtualSize": img.size,
            "Labels": (img.config.get("config") or {}).get("Labels") or {},
            "Containers": containers}


def _parse_created(text: str | None) -> float:
    from dockyard.apid.container import parse_time

    if not text:
        return 0.0
    try:
        return parse_time(text.replace("+00:00", "Z"))
    except ValueError:
        return 0.0


def image_inspect(img: ImageInfo, names: list[str]) -> dict[str, Any]:
    cfg = img.config
    tags, _ = _repo_tags(names)
    summary = image_summary(img, names)
    ic = dict(cfg.get("config") or {})
    return {
        "Id": img.config_digest, "RepoTags": tags, "RepoDigests": summary["RepoDigests"],
        "Parent": "", "Comment": (cfg.get("history") or [{}])[-1].get("comment", "")
        if cfg.get("history") else "",
        "Created": cfg.get("created") or rfc3339(img.created_at), "DockerVersion": "",
        "Author": cfg.get("author", ""), "Config": ic, "Architecture": cfg.get("architecture", ""),
        "Variant": cfg.get("variant"), "Os": cfg.get("os", "linux"), "Size": img.size,
        "VirtualSize": img.size, "GraphDriver": {"Name": "overlay2", "Data": None},
        "RootFS": {"Type": "layers", "Layers": list((cfg.get("rootfs") or {}).get("diff_ids")
                                                     or img.layers)},
        "Metadata": {"LastTagTime": rfc3339(img.created_at)},
    }
