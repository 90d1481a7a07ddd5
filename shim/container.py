"""One container's lifecycle on the host side: the verbs behind the CLI.

Owns the state directory `<root>/<id>/` (state.json, exec.fifo; mode 0711,
as runc), the status of a container as the kernel shows it (init pid +
start time, freezer, exec fifo), and every verb as refresh -> guard -> act
-> save (youki `container_*.rs`). The child sides of create and exec live
in init.py; cgroups, capabilities and seccomp are shim-kernel's modules.
It must not print: cli.py does.

state.json (private to the shim; `state` prints the public subset)::

    {"version": 1, "id", "bundle", "rootfs", "created" (RFC3339Nano),
     "pid", "start_time" (/proc/<pid>/stat field 22, guards against pid reuse),
     "annotations", "namespaces" (OCI types the container has: exec joins them),
     "cgroup" (Manager.to_dict()), "config" (config.json as read at create:
     later edits of the bundle must not change the container), "owner"}

Failure halfway through `create` undoes, in reverse, what was done: the
half-made init is killed and reaped, the cgroup removed, the state dir
deleted. Mounts need no undo: they live in the init's mount namespace.
"""

from __future__ import annotations

import errno
import os
import sys
import time

from dockyard.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from dockyard.oci import _json
from dockyard.oci.state import (
    CREATED,
    CREATING,
    PAUSED,
    RUNNING,
    STOPPED,
    State,
    Status,
    format_time,
)

__all__ = ["Container", "CreateOptions", "ShimError", "load", "list_ids", "parse_signal",
           "check_id", "write_pid_file", "remove_state_dir", "exec_outcome"]

STATE_FILE = "state.json"
FIFO = "exec.fifo"
_SIGKILL = 9
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")


class ShimError(Exception):
    """A failure with a ready message (from the child or a kernel call)."""

    def __init__(self, msg: str, exit_code: int = 1) -> None:
        super().__init__(msg)
        self.exit_code = exit_code


def check_id(container_id: str) -> str:
    """dockyard.ids.validate_id's rule; the common valid case avoids importing `re`."""
    if (container_id and len(container_id) <= 1024 and container_id[0].isalnum()
            and container_id.isascii() and _ID_CHARS.issuperset(container_id)):
        return container_id
    from dockyard.ids import validate_id
    return validate_id(container_id)


def _signals() -> dict[str, int]:
    import _signal
    table = {name: getattr(_signal, name) for name in dir(_signal)
             if name.startswith("SIG") and not name.startswith("SIG_")}
    return table


def parse_signal(text: str) -> int:
    """`9`, `KILL`, `SIGKILL`, `kill` -> 9; raises InvalidArgument otherwise."""
    if text.isdigit():
        num = int(text)
        if 0 < num < 65:
            return num
    else:
        name = text.upper()
        table = _signals()
        num = table.get(name) or table.get("SIG" + name)
        if num:
            return int(num)
    raise InvalidArgument(f"unknown signal {text!r}")


def write_pid_file(path: str, pid: int) -> None:
    """runc's way: `.<name>` next to it (O_EXCL), the digits without newline, rename."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _start_time(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a pid, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[19])


def _alive(pid: int, start: int) -> bool:
    """Whether the container's init still runs: same start time, not a zombie."""
    info = _start_time(pid) if pid > 0 else None
    return info is not None and info[1] == start and info[0] not in ("Z", "X")


def _signal_init(pid: int, start: int, signum: int) -> bool:
    """Send `signum` to the container's init if `pid` still is that process (same
    start time); False if it is gone.

    The pid is pinned with a pidfd *before* its start time is checked, and the
    signal goes through that pidfd: a check followed by kill(2) could signal an
    unrelated process that got the pid in between (the monitor reaps the init at
    any moment, and pid_max is 32768 on many hosts)."""
    if pid <= 0:
        return False
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError as err:
        if err.errno != errno.ENOSYS:  # kernel < 5.3: no pidfd, check then kill
            raise
        if not _alive(pid, start):
            return False
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return False
        return True
    try:
        if not _alive(pid, start):
            return False
        import _signal
        try:
            _signal.pidfd_send_signal(fd, signum)
        except ProcessLookupError:  # exited since the check: nothing left to signal
            return False
        return True
    finally:
        os.close(fd)


