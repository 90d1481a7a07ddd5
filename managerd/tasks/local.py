"""Tasks: running containers (init + exec processes), without gRPC.

This module owns the life of every task: writing its bundle, starting its
monitor (which runs the runtime's create and stays the container's parent),
every later runtime verb, the task's status, exit statuses and /tasks/*
events, persisting enough under ``<state>/tasks/<ns>/<id>/`` to pick every
task up again after a managerd restart, and tearing it all down on delete.

Every verb is refresh -> guard -> act -> save under the task's lock; exits
arrive asynchronously from the monitors (one ``Watcher`` thread holds a
subscription to each) and only take the task's state lock, never its verb
lock, so a verb may wait for an exit. The init's exit, as its monitor reports
it, also begins the task's teardown in a thread of its own (the runtime's
delete, then the rootfs detach: ``_cleanup_exited``), so that Delete, which a
client sends once it learnt of the exit, mostly finds it done; a Delete already
under way (a forced one) does it itself. It must not fork managerd (runtimes
and monitors start through subprocess) nor hold container metadata (that is
``metadata/containers.py``).

On-disk state of a task (the bundle directory, also the monitor's cwd):

    config.json  rootfs/  log.json      the OCI bundle and the runtime's log
    task.json                           this module's record (see Task.record)
    monitor.sock monitor.pid monitor.log   the monitor
    init.pid  exit                      written by the runtime / the monitor
    exec-<id>.json exec-<id>.pid        exec process specs and pids
"""

from __future__ import annotations

import contextvars
import enum
import json
import logging
import os
import select
import selectors
import signal as _signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dockyard.managerd import bundle as _bundle
from dockyard.managerd import trace
from dockyard.managerd.monitor import _process as wire
from dockyard.managerd.monitor import client as monitor
from dockyard.managerd.runtime.shim import Runtime, error_for, last_error, resolve_binary
from dockyard.managerd.snapshots.mount import Mount
from dockyard.protos.events import task_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from dockyard import errdefs
from dockyard.ids import validate_id

__all__ = ["Status", "ProcessInfo", "TaskManager", "TasksConfig"]

log = logging.getLogger(__name__)

DEFAULT_RUNTIME_NAMES = ("", "default", "dockyard-shim")
EXIT_WAIT = 15.0  # seconds Delete waits for the monitor to report the init's exit
CGROUP_ROOT = "/sys/fs/cgroup"


class Status(enum.Enum):
    """A process's status, with the verbs each allows."""

    UNKNOWN = "unknown"
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"

    @property
    def can_start(self) -> bool:
        return self is Status.CREATED

    @property
    def can_kill(self) -> bool:
        return self in (Status.CREATED, Status.RUNNING, Status.PAUSED)

    @property
    def can_delete(self) -> bool:  # without force
        return self in (Status.CREATED, Status.STOPPED, Status.UNKNOWN)

    @property
    def can_pause(self) -> bool:
        return self is Status.RUNNING

    @property
    def can_resume(self) -> bool:
        return self is Status.PAUSED


@dataclass
class TasksConfig:
    """What the tasks component needs from managerd's Config."""

    state: str  # managerd --state
    runtime: str = "dockyard-shim"  # default runtime binary (name on PATH or path)
    log_root: str = "/var/lib/dockyard/containers"  # <log_root>/<id>/<id>-json.log
    cgroup_root: str = CGROUP_ROOT
    runtime_timeout: float = 60.0
    # exits that happened while managerd was down are published once an event
    # subscriber is there (apid reconnecting), or after this many seconds
    recovered_events_delay: float = 5.0
    # fork monitors from one warm interpreter (faster, pages shared) rather than start
    # a fresh interpreter per task
    monitor_zygote: bool = True


@dataclass
class ProcessInfo:
    """What Get/List/Wait/Delete report for a process."""

    container_id: str
    exec_id: str
    pid: int
    status: Status
    terminal: bool = False
    stdin: bool = False
    exit_status: int = 0
    exited_at: int = 0  # ns
    log_path: str = ""
    runtime: str = ""


@dataclass
class _Proc:
    """The init (id "") or an exec process."""

    id: str
    terminal: bool = False
    stdin: bool = False
    pid: int = 0
    started: bool = False
    exit_status: int | None = None
    exited_at: int = 0
    exit_published: bool = False
    exit_pending: bool = False  # exited while managerd was down: published after recovery

    def record(self) -> dict:
        return {"terminal": self.terminal, "stdin": self.stdin, "pid": self.pid,
                "started": self.started, "exit_published": self.exit_published}


@dataclass
class Task:
    namespace: str
    id: str
    dir: str
    runtime: Runtime
    status: Status = Status.CREATED
    init: _Proc = field(default_factory=lambda: _Proc(""))
    execs: dict[str, _Proc] = field(default_factory=dict)
    log_path: str = ""
    cgroups_path: str = ""
    popen: subprocess.Popen | None = None  # the monitor, when this managerd started it
    recovered: bool = False  # picked up after a restart
    deleted: bool = False
    deleting: bool = False  # a Delete is under way: an exit then starts no cleanup
    # the cleanup begun when the init exited (runtime delete, rootfs unmount): set when
    # it is over; cleanup_ok says whether the runtime's delete succeeded
    cleanup: threading.Event | None = None
    cleanup_ok: bool = False
    trace_ctx: contextvars.Context | None = None  # the traced Start's context, if any
    # the runtime's create was left to Start, which runs `run --detach` (create + start
    # in one runtime process) through the monitor: no init exists before Start
    deferred: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)  # one verb at a time
    cond: threading.Condition = field(default_factory=threading.Condition)  # state + exits

    @property
    def monitor(self) -> monitor.MonitorClient:
        return monitor.MonitorClient(self.dir)

    def proc(self, exec_id: str) -> _Proc:
        if not exec_id:
            return self.init
        try:
            return self.execs[exec_id]
        except KeyError:
            raise errdefs.NotFound(f"exec {exec_id} in task {self.id}: not found") from None

    def record(self) -> dict:
        """task.json: enough to rebuild this object after a restart."""
        return {"namespace": self.namespace, "id": self.id, "runtime": self.runtime.binary,
                "runtime_root": self.runtime.root, "status": self.status.value,
                "log_path": self.log_path, "cgroups_path": self.cgroups_path,
                "deferred": self.deferred, "init": self.init.record(),
                "execs": {k: p.record() for k, p in self.execs.items()}}

    def save(self) -> None:
        with self.cond:
            if not self.deleted:
                _bundle.write_state(os.path.join(self.dir, "task.json"),
                                    json.dumps(self.record()).encode())

    def info(self, proc: _Proc) -> ProcessInfo:
        if proc.exit_status is not None:
            status = Status.STOPPED
        elif proc.id:
            status = Status.RUNNING if proc.started else Status.CREATED
        else:
            status = self.status
        return ProcessInfo(self.id, proc.id, proc.pid, status, proc.terminal, proc.stdin,
                           proc.exit_status or 0, proc.exited_at,
                           self.log_path if not proc.id else "", self.runtime.binary)


