"""FakeManager: the apid Manager interface in memory, for route and daemon unit tests.

A task "runs" its argv symbolically: `echo X` writes X to the log and exits 0,
`exit N` exits N, `sleep` runs until killed (exit 128+signal), a path under
/nonexistent fails to start like the runtime does.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field

from dockyard.apid.manager import ContainerInfo, ExitStatus, ImageInfo, Mount, ProcessIO, TaskInfo

from dockyard import errdefs


@dataclass
class FakeTask:
    container_id: str
    io: ProcessIO
    status: str = "created"
    pid: int = 0
    exit: ExitStatus | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    output: asyncio.Queue = field(default_factory=asyncio.Queue)
    stdin: list[bytes] = field(default_factory=list)


class FakeSession:
    def __init__(self, task: FakeTask) -> None:
        self.task = task

    async def frames(self):
        while True:
            item = await self.task.output.get()
            if item is None:
                return
            yield item

    async def write(self, data: bytes) -> None:
        self.task.stdin.append(data)

    async def close_stdin(self) -> None:
        pass

    async def image_summaries(self, all_images: bool = False) -> list[dict]:
        return [{"Id": i.config_digest, "ParentId": "",
                 "RepoTags": [n.replace("docker.io/library/", "")], "RepoDigests": [],
                 "Created": 1700000000, "Size": i.size, "SharedSize": -1, "VirtualSize": i.size,
                 "Labels": {}, "Containers": -1} for n, i in self.images.items()]

    async def image_inspect(self, name: str) -> dict:
        img = await self.get_image(name)
        return {"Id": img.config_digest, "RepoTags": [img.name], "Config": img.config["config"]}

    async def close(self) -> None:
        pass


class FakeManager:
    def __init__(self) -> None:
        self.images: dict[str, ImageInfo] = {}
        self.containers: dict[str, ContainerInfo] = {}
        self.snapshots: dict[str, str] = {}
        self.tasks: dict[str, FakeTask] = {}
        self.calls: list[tuple] = []
        self._pid = 1000

    def add_image(self, name: str, config: dict | None = None) -> ImageInfo:
        cfg = {"config": config or {"Cmd": ["sh"], "Env": ["PATH=/bin"]}, "rootfs": {
            "type": "layers", "diff_ids": ["sha256:" + "1" * 64]}, "os": "linux",
            "architecture": "amd64", "created": "2026-01-01T00:00:00Z"}
        img = ImageInfo(name=name, digest="sha256:" + "2" * 64,
                        config_digest="sha256:" + format(abs(hash(name)), "x").rjust(64, "0"),
                        config=cfg, chain_id="sha256:" + "1" * 64, size=1234,
                        created_at=time.time())
        self.images[name] = img
        return img

    async def get_image(self, ref: str) -> ImageInfo:
        for name, img in self.images.items():
            if ref in (name, name.rsplit("/", 1)[-1], name.rsplit(":", 1)[0]) or \
                    img.config_digest.startswith(ref if ref.startswith("sha256:") else
                                                 "sha256:" + ref):
                return img
            if name.endswith("/" + ref) or name.endswith("/" + ref + ":latest"):
                return img
        raise errdefs.NotFound(f"image {ref} not found")

    async def list_images(self) -> list[ImageInfo]:
        return list(self.images.values())

    async def read_image_file(self, image: ImageInfo, path: str) -> bytes | None:
        files = {"/etc/passwd": b"root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home:/bin/sh\n",
                 "/etc/group": b"root:x:0:\nalice:x:1000:\nwheel:x:10:alice\n"}
        return files.get(path)

    async def create_container(self, info: ContainerInfo) -> None:
        if info.id in self.containers:
            raise errdefs.AlreadyExists(info.id)
        self.containers[info.id] = info

    async def update_container(self, container_id, labels, extensions) -> None:
        c = self.containers[container_id]
        c.labels = dict(labels)
        c.extensions.update(extensions)

    async def delete_container(self, container_id: str) -> None:
        if self.containers.pop(container_id, None) is None:
            raise errdefs.NotFound(container_id)

    async def list_containers(self) -> list[ContainerInfo]:
        return list(self.containers.values())

    async def prepare_snapshot(self, key: str, parent: str) -> list[Mount]:
        if key in self.snapshots:
            raise errdefs.AlreadyExists(key)
        self.snapshots[key] = parent
        return [Mount("overlay", "overlay", "", [f"lowerdir=/x/{parent}"])]

    async def snapshot_mounts(self, key: str) -> list[Mount]:
        if key not in self.snapshots:
            raise errdefs.NotFound(key)
        return [Mount("overlay", "overlay")]

    async def remove_snapshot(self, key: str) -> None:
        if self.snapshots.pop(key, None) is None:
            raise errdefs.NotFound(key)

    async def snapshot_usage(self, key: str) -> int:
        return 4096

    async def create_task(self, container_id: str, rootfs, io: ProcessIO) -> int:
        if container_id in self.tasks:
            raise errdefs.AlreadyExists(f"task {container_id}")
        self._pid += 1
        self.tasks[container_id] = FakeTask(container_id, io, pid=self._pid)
        self.calls.append(("create_task", container_id, io))
        return self._pid

    def _args(self, container_id: str) -> list[str]:
        return json.loads(json.dumps(self.containers[container_id].spec))["process"]["args"]

    async def start_task(self, container_id: str) -> int:
        task = self.tasks[container_id]
        args = self._args(container_id)
        if args[0].startswith("/nonexistent"):
            raise errdefs.FailedPrecondition(
                f'exec: "{args[0]}": stat {args[0]}: no such file or directory')
        task.status = "running"
        loop = asyncio.get_running_loop()
        if args[0] == "echo":
            text = (" ".join(args[1:]) + "\n").encode()
            loop.call_soon(self._emit, task, 1, text)
            loop.call_soon(self._finish, task, 0)
        elif args[0] == "exit":
            loop.call_soon(self._finish, task, int(args[1]))
        return task.pid

    def _emit(self, task: FakeTask, stream: int, data: bytes) -> None:
        task.output.put_nowait((stream, data))
        if task.io.log_path:
            os.makedirs(os.path.dirname(task.io.log_path), exist_ok=True)
            with open(task.io.log_path, "a") as f:
                f.write(json.dumps({"log": data.decode(), "stream": "stdout" if stream == 1
                                    else "stderr", "time": "2026-01-01T00:00:00.5Z"}) + "\n")

    def _finish(self, task: FakeTask, code: int) -> None:
        if task.exit is None:
            task.status = "stopped"
            task.exit = ExitStatus(code=code, exited_at=time.time())
            task.output.put_nowait(None)
            task.done.set()

    async def get_task(self, container_id: str) -> TaskInfo:
        task = self.tasks.get(container_id)
        if task is None:
            raise errdefs.NotFound(f"task {container_id}")
        return TaskInfo(container_id, task.pid, task.status,
                        task.exit.code if task.exit else 0)

    async def kill_task(self, container_id: str, signal: int, exec_id: str = "",
                        all_processes: bool = False) -> None:
        self.calls.append(("kill", container_id, signal))
        task = self.tasks.get(container_id)
        if task is None:
            raise errdefs.NotFound(container_id)
        if signal in (9, 15, 2):
            self._finish(task, 128 + signal)

    async def delete_task(self, container_id: str) -> ExitStatus:
        task = self.tasks.pop(container_id, None)
        if task is None:
            raise errdefs.NotFound(container_id)
        return task.exit or ExitStatus(137, time.time())

    async def wait_task(self, container_id: str, exec_id: str = "") -> ExitStatus:
        task = self.tasks.get(container_id)
        if task is None:
            raise errdefs.NotFound(container_id)
        await task.done.wait()
        return task.exit

    async def exec_process(self, *a, **k) -> None:
        raise errdefs.FailedPrecondition("exec not supported by the fake")

    async def start_process(self, container_id: str, exec_id: str) -> int:
        return await self.start_task(container_id)

    async def delete_process(self, container_id: str, exec_id: str) -> None:
        pass

    async def pids(self, container_id: str) -> list[int]:
        return [self.tasks[container_id].pid]

    async def pause_task(self, container_id: str) -> None:
        self.tasks[container_id].status = "paused"

    async def resume_task(self, container_id: str) -> None:
        self.tasks[container_id].status = "running"

    async def update_task(self, container_id: str, resources) -> None:
        self.calls.append(("update", container_id, resources))

    async def metrics(self, container_id: str) -> dict:
        return {"cpu": {"usage": {"total": 1000, "kernel": 10, "user": 990}},
                "memory": {"usage": {"usage": 4096, "max": 8192, "limit": 1 << 30},
                           "raw": {"cache": 0}}, "pids": {"current": 1}}

    async def resize(self, *a) -> None:
        pass

    async def close_stdin(self, *a) -> None:
        pass

    async def attach(self, container_id: str, exec_id: str = "", *, stdin=False, stdout=True,
                     stderr=True) -> FakeSession:
        return FakeSession(self.tasks[container_id])

    async def image_summaries(self, all_images: bool = False) -> list[dict]:
        return [{"Id": i.config_digest, "ParentId": "",
                 "RepoTags": [n.replace("docker.io/library/", "")], "RepoDigests": [],
                 "Created": 1700000000, "Size": i.size, "SharedSize": -1, "VirtualSize": i.size,
                 "Labels": {}, "Containers": -1} for n, i in self.images.items()]

    async def image_inspect(self, name: str) -> dict:
        img = await self.get_image(name)
        return {"Id": img.config_digest, "RepoTags": [img.name], "Config": img.config["config"]}

    async def close(self) -> None:
        pass