def list_ids(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.startswith(".")
                  and os.path.isdir(os.path.join(root, n)))


def load(root: str, container_id: str) -> Container:
    """The container `id` under `root`; NotFound("container does not exist") if absent."""
    check_id(container_id)
    directory = os.path.join(root, container_id)
    try:
        with open(os.path.join(directory, STATE_FILE), "rb") as f:
            data = _json.loads(f.read())
    except ValueError as err:
        raise FailedPrecondition(f"container {container_id}: state.json is corrupt "
                                 f"({err}); `delete --force` removes it") from None
    except FileNotFoundError:
        if os.path.isdir(directory):
            # create is still running (or died hard before its first save)
            return Container(root, container_id, {"id": container_id, "pid": 0})
        raise NotFound("container does not exist") from None
    return Container(root, container_id, data)


class CreateOptions:
    """The flags of `create`/`run` (runc names)."""

    __slots__ = ("bundle", "pid_file", "console_socket", "no_pivot", "no_new_keyring",
                 "preserve_fds", "console")

    def __init__(self, bundle: str = ".", pid_file: str | None = None,
                 console_socket: str | None = None, no_pivot: bool = False,
                 no_new_keyring: bool = False, preserve_fds: int = 0) -> None:
        self.bundle = bundle
        self.pid_file = pid_file
        self.console_socket = console_socket
        # attached `run` with a terminal: one end of a socketpair standing in for
        # the console socket; the shim itself receives the master and copies I/O
        self.console = None
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds


def _tracer():  # noqa: ANN202 - shim/trace.py, loaded by cli.py only for a traced call
    return sys.modules.get("dockyard.shim.trace")


def _syscalls():  # noqa: ANN202 - lazy: ctypes costs several ms
    from dockyard.shim._sys.syscalls import default
    return default()


def cgroup_root() -> str:
    """Where cgroupfs is mounted: /sys/fs/cgroup, or $DOCKYARD_CGROUP_ROOT (hosts
    that mount it elsewhere; tests use the cgroup2 mount of a hybrid host)."""
    return os.environ.get("DOCKYARD_CGROUP_ROOT") or "/sys/fs/cgroup"


def _open_manager(cgroups_path: str | None, container_id: str):  # noqa: ANN202
    from dockyard.shim.cgroups import open_manager
    return open_manager(cgroups_path or f"/dockyard/{container_id}", container_id,
                        cgroup_root())


