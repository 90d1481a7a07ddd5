"""What apid needs from managerd, as one async interface with plain dataclasses.

Owns the boundary between Docker semantics (apid) and the containerd-like
manager: routes and the daemon call only these methods; `grpc_manager.py`
implements them over managerd's gRPC services (errors arrive as errdefs),
`tests/fakes/apid_manager.py` implements them in memory. Must not contain Docker
behaviour (restart policies, names, JSON shapes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["ImageInfo", "ContainerInfo", "TaskInfo", "ExitStatus", "Mount", "ProcessIO",
           "Manager", "AttachSession", "NAMESPACE"]

NAMESPACE = "moby"  # the managerd namespace apid keeps its objects in (dockerd's name)


@dataclass
class Mount:
    type: str
    source: str
    target: str = ""
    options: list[str] = field(default_factory=list)


@dataclass
class ImageInfo:
    """An image record resolved to its config: what create, list and inspect need."""

    name: str  # normalised reference, docker.io/library/busybox:latest
    digest: str  # target (manifest or index) digest
    config_digest: str  # the image ID
    config: dict[str, Any]  # the whole image config JSON
    chain_id: str  # committed snapshot of the top layer
    size: int = 0  # compressed size of the layers
    created_at: float = 0.0  # record creation (unix seconds)
    labels: dict[str, str] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)  # diff ids


@dataclass
class ContainerInfo:
    """managerd's container record (metadata only; no process state)."""

    id: str
    image: str
    spec: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, bytes] = field(default_factory=dict)
    snapshot_key: str = ""
    created_at: float = 0.0


@dataclass
class TaskInfo:
    """A task's live state: status is created|running|stopped|paused|pausing|unknown."""

    id: str
    pid: int
    status: str
    exit_status: int = 0
    exited_at: float = 0.0


@dataclass
class ExitStatus:
    code: int
    exited_at: float  # unix seconds
    oom_killed: bool = False


@dataclass
class ProcessIO:
    """How a task's or exec's stdio is wired by managerd's monitor."""

    terminal: bool = False
    stdin: bool = False  # keep a stdin pipe open for attach
    log_path: str = ""  # json-file log (containers only); "" for execs


class AttachSession(Protocol):
    """One attachment to a process's stdio (the monitor fans output out to sessions)."""

    def frames(self) -> AsyncIterator[tuple[int, bytes]]:
        """(1=stdout | 2=stderr, bytes) until the process's output closes."""
        ...

    async def write(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...
    async def close(self) -> None: ...


class Manager(Protocol):
    """managerd as apid sees it. Raises dockyard.errdefs errors."""

    # images
    async def get_image(self, ref: str) -> ImageInfo: ...
    async def list_images(self) -> list[ImageInfo]: ...
    async def read_image_file(self, image: ImageInfo, path: str) -> bytes | None: ...

    # containers
    async def create_container(self, info: ContainerInfo) -> None: ...
    async def update_container(self, container_id: str, labels: dict[str, str],
                               extensions: dict[str, bytes]) -> None: ...
    async def delete_container(self, container_id: str) -> None: ...
    async def list_containers(self) -> list[ContainerInfo]: ...

    # snapshots
    async def prepare_snapshot(self, key: str, parent: str) -> list[Mount]: ...
    async def snapshot_mounts(self, key: str) -> list[Mount]: ...
    async def remove_snapshot(self, key: str) -> None: ...
    async def snapshot_usage(self, key: str) -> int: ...

    # tasks
    async def create_task(self, container_id: str, rootfs: list[Mount], io: ProcessIO) -> int: ...
    async def start_task(self, container_id: str) -> int: ...
    async def get_task(self, container_id: str) -> TaskInfo: ...
    async def kill_task(self, container_id: str, signal: int, exec_id: str = "") -> None: ...
    async def delete_task(self, container_id: str) -> ExitStatus: ...
    async def wait_task(self, container_id: str, exec_id: str = "") -> ExitStatus: ...
    async def exec_process(self, container_id: str, exec_id: str, process: dict[str, Any],
                           io: ProcessIO) -> None: ...
    async def start_process(self, container_id: str, exec_id: str) -> int: ...
    async def delete_process(self, container_id: str, exec_id: str) -> None: ...
    async def pids(self, container_id: str) -> list[int]: ...
    async def pause_task(self, container_id: str) -> None: ...
    async def resume_task(self, container_id: str) -> None: ...
    async def update_task(self, container_id: str, resources: dict[str, Any]) -> None: ...
    async def metrics(self, container_id: str) -> dict[str, Any]: ...
    async def resize(self, container_id: str, exec_id: str, width: int, height: int) -> None: ...
    async def close_stdin(self, container_id: str, exec_id: str = "") -> None: ...
    async def attach(self, container_id: str, exec_id: str = "", *, stdin: bool = False,
                     stdout: bool = True, stderr: bool = True) -> AttachSession:
        """Subscribe to a created (or running) process's stdio; output produced after this
        returns is delivered (attach before start loses nothing)."""
        ...

    async def close(self) -> None: ...
