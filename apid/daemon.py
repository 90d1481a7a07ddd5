"""Docker's container lifecycle on top of managerd: the state apid owns.

Owns the in-memory view of every container (records restored from managerd
at start-up), names, exec instances, waiters, the exit monitor of each
running task, restart policies with dockerd's back-off, AutoRemove, health
checks and the events they publish. Routes call these methods; everything
below (snapshots, tasks, images) goes through the `Manager` interface.
Must not build HTTP responses (routes do) or OCI specs by hand (translate does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from dockyard.apid import devices, namespaces, netns, rootfs, translate
from dockyard.apid.container import (
    EXTENSION,
    NAME_LABEL,
    Container,
    ExecRecord,
    State,
    rfc3339,
)
from dockyard.apid.events import EventBus
from dockyard.apid.manager import ContainerInfo, ExitStatus, ImageInfo, Manager, ProcessIO
from dockyard.apid.names import NameIndex, generate_name, validate_name
from dockyard.apid.network import NetworkController
from dockyard.apid.network.controller import StartError as _NetworkStartError
from dockyard.apid.volumes import VolumeStore

from dockyard import errdefs, ids

__all__ = ["Daemon", "DaemonConfig"]

log = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT = 10
# seconds a SIGKILL may take to show as an exit before it is sent again (with all=true),
# then before stop/rm -f gives up; the task's cleanup after the exit is not counted
KILL_PATIENCE = (10.0, 5.0)
CLEANUP_WAIT = 120.0  # seconds for managerd's task delete once the exit is known
_RESTART_MIN = 0.1
_RESTART_MAX = 60.0
_MODE_KEYS = {"ipc": "IpcMode", "pid": "PidMode", "network": "NetworkMode"}
_JOIN_WORDS = {"ipc": "IPC", "pid": "PID"}


class _JoinRefused(errdefs.InvalidArgument):
    """400 at start: the ipc donor is gone or not shareable (moby setupIPCDirs)."""


class _JoinConflict(errdefs.FailedPrecondition):
    """409 at start: the ipc donor is not running or restarting."""


class _JoinFailed(errdefs.EngineError):
    """500 at start: a pid join refused (moby wraps createSpec errors as System)."""


# start errors that keep their own status instead of start's usual 400
_START_STATUS_KEPT = (_JoinRefused, _JoinConflict, _JoinFailed, _NetworkStartError)


@dataclass
class DaemonConfig:
    data_root: str = "/var/lib/dockyard"
    exec_root: str = "/run/dockyard"
    init_path: str | None = None  # docker-init (tini-static)
    cgroup_parent: str = "/dockyard"
    host_resolv_conf: str = "/etc/resolv.conf"
    snapshotter: str = "overlayfs"
    manage_netns: bool = True  # a netns per container with lo up (off in unit tests)
    bridge: str | None = None  # the default bridge (--bridge); None: lo-only namespaces
    bip: str | None = None  # its gateway/prefix (--bip), else a free private range
    volume_copy_up: bool = True  # copy image content into new volumes (mounts the rootfs)


@dataclass
class _Waiter:
    condition: str
    future: asyncio.Future


@dataclass
class _Runtime:
    """Per-container asyncio state that is never persisted."""

    waiters: list[_Waiter] = field(default_factory=list)
    monitor: asyncio.Task | None = None
    restart: asyncio.Task | None = None
    health: asyncio.Task | None = None
    backoff: float = 0.0
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    # the init's exit is known (set before the task's cleanup, which under load can take
    # seconds: 50 concurrent rm -f each wait for a runtime delete and unmounts)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending_attach: list[tuple[asyncio.Event, asyncio.Event]] = field(default_factory=list)
    oom: bool = False  # managerd reported /tasks/oom for the current run
    exit_seen: asyncio.Event = field(default_factory=asyncio.Event)  # /tasks/exit read
    # saves of one container go out one at a time, each with the state as it is when its
    # turn comes: a save started later never lands before an earlier one
    save_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # cleared while a start finishes (its save): the exit of that run waits for it before
    # it records the exit, so events stay start -> die and the saved state ends "exited"
    started: asyncio.Event = field(default_factory=lambda: _set_event())


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


async def _first_set(*events: asyncio.Event) -> None:
    """Return once any of the events is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _host_caps() -> list[str] | None:
    """This daemon's bounding set: what `--privileged` / `--cap-add ALL` can grant."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    return translate.host_capabilities(line.split()[1])
    except OSError:
        pass
    return None


def _start_error_code(message: str) -> int:
    """Exit code dockerd records for a start failure (translateContainerdStartErr)."""
    text = message.lower()
    if "executable file not found" in text or "no such file or directory" in text:
        return 127
    if "permission denied" in text or "is a directory" in text:
        return 126
    return 128


class Daemon:
    """Every container verb with Docker's semantics."""

    def __init__(self, manager: Manager, config: DaemonConfig, events: EventBus | None = None
                 ) -> None:
        self.manager = manager
        self.config = config
        self.events = events or EventBus()
        self.volumes = VolumeStore(f"{config.data_root}/volumes")
        self.containers: dict[str, Container] = {}
        self.names = NameIndex()
        self.execs: dict[str, ExecRecord] = {}
        self._rt: dict[str, _Runtime] = {}
        self._shutting_down = False
        self._create_lock = asyncio.Lock()
        self._events_task: asyncio.Task | None = None
        self.network = NetworkController(config.data_root, config.exec_root, config.bridge,
                                         config.bip, enabled=config.manage_netns,
                                         containers=self.containers,
                                         publish=self.events.publish)

    # --- lookup -------------------------------------------------------------------------

    def get(self, ref: str) -> Container:
        """By full id, name, or unique id prefix (404 "No such container: ref")."""
        return self.containers[self.names.resolve(ref)]

    def rt(self, container_id: str) -> _Runtime:
        return self._rt.setdefault(container_id, _Runtime())

    def _attrs(self, c: Container, **extra: str) -> dict[str, str]:
        attrs = {k: str(v) for k, v in (c.config.get("Labels") or {}).items()}
        attrs.update(image=c.image, name=c.name.lstrip("/"))
        attrs.update(extra)
        return attrs

    def emit(self, c: Container, action: str, **extra: str) -> None:
        """Publish a container event (Docker's Actor attributes: labels, image, name)."""
        self.events.publish("container", action, c.id, self._attrs(c, **extra))

    async def save(self, c: Container) -> None:
        async with self.rt(c.id).save_lock:
            labels = {k: str(v) for k, v in (c.config.get("Labels") or {}).items()}
            labels[NAME_LABEL] = c.name
            await self.manager.update_container(c.id, labels, {EXTENSION: c.to_json()})

    # --- start-up -----------------------------------------------------------------------

    async def restore(self) -> None:
        """Load records from managerd; re-attach monitors; apply restart policies."""
        # join bind mounts exist only during a task create: any found now were left by an
        # apid that died there (no create is in flight before restore has run)
        await namespaces.release_stale_joins(self.config.exec_root)
        await self.network.startup()  # bridges and addresses before any container starts
        restored: list[Container] = []
        for info in await self.manager.list_containers():
            raw = info.extensions.get(EXTENSION)
            if not raw:
                continue
            try:
                c = Container.from_json(raw)
            except (ValueError, TypeError) as err:
                log.warning("skipping unreadable record container_id=%s err=%s", info.id, err)
                continue
            if c.id in self.containers:
                continue
            self.containers[c.id] = c
            self.names.reserve(c.name, c.id)
            restored.append(c)
        for c in restored:
            await self._reconcile(c)

    async def restore_when_available(self) -> None:
        """restore(), retried with back-off while managerd cannot be reached."""
        delay = 0.5
        while not self._shutting_down:
            try:
                await self.restore()
                log.info("restored containers=%d", len(self.containers))
                return
            except errdefs.Unavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _reconcile(self, c: Container) -> None:
        try:
            task = await self.manager.get_task(c.id)
        except errdefs.NotFound:
            task = None
        if task and task.status in ("running", "paused", "pausing"):
            c.state.status = "paused" if task.status == "paused" else "running"
            c.state.pid = task.pid
            self._watch(c)
            self._start_health(c)
            await self.network.resume(c)
            return
        was_running = c.state.status in ("running", "paused", "restarting")
        if task is not None:
            status = await self._delete_task(c)
            if was_running:
                c.state.exit_code = status.code
                c.state.finished_at = status.exited_at or time.time()
        await self._release_ipc(c)  # it stopped while apid was away: its shm tmpfs goes
        await self.network.release(c)
        if was_running:
            c.state.status = "exited"
            c.state.pid = 0
            await self.save(c)
        policy = (c.host_config.get("RestartPolicy") or {}).get("Name") or "no"
        started_before = bool(c.state.started_at)  # never-started containers stay created
        if started_before and (policy == "always" or (
                policy == "unless-stopped" and not c.manually_stopped) or (
                was_running and self._should_restart(c, c.state.exit_code, restore=True))):
            c.manually_stopped = False
            self._schedule_restart(c, delay=0.0)
        elif c.host_config.get("AutoRemove") and was_running:
            await self._remove(c, remove_volumes=True)

    def watch_manager_events(self) -> None:
        """Follow managerd's /tasks/oom (OOMKilled) for as long as the daemon runs."""
        self._events_task = asyncio.get_running_loop().create_task(self._follow_events())

    async def _follow_events(self) -> None:
        delay = 0.5
        while not self._shutting_down:
            try:
                async for topic, container_id in self.manager.task_events():
                    delay = 0.5
                    c = self.containers.get(container_id)
                    if topic == "/tasks/exit" and c is not None:
                        self.rt(c.id).exit_seen.set()
                    if topic == "/tasks/oom" and c is not None:
                        self.rt(c.id).oom = True
                        if c.state.status == "exited" and not c.state.oom_killed:
                            c.state.oom_killed = True
                            self.emit(c, "oom")
                            await self.save(c)
            except asyncio.CancelledError:
                raise
            except (errdefs.EngineError, AttributeError) as err:
                log.debug("managerd events unavailable: %s", err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)

    async def shutdown(self) -> None:
        """Stop background work; running containers keep running (live restore)."""
        self._shutting_down = True
        if self._events_task is not None:
            self._events_task.cancel()
        for rt in self._rt.values():
            for task in (rt.monitor, rt.restart, rt.health):
                if task and not task.done():
                    task.cancel()
        await self.network.shutdown()  # proxies and iptables chains; veths stay (live restore)

    # --- create -------------------------------------------------------------------------

    async def create(self, body: dict[str, Any], name: str | None) -> tuple[str, list[str]]:
        """POST /containers/create: resolve the image, write /etc files, store the record.

        Returns:
            (id, warnings).
        """
        image_ref = body.get("Image") or ""
        if not image_ref:
            raise errdefs.InvalidArgument("config cannot be empty in order to create a container")
        host_config = dict(body.get("HostConfig") or {})
        self._validate_host_config(host_config)
        self.network.check_create(host_config, body.get("NetworkingConfig"))
        translate.check_namespace_modes(body.get("Hostname"), host_config)
        devices.check_mappings(host_config.get("Devices"))
        self._adapt_namespace_modes(host_config)
        try:
            image = await self.manager.get_image(image_ref)
        except errdefs.NotFound:
            raise errdefs.NotFound(f"No such image: {image_ref}") from None
        config_fields = {k: v for k, v in body.items()
                         if k not in ("HostConfig", "NetworkingConfig")}
        merged = translate.merge_config(config_fields, (image.config or {}).get("config") or {})
        args = translate.command_of(merged)
        warnings: list[str] = []
        async with self._create_lock:
            container_id = ids.new_id()
            while container_id[:12].isdigit():  # the short id becomes the hostname
                container_id = ids.new_id()
            if name:
                full = validate_name(name)
            else:
                full = "/" + (generate_name(self.names.names()) or container_id[:12])
            self.names.reserve(full, container_id)  # 409 in Docker's words when taken
        merged["Hostname"] = merged.get("Hostname") or container_id[:12]
        merged["Image"] = image_ref
        host_config.setdefault("NetworkMode", "default")
        host_config.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
        if not (host_config.get("LogConfig") or {}).get("Type"):
            host_config["LogConfig"] = {"Type": "json-file", "Config": {}}
        host_config.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        if not (host_config.get("RestartPolicy") or {}).get("Name"):
            host_config["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
        root = f"{self.config.data_root}/containers/{container_id}"
        c = Container(
            id=container_id, name=full, created=time.time(), image=image_ref,
            image_id=image.config_digest, image_ref=image.name, config=merged,
            host_config=host_config, networking_config=body.get("NetworkingConfig") or {},
            path=args[0], args=args[1:], snapshot_key=container_id, root=root)
        created_volumes: list[str] = []
        try:
            spec_hc = self._attach_volumes(c, created_volumes)
            spec = await self._spec(c, image, spec_hc)
            os.makedirs(root, mode=0o710, exist_ok=True)
            self._write_etc_files(c)
            await self.manager.prepare_snapshot(c.snapshot_key, image.chain_id)
            await self._copy_up(c, created_volumes)
            labels = {k: str(v) for k, v in (merged.get("Labels") or {}).items()}
            labels[NAME_LABEL] = full
            await self.manager.create_container(ContainerInfo(
                id=c.id, image=image.name, spec=spec, labels=labels,
                extensions={EXTENSION: c.to_json()}, snapshot_key=c.snapshot_key))
        except BaseException:
            self.names.release(container_id)
            shutil.rmtree(root, ignore_errors=True)
            for name in created_volumes:
                with contextlib.suppress(errdefs.EngineError, OSError):
                    self.volumes.remove(name)
            try:
                await self.manager.remove_snapshot(container_id)
            except errdefs.EngineError:
                pass
            raise
        self.containers[c.id] = c
        self.network.created(c)
        for v in c.volumes:
            self.events.publish("volume", "mount", v["Name"], {
                "container": c.id, "destination": v["Destination"], "driver": "local",
                "propagation": "", "read/write": str(v["RW"]).lower()})
        self.emit(c, "create")
        return c.id, warnings

    def _attach_volumes(self, c: Container, created: list[str]) -> dict[str, Any]:
        """Named and anonymous volumes -> binds of their directories (a HostConfig copy
        for the spec; the stored one keeps what the client sent). Image VOLUMEs not
        covered by a mount get anonymous volumes, as dockerd does."""
        hc = dict(c.host_config)
        binds, dests = [], set()
        for b in hc.get("Binds") or []:
            parts = b.split(":")
            if len(parts) >= 2 and parts[0] and not parts[0].startswith("/"):
                mode = parts[2] if len(parts) > 2 else ""
                path = self._use_volume(c, parts[0], parts[1], "ro" not in mode.split(","),
                                        created)
                b = ":".join([path, parts[1]] + ([mode] if mode else []))
            binds.append(b)
            if len(parts) >= 2:
                dests.add(parts[1].rstrip("/"))
        mounts = []
        for m in hc.get("Mounts") or []:
            if m.get("Type") == "volume":
                path = self._use_volume(c, m.get("Source") or "", m.get("Target") or "",
                                        not m.get("ReadOnly"), created)
                m = {"Type": "bind", "Source": path, "Target": m.get("Target") or "",
                     "ReadOnly": bool(m.get("ReadOnly"))}
            mounts.append(m)
            dests.add((m.get("Target") or "").rstrip("/"))
        dests |= {d.rstrip("/") for d in hc.get("Tmpfs") or {}}
        for dest in (c.config.get("Volumes") or {}):
            if dest.rstrip("/") not in dests:
                path = self._use_volume(c, "", dest, True, created)
                binds.append(f"{path}:{dest}")
        hc["Binds"], hc["Mounts"] = binds or None, mounts or None
        return hc

    def _use_volume(self, c: Container, name: str, dest: str, rw: bool,
                    created: list[str]) -> str:
        if not dest.startswith("/"):
            raise errdefs.InvalidArgument(f"invalid mount config for type \"volume\": invalid "
                                          f"mount path: '{dest}' mount path must be absolute")
        try:
            vol = self.volumes.get(name) if name else None
        except errdefs.NotFound:
            vol = None
        if vol is None:
            vol = self.volumes.create(name)
            created.append(vol.name)
            self.events.publish("volume", "create", vol.name, {"driver": "local"})
        c.volumes.append({"Name": vol.name, "Destination": dest, "Source": vol.mountpoint,
                          "RW": rw, "Anonymous": vol.anonymous, "CopyUp": vol.name in created})
        return vol.mountpoint

    async def _copy_up(self, c: Container, created: list[str]) -> None:
        """A new, empty volume gets the image's content at its destination (dockerd's
        copy-up on first mount)."""
        todo = [v for v in c.volumes if v.pop("CopyUp", False)]
        if not todo or not self.config.volume_copy_up:
            return
        async with rootfs.container_root(self.manager, c, volumes=False) as root:
            for v in todo:
                src = rootfs.resolve_in_root(root, v["Destination"])
                if os.path.isdir(src) and not os.listdir(v["Source"]):
                    proc = await asyncio.create_subprocess_exec(
                        "cp", "-a", f"{src}/.", v["Source"], stderr=asyncio.subprocess.PIPE)
                    _, err = await proc.communicate()
                    if proc.returncode != 0:
                        raise errdefs.FailedPrecondition(
                            f"copying image content into volume {v['Name']}: {err.decode()}")

    def _validate_host_config(self, hc: dict[str, Any]) -> None:
        policy = hc.get("RestartPolicy") or {}
        pname = policy.get("Name") or "no"
        if pname not in ("no", "always", "unless-stopped", "on-failure"):
            raise errdefs.InvalidArgument(f"invalid restart policy: unknown policy '{pname}'; "
                                          "use one of 'no', 'always', 'on-failure', or "
                                          "'unless-stopped'")
        if policy.get("MaximumRetryCount") and pname != "on-failure":
            raise errdefs.InvalidArgument("invalid restart policy: maximum retry count can only "
                                          "be used with 'on-failure'")
        if (policy.get("MaximumRetryCount") or 0) < 0:
            raise errdefs.InvalidArgument("invalid restart policy: maximum retry count cannot "
                                          "be negative")
        if hc.get("AutoRemove") and pname != "no":
            raise errdefs.InvalidArgument("conflicting options: cannot specify both --restart "
                                          "and --rm")
        mode = hc.get("NetworkMode") or "default"  # a user network is looked up at start
        if mode.startswith("container:"):
            self.get(mode.split(":", 1)[1])  # 404 when the other container is unknown

    async def _spec(self, c: Container, image: ImageInfo,
                    host_config: dict[str, Any] | None = None) -> dict[str, Any]:
        passwd = group = None
        user = c.config.get("User") or ""
        if user or c.host_config.get("GroupAdd"):
            raw = await self.manager.read_image_file(image, "/etc/passwd")
            passwd = raw.decode(errors="replace") if raw else None
            raw = await self.manager.read_image_file(image, "/etc/group")
            group = raw.decode(errors="replace") if raw else None
        uid_gid = translate.resolve_user(user, passwd, group, c.host_config.get("GroupAdd") or [])
        if c.host_config.get("Init") and not self.config.init_path:
            raise errdefs.InvalidArgument("--init: no docker-init binary configured on the daemon")
        seccomp_text = None
        for opt in c.host_config.get("SecurityOpt") or []:
            if opt.startswith("seccomp=") and opt[8:] not in ("unconfined", "default"):
                seccomp_text = opt[8:]
        hc = host_config or c.host_config
        # a --device directory is walked (`--device /` walks the host): off the event loop
        nodes = await asyncio.to_thread(devices.resolve, hc.get("Devices"),
                                        bool(hc.get("Privileged"))) if hc.get("Devices") else []
        return translate.build_spec(translate.SpecInputs(
            container_id=c.id, config=c.config, host_config=hc,
            hostname=c.config["Hostname"], user=uid_gid,
            etc_files={"/etc/resolv.conf": c.resolv_path, "/etc/hostname": c.hostname_path,
                       "/etc/hosts": c.hosts_path} if hc.get("NetworkMode") != "host" else {
                "/etc/resolv.conf": c.resolv_path, "/etc/hostname": c.hostname_path},
            init_path=self.config.init_path, seccomp_profile=seccomp_text,
            cgroup_parent=self.config.cgroup_parent, host_caps=_host_caps(),
            netns_path=self._netns(c),
            devices=nodes,
            ns_joins={kind: namespaces.join_path(self.config.exec_root, c.id, kind)
                      for kind in namespaces.JOIN_KINDS
                      if translate.container_mode(hc.get(_MODE_KEYS[kind]) or "") is not None},
            shm_source=self._shm_source(c)))

    def _netns(self, c: Container) -> str | None:
        """The namespace path the spec joins: the container's own (lo only), another
        container's for `container:<name>`, None for host networking."""
        mode = c.host_config.get("NetworkMode") or "default"
        if mode == "host" or not self.config.manage_netns:
            return None
        if mode.startswith("container:"):
            other = self.get(mode.split(":", 1)[1])
            if other.id == c.id:
                raise errdefs.InvalidArgument("cannot join own network")
            return netns.path_for(self.config.exec_root, other.id)
        return netns.path_for(self.config.exec_root, c.id)

    def _owns_netns(self, c: Container) -> bool:
        return (c.host_config.get("NetworkMode") or "default") not in ("host",) and not (
            c.host_config.get("NetworkMode") or "").startswith("container:")

    # --- ipc / pid namespaces (--ipc, --pid) ---------------------------------------------

    def _adapt_namespace_modes(self, hc: dict[str, Any]) -> None:
        """At create, as dockerd's adaptContainerSettings/adaptSharedNamespaceContainer:
        IpcMode defaults to `private`; `container:<name>` becomes `container:<id>` so a
        rename of the donor keeps the link. An ipc/pid donor must exist now (dockerd
        finds out at start; here the spec written at create names the donor's shm dir)."""
        hc["IpcMode"] = hc.get("IpcMode") or "private"
        for kind, key in _MODE_KEYS.items():
            ref = translate.container_mode(hc.get(key) or "")
            if ref is None:
                continue
            try:
                hc[key] = "container:" + self.get(ref).id
            except errdefs.NotFound as err:
                if kind == "network":
                    raise
                self._join_error(kind, _JoinRefused, str(err))

    @staticmethod
    def _join_error(kind: str, cls: type[errdefs.EngineError], why: str) -> None:
        if kind == "pid":
            cls = _JoinFailed  # every pid join error is a 500 (createSpec -> errdefs.System)
        raise cls(f"failed to join {_JOIN_WORDS[kind]} namespace: {why}")

    def _shm_source(self, c: Container) -> str | None:
        """The host directory bound at /dev/shm for IpcMode host/shareable/container:."""
        mode = c.host_config.get("IpcMode") or "private"
        if mode == "host":
            return "/dev/shm"
        if mode == "shareable":
            return namespaces.shm_path(c.root)
        donor = translate.container_mode(mode)
        if donor is not None:
            return namespaces.shm_path(f"{self.config.data_root}/containers/{donor}")
        return None

    def _has_shm_mount(self, c: Container) -> bool:
        """A user mount on /dev/shm (-v, --mount, --tmpfs) replaces the IPC one."""
        hc = c.host_config
        dests = [b.split(":")[1] for b in hc.get("Binds") or [] if len(b.split(":")) >= 2]
        dests += [m.get("Target") or "" for m in hc.get("Mounts") or []]
        dests += list(hc.get("Tmpfs") or {})
        return any(d.rstrip("/") == "/dev/shm" for d in dests)

    def _ipc_donor(self, kind: str, ref: str) -> Container:
        """The running container whose ipc/pid namespace a joiner enters (moby
        getIPCContainer / getPIDContainer, with their errors and status codes)."""
        try:
            donor = self.get(ref)
        except errdefs.NotFound as err:
            self._join_error(kind, _JoinRefused, str(err))
        if donor.state.status == "restarting":
            self._join_error(kind, _JoinConflict, f"Container {ref} is restarting, wait until "
                             "the container is running")
        if donor.state.status not in ("running", "paused") or not donor.state.pid:
            self._join_error(kind, _JoinConflict, f"container {ref} is not running")
        if kind == "ipc":
            shm = self._shm_source(donor)
            shareable = (donor.host_config.get("IpcMode") or "private") not in ("private",
                                                                               "none")
            if not shareable or not shm or self._has_shm_mount(donor) or not os.path.isdir(shm):
                self._join_error(kind, _JoinRefused, f"container {ref}: non-shareable IPC (hint: "
                                 "use IpcMode:shareable for the donor container)")
        return donor

    async def _setup_ipc(self, c: Container) -> None:
        """Before the task: a shareable container's shm tmpfs on the host."""
        if (c.host_config.get("IpcMode") == "shareable" and not self._has_shm_mount(c)):
            await namespaces.mount_shm(namespaces.shm_path(c.root),
                                       int(c.host_config.get("ShmSize") or
                                           translate.DEFAULT_SHM_SIZE))

    async def _release_ipc(self, c: Container) -> None:
        """After the task (exit, failed start, removal): unmount the shm tmpfs."""
        if c.host_config.get("IpcMode") == "shareable":
            with contextlib.suppress(errdefs.EngineError):
                await namespaces.unmount_shm(namespaces.shm_path(c.root))

    @contextlib.asynccontextmanager
    async def _joined_namespaces(self, c: Container) -> AsyncIterator[None]:
        """While the task is created: the donors' namespaces bound at the join paths the
        spec names; unbound right after (the joiner's processes then hold them)."""
        bound: list[str] = []
        try:
            for kind in namespaces.JOIN_KINDS:
                ref = translate.container_mode(c.host_config.get(_MODE_KEYS[kind]) or "")
                if ref is None:
                    continue
                if ref in (c.id, c.name.lstrip("/")):
                    self._join_error(kind, _JoinRefused, f"cannot join own {kind} namespace")
                donor = self._ipc_donor(kind, ref)
                path = namespaces.join_path(self.config.exec_root, c.id, kind)
                bound.append(path)
                try:
                    await namespaces.bind_namespace(donor.state.pid, kind, path)
                except errdefs.EngineError as err:
                    self._join_error(kind, _JoinFailed, f"container {ref}: {err}")
            yield
        finally:
            for path in bound:
                with contextlib.suppress(errdefs.EngineError, OSError):
                    await namespaces.release_join(path)

    def _write_etc_files(self, c: Container) -> None:
        hostname = c.config["Hostname"]
        with open(c.hostname_path, "w") as f:
            f.write(hostname + "\n")
        with open(c.hosts_path, "w") as f:
            f.write(translate.hosts_file(hostname, None, c.host_config.get("ExtraHosts") or [],
                                         self.network.host_gateway()))
        try:
            with open(self.config.host_resolv_conf) as f:
                host = f.read()
        except OSError:
            host = ""
        with open(c.resolv_path, "w") as f:
            f.write(translate.resolv_conf(host, c.host_config.get("Dns") or [],
                                          c.host_config.get("DnsSearch") or [],
                                          c.host_config.get("DnsOptions") or []))

    # --- start / exit -------------------------------------------------------------------

    async def start(self, ref: str) -> None:
        """POST /containers/{id}/start: 304 when running."""
        c = self.get(ref)
        rt = self.rt(c.id)
        async with rt.lock:
            if c.state.status in ("running", "paused"):
                raise errdefs.NotModified("container already started")
            if c.state.status == "removing":
                raise errdefs.FailedPrecondition("container is marked for removal and cannot "
                                                 "be started")
            if rt.restart and not rt.restart.done():
                rt.restart.cancel()
            c.manually_stopped = False
            await self._start(c)

    async def _start(self, c: Container) -> None:
        rt = self.rt(c.id)
        try:
            size = c.host_config.get("ConsoleSize") or [0, 0]
            # the start follows the create at once: the runtime's create may wait for it
            # (run --detach, one runtime process fewer), unless the create must join
            # another container's namespaces, bound only while it runs
            joins = any(translate.container_mode(c.host_config.get(_MODE_KEYS[kind]) or "")
                        is not None for kind in namespaces.JOIN_KINDS)
            io = ProcessIO(terminal=c.tty, stdin=bool(c.config.get("OpenStdin")),
                           log_path=c.log_path,
                           console_size=(int(size[0]), int(size[1])) if len(size) == 2 else None,
                           defer_create=not c.tty and not joins)
            path = self._netns(c)
            if path and self._owns_netns(c):
                await netns.ensure(path)
                await self.network.attach(c, path)
            elif path and not netns.is_mounted(path):
                raise errdefs.FailedPrecondition(
                    "cannot join network of a non running container: "
                    f"{path.rsplit('/', 1)[-1]}")
            await self._setup_ipc(c)
            async with self._joined_namespaces(c):
                # managerd mounts the snapshot itself (a missing one fails the create)
                try:
                    await self.manager.create_task(c.id, [], io)
                except errdefs.AlreadyExists:
                    # a task an earlier run left (a start or exit handling cut short):
                    # replaced, instead of asking for one before every create
                    await self._delete_task(c)
                    await self.manager.create_task(c.id, [], io)
            rt.exited, rt.ended = asyncio.Event(), asyncio.Event()
            await self._open_pending_attaches(c)
            pid = await self.manager.start_task(c.id)
        except errdefs.EngineError as err:
            for created, _ in rt.pending_attach:  # waiting attaches find no task and end
                created.set()
            rt.pending_attach = []
            message = str(err)
            c.state.error = message
            c.state.exit_code = _start_error_code(message)
            c.state.status = "created" if not c.state.started_at else "exited"
            try:
                await self._delete_task(c)
            except errdefs.EngineError:
                pass
            await self._release_ipc(c)
            await self.network.release(c)
            await self.save(c)
            if c.host_config.get("AutoRemove"):
                await self._remove(c, remove_volumes=True)
            if isinstance(err, _START_STATUS_KEPT):
                raise
            raise errdefs.InvalidArgument(message) from err
        c.state = State(status="running", pid=pid, started_at=time.time(),
                        health=self._initial_health(c))
        # the exit watch first: a short-lived container's exit handling (its task delete)
        # then overlaps this save; it records the exit once the save is done (rt.started)
        rt.started = asyncio.Event()
        self.emit(c, "start")
        self._watch(c)
        self._start_health(c)
        try:
            await self.save(c)
        finally:
            rt.started.set()

    async def _open_pending_attaches(self, c: Container) -> None:
        """Let attach requests that came before start subscribe between task create and
        start, so they see every byte (docker run attaches before it starts)."""
        rt = self.rt(c.id)
        pending, rt.pending_attach = rt.pending_attach, []
        for created, _ in pending:
            created.set()
        for _, ready in pending:
            try:
                await asyncio.wait_for(ready.wait(), 5)
            except TimeoutError:
                log.warning("attach did not subscribe in time container_id=%s", c.id)

    def attach_gate(self, c: Container) -> tuple[asyncio.Event, asyncio.Event]:
        """(created, ready): created fires once the task exists; set ready once subscribed."""
        gate = (asyncio.Event(), asyncio.Event())
        self.rt(c.id).pending_attach.append(gate)
        return gate

    def _watch(self, c: Container) -> None:
        rt = self.rt(c.id)
        if rt.monitor is None or rt.monitor.done():
            rt.monitor = asyncio.get_running_loop().create_task(self._monitor(c.id))

    async def _monitor(self, container_id: str) -> None:
        """Wait for the task's exit. Survives managerd restarts (the monitors keep the
        container running): an interrupted wait asks Get whether the task still runs, and
        an unreachable managerd is retried with back-off."""
        delay = 0.2
        while True:
            status: ExitStatus | None = None
            try:
                status = await self.manager.wait_task(container_id)
            except asyncio.CancelledError:
                raise
            except errdefs.EngineError as err:
                log.debug("wait interrupted container_id=%s err=%s", container_id, err)
            if container_id not in self.containers or self._shutting_down:
                return
            if status is not None:
                break  # managerd's Wait answers only once the process exited
            try:
                task = await self.manager.get_task(container_id)
            except errdefs.NotFound:
                status = status or ExitStatus(code=255, exited_at=time.time())
                break
            except errdefs.EngineError as err:
                log.info("waiting for managerd container_id=%s err=%s", container_id, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if task.status == "stopped":
                status = status or ExitStatus(code=task.exit_status,
                                              exited_at=task.exited_at or time.time())
                break
            await asyncio.sleep(delay)  # a spurious answer while it still runs
            delay = min(delay * 2, 5.0)
        rt = self.rt(container_id)
        rt.ended.set()
        if rt.monitor is asyncio.current_task():
            rt.monitor = None  # this run is over: a restart during _on_exit needs a new one
        c = self.containers.get(container_id)
        if c is None:
            return
        await self._on_exit(c, status)

    async def _delete_task(self, c: Container, attempts: int = 20) -> ExitStatus:
        """Delete the task (retrying while managerd is unreachable, e.g. restarting)."""
        delay = 0.2
        for attempt in range(attempts):
            try:
                return await self.manager.delete_task(c.id)
            except errdefs.NotFound:
                break
            except errdefs.Unavailable:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 3.0)
        return ExitStatus(code=c.state.exit_code, exited_at=time.time())

    async def _on_exit(self, c: Container, status: ExitStatus) -> None:
        rt = self.rt(c.id)
        if rt.health and not rt.health.done():
            rt.health.cancel()
        netns_gone = None
        if (c.host_config.get("AutoRemove") and self.config.manage_netns
                and self._owns_netns(c)):
            # AutoRemove (never with a restart policy) removes the network namespace
            # anyway: unmount it while the task is deleted (its processes are gone)
            netns_gone = asyncio.ensure_future(
                netns.remove(netns.path_for(self.config.exec_root, c.id)))
        deleted = await self._delete_task(c)
        await self._release_ipc(c)
        await self.network.release(c)
        await rt.started.wait()  # the start of this run saved its state (see _start)
        code = status.code if status.code is not None else deleted.code
        c.state.status = "exited"
        c.state.pid = 0
        c.state.exit_code = code
        c.state.finished_at = status.exited_at or time.time()
        if c.host_config.get("Memory") and self._events_task and not self._events_task.done():
            # managerd publishes /tasks/oom just before /tasks/exit: read up to the exit
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rt.exit_seen.wait(), 0.5)
        rt.exit_seen.clear()
        c.state.oom_killed = bool(status.oom_killed or deleted.oom_killed or rt.oom)
        rt.oom = False
        if c.state.oom_killed:
            self.emit(c, "oom")
        ran_for = c.state.finished_at - c.state.started_at
        self.emit(c, "die", exitCode=str(code))
        restart = (not self._shutting_down and not c.manually_stopped
                   and self._should_restart(c, code))
        if restart:
            c.state.status = "restarting"
            # dockerd's back-off: 100 ms doubled per restart, reset after 10 s of running
            rt.backoff = _RESTART_MIN if ran_for >= 10 or not rt.backoff else min(
                rt.backoff * 2, _RESTART_MAX)
        auto_remove = not restart and bool(c.host_config.get("AutoRemove"))
        if not auto_remove:
            # an AutoRemove record is deleted right below; if apid dies first, the saved
            # "running" state makes restore() reconcile and remove it all the same
            await self.save(c)
        rt.exited.set()
        self._notify(c, "next-exit", code)
        self._notify(c, "not-running", code)
        if restart:
            self._schedule_restart(c, rt.backoff)
        elif auto_remove:
            await self._remove(c, remove_volumes=True, task_deleted=True,
                               netns_gone=netns_gone)
        if netns_gone is not None and not auto_remove:
            await netns_gone  # shutting down with a restart: never left running unawaited

    def _should_restart(self, c: Container, code: int, restore: bool = False) -> bool:
        policy = c.host_config.get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure" and code != 0:
            limit = int(policy.get("MaximumRetryCount") or 0)
            return limit == 0 or c.restart_count < limit
        return False

    def _schedule_restart(self, c: Container, delay: float) -> None:
        rt = self.rt(c.id)
        c.state.status = "restarting"

        async def later() -> None:
            await asyncio.sleep(delay)
            async with rt.lock:
                if c.id not in self.containers or c.manually_stopped or self._shutting_down:
                    return
                c.restart_count += 1
                try:
                    await self._start(c)
                    self.emit(c, "restart")
                except errdefs.EngineError as err:
                    log.warning("restart failed container_id=%s err=%s", c.id, err)
                    c.state.status = "exited"
                    await self.save(c)

        rt.restart = asyncio.get_running_loop().create_task(later())

    def _notify(self, c: Container, condition: str, code: int) -> None:
        rt = self.rt(c.id)
        keep = []
        for w in rt.waiters:
            if w.condition == condition and not w.future.done():
                w.future.set_result(code)
            elif not w.future.done():
                keep.append(w)
        rt.waiters = keep

    # --- wait ---------------------------------------------------------------------------

    def wait_future(self, ref: str, condition: str) -> asyncio.Future:
        """Register a waiter now (before start); the future resolves to the exit code."""
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise errdefs.InvalidArgument(f"invalid condition: \"{condition}\"")
        condition = condition or "not-running"
        c = self.get(ref)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        if condition == "not-running" and c.state.status not in ("running", "paused",
                                                                  "restarting"):
            fut.set_result(c.state.exit_code)
            return fut
        self.rt(c.id).waiters.append(_Waiter(condition, fut))
        return fut

    # --- stop / kill / restart ----------------------------------------------------------

    async def kill(self, ref: str, signal: str | int | None = None) -> None:
        c = self.get(ref)
        sig = translate.parse_signal(signal, default=9)
        if c.state.status not in ("running", "paused"):
            raise errdefs.FailedPrecondition(
                f"Cannot kill container: {ref}: Container {c.id} is not running")
        if sig == 9:
            c.manually_stopped = True if self._policy(c) != "always" else c.manually_stopped
        self.emit(c, "kill", signal=str(sig))
        await self.manager.kill_task(c.id, sig)

    def _policy(self, c: Container) -> str:
        return (c.host_config.get("RestartPolicy") or {}).get("Name") or "no"

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        """StopSignal, wait `timeout` (default StopTimeout or 10 s), then SIGKILL; 304 if stopped."""
        c = self.get(ref)
        rt = self.rt(c.id)
        if c.state.status == "restarting":
            c.manually_stopped = True
            if rt.restart and not rt.restart.done():
                rt.restart.cancel()
            c.state.status = "exited"
            await self.save(c)
            self.emit(c, "stop")
            return
        if c.state.status not in ("running", "paused"):
            raise errdefs.NotModified("container already stopped")
        c.manually_stopped = True
        await self.save(c)
        await self._stop(c, timeout, signal)
        self.emit(c, "stop")

    async def _stop(self, c: Container, timeout: int | None, signal: str | None = None) -> None:
        rt = self.rt(c.id)
        if timeout is None:
            timeout = c.config.get("StopTimeout")
        if timeout is None:
            timeout = DEFAULT_STOP_TIMEOUT
        sig = translate.parse_signal(signal or c.config.get("StopSignal"), default=15)
        exited, ended = rt.exited, rt.ended
        if c.state.status == "paused":
            try:
                await self.manager.resume_task(c.id)
            except errdefs.EngineError:
                pass
        if sig != 9:
            self.emit(c, "kill", signal=str(sig))
            try:
                await self.manager.kill_task(c.id, sig)
            except errdefs.NotFound:
                return
            try:
                await asyncio.wait_for(_first_set(ended, exited),
                                       None if timeout < 0 else timeout)
                await self._await_cleanup(c, exited)
                return
            except TimeoutError:
                pass
        # SIGKILL, then wait for the exit; give up with an error rather than hang when
        # the exit never comes (kill once more with all=True first). Only the exit is
        # timed: the task's cleanup that follows it is waited for on its own.
        for attempt, patience in enumerate(KILL_PATIENCE):
            self.emit(c, "kill", signal="9")
            try:
                await self.manager.kill_task(c.id, 9, all_processes=attempt > 0)
            except (errdefs.NotFound, errdefs.FailedPrecondition):
                pass
            try:
                await asyncio.wait_for(_first_set(ended, exited), patience)
                await self._await_cleanup(c, exited)
                return
            except TimeoutError:
                log.warning("no exit after SIGKILL container_id=%s attempt=%d", c.id, attempt)
        raise errdefs.EngineError(f"tried to kill container {c.id}, but did not receive an "
                                  "exit event")

    @staticmethod
    async def _await_cleanup(c: Container, exited: asyncio.Event) -> None:
        """The exit is known: wait until _on_exit recorded it (task deleted, state saved)."""
        try:
            await asyncio.wait_for(exited.wait(), CLEANUP_WAIT)
        except TimeoutError:
            raise errdefs.EngineError(f"container {c.id} exited, but its cleanup did not "
                                      f"finish in {CLEANUP_WAIT:g} s") from None

    async def restart(self, ref: str, timeout: int | None = None, signal: str | None = None
                      ) -> None:
        c = self.get(ref)
        if c.state.status in ("running", "paused"):
            c.manually_stopped = True
            await self._stop(c, timeout, signal)
        rt = self.rt(c.id)
        async with rt.lock:
            if c.state.status != "running":
                c.manually_stopped = False
                await self._start(c)
        self.emit(c, "restart")

    # --- remove -------------------------------------------------------------------------

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        if c.state.status in ("running", "paused", "restarting"):
            if not force:
                if c.state.status == "paused":
                    raise errdefs.FailedPrecondition(
                        f"You cannot remove a paused container {c.id}. Unpause and then stop "
                        "the container before attempting removal or force remove")
                raise errdefs.FailedPrecondition(
                    f"You cannot remove a running container {c.id}. Stop the container before "
                    "attempting removal or force remove")
            c.manually_stopped = True
            rt = self.rt(c.id)
            if rt.restart and not rt.restart.done():
                rt.restart.cancel()
            if c.state.status != "restarting":
                await self._stop(c, 0, "KILL")
        if c.state.status == "removing":
            raise errdefs.FailedPrecondition(f"removal of container {c.id} is already in progress")
        await self._remove(c, volumes)

    async def _remove(self, c: Container, remove_volumes: bool, task_deleted: bool = False,
                      netns_gone: asyncio.Future | None = None) -> None:
        """Delete the task (unless task_deleted: the exit handling just did, and no run
        started since), the record, the snapshot, the network namespace (netns_gone: its
        removal already under way) and c.root."""
        if c.id not in self.containers:
            return
        c.state.status = "removing"
        rt = self.rt(c.id)
        for task in (rt.monitor, rt.restart, rt.health):
            if task and not task.done() and task is not asyncio.current_task():
                task.cancel()
        task_deleted = task_deleted and (rt.monitor is None
                                         or rt.monitor is asyncio.current_task())
        if not task_deleted:
            try:
                await self.manager.delete_task(c.id)
            except errdefs.EngineError:
                pass
        for e in list(c.exec_ids):
            self.execs.pop(e, None)

        async def record() -> None:
            try:
                await self.manager.delete_container(c.id)
            except errdefs.NotFound:
                pass

        async def snapshot() -> None:
            if not task_deleted:
                # the record goes first: if it stays (its task could not be deleted),
                # so does the snapshot it names
                await record()
            try:
                await self.manager.remove_snapshot(c.snapshot_key)
            except errdefs.NotFound:
                pass

        async def files() -> None:
            if netns_gone is not None:
                await netns_gone
            elif self.config.manage_netns and self._owns_netns(c):
                await netns.remove(netns.path_for(self.config.exec_root, c.id))
            await self.network.forget(c)
            await self._release_ipc(c)  # before the rmtree: the shm tmpfs lives in c.root
            await asyncio.to_thread(shutil.rmtree, c.root, ignore_errors=True)

        # the host-side files do not depend on the snapshot, nor (once the task is gone)
        # the snapshot on the record: at once
        steps = [snapshot(), files()] + ([record()] if task_deleted else [])
        results = await asyncio.gather(*steps, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        del self.containers[c.id]
        for v in c.volumes:
            self.events.publish("volume", "unmount", v["Name"], {"container": c.id,
                                                                 "driver": "local"})
            if remove_volumes and v.get("Anonymous") and not self.volume_users(v["Name"]):
                with contextlib.suppress(errdefs.NotFound, OSError):
                    self.volumes.remove(v["Name"])
                    self.events.publish("volume", "destroy", v["Name"], {"driver": "local"})
        self.names.release(c.id)
        self.emit(c, "destroy")
        self._notify(c, "removed", c.state.exit_code)
        for condition in ("next-exit", "not-running"):
            self._notify(c, condition, c.state.exit_code)
        self._rt.pop(c.id, None)

    def volume_users(self, name: str) -> list[str]:
        """Ids of the containers that mount volume `name`."""
        return [c.id for c in self.containers.values()
                if any(v["Name"] == name for v in c.volumes)]

    # --- small verbs --------------------------------------------------------------------

    async def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        if not new_name:
            raise errdefs.InvalidArgument("Neither old nor new names may be empty")
        full = validate_name(new_name)
        if full == c.name:
            raise errdefs.InvalidArgument("Renaming a container with the same name as its "
                                          "current name")
        old = c.name
        self.names.rename(c.id, old, full)
        c.name = full
        await self.save(c)
        self.network.renamed(c)  # fellow network members' /etc/hosts name it anew
        self.emit(c, "rename", oldName=old)

    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        if c.state.status == "paused":
            raise errdefs.FailedPrecondition(f"Container {c.id} is already paused")
        if c.state.status != "running":
            raise errdefs.FailedPrecondition(f"Container {c.id} is not running")
        await self.manager.pause_task(c.id)
        c.state.status = "paused"
        await self.save(c)
        self.emit(c, "pause")

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        if c.state.status != "paused":
            raise errdefs.FailedPrecondition(f"Container {c.id} is not paused")
        await self.manager.resume_task(c.id)
        c.state.status = "running"
        await self.save(c)
        self.emit(c, "unpause")

    async def update(self, ref: str, body: dict[str, Any]) -> list[str]:
        c = self.get(ref)
        keys = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares",
                "CpuPeriod", "CpuQuota", "CpusetCpus", "CpusetMems", "PidsLimit", "BlkioWeight")
        changes = {k: body[k] for k in keys if body.get(k) not in (None, 0, "")}
        policy = body.get("RestartPolicy")
        if policy and policy.get("Name"):
            if c.host_config.get("AutoRemove") and policy["Name"] != "no":
                raise errdefs.InvalidArgument("Restart policy cannot be updated because "
                                              "AutoRemove is enabled for the container")
            trial = dict(c.host_config, RestartPolicy=policy)
            self._validate_host_config(trial)
            c.host_config["RestartPolicy"] = policy
        merged = dict(c.host_config, **changes)
        spec = translate.default_spec(c.id)
        translate.with_resources(merged)(spec)
        if changes and c.state.status in ("running", "paused"):
            await self.manager.update_task(c.id, spec["linux"]["resources"])
        c.host_config.update(changes)
        await self.save(c)
        self.emit(c, "update")
        return []

    # --- health checks ------------------------------------------------------------------

    def _healthcheck(self, c: Container) -> dict[str, Any] | None:
        hc = c.config.get("Healthcheck") or {}
        test = hc.get("Test") or []
        if not test or test[0] == "NONE":
            return None
        return hc

    def _initial_health(self, c: Container) -> dict[str, Any] | None:
        if not self._healthcheck(c):
            return None
        return {"Status": "starting", "FailingStreak": 0, "Log": []}

    def _start_health(self, c: Container) -> None:
        hc = self._healthcheck(c)
        if not hc:
            return
        if c.state.health is None:
            c.state.health = {"Status": "starting", "FailingStreak": 0, "Log": []}
        rt = self.rt(c.id)
        if rt.health and not rt.health.done():
            rt.health.cancel()
        rt.health = asyncio.get_running_loop().create_task(self._health_loop(c, hc))

    async def _health_loop(self, c: Container, hc: dict[str, Any]) -> None:
        interval = (hc.get("Interval") or 30_000_000_000) / 1e9
        timeout = (hc.get("Timeout") or 30_000_000_000) / 1e9
        start_period = (hc.get("StartPeriod") or 0) / 1e9
        start_interval = (hc.get("StartInterval") or 5_000_000_000) / 1e9
        retries = int(hc.get("Retries") or 3)
        argv = translate.healthcheck_command(hc["Test"], c.config.get("Shell"))
        started = time.monotonic()
        while c.state.status == "running":
            in_start = time.monotonic() - started < start_period
            await asyncio.sleep(start_interval if in_start and c.state.health and
                                c.state.health["Status"] == "starting" and start_period else
                                interval)
            if c.state.status != "running" or argv is None:
                return
            begin = time.time()
            code, output = await self._probe(c, argv, timeout)
            end = time.time()
            health = c.state.health or {"Status": "starting", "FailingStreak": 0, "Log": []}
            entry = {"Start": rfc3339(begin), "End": rfc3339(end), "ExitCode": code,
                     "Output": output[:4096]}
            health["Log"] = (health.get("Log") or [])[-4:] + [entry]
            old = health["Status"]
            if code == 0:
                health["FailingStreak"] = 0
                health["Status"] = "healthy"
            elif not (in_start and old == "starting"):
                health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
                if health["FailingStreak"] >= retries:
                    health["Status"] = "unhealthy"
            c.state.health = health
            if health["Status"] != old:
                self.emit(c, f"health_status: {health['Status']}")
            await self.save(c)

    async def _probe(self, c: Container, argv: list[str], timeout: float) -> tuple[int, str]:
        exec_id = ids.new_id()
        process = self._exec_process(c, {"Cmd": argv, "Env": [], "User": "", "WorkingDir": ""})
        chunks: list[bytes] = []
        try:
            await self.manager.exec_process(c.id, exec_id, process, ProcessIO())

            async def run() -> int:
                session = await self.manager.attach(c.id, exec_id, stdout=True, stderr=True)
                try:
                    await self.manager.start_process(c.id, exec_id)
                    async for _, data in session.frames():
                        chunks.append(data)
                finally:
                    await session.close()
                return (await self.manager.wait_task(c.id, exec_id)).code

            code = await asyncio.wait_for(run(), timeout)
        except TimeoutError:
            try:
                await self.manager.kill_task(c.id, 9, exec_id)
            except errdefs.EngineError:
                pass
            code = -1
            chunks.append(f"Health check exceeded timeout ({timeout:g}s)".encode())
        except errdefs.EngineError as err:
            code, chunks = -1, [str(err).encode()]
        finally:
            try:
                await self.manager.delete_process(c.id, exec_id)
            except errdefs.EngineError:
                pass
        return code, b"".join(chunks).decode(errors="replace")

    # --- exec ---------------------------------------------------------------------------

    def _exec_process(self, c: Container, cfg: dict[str, Any]) -> dict[str, Any]:
        env = list(c.config.get("Env") or [])
        for e in cfg.get("Env") or []:
            key = e.split("=", 1)[0]
            env = [x for x in env if x.split("=", 1)[0] != key] + [e]
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, translate.DEFAULT_PATH)
        if cfg.get("Tty") and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        caps = translate.effective_caps(c.host_config.get("CapAdd"), c.host_config.get("CapDrop"),
                                        bool(c.host_config.get("Privileged") or
                                             cfg.get("Privileged")), _host_caps())
        user = cfg.get("User") or c.config.get("User") or ""
        uid, gid, extra = (0, 0, [0])
        if user and all(p.isdigit() for p in user.split(":") if p):
            uid, gid, extra = translate.resolve_user(user, None, None)
        elif user:
            uid, gid, extra = self._resolve_user_in_container(c, user)
        return {"args": list(cfg.get("Cmd") or []), "env": env,
                "cwd": cfg.get("WorkingDir") or c.config.get("WorkingDir") or "/",
                "terminal": bool(cfg.get("Tty")),
                "user": {"uid": uid, "gid": gid, "additionalGids": extra},
                "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                "noNewPrivileges": "no-new-privileges" in (c.host_config.get("SecurityOpt")
                                                           or [])}

    def _resolve_user_in_container(self, c: Container, user: str) -> tuple[int, int, list[int]]:
        def read(path: str) -> str | None:
            try:
                with open(f"/proc/{c.state.pid}/root{path}") as f:
                    return f.read()
            except OSError:
                return None
        return translate.resolve_user(user, read("/etc/passwd"), read("/etc/group"))

    def exec_create(self, ref: str, cfg: dict[str, Any]) -> str:
        c = self.get(ref)
        if c.state.status == "paused":
            raise errdefs.FailedPrecondition(f"Container {c.id} is paused, unpause the container "
                                             "before exec")
        if c.state.status != "running":
            raise errdefs.FailedPrecondition(f"Container {c.id} is not running")
        if not cfg.get("Cmd"):
            raise errdefs.InvalidArgument("No exec command specified")
        exec_id = ids.new_id()
        self.execs[exec_id] = ExecRecord(id=exec_id, container_id=c.id, config=cfg)
        c.exec_ids.append(exec_id)
        self.emit(c, f"exec_create: {' '.join(cfg['Cmd'])}", execID=exec_id)
        return exec_id

    def get_exec(self, exec_id: str) -> ExecRecord:
        rec = self.execs.get(exec_id)
        if rec is None:
            raise errdefs.NotFound(f"No such exec instance: {exec_id}")
        return rec

    async def exec_prepare(self, exec_id: str) -> tuple[ExecRecord, Container]:
        """Create the exec process in managerd (not started)."""
        rec = self.get_exec(exec_id)
        if rec.started:
            raise errdefs.FailedPrecondition(f"Error: Exec command {exec_id} has already run")
        c = self.containers.get(rec.container_id)
        if c is None:
            raise errdefs.NotFound(f"No such container: {rec.container_id}")
        if c.state.status != "running":
            raise errdefs.FailedPrecondition(f"Container {c.id} is not running")
        rec.started = True
        process = self._exec_process(c, rec.config)
        size = rec.config.get("ConsoleSize") or [0, 0]
        await self.manager.exec_process(c.id, exec_id, process, ProcessIO(
            terminal=bool(rec.config.get("Tty")), stdin=bool(rec.config.get("AttachStdin")),
            console_size=(int(size[0]), int(size[1])) if len(size) == 2 else None))
        return rec, c

    async def exec_run(self, rec: ExecRecord, c: Container) -> int:
        """Start a prepared exec and wait for it; returns its exit code."""
        await self.exec_begin(rec, c)
        return await self.exec_finish(rec, c)

    async def exec_begin(self, rec: ExecRecord, c: Container) -> None:
        """Start a prepared exec (errors are the start errors: not found, permission)."""
        try:
            rec.pid = await self.manager.start_process(c.id, rec.id)
        except errdefs.EngineError as err:
            rec.exit_code = _start_error_code(str(err))
            try:
                await self.manager.delete_process(c.id, rec.id)
            except errdefs.EngineError:
                pass
            raise
        rec.running = True
        self.emit(c, f"exec_start: {' '.join(rec.config.get('Cmd') or [])}", execID=rec.id)

    async def exec_finish(self, rec: ExecRecord, c: Container) -> int:
        """Wait for a started exec, clean it up, return its exit code."""
        try:
            status = await self.manager.wait_task(c.id, rec.id)
            rec.exit_code = status.code
        finally:
            rec.running = False
            try:
                await self.manager.delete_process(c.id, rec.id)
            except errdefs.EngineError:
                pass
        self.emit(c, "exec_die", execID=rec.id, exitCode=str(rec.exit_code))
        return rec.exit_code

    # --- top ----------------------------------------------------------------------------

    async def top(self, ref: str, ps_args: str = "-ef") -> dict[str, Any]:
        c = self.get(ref)
        if c.state.status not in ("running", "paused"):
            raise errdefs.FailedPrecondition(f"Container {c.id} is not running")
        pids = await self.manager.pids(c.id)
        proc = await asyncio.create_subprocess_exec(
            "ps", *(ps_args.split() if ps_args else ["-ef"]),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise errdefs.InvalidArgument(f"ps: {err.decode().strip()}")
        lines = out.decode().splitlines()
        if not lines:
            return {"Titles": [], "Processes": []}
        titles = lines[0].split()
        try:
            pid_col = titles.index("PID")
        except ValueError as e:
            raise errdefs.InvalidArgument("Couldn't find PID field in ps output") from e
        wanted = set(pids)
        procs = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > pid_col and fields[pid_col].isdigit() and int(
                    fields[pid_col]) in wanted:
                procs.append(fields)
        return {"Titles": titles, "Processes": procs}