class Container:
    """One container's state directory and the verbs on it."""

    __slots__ = ("root", "id", "dir", "data", "_mgr", "chan", "init_pid")

    def __init__(self, root: str, container_id: str, data: dict) -> None:
        self.root = root
        self.id = container_id
        self.dir = os.path.join(root, container_id)
        self.data = data
        self._mgr = None
        self.chan = None  # run keeps the sync channel to see exec errors
        self.init_pid = 0

    # --- state ---------------------------------------------------------
    @property
    def pid(self) -> int:
        return int(self.data.get("pid") or 0)

    @property
    def config(self) -> dict:
        return self.data.get("config") or {}

    def manager(self):  # noqa: ANN201
        if self._mgr is None and self.data.get("cgroup"):
            from dockyard.shim.cgroups import manager_from_dict
            self._mgr = manager_from_dict(self.data["cgroup"])
        return self._mgr

    def save(self) -> None:
        """Write state.json atomically (temp file, rename), as runc does.

        No fsync, unlike STYLE.md's rule for durable state: this file
        describes live processes, which a crash kills anyway, and it lives on
        /run (tmpfs on normal hosts); the rename alone keeps readers from
        ever seeing half a file. runc does not fsync it either."""
        tmp = os.path.join(self.dir, "." + STATE_FILE)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, _json.dumps(self.data).encode())
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(self.dir, STATE_FILE))

    def status(self) -> str:
        """runc's rule: dead/zombie/reused init -> stopped; frozen -> paused;
        exec fifo present -> created; else running."""
        if not self.data.get("start_time") and not self.pid:
            return CREATING
        if not _alive(self.pid, int(self.data.get("start_time") or 0)):
            return STOPPED
        if self._frozen():
            return PAUSED
        if os.path.exists(os.path.join(self.dir, FIFO)):
            return CREATED
        return RUNNING

    def _frozen(self) -> bool:
        """Whether the freezer holds the container. Reads the one control file
        straight from the saved cgroup paths (v1 freezer.state, v2
        cgroup.freeze) so `state` and `start` need not import the managers."""
        data = self.data.get("cgroup") or {}
        if data.get("version") == 1 and (data.get("paths") or {}).get("freezer"):
            path, frozen = data["paths"]["freezer"] + "/freezer.state", "FROZEN"
        elif data.get("version") == 2 and data.get("path"):
            path, frozen = data["path"] + "/cgroup.freeze", "1"
        else:
            mgr = self.manager()
            try:
                return mgr is not None and mgr.state() == "FROZEN"
            except OSError:
                return False
        try:
            with open(path) as f:
                return f.read().strip() == frozen
        except OSError:
            return False

    def state(self, owner: str = "") -> State:
        return State(self.id, self.pid, self.status(), self.data.get("bundle", ""),
                     self.data.get("rootfs", ""), self.data.get("created", ""),
                     self.data.get("annotations"), owner)

    # --- create ----------------------------------------------------------
    @classmethod
    def create(cls, root: str, container_id: str, opts: CreateOptions,
               keep_channel: bool = False) -> Container:
        """Build the container and leave its init blocked on the exec fifo.

        Raises:
            InvalidArgument, NotFound, AlreadyExists: bad id/bundle/config.
            ShimError: the init failed; its message, everything undone.
        """
        from dockyard.oci.spec import load_config

        check_id(container_id)
        bundle = os.path.abspath(opts.bundle)
        if not os.path.isdir(bundle):
            raise NotFound(f"bundle {bundle}: no such directory")
        config = load_config(bundle)
        rootfs = os.path.join(bundle, config["root"]["path"])
        if not os.path.isdir(rootfs):
            raise NotFound(f"rootfs ({rootfs}) does not exist")
        rootfs = os.path.realpath(rootfs)
        process = config["process"]
        if process.get("terminal") and not opts.console_socket and opts.console is None:
            raise InvalidArgument("cannot allocate tty if runc will detach without setting "
                                  "console socket")
        if not process.get("terminal") and opts.console_socket:
            raise InvalidArgument("cannot use console socket if runc will not detach or "
                                  "allocate tty")
        os.makedirs(root, 0o711, exist_ok=True)
        directory = os.path.join(root, container_id)
        try:
            os.mkdir(directory, 0o711)
        except FileExistsError:
            raise AlreadyExists("container with given ID already exists") from None
        linux = config.get("linux") or {}
        self = cls(root, container_id, {})
        undo: list = [lambda: remove_state_dir(directory)]
        try:
            self._build(config, bundle, rootfs, linux, opts, undo, keep_channel)
        except BaseException:
            for step in reversed(undo):
                try:
                    step()
                except Exception:  # noqa: BLE001, S110 - best effort, report the first error
                    pass
            raise
        return self

    def _build(self, config: dict, bundle: str, rootfs: str, linux: dict,
               opts: CreateOptions, undo: list, keep_channel: bool) -> None:
        from dockyard.shim.init import InitContext, run_child
        from dockyard.shim.process import load_child_modules, preload
        from dockyard.shim.sync import Channel, Msg

        sc = _syscalls()
        fifo = os.path.join(self.dir, FIFO)
        os.mkfifo(fifo)
        os.chmod(fifo, 0o622)
        fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
        undo.append(lambda: os.close(fifo_fd))
        tr = _tracer()
        mgr = _open_manager(linux.get("cgroupsPath"), self.id)  # paths only, nothing made yet
        self._mgr = mgr
        undo.append(mgr.destroy)  # before the child's kill in `undo`: runs after it
        console = opts.console
        if opts.console_socket:
            from dockyard.shim.console import connect
            console = connect(opts.console_socket)
            undo.append(console.close)
        namespaces = linux.get("namespaces") or []
        seccomp = preload(config["process"], linux.get("seccomp"), config.get("hooks"))
        ctx = InitContext(config, bundle, rootfs, fifo_fd, opts.no_pivot, console,
                          dict(mgr.paths), seccomp, self.id, opts.preserve_fds)
        parent, child = Channel.pair()
        undo.append(parent.close)
        # modules only the child runs, imported here: measured faster than in the
        # freshly forked child, whose first touches of the heap all copy pages
        import dockyard.shim.rootfs  # noqa: F401
        load_child_modules()
        restore = _enter_pid_namespace(sc, namespaces)
        # the init's own spans (namespaces, mounts, ...) nest under this one
        init_span = tr.begin("init") if tr else None
        try:
            pid = os.fork()
        except BaseException:
            child.close()
            if restore is not None:
                restore()
            raise
        if pid == 0:
            parent.close()
            run_child(sc, child, ctx)  # never returns
        child.close()
        if console is not None:
            console.close()
        undo.append(lambda: _kill_and_reap(pid))
        if restore is not None:
            restore()
        self.init_pid = pid
        # The cgroup is made and joined while the child already unshares and
        # mounts (it waits for `proceed` only before its cgroup namespace):
        # the first cgroup.procs write alone costs an RCU grace period.
        span = tr.begin("cgroup create", path=linux.get("cgroupsPath") or f"/dockyard/{self.id}",
                        pid=pid, version=mgr.to_dict().get("version", "")) if tr else None
        # device rules and limits go on once the init has made its device nodes
        # (runc applies them at procReady). When the init mounts cgroupfs late
        # (init._late_cgroup_mount), its nodes exist before it joins: apply them
        # before it joins (see _join_cgroup), instead of after `ready`.
        from dockyard.shim.cgroups.devices import with_defaults
        from dockyard.shim.init import late_cgroup_mount
        resources = dict(linux.get("resources") or {})
        resources["devices"] = with_defaults(resources.get("devices"))
        namespaced = any(ns.get("type") == "cgroup" for ns in namespaces)
        early = late_cgroup_mount(config, namespaced) is not None

        def apply_resources() -> None:
            span = tr.begin("cgroup set", resources=",".join(sorted(resources))) if tr else None
            mgr.set(resources)
            if tr:
                tr.end(span)

        msg = _join_cgroup(mgr, pid, parent, create=True, span=span,
                           then=apply_resources if early else None)
        if msg is not None and msg.get("type") == Msg.HOOKS:
            # the init's namespaces and mounts exist, pivot_root has not happened:
            # runc's procHooks point for prestart and createRuntime
            hooks = config.get("hooks") or {}
            state = State(self.id, pid, CREATING, bundle, rootfs, "",
                          config.get("annotations")).hook_dict()
            from dockyard.shim.hooks import run_hooks
            run_hooks("prestart", hooks.get("prestart") or [], state)
            run_hooks("createRuntime", hooks.get("createRuntime") or [], state)
            parent.send(Msg.PROCEED)
            msg = parent.recv()
        if msg is None or msg.get("type") != Msg.READY:
            raise ShimError(_child_failure(pid, msg))
        if tr:
            tr.end(init_span, pid=pid)
        if not early:
            apply_resources()
        info = _start_time(pid)
        if info is None:
            raise ShimError("container init exited during create")
        self.data = {
            "version": 1, "id": self.id, "bundle": bundle, "rootfs": rootfs,
            "created": format_time(time.time_ns()), "pid": pid, "start_time": info[1],
            "annotations": config.get("annotations") or None,
            "namespaces": [ns["type"] for ns in namespaces],
            "cgroup": mgr.to_dict(), "config": config, "owner": "",
        }
        self.save()
        if opts.pid_file:
            write_pid_file(opts.pid_file, pid)
        os.close(fifo_fd)
        if keep_channel:
            self.chan = parent
        else:
            parent.close()

    # --- start -------------------------------------------------------------
    def start(self) -> None:
        """Open the exec fifo: the init execs the user's program."""
        status = self.status()
        if not Status.can_start(status):
            raise FailedPrecondition({
                RUNNING: "cannot start an already running container",
                STOPPED: "cannot start a container that has stopped",
                PAUSED: "cannot start a container in the paused state",
            }.get(status, f"cannot start a container in the {status} state"))
        fifo = os.path.join(self.dir, FIFO)
        try:
            fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise FailedPrecondition("cannot start an already running container") from None
        try:
            self._wait_fifo(fd)
            tr = _tracer()
            if tr:  # the init execs now; it holds the fifo open until then
                tr.wait_exec(fd, self.pid,
                             program=((self.config.get("process") or {}).get("args") or [""])[0])
        finally:
            os.close(fd)
        try:
            os.unlink(fifo)
        except FileNotFoundError:
            pass

    def _wait_fifo(self, fd: int) -> None:
        """Read the init's `0` from the fifo, noticing if the init dies instead.

        The fd was opened non-blocking (an open for reading blocks while no
        writer exists, and a dead init never comes); once the init's write
        end is open, a blocking read returns its byte. Until then reads see
        end-of-file, so we poll briefly while the init is alive.
        """
        os.set_blocking(fd, True)
        start = int(self.data.get("start_time") or 0)
        delay = 0.0002
        while True:
            data = os.read(fd, 1)
            if data == b"0":
                return
            if not _alive(self.pid, start):
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        raise FailedPrecondition("cannot start a container that has stopped "
                                 "(its init exited before start)")

    # --- kill / delete --------------------------------------------------------
    def kill(self, signal: int, all_processes: bool = False) -> None:
        status = self.status()
        if not Status.can_kill(status):
            raise FailedPrecondition("container not running")
        if all_processes and self.manager() is not None:
            for pid in self.manager().pids():
                try:
                    os.kill(pid, signal)
                except ProcessLookupError:
                    pass
            return
        if not _signal_init(self.pid, int(self.data.get("start_time") or 0), signal):
            raise FailedPrecondition("container not running")

    def delete(self, force: bool = False) -> None:
        status = self.status()
        if not Status.can_delete(status, force):
            raise FailedPrecondition(f"cannot delete container {self.id} that is not "
                                     f"stopped: {status}")
        if status != STOPPED:
            self.destroy_processes(status)
        self.remove()

    def destroy_processes(self, status: str) -> None:
        """SIGKILL the init and everything in the cgroup; wait until they are gone."""
        mgr = self.manager()
        if status == PAUSED and mgr is not None:
            mgr.thaw()
        pids = []
        if mgr is not None:
            try:
                pids = mgr.pids()
            except OSError:
                pids = []
        start = int(self.data.get("start_time") or 0)
        _signal_init(self.pid, start, _SIGKILL)  # only the init itself, never a reused pid
        for pid in pids:
            if pid > 0 and pid != self.pid:
                try:
                    os.kill(pid, _SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        delay = 0.0005
        while _alive(self.pid, start) and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def remove(self) -> None:
        """Remove the cgroup and the state dir; the container is gone after this.

        The common case (empty leaf cgroups) is one rmdir per saved path, done
        without importing the cgroup managers (~2 ms of a `delete`); anything
        else (sub-cgroups, EBUSY while the last task exits) goes to the
        manager's destroy, which walks the tree and retries."""
        dirs = _saved_cgroup_dirs(self.data) if self._mgr is None else None
        if dirs is None or not _rmdir_all(dirs):
            mgr = self.manager()
            if mgr is not None:
                mgr.destroy()
        remove_state_dir(self.dir)
        self.run_hooks("poststop", warn_only=True)

    # --- hooks -------------------------------------------------------------
    def run_hooks(self, kind: str, warn_only: bool = False) -> None:
        """poststart (status `created`, as runc 1.1 reports it) and poststop."""
        hooks = (self.config.get("hooks") or {}).get(kind) or []
        if not hooks:
            return
        from dockyard.shim.hooks import run_hooks
        status = STOPPED if kind == "poststop" else CREATED
        state = State(self.id, self.pid, status, self.data.get("bundle", ""), "",
                      "", self.data.get("annotations")).hook_dict()
        run_hooks(kind, hooks, state, warn_only=warn_only)

    # --- exec ------------------------------------------------------------
    def exec(self, process: dict, detach: bool, pid_file: str | None,
             console_socket: str | None, preserve_fds: int = 0) -> int:
        """Run `process` in every namespace and the cgroup of the container.

        Returns the exit status when attached, 0 when detached.
        """
        from dockyard.shim.init import ExecContext, run_child
        from dockyard.shim.process import load_child_modules, preload
        from dockyard.shim.sync import Channel

        from dockyard.oci.spec import NAMESPACES

        status = self.status()
        if not Status.can_exec(status):
            raise FailedPrecondition(f"cannot exec in a {status} container")
        ours = None  # attached with a tty and no console socket: we proxy the pty (runc)
        if process.get("terminal") and not console_socket:
            if detach:
                raise InvalidArgument("cannot allocate tty if runc will detach without "
                                      "setting console socket")
            import _socket
            ours, console_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        seccomp = preload(process, (self.config.get("linux") or {}).get("seccomp"))
        # joining needs only the saved paths: no manager import (~2 ms)
        dirs = _saved_cgroup_dirs(self.data)
        mgr = _Join(dirs) if dirs is not None else self.manager()
        sc = _syscalls()
        ns_fds: dict[str, int] = {}
        try:
            for kind in self.data.get("namespaces") or []:
                if kind == "user":
                    continue
                ns_fds[kind] = os.open(f"/proc/{self.pid}/ns/{NAMESPACES[kind]}",
                                       os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            for fd in ns_fds.values():
                os.close(fd)
            raise FailedPrecondition(f"container init is gone: {err.strerror}") from None
        console = console_end if ours is not None else None
        if console_socket:
            from dockyard.shim.console import connect
            console = connect(console_socket)
        pid_fd = ns_fds.pop("pid", None)
        load_child_modules()  # see create: cheaper here than after fork
        ctx = ExecContext(ns_fds, process, seccomp, console, preserve_fds)
        parent, child = Channel.pair()
        tr = _tracer()
        span = tr.begin("process", program=process["args"][0]) if tr else None
        restore = None
        if pid_fd is not None:
            restore = _join_pid_namespace(sc, pid_fd)
        try:
            pid = os.fork()
        except BaseException as err:
            if restore is not None:
                restore()
            if isinstance(err, OSError) and err.errno == errno.ENOMEM and pid_fd is not None \
                    and not _alive(self.pid, int(self.data.get("start_time") or 0)):
                # the kernel refuses new members of a pid namespace whose init died
                raise FailedPrecondition("cannot exec in a stopped container "
                                         "(its init exited)") from None
            raise
        if pid == 0:
            parent.close()
            run_child(sc, child, ctx)
        child.close()
        if restore is not None:
            restore()
        for fd in ns_fds.values():
            os.close(fd)
        if console is not None:
            console.close()
        try:
            joined = tr.begin("cgroup join", pid=pid) if tr else None
            msg = _join_cgroup(mgr, pid, parent, span=joined)  # None: exec'd or died
        except BaseException:
            _kill_and_reap(pid)
            raise
        finally:
            parent.close()
        error = exec_outcome(pid, msg, process["args"][0])
        if tr:
            tr.end(span, pid=pid, **({"error": error} if error else {}))
        if error is not None:
            raise ShimError(error, exit_code=255)
        if detach:
            if pid_file:
                write_pid_file(pid_file, pid)
            return 0
        if pid_file:
            write_pid_file(pid_file, pid)
        if ours is not None:
            from dockyard.shim.console import proxy, receive_master
            master, _ = receive_master(ours)
            ours.close()
            proxy(master)
        return wait_forwarding(pid)


def _saved_cgroup_dirs(data: dict) -> list[str] | None:
    """The cgroup directories state.json recorded (v1: one per hierarchy)."""
    saved = data.get("cgroup") or {}
    if saved.get("version") == 1 and isinstance(saved.get("paths"), dict):
        return list(saved["paths"].values())
    if saved.get("version") == 2 and saved.get("path"):
        return [saved["path"]]
    return None


def _rmdir_all(dirs: list[str]) -> bool:
    """rmdir each directory (gone already is fine); False at the first other error."""
    for path in dirs:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return True


class _Join:
    """The one manager operation exec needs: add a pid to every saved cgroup
    directory (what V1Manager.add/V2Manager.add write, same messages)."""

    __slots__ = ("dirs",)

    def __init__(self, dirs: list[str]) -> None:
        self.dirs = dirs

    def add(self, pid: int) -> None:
        value = str(pid).encode()
        for path in self.dirs:
            procs = os.path.join(path, "cgroup.procs")
            try:
                fd = os.open(procs, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
            except OSError as err:
                if err.errno == errno.ENOENT:
                    raise OSError(err.errno, f"cgroup file {procs} does not exist "
                                  "(controller not mounted or not enabled?)") from err
                raise OSError(err.errno, f"open cgroup file {procs}: {err.strerror}") from err
            try:
                os.write(fd, value)
            except OSError as err:
                raise OSError(err.errno, f"write `{pid}` to {procs}: {err.strerror}") from err
            finally:
                os.close(fd)


def _join_cgroup(mgr, pid: int, chan, create: bool = False,  # noqa: ANN001
                 span=None, then=None) -> dict | None:  # noqa: ANN001
    """Put the child in the container's cgroup, tell it to proceed, return its
    next message (None: EOF). If the child failed meanwhile, its own error
    message wins over the cgroup write's (ESRCH, EPIPE). A trace `span`
    (shim/trace.py) ends once the cgroup part is done; `then()` (the early
    resources) runs after the cgroup is made and before the child is moved in:
    the child keeps working meanwhile (it may open the pty's /dev/ptmx), and
    must never be in the cgroup while its device rules pass through the
    initial deny-all."""
    from dockyard.shim.sync import Msg
    applying = False
    try:
        if mgr is not None and create:
            mgr.create()
        if then is not None:
            applying = True
            then()
            applying = False
        if mgr is not None:
            mgr.add(pid)  # exec: fast when _warm's writer warmed the migration lock
        if span is not None:
            _tracer().end(span)
        chan.send(Msg.PROCEED)
    except OSError as err:
        if applying:
            raise  # the child still works and then waits for `proceed`: the caller kills it
        try:
            msg = chan.recv()
        except OSError:
            msg = None
        if msg is not None and msg.get("type") == Msg.ERROR:
            return msg
        raise err from None
    return chan.recv()


def _child_failure(pid: int, msg: dict | None) -> str:
    if msg is not None and msg.get("type") == "error":
        return str(msg.get("msg") or "container init failed")
    try:
        _, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        status = 0
    if os.WIFSIGNALED(status):
        return f"container init was killed by signal {os.WTERMSIG(status)} during create"
    return "container init exited during create"


_PF_FORKNOEXEC = 0x40  # task flag: forked but did not exec (include/linux/sched.h)


def exec_outcome(pid: int, msg: dict | None, program: str) -> str | None:
    """After the sync exchange with an exec child: None if it exec'd the
    program, else the error to report (the child is then reaped).

    `msg` is the child's last message: an `error` from the child, or None at
    end-of-file, which is either the exec or the child's death (see
    `_never_execd`): killed with the container's pid namespace when its init
    exits, for one, before it could even read `proceed`."""
    if msg is not None:
        _kill_and_reap(pid)
        return str(msg.get("msg") or "exec failed")
    if _never_execd(pid):
        return (f"exec failed: the process {_reap_status(pid)} before it ran {program!r} "
                "(has the container's init exited?)")
    return None


def _never_execd(pid: int) -> bool:
    """Whether our unreaped child `pid` has not called execve (successfully).

    The sync socket's end-of-file cannot tell an exec from a death: both
    close the child's end. The kernel clears PF_FORKNOEXEC (field 9 of
    /proc/<pid>/stat, kept for zombies too) before it closes close-on-exec
    descriptors, so once we saw end-of-file the flag says which it was. The
    pid cannot be reused while we have not reaped it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False  # cannot tell: do not invent a failure
    return bool(int(data[data.rindex(b")") + 2:].split()[6]) & _PF_FORKNOEXEC)


def _reap_status(pid: int) -> str:
    """Reap our child (it has closed its end of the sync socket, so it has
    exited or is exiting) and say how it ended."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "ended"
    if os.WIFSIGNALED(status):
        return f"was killed by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.WEXITSTATUS(status)}"


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, _SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _enter_pid_namespace(sc, namespaces: list[dict]):  # noqa: ANN001, ANN202
    """Before fork: make the next child pid 1 of a new pid namespace (or join one).
    Returns a function that puts our children back in our own namespace."""
    from dockyard.shim._sys.consts import CLONE_NEWPID

    entry = next((ns for ns in namespaces if ns.get("type") == "pid"), None)
    if entry is None:
        return None
    if entry.get("path"):
        try:
            fd = os.open(entry["path"], os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise OSError(err.errno, f"open pid namespace {entry['path']}: "
                                     f"{(err.strerror or '').lower()}") from None
        return _join_pid_namespace(sc, fd)
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.unshare(CLONE_NEWPID)
    except BaseException:
        os.close(own)
        raise
    return _restorer(sc, own)


def _restorer(sc, own: int):  # noqa: ANN001, ANN202
    from dockyard.shim._sys.consts import CLONE_NEWPID

    def restore() -> None:
        try:
            sc.setns(own, CLONE_NEWPID)
        finally:
            os.close(own)
    return restore


def _join_pid_namespace(sc, fd: int):  # noqa: ANN001, ANN202
    """setns(fd, CLONE_NEWPID) for our next child; closes fd; returns the restorer."""
    from dockyard.shim._sys.consts import CLONE_NEWPID

    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.setns(fd, CLONE_NEWPID)
    except OSError as err:
        os.close(own)
        raise OSError(err.errno, f"join the pid namespace: "
                                 f"{(err.strerror or '').lower()}") from None
    finally:
        os.close(fd)
    return _restorer(sc, own)


def wait_forwarding(pid: int) -> int:
    """Wait for our child `pid`, passing on the signals a terminal or a
    supervisor sends us (runc's signal forwarding); returns its exit code
    (128+n when killed by signal n)."""
    import _signal

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT,
                _signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGWINCH):
        _signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 255
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status)
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)


def remove_state_dir(directory: str) -> None:
    """containerd's atomicDelete: rename to a hidden name, then remove."""
    parent, name = os.path.split(directory)
    hidden = os.path.join(parent, f".{name}.deleting")
    try:
        os.rename(directory, hidden)
    except FileNotFoundError:
        return
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        _rmtree(hidden)
        os.rename(directory, hidden)
    _rmtree(hidden)


def _rmtree(path: str) -> None:
    try:
        entries = os.listdir(path)
    except FileNotFoundError:
        return
    for entry in entries:
        full = os.path.join(path, entry)
        if os.path.isdir(full) and not os.path.islink(full):
            _rmtree(full)
        else:
            os.unlink(full)
    os.rmdir(path)
