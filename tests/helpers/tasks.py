"""Containers and tasks on a running managerd, for tests and benchmarks.

A busybox rootfs is committed once per namespace as an overlayfs snapshot;
every container gets an active snapshot on top of it, a spec from
busybox.base_config (cgroupsPath /dockyard/<id>) and a runtime binary. Also:
an event collector, attach helpers and the leak scanners the task tests use.
"""

from __future__ import annotations

import json
import os
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from helpers import busybox

__all__ = ["commit_busybox", "make_container", "tasks_stub", "EventLog", "Attach",
           "leaked_mounts", "leaked_cgroups", "processes_of", "new_id"]

SNAPSHOTTER = "overlayfs"


def new_id(prefix: str = "dy") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def tasks_stub(client):
    from dockyard.protos.services.tasks.v1 import tasks_pb2_grpc

    return client.stub(tasks_pb2_grpc.TasksStub)


def commit_busybox(client, name: str = "busybox-base") -> str:
    """Commit a busybox rootfs as snapshot `name` in the client's namespace."""
    from dockyard.managerd.snapshots.mount import Mount, mount_all, unmount
    from dockyard.protos.services.snapshots.v1 import snapshots_pb2 as spb

    key = f"{name}-prepare-{uuid.uuid4().hex[:8]}"
    resp = client.snapshots.Prepare(spb.PrepareSnapshotRequest(snapshotter=SNAPSHOTTER,
                                                               key=key))
    with tempfile.TemporaryDirectory(prefix="dy-snap-") as target:
        mount_all([Mount(m.type, m.source, tuple(m.options)) for m in resp.mounts], target)
        try:
            busybox.make_rootfs(target)
        finally:
            unmount(target)
    client.snapshots.Commit(spb.CommitSnapshotRequest(snapshotter=SNAPSHOTTER, name=name,
                                                      key=key))
    return name


def make_container(client, cid: str, args: list[str], runtime: str, parent: str,
                   resources: dict | None = None, **process: object) -> str:
    """Containers.Create with an active snapshot `cid` on top of parent (resources:
    merged into linux.resources)."""
    from dockyard.protos.services.containers.v1 import containers_pb2 as cpb
    from dockyard.protos.services.snapshots.v1 import snapshots_pb2 as spb

    client.snapshots.Prepare(spb.PrepareSnapshotRequest(snapshotter=SNAPSHOTTER, key=cid,
                                                        parent=parent))
    spec = busybox.base_config(args, **process)
    spec["root"]["readonly"] = False
    spec["linux"]["cgroupsPath"] = f"/dockyard/{cid}"
    spec["linux"]["resources"].update(resources or {})
    client.containers.Create(cpb.CreateContainerRequest(container=cpb.Container(
        id=cid, runtime=cpb.Runtime(name=runtime), spec=json.dumps(spec).encode(),
        snapshotter=SNAPSHOTTER, snapshot_key=cid)))
    return cid


def remove_container(client, cid: str) -> None:
    """Best-effort cleanup: task (forced), container, snapshot."""
    from dockyard.protos.services.containers.v1 import containers_pb2 as cpb
    from dockyard.protos.services.snapshots.v1 import snapshots_pb2 as spb
    from dockyard.protos.services.tasks.v1 import tasks_pb2 as tpb

    from dockyard import errdefs

    for call in (lambda: tasks_stub(client).Delete(tpb.DeleteTaskRequest(container_id=cid,
                                                                         force=True)),
                 lambda: client.containers.Delete(cpb.DeleteContainerRequest(id=cid)),
                 lambda: client.snapshots.Remove(spb.RemoveSnapshotRequest(
                     snapshotter=SNAPSHOTTER, key=cid))):
        try:
            call()
        except errdefs.NotFound:
            pass


class EventLog:
    """Collects the events of one namespace in a background thread."""

    def __init__(self, client, namespace: str) -> None:
        from dockyard.protos.services.events.v1 import events_pb2

        self._stream = client.events.Subscribe(events_pb2.SubscribeRequest(
            filters=[f"namespace=={namespace}"]))
        self._queue: queue.Queue = queue.Queue()
        self.seen: list[tuple[str, object]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from dockyard.protos.events import task_pb2

        try:
            for env in self._stream:
                msg = None
                name = env.event.TypeName().rsplit(".", 1)[-1]
                cls = getattr(task_pb2, name, None)
                if cls is not None:
                    msg = cls()
                    env.event.Unpack(msg)
                self._queue.put((env.topic, msg))
        except Exception:
            pass

    def wait_for(self, topic: str, timeout: float = 10.0, **fields: object):
        """The next event with this topic whose payload has these field values."""
        deadline = time.monotonic() + timeout
        for t, msg in self.seen:
            if t == topic and all(getattr(msg, k, None) == v for k, v in fields.items()):
                return msg
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {topic} {fields} event within {timeout}s; "
                                     f"saw {[t for t, _ in self.seen]}")
            try:
                t, msg = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append((t, msg))
            if t == topic and all(getattr(msg, k, None) == v for k, v in fields.items()):
                return msg

    def close(self) -> None:
        self._stream.cancel()