class TaskManager:
    """Every task of every namespace; the local side of the Tasks service.

    Args:
        config: paths and defaults.
        containers: the container store (``get(ns, id)`` -> spec, runtime, snapshot).
        snapshots: the snapshot store (``mounts(ns, snapshotter, key)``).
        events: the event bus (``publish(ns, topic, message)``).
    """

    def __init__(self, config: TasksConfig, containers, snapshots, events) -> None:
        self.config = config
        self.containers = containers
        self.snapshots = snapshots
        self.events = events
        self._tasks: dict[tuple[str, str], Task] = {}
        self._lock = threading.Lock()
        self._watcher = _Watcher(self._on_monitor_exit, self._on_monitor_gone)
        self._pending: list[tuple[Task, _Proc]] = []  # recovered exits not yet published
        self._pending_lock = threading.Lock()
        self._closed = threading.Event()
        self._zygote = (monitor.Zygote(os.path.join(config.state, "monitors"))
                        if config.monitor_zygote else None)

    # -- bookkeeping -------------------------------------------------------------------
    def _dir(self, ns: str, container_id: str) -> str:
        return os.path.join(self.config.state, "tasks", ns, container_id)

    def _runtime_root(self, ns: str) -> str:
        return os.path.join(self.config.state, "runtime", ns)

    def get_task(self, ns: str, container_id: str) -> Task:
        with self._lock:
            task = self._tasks.get((ns, container_id))
        if task is None:
            raise errdefs.NotFound(f"task {container_id}: not found")
        return task

    def has_task(self, ns: str, container_id: str) -> bool:
        with self._lock:
            return (ns, container_id) in self._tasks

    def check_container_delete(self, ns: str, container_id: str) -> None:
        """Refuse deleting a container that still has a task (Containers.delete_checks)."""
        if self.has_task(ns, container_id):
            raise errdefs.FailedPrecondition(
                f"container {container_id}: has a task; delete the task first")

    def _publish(self, ns: str, topic: str, message) -> None:
        try:
            self.events.publish(ns, topic, message)
        except Exception:  # events are best effort: never fail a verb after its commit
            log.exception("publishing failed topic=%s", topic)

    # -- create ----------------------------------------------------------------------
    def create(self, ns: str, container_id: str, stdin: bool = False, terminal: bool = False,
               console_size: tuple[int, int] | None = None, log_path: str = "",
               log_max_size: int = 0, log_max_files: int = 1, defer: bool = False
               ) -> ProcessInfo:
        """Create the task of a container: bundle, monitor, runtime create.

        With defer (asked for by a client that starts the task right away, e.g. apid
        for docker run) the runtime's create is left to start(), which runs the
        runtime's ``run --detach`` instead of ``start``: one runtime process fewer per
        task. Until then the task is CREATED with pid 0 and no process (stdio, attach
        and the log are there). Not for a terminal (the pty master comes with the
        runtime's create, and an attach needs it).

        Raises:
            NotFound: no such container (or runtime binary).
            AlreadyExists: the container has a task.
            InvalidArgument: the spec cannot be run, or a negative log size.
            EngineError: the runtime's create failed (its message included).
        """
        if log_max_size < 0:
            raise errdefs.InvalidArgument(f"log_max_size {log_max_size}: must not be negative")
        if log_path not in ("", "-") and not os.path.isabs(log_path):
            raise errdefs.InvalidArgument(f"log_path {log_path!r}: must be an absolute path, "
                                          "'' (default) or '-' (none)")
        validate_id(container_id)
        container = self.containers.get(ns, container_id)
        key = (ns, container_id)
        with self._lock:
            if key in self._tasks:
                raise errdefs.AlreadyExists(f"task {container_id}: already exists")
            self._tasks[key] = placeholder = None  # type: ignore[assignment]
        try:
            task = self._create(ns, container, stdin, terminal, console_size, log_path,
                                (log_max_size, log_max_files), defer and not terminal)
        except BaseException:
            with self._lock:
                if self._tasks.get(key, 0) is placeholder:
                    del self._tasks[key]
            raise
        with self._lock:
            self._tasks[key] = task
        self._watcher.add(task)
        self._publish(ns, "/tasks/create", task_pb2.TaskCreate(
            container_id=container_id, bundle=task.dir, terminal=terminal, pid=task.init.pid,
            log_path=task.log_path))
        return task.info(task.init)

    def _create(self, ns: str, container, stdin: bool, terminal: bool,
                console_size: tuple[int, int] | None, log_path: str,
                log_rotation: tuple[int, int], defer: bool = False) -> Task:
        cid = container.id
        t0 = time.perf_counter()
        try:
            spec = json.loads(container.spec)
        except ValueError as err:
            raise errdefs.InvalidArgument(f"container {cid}: spec is not JSON ({err})") from None
        name = container.runtime.name
        binary = resolve_binary(self.config.runtime if name in DEFAULT_RUNTIME_NAMES else name)
        mounts: list[Mount] = []
        if container.snapshot_key:
            mounts = list(self.snapshots.mounts(ns, container.snapshotter, container.snapshot_key))
        source_root = (spec.get("root") or {}).get("path", "") if not mounts else ""
        if log_path == "-":
            log_path = ""
        elif not log_path:
            log_path = os.path.join(self.config.log_root, cid, f"{cid}-json.log")
        if log_path:
            os.makedirs(os.path.dirname(log_path), mode=0o710, exist_ok=True)

        task_dir = self._dir(ns, cid)
        if os.path.lexists(task_dir):
            log.warning("removing stale task directory dir=%s", task_dir)
            _bundle.remove(task_dir)
        # 0700: the bundle's rootfs (an image's setuid binaries and device nodes) must not
        # be reachable by host users (moby CVE-2021-41091, containerd CVE-2021-41103)
        os.makedirs(task_dir, mode=0o700)
        runtime_root = self._runtime_root(ns)
        os.makedirs(runtime_root, mode=0o711, exist_ok=True)
        rt = Runtime(binary, runtime_root, task_dir, timeout=self.config.runtime_timeout)
        task = Task(ns, cid, task_dir, rt, log_path=log_path,
                    init=_Proc("", terminal=terminal, stdin=stdin), deferred=defer)
        linux = spec.get("linux") or {}
        task.cgroups_path = linux.get("cgroupsPath", "") if isinstance(linux, dict) else ""
        try:
            _bundle.create(task_dir, _bundle.prepare_spec(spec, task_dir, terminal, console_size),
                           mounts, source_root)
        except BaseException:
            _bundle.remove(task_dir)
            raise
        t1 = time.perf_counter()
        try:
            task.save()
            pid_file = os.path.join(task_dir, "init.pid")
            hs = monitor.spawn(task_dir, [] if defer else rt.create_argv(cid, pid_file),
                               pid_file, log_path,
                               stdin=stdin, terminal=terminal,
                               timeout=self.config.runtime_timeout,
                               log_max_size=log_rotation[0], log_max_files=log_rotation[1],
                               zygote=self._zygote, defer=defer)
            if not hs.ok:
                if hs.runtime_rc is not None:
                    raise error_for("create", cid, last_error(rt.log_path, hs.message),
                                    hs.runtime_rc)
                raise errdefs.Unavailable(f"task {cid}: monitor failed: {hs.message}")
        except BaseException:
            self._teardown_failed_create(task)
            raise
        task.popen = hs.popen
        task.init.pid = hs.pid
        task.init.started = False
        task.status = Status.CREATED
        task.save()
        log.debug("task created container_id=%s pid=%d bundle_ms=%.1f monitor_ms=%.1f", cid,
                  hs.pid, (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000)
        return task

    def _teardown_failed_create(self, task: Task) -> None:
        try:
            task.runtime.delete(task.id, force=True)
        except errdefs.EngineError:
            pass
        try:
            task.monitor.shutdown(force=True)
        except errdefs.EngineError:
            pass
        try:
            _bundle.remove(task.dir)
        except OSError:
            log.exception("cannot remove bundle container_id=%s", task.id)

    # -- start -----------------------------------------------------------------------
    def start(self, ns: str, container_id: str, exec_id: str = "") -> ProcessInfo:
        """Start the init, or an exec process added by exec().

        Raises:
            NotFound, FailedPrecondition (not in CREATED), EngineError from the runtime.
        """
        task = self.get_task(ns, container_id)
        with task.lock:
            proc = task.proc(exec_id)
            if exec_id:
                return self._start_exec(task, proc)
            status = self._status(task)
            if not status.can_start:
                raise errdefs.FailedPrecondition(
                    f"task {container_id} is {status.value}: cannot start it")
            # the exit's cleanup (_cleanup_exited) records its spans under this Start (set
            # first: the init may exit before the runtime's start returns)
            task.trace_ctx = contextvars.copy_context() if trace.current() else None
            if task.deferred and not task.init.pid:
                self._run_deferred(task)
            else:
                task.runtime.start(container_id)
            with task.cond:
                task.init.started = True
                if task.init.exit_status is None:
                    task.status = Status.RUNNING
            task.save()
        self._publish(ns, "/tasks/start", task_pb2.TaskStart(container_id=container_id,
                                                             pid=task.init.pid))
        return task.info(task.init)

    def _run_deferred(self, task: Task) -> None:
        """The init of a deferred task: the runtime's run --detach, run by the monitor
        (the parent of what it leaves behind), which answers with the init's pid."""
        pid_file = os.path.join(task.dir, "init.pid")
        try:
            pid = task.monitor.run(pid_file, task.runtime.run_argv(task.id, pid_file),
                                   timeout=self.config.runtime_timeout)
        except monitor.MonitorError as err:
            if err.runtime_rc is not None:
                raise error_for("run", task.id, last_error(task.runtime.log_path, str(err)),
                                err.runtime_rc) from None
            raise
        with task.cond:
            task.init.pid = task.init.pid or pid

    def _start_exec(self, task: Task, proc: _Proc) -> ProcessInfo:
        if proc.started:
            raise errdefs.FailedPrecondition(f"exec {proc.id} in task {task.id} was started "
                                             "already")
        status = self._status(task)
        if status is not Status.RUNNING:
            raise errdefs.FailedPrecondition(f"task {task.id} is {status.value}: cannot start "
                                             f"exec {proc.id}")
        spec_file = os.path.join(task.dir, f"exec-{proc.id}.json")
        pid_file = os.path.join(task.dir, f"exec-{proc.id}.pid")
        try:
            pid = task.monitor.exec_start(proc.id, pid_file,
                                          task.runtime.exec_argv(task.id, spec_file, pid_file),
                                          timeout=self.config.runtime_timeout)
        except monitor.MonitorError as err:
            with task.cond:
                proc.started = True
                proc.exit_status, proc.exited_at = 255, time.time_ns()
                proc.exit_published = True  # it never ran: no exit event
            task.save()
            if err.runtime_rc is not None:
                raise error_for("exec", task.id, last_error(task.runtime.log_path, str(err)),
                                err.runtime_rc) from None
            raise
        with task.cond:
            proc.started = True
            proc.pid = pid
        task.save()
        self._publish(task.namespace, "/tasks/exec-started", task_pb2.TaskExecStarted(
            container_id=task.id, exec_id=proc.id, pid=pid))
        return task.info(proc)

    # -- exec ------------------------------------------------------------------------
    def exec(self, ns: str, container_id: str, exec_id: str, process_spec: bytes,
             terminal: bool = False, stdin: bool = False,
             console_size: tuple[int, int] | None = None) -> None:
        """Add an exec process (started by start(exec_id)); attach before starting it.

        Raises:
            InvalidArgument: bad exec id or process spec.
            AlreadyExists: the exec id is taken in this task.
            FailedPrecondition: the task is not running.
        """
        validate_id(exec_id)
        try:
            process = json.loads(process_spec)
        except ValueError as err:
            raise errdefs.InvalidArgument(f"exec {exec_id}: process spec is not JSON "
                                          f"({err})") from None
        if not isinstance(process, dict) or not process.get("args"):
            raise errdefs.InvalidArgument(f"exec {exec_id}: process.args is required")
        process["terminal"] = terminal
        if terminal and console_size and all(console_size):
            process["consoleSize"] = {"height": console_size[0], "width": console_size[1]}
        task = self.get_task(ns, container_id)
        with task.lock:
            if exec_id in task.execs:
                raise errdefs.AlreadyExists(f"exec {exec_id} in task {container_id}: already "
                                            "exists")
            status = self._status(task)
            if status is not Status.RUNNING:
                raise errdefs.FailedPrecondition(
                    f"task {container_id} is {status.value}: cannot exec in it")
            _bundle.write_state(os.path.join(task.dir, f"exec-{exec_id}.json"),
                                json.dumps(process).encode())
            task.monitor.exec_add(exec_id, stdin, terminal)
            with task.cond:
                task.execs[exec_id] = _Proc(exec_id, terminal=terminal, stdin=stdin)
            task.save()
        self._publish(ns, "/tasks/exec-added", task_pb2.TaskExecAdded(container_id=container_id,
                                                                      exec_id=exec_id))

    # -- signals and state ---------------------------------------------------------
    def kill(self, ns: str, container_id: str, sig: int, all_processes: bool = False,
             exec_id: str = "") -> None:
        """Signal the init (or every process) or one exec process.

        Raises:
            NotFound: no such task/exec, or the process already exited (containerd's
                "process already finished", which Docker treats as stopped).
            InvalidArgument: bad signal number.
        """
        if not 0 < sig < 65:
            raise errdefs.InvalidArgument(f"signal {sig}: not a valid signal number")
        task = self.get_task(ns, container_id)
        proc = task.proc(exec_id)
        if proc.exit_status is not None:
            raise errdefs.NotFound(f"task {container_id}"
                                   f"{' exec ' + exec_id if exec_id else ''}: process already "
                                   "finished")
        if not exec_id and task.deferred and not proc.pid:
            raise errdefs.FailedPrecondition(f"task {container_id} has not started (its "
                                             "create was deferred to its start)")
        if exec_id:
            if not proc.started or not proc.pid:
                raise errdefs.FailedPrecondition(f"exec {exec_id} in task {container_id} has "
                                                 "not started")
            if not _signal_exec(task, proc, sig):
                raise errdefs.NotFound(f"exec {exec_id}: process already finished")
            return
        try:
            task.runtime.kill(container_id, sig, all_processes)
        except errdefs.FailedPrecondition as err:
            if "not running" in str(err) or proc.exit_status is not None:
                raise errdefs.NotFound(f"task {container_id}: process already finished "
                                       f"({err})") from None
            raise

    def get(self, ns: str, container_id: str, exec_id: str = "") -> ProcessInfo:
        task = self.get_task(ns, container_id)
        return task.info(task.proc(exec_id))

    def list(self, ns: str, container_ids: list[str] | None = None) -> list[ProcessInfo]:
        with self._lock:
            tasks = [t for (n, _), t in self._tasks.items() if n == ns and t is not None]
        wanted = set(container_ids or [])
        return [t.info(t.init) for t in sorted(tasks, key=lambda t: t.id)
                if not wanted or t.id in wanted]

    def _status(self, task: Task) -> Status:
        with task.cond:
            return Status.STOPPED if task.init.exit_status is not None else task.status

    def pause(self, ns: str, container_id: str) -> None:
        self._freeze(ns, container_id, pause=True)

    def resume(self, ns: str, container_id: str) -> None:
        self._freeze(ns, container_id, pause=False)

    def _freeze(self, ns: str, container_id: str, pause: bool) -> None:
        task = self.get_task(ns, container_id)
        with task.lock:
            status = self._status(task)
            if not (status.can_pause if pause else status.can_resume):
                raise errdefs.FailedPrecondition(
                    f"task {container_id} is {status.value}: cannot "
                    f"{'pause' if pause else 'resume'} it")
            if pause:
                task.runtime.pause(container_id)
            else:
                task.runtime.resume(container_id)
            with task.cond:
                if task.init.exit_status is None:
                    task.status = Status.PAUSED if pause else Status.RUNNING
            task.save()
        if pause:
            self._publish(ns, "/tasks/paused", task_pb2.TaskPaused(container_id=container_id))
        else:
            self._publish(ns, "/tasks/resumed", task_pb2.TaskResumed(container_id=container_id))

    def pids(self, ns: str, container_id: str) -> list[int]:
        task = self.get_task(ns, container_id)
        if self._status(task) is Status.STOPPED or (task.deferred and not task.init.pid):
            return []
        return task.runtime.ps(container_id)

    def update(self, ns: str, container_id: str, resources: bytes) -> None:
        """Apply runtime-spec LinuxResources JSON to the running container."""
        try:
            res = json.loads(resources)
        except ValueError as err:
            raise errdefs.InvalidArgument(f"resources are not JSON ({err})") from None
        if not isinstance(res, dict):
            raise errdefs.InvalidArgument("resources must be a JSON object (LinuxResources)")
        task = self.get_task(ns, container_id)
        with task.lock:
            status = self._status(task)
            if status is Status.STOPPED:
                raise errdefs.FailedPrecondition(f"task {container_id} is stopped: cannot "
                                                 "update its resources")
            task.runtime.update(container_id, res)

    def metrics(self, ns: str, container_id: str) -> dict:
        """The ``data`` of the runtime's ``events --stats`` record."""
        task = self.get_task(ns, container_id)
        if self._status(task) is Status.STOPPED:
            raise errdefs.FailedPrecondition(f"task {container_id} is stopped: no metrics")
        rec = task.runtime.stats(container_id)
        return rec.get("data", rec) if isinstance(rec, dict) else {}

    def resize_pty(self, ns: str, container_id: str, rows: int, cols: int,
                   exec_id: str = "") -> None:
        task = self.get_task(ns, container_id)
        proc = task.proc(exec_id)
        if not rows or not cols:
            raise errdefs.InvalidArgument(f"pty size {rows}x{cols}: both must be positive")
        if proc.terminal and proc.exit_status is None:
            task.monitor.resize(exec_id, rows, cols)

    def close_io(self, ns: str, container_id: str, exec_id: str = "") -> None:
        task = self.get_task(ns, container_id)
        proc = task.proc(exec_id)
        if proc.exit_status is None:
            task.monitor.close_stdin(exec_id)

    def attach(self, ns: str, container_id: str, exec_id: str, stdin: bool, stdout: bool,
               stderr: bool) -> monitor.AttachStream:
        """Wire a client to a process's stdio (see AttachStream).

        Raises:
            FailedPrecondition: stdin asked of a process without one.
        """
        task = self.get_task(ns, container_id)
        proc = task.proc(exec_id)
        if stdin and not proc.stdin:
            raise errdefs.FailedPrecondition(
                f"task {container_id}{' exec ' + exec_id if exec_id else ''} has no stdin "
                "(create it with stdin)")
        streams = ("i" if stdin else "") + ("o" if stdout else "") + ("e" if stderr else "")
        return task.monitor.attach(exec_id, streams)

    # -- wait and exits ----------------------------------------------------------------
    def wait(self, ns: str, container_id: str, exec_id: str = "",
             alive: Callable[[], bool] | None = None, timeout: float | None = None
             ) -> ProcessInfo:
        """Block until the process exited; return its info (exit status and time).

        Args:
            alive: polled every second; the wait ends with Unavailable when it says no
                (the gRPC caller went away).
            timeout: seconds, None for no limit.
        """
        task = self.get_task(ns, container_id)
        proc = task.proc(exec_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        with task.cond:
            while proc.exit_status is None:
                left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if left <= 0:
                    raise errdefs.Unavailable(f"task {container_id}: still running after "
                                              f"{timeout:g} s")
                task.cond.wait(left)
                if alive is not None and not alive():
                    raise errdefs.Unavailable("wait cancelled by the caller")
        return task.info(proc)

    def _on_monitor_exit(self, task: Task, proc_id: str, pid: int, status: int,
                         ns_time: int) -> None:
        self._on_exit(task, proc_id, pid, status, ns_time, from_monitor=True)

    def _on_exit(self, task: Task, proc_id: str, pid: int, status: int, ns_time: int,
                 from_monitor: bool = False) -> None:
        """A monitor reported (or replayed) an exit.

        The init's exit as its monitor reports it also begins the task's cleanup
        (_cleanup_exited) unless a Delete is under way: the runtime's delete and the
        rootfs unmount then run while the client learns of the exit and comes to delete
        the task, which waits for them instead of starting them.
        """
        cleanup = False
        with task.cond:
            proc = task.init if not proc_id else task.execs.get(proc_id)
            if proc is None:
                return  # an exec deleted meanwhile
            if proc.exit_status is None:
                proc.exit_status, proc.exited_at = status, ns_time
                proc.pid = proc.pid or pid
                if not proc_id:
                    task.status = Status.STOPPED
                    cleanup = (from_monitor and status >= 0 and not task.deleting
                               and not task.deleted and task.cleanup is None)
                    if cleanup:
                        task.cleanup = threading.Event()
                task.cond.notify_all()
            publish = not (proc.exit_published or proc.exit_pending or status < 0)
        if publish:  # first: it reads the OOM count of the cgroup the cleanup removes
            self._publish_exit(task, proc)
        if cleanup:
            threading.Thread(target=self._cleanup_exited, args=(task,),
                             name="tasks-exit-cleanup", daemon=True).start()

    def _cleanup_exited(self, task: Task) -> None:
        """The runtime's delete of a task whose init exited, then the rootfs unmount
        (runtime first: its poststop hooks may still use the rootfs). Delete finishes
        whatever did not work out."""
        ok = False
        try:
            if task.trace_ctx is not None:
                ok = task.trace_ctx.run(self._cleanup_traced, task)
            else:
                ok = self._cleanup_steps(task)
        except Exception:  # noqa: BLE001 - Delete retries; never lose the event below
            log.exception("exit cleanup failed container_id=%s", task.id)
        finally:
            with task.cond:
                task.cleanup_ok = ok
            assert task.cleanup is not None
            task.cleanup.set()

    def _cleanup_traced(self, task: Task) -> bool:
        with trace.span("task exit cleanup", container=task.id):
            return self._cleanup_steps(task)

    def _cleanup_steps(self, task: Task) -> bool:
        try:
            task.runtime.delete(task.id)
        except errdefs.NotFound:
            pass  # the runtime has no state for it (deleted already)
        except errdefs.EngineError as err:
            log.debug("runtime delete after exit failed container_id=%s err=%s", task.id, err)
            return False
        try:
            _bundle.unmount_rootfs(task.dir)
        except OSError as err:  # busy: Delete detaches it
            log.debug("rootfs unmount after exit failed container_id=%s err=%s", task.id, err)
        return True

    def _publish_exit(self, task: Task, proc: _Proc) -> None:
        with task.cond:
            if proc.exit_published:
                return
            proc.exit_published, proc.exit_pending = True, False
        if not proc.id and self._oom_killed(task):
            self._publish(task.namespace, "/tasks/oom", task_pb2.TaskOOM(container_id=task.id))
        ts = Timestamp()
        ts.FromNanoseconds(proc.exited_at)
        self._publish(task.namespace, "/tasks/exit", task_pb2.TaskExit(
            container_id=task.id, exec_id=proc.id, pid=proc.pid, exit_status=proc.exit_status,
            exited_at=ts))
        task.save()

    def _oom_killed(self, task: Task) -> bool:
        """Whether the task's memory cgroup counted an OOM kill (v1 oom_control, v2 events)."""
        path = task.cgroups_path.strip("/")
        if not path or ":" in path:
            return False
        root = self.config.cgroup_root
        for name in (f"{root}/memory/{path}/memory.oom_control", f"{root}/{path}/memory.events"):
            try:
                with open(name) as f:
                    for line in f:
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and int(value) > 0:
                            return True
            except (OSError, ValueError):
                continue
        return False

    def _on_monitor_gone(self, task: Task) -> None:
        """The monitor's subscription closed: after shutdown, or the monitor died."""
        if task.deleted:
            return
        exit_info = monitor.read_exit_file(task.dir)
        if exit_info is not None:
            self._on_exit(task, "", task.init.pid, *exit_info)
            return
        time.sleep(0.1)
        try:
            task.monitor.state()  # still there: the connection alone broke
            self._watcher.add(task)
            return
        except errdefs.EngineError:
            pass
        log.error("monitor died without recording an exit container_id=%s", task.id)
        _kill_orphan(task)
        self._on_exit(task, "", task.init.pid, 255, time.time_ns())

    def _flush_recovered(self) -> None:
        """Publish exits found at recovery once someone listens (or after the delay)."""
        with self._pending_lock:
            if not self._pending:
                return
        deadline = time.monotonic() + self.config.recovered_events_delay
        while time.monotonic() < deadline and not self._closed.is_set():
            if _subscriber_count(self.events) > 0:
                time.sleep(0.05)  # let a subscriber that is connecting finish
                break
            self._closed.wait(0.05)
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for task, proc in pending:
            self._publish_exit(task, proc)

    # -- delete ----------------------------------------------------------------------
    def delete(self, ns: str, container_id: str, exec_id: str = "", force: bool = False
               ) -> ProcessInfo:
        """Delete the task (runtime delete, monitor stop, rootfs unmount, bundle removal)
        or an exited exec process.

        Raises:
            FailedPrecondition: running, without force.
        """
        task = self.get_task(ns, container_id)
        with task.lock:
            if exec_id:
                return self._delete_exec(task, exec_id, force)
            status = self._status(task)
            if not status.can_delete and not force:
                raise errdefs.FailedPrecondition(
                    f"task {container_id} is {status.value}: stop it first or delete with "
                    "force")
            with task.cond:  # from here on an exit begins no cleanup of its own
                task.deleting = True
                cleanup = task.cleanup
            if status is Status.PAUSED:
                try:  # a frozen init cannot take SIGKILL's exit: thaw it first
                    task.runtime.kill(container_id, _signal.SIGKILL, True)
                    task.runtime.resume(container_id)
                except errdefs.EngineError:
                    pass
            t0 = time.perf_counter()
            if cleanup is not None:  # begun at the exit: wait for it rather than redo it
                cleanup.wait(self.config.runtime_timeout + 5)
            if cleanup is None or not task.cleanup_ok:
                try:
                    task.runtime.delete(container_id,
                                        force=force or status is not Status.STOPPED)
                except errdefs.NotFound:
                    pass  # the runtime has no state for it (never created, or deleted already)
            info = self._await_exit(task)
            t1 = time.perf_counter()
            with task.cond:
                task.deleted = True
            self._watcher.remove(task)
            self._stop_monitor(task)
            t2 = time.perf_counter()
            _bundle.remove(task.dir)
            log.debug("task deleted container_id=%s runtime_ms=%.1f monitor_ms=%.1f "
                      "bundle_ms=%.1f", container_id, (t1 - t0) * 1000, (t2 - t1) * 1000,
                      (time.perf_counter() - t2) * 1000)
            with self._lock:
                self._tasks.pop((ns, container_id), None)
        ts = Timestamp()
        ts.FromNanoseconds(info.exited_at)
        self._publish(ns, "/tasks/delete", task_pb2.TaskDelete(
            container_id=container_id, pid=info.pid, exit_status=info.exit_status,
            exited_at=ts))
        return info

    def _await_exit(self, task: Task) -> ProcessInfo:
        """Wait for the monitor to report the init's exit (after the runtime's delete)."""
        if not task.init.pid:
            with task.cond:
                if task.init.exit_status is None:
                    task.init.exit_status, task.init.exited_at = 0, time.time_ns()
            return task.info(task.init)
        try:
            return self.wait(task.namespace, task.id, timeout=EXIT_WAIT)
        except errdefs.Unavailable:
            log.error("no exit reported after delete container_id=%s pid=%d", task.id,
                      task.init.pid)
            exit_info = monitor.read_exit_file(task.dir) or (255, time.time_ns())
            self._on_exit(task, "", task.init.pid, *exit_info)
            return task.info(task.init)

    def _stop_monitor(self, task: Task) -> None:
        # a monitor we cannot reap (the zygote's child, or a recovered one) is watched
        # through a pidfd taken while it surely lives: Delete returns once it is gone,
        # not just its socket
        pidfd = None if task.popen is not None else _monitor_pidfd(task.dir)
        try:
            try:
                task.monitor.shutdown(force=True)
            except errdefs.EngineError as err:
                log.warning("monitor shutdown failed container_id=%s err=%s", task.id, err)
                if pidfd is not None:  # unreachable: its pid file may name another process
                    os.close(pidfd)
                    pidfd = None
            if task.popen is not None:
                try:
                    task.popen.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    task.popen.kill()
                    task.popen.wait()
            elif pidfd is not None:
                if not _pidfd_exited(pidfd, 5.0):
                    log.warning("monitor still running 5 s after shutdown container_id=%s",
                                task.id)
            else:
                _wait_gone(task.dir)
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _delete_exec(self, task: Task, exec_id: str, force: bool) -> ProcessInfo:
        proc = task.proc(exec_id)
        if proc.started and proc.exit_status is None:
            if not force:
                raise errdefs.FailedPrecondition(f"exec {exec_id} in task {task.id} is running")
            _signal_exec(task, proc, _signal.SIGKILL)
            with task.cond:
                task.cond.wait_for(lambda: proc.exit_status is not None, timeout=EXIT_WAIT)
        try:
            task.monitor.exec_delete(exec_id)
        except monitor.MonitorError as err:
            log.warning("monitor exec-delete failed exec_id=%s err=%s", exec_id, err)
        with task.cond:
            task.execs.pop(exec_id, None)
        for suffix in ("json", "pid"):
            try:
                os.unlink(os.path.join(task.dir, f"exec-{exec_id}.{suffix}"))
            except FileNotFoundError:
                pass
        task.save()
        info = task.info(proc)
        ts = Timestamp()
        ts.FromNanoseconds(info.exited_at)
        self._publish(task.namespace, "/tasks/delete", task_pb2.TaskDelete(
            container_id=task.id, exec_id=exec_id, pid=info.pid, exit_status=info.exit_status,
            exited_at=ts))
        return info

    # -- restart -----------------------------------------------------------------------
    def recover(self) -> int:
        """Pick up every task a previous managerd left in the state dir; returns how many.

        Live monitors are reconnected (their exits replayed); a task whose monitor is
        gone reports the exit file it left, or 255 if there is none.
        """
        root = os.path.join(self.config.state, "tasks")
        found = []
        for ns in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            for cid in sorted(os.listdir(os.path.join(root, ns))):
                if cid.startswith(".del-"):  # a delete cut short by a crash: finish it
                    try:
                        _bundle.remove(os.path.join(root, ns, cid))
                    except OSError:
                        log.exception("cannot remove dir=%s", cid)
                elif not cid.startswith("."):
                    found.append((ns, cid))
        if not found:
            return 0
        with ThreadPoolExecutor(max_workers=min(8, len(found))) as pool:
            tasks = [t for t in pool.map(lambda k: self._recover_one(*k), found) if t]
        for task in tasks:
            with self._lock:
                self._tasks[(task.namespace, task.id)] = task
        for task in tasks:
            if task.init.exit_status is None or task.execs:
                self._watcher.add(task)
        threading.Thread(target=self._flush_recovered, name="tasks-recovered-exits",
                         daemon=True).start()
        log.info("recovered tasks count=%d", len(tasks))
        return len(tasks)

    def _recover_one(self, ns: str, cid: str) -> Task | None:
        task_dir = self._dir(ns, cid)
        try:
            with open(os.path.join(task_dir, "task.json")) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            log.warning("no task record, removing dir=%s", task_dir)
            try:
                _bundle.remove(task_dir)
            except OSError:
                log.exception("cannot remove dir=%s", task_dir)
            return None
        rt = Runtime(rec["runtime"], rec["runtime_root"], task_dir,
                     timeout=self.config.runtime_timeout)

        def proc(pid_id: str, r: dict) -> _Proc:
            return _Proc(pid_id, terminal=r.get("terminal", False), stdin=r.get("stdin", False),
                         pid=r.get("pid", 0), started=r.get("started", False),
                         exit_published=r.get("exit_published", False))

        task = Task(ns, cid, task_dir, rt, status=Status(rec.get("status", "created")),
                    init=proc("", rec.get("init", {})), log_path=rec.get("log_path", ""),
                    cgroups_path=rec.get("cgroups_path", ""), recovered=True,
                    deferred=bool(rec.get("deferred", False)),
                    execs={k: proc(k, v) for k, v in rec.get("execs", {}).items()})
        try:
            states = task.monitor.state()
        except errdefs.EngineError:
            states = None
        if states is None and not task.init.pid and not os.path.exists(
                os.path.join(task_dir, "exit")):
            # a create cut short by a crash (no monitor answered the handshake): undo it
            log.warning("removing a half-created task container_id=%s", cid)
            self._teardown_failed_create(task)
            return None
        if states is None:
            exit_info = monitor.read_exit_file(task_dir)
            if exit_info is None and task.init.pid:
                log.error("monitor gone, no exit recorded container_id=%s", cid)
                _kill_orphan(task)
                exit_info = (255, time.time_ns())
            if exit_info is not None:
                self._recovered_exit(task, task.init, *exit_info)
            for p in task.execs.values():  # their statuses died with the monitor
                if p.started and p.exit_status is None:
                    self._recovered_exit(task, p, 255, time.time_ns())
            return task
        for pid_id, st in states.items():
            p = task.init if pid_id == monitor.INIT else task.execs.get(pid_id)
            if p is None:
                continue
            p.pid = st.pid or p.pid
            if st.status is not None:
                self._recovered_exit(task, p, st.status, st.exited_ns)
        if task.init.exit_status is None:
            try:  # the record may predate a start/pause that a crash kept from being saved
                task.status = {"created": Status.CREATED, "running": Status.RUNNING,
                               "paused": Status.PAUSED}.get(rt.state(cid).get("status"),
                                                            task.status)
            except errdefs.EngineError as err:
                log.warning("runtime state failed container_id=%s err=%s", cid, err)
        task.init.started = task.status is not Status.CREATED
        return task

    def _recovered_exit(self, task: Task, proc: _Proc, status: int, ns_time: int) -> None:
        """An exit that happened while managerd was down: record it, publish it later."""
        if status < 0:  # its runtime exec failed: it never ran
            status, proc.exit_published = 255, True
        proc.exit_status, proc.exited_at = status, ns_time
        if not proc.id:
            task.status = Status.STOPPED
        if not proc.exit_published:
            proc.exit_pending = True
            with self._pending_lock:
                self._pending.append((task, proc))

    def close(self) -> None:
        """Stop watching monitors (they and their containers keep running)."""
        self._closed.set()
        self._watcher.close()
        if self._zygote is not None:
            self._zygote.close()


def _signal_exec(task: Task, proc: _Proc, sig: int) -> bool:
    """Signal an exec process through its monitor; False if it already exited.

    The monitor is the process's parent and signals it only while it has not
    reaped it, so the signal never reaches another process that got the pid
    since (a kill by pid from here raced with the reaping; pid_max is 32768 on
    many hosts)."""
    try:
        task.monitor.signal(proc.id, sig)
        return True
    except monitor.MonitorError as err:
        if "unknown request" not in str(err):
            return False
    try:  # a monitor started before `signal` existed (a recovered task): by pid
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def _kill_orphan(task: Task) -> None:
    """A container whose monitor died has no supervisor (nobody reads its output or
    will learn its exit status): stop it rather than leave it running unaccounted."""
    try:
        task.runtime.delete(task.id, force=True)
    except errdefs.EngineError as err:
        log.warning("cannot remove the orphaned container container_id=%s err=%s", task.id,
                    err)


def _subscriber_count(events) -> int:
    count = getattr(events, "subscriber_count", None)
    return int(count()) if callable(count) else 1  # unknown: do not wait


def _monitor_pidfd(task_dir: str) -> int | None:
    """A pidfd of the task's monitor (from its monitor.pid), None if it cannot be had."""
    try:
        with open(os.path.join(task_dir, "monitor.pid"), "rb") as f:
            pid = int(f.read().strip() or 0)
        return os.pidfd_open(pid) if pid > 0 else None
    except (OSError, ValueError):
        return None


def _pidfd_exited(pidfd: int, timeout: float) -> bool:
    """Wait up to timeout for the process behind pidfd to exit (poll, not select: a
    managerd with many tasks has descriptors past select's FD_SETSIZE of 1024)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _wait_gone(task_dir: str, timeout: float = 5.0) -> None:
    """Wait until a monitor we did not start (so cannot reap) removed its socket."""
    deadline = time.monotonic() + timeout
    sock = os.path.join(task_dir, "monitor.sock")
    while os.path.lexists(sock) and time.monotonic() < deadline:
        time.sleep(0.005)


class _Watcher:
    """One thread holding a subscription to every task's monitor; dispatches exits."""

    def __init__(self, on_exit, on_gone) -> None:
        self._on_exit, self._on_gone = on_exit, on_gone
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._adds: list[tuple[Task, object, bytearray]] = []
        self._removes: list[Task] = []
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._rfd, False)
        self._sel.register(self._rfd, selectors.EVENT_READ, None)
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, task: Task) -> None:
        try:
            sock, buf = task.monitor.subscribe()
        except errdefs.EngineError as err:
            log.warning("cannot subscribe to monitor container_id=%s err=%s", task.id, err)
            threading.Thread(target=self._on_gone, args=(task,), daemon=True).start()
            return
        with self._lock:
            self._adds.append((task, sock, buf))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tasks-watcher",
                                                daemon=True)
                self._thread.start()
        os.write(self._wfd, b"x")

    def remove(self, task: Task) -> None:
        with self._lock:
            self._removes.append(task)
        os.write(self._wfd, b"x")

    def close(self) -> None:
        self._closed = True
        try:
            os.write(self._wfd, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        for key in list(self._sel.get_map().values()):
            if key.data is not None:
                key.fileobj.close()
        self._sel.close()
        os.close(self._rfd)
        os.close(self._wfd)

    def _run(self) -> None:
        bufs: dict[object, bytearray] = {}
        while not self._closed:
            for key, _ in self._sel.select():
                if key.data is None:
                    try:
                        os.read(self._rfd, 4096)
                    except BlockingIOError:
                        pass
                    continue
                task = key.data
                sock = key.fileobj
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._sel.unregister(sock)
                    sock.close()
                    bufs.pop(sock, None)
                    threading.Thread(target=self._on_gone, args=(task,), daemon=True).start()
                    continue
                buf = bufs.setdefault(sock, bytearray())
                buf += data
                self._dispatch(task, buf)
            with self._lock:
                adds, self._adds = self._adds, []
                removes, self._removes = self._removes, []
            for task, sock, buf in adds:
                self._sel.register(sock, selectors.EVENT_READ, task)
                bufs[sock] = buf
                self._dispatch(task, buf)  # events read along with the subscribe reply
            for task in removes:
                for key in list(self._sel.get_map().values()):
                    if key.data is task:
                        self._sel.unregister(key.fileobj)
                        bufs.pop(key.fileobj, None)
                        key.fileobj.close()

    def _dispatch(self, task: Task, buf: bytearray) -> None:
        for kind, payload in wire.take_frames(buf):
            if kind != wire.EVENT:
                continue
            fields = wire.unpack(payload)
            if fields[:1] != ["exit"] or len(fields) != 5:
                continue
            _, proc_id, pid, status, ns_time = fields
            try:
                self._on_exit(task, proc_id, int(pid), int(status), int(ns_time))
            except Exception:
                log.exception("exit handling failed container_id=%s", task.id)