class Attach:
    """A Tasks.Attach call: feed stdin, collect output."""

    def __init__(self, stub, cid: str, exec_id: str = "", stdin: bool = False) -> None:
        from dockyard.protos.services.tasks.v1 import tasks_pb2 as tpb

        self._tpb = tpb
        self._in: queue.Queue = queue.Queue()
        self._in.put(tpb.AttachRequest(open=tpb.AttachOpen(
            container_id=cid, exec_id=exec_id, stdin=stdin, stdout=True, stderr=True)))
        self.call = stub.Attach(self._requests())
        first = next(self.call)
        assert first.attached
        self.out: list[tuple[int, bytes]] = []
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _requests(self) -> Iterator:
        while True:
            item = self._in.get()
            if item is None:
                return
            yield item

    def _run(self) -> None:
        try:
            for resp in self.call:
                self.out.append((resp.stream, resp.data))
        except Exception:
            pass
        finally:
            self.done.set()

    def send(self, data: bytes) -> None:
        self._in.put(self._tpb.AttachRequest(stdin=data))

    def close_stdin(self) -> None:
        self._in.put(self._tpb.AttachRequest(close_stdin=True))

    def resize(self, rows: int, cols: int) -> None:
        self._in.put(self._tpb.AttachRequest(resize=self._tpb.ConsoleSize(height=rows,
                                                                          width=cols)))

    def output(self, stream: int | None = None) -> bytes:
        return b"".join(d for s, d in list(self.out) if stream is None or s == stream)

    def wait_output(self, needle: bytes, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output():
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not in output {self.output()!r}")
            time.sleep(0.02)
        return self.output()

    def wait_done(self, timeout: float = 10.0) -> bytes:
        assert self.done.wait(timeout), f"attach did not end; output {self.output()!r}"
        self._in.put(None)
        return self.output()

    def close(self) -> None:
        self._in.put(None)
        self.call.cancel()


def leaked_mounts(fragment: str) -> list[str]:
    """Mount points containing fragment (e.g. a state dir) in /proc/self/mountinfo."""
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if fragment in line.split()[4]]


def leaked_cgroups(cid: str) -> list[str]:
    """cgroup directories still named after cid, under every hierarchy's dockyard/."""
    found = []
    base = "/sys/fs/cgroup"
    for hierarchy in os.listdir(base):
        path = os.path.join(base, hierarchy, "dockyard", cid)
        if os.path.isdir(path):
            found.append(path)
    if os.path.isdir(os.path.join(base, "dockyard", cid)):
        found.append(os.path.join(base, "dockyard", cid))
    return found


def processes_of(fragment: str) -> list[tuple[int, str]]:
    """Live (non-zombie) processes whose command line or working directory contains
    fragment (monitors forked by the zygote keep its command line, but work in their
    task's directory)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if (fragment in cmd or fragment in cwd) and state != "Z":
            out.append((int(pid), cmd))
    return out


def stop_monitor(pid: int) -> None:
    """Tear down what a monitor supervises (tests' last resort after a failure): the
    runtime's delete --force, then shutdown, then SIGKILL. The monitor's directory is
    its cwd; task.json there names the runtime (a monitor started on its own also has
    the runtime's argv on its command line)."""
    import subprocess

    from dockyard.managerd.monitor.client import MonitorClient

    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = [a.decode() for a in f.read().split(b"\0") if a]
        task_dir = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return
    runtime: list[str] = []
    try:
        with open(os.path.join(task_dir, "task.json")) as f:
            rec = json.load(f)
        runtime = [rec["runtime"], "--root", rec["runtime_root"], rec["id"]]
    except (OSError, ValueError, KeyError):
        if "--" in args:
            runtime = args[args.index("--") + 1:]
    if "--root" in runtime:
        root = runtime[runtime.index("--root") + 1]
        subprocess.run([runtime[0], "--root", root, "delete", "--force", runtime[-1]],
                       capture_output=True)
    try:
        MonitorClient(task_dir, timeout=5).shutdown(force=True)
    except Exception:
        os.kill(pid, 9)


@contextmanager
def subreaper(timeout: float = 10.0) -> Iterator[list[int]]:
    """Make this process a child subreaper: monitors orphaned by a managerd kill -9
    re-parent to it. Yields a list for their pids; at the end, monitors still up (a
    failed test) are stopped and every listed pid is reaped, rather than left as zombies
    to an init that may not reap."""
    import ctypes

    pr_set_child_subreaper = 36
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)
    pids: list[int] = []
    try:
        yield pids
    finally:
        for pid in pids:
            stop_monitor(pid)
        libc.prctl(pr_set_child_subreaper, 0, 0, 0, 0)
        deadline = time.monotonic() + timeout
        for pid in pids:
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                time.sleep(0.02)
