"""The forked child of `create` (the container's init) and of `exec`.

Owns what runs in the child between fork and execve: namespaces (new or
joined by path), the rootfs (rootfs.py), hostname, sysctls, masked and
read-only paths, the terminal, the process setup (process.py), the exec
fifo wait. Every failure is sent to the parent as one `error` message (see
sync.py for the exchange) and the child exits; it never returns into the
shim's command code. It must not write state.json or touch cgroups: the
parent does both.

The pid namespace is not here: unshare(CLONE_NEWPID)/setns only affect
children, so the parent enters it right before fork (the child is then pid 1).
"""

from __future__ import annotations

import os
import sys

from dockyard.shim import process as proc
from dockyard.shim._sys import consts
from dockyard.shim.sync import Channel, Msg

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket

    from dockyard.shim._sys.syscalls import Syscalls

__all__ = ["InitContext", "ExecContext", "run_child", "CLONE_FLAGS", "describe", "late_cgroup_mount"]

# OCI namespace type -> clone flag (pid is handled by the parent)
CLONE_FLAGS = {"network": consts.CLONE_NEWNET, "mount": consts.CLONE_NEWNS,
               "ipc": consts.CLONE_NEWIPC, "uts": consts.CLONE_NEWUTS,
               "cgroup": consts.CLONE_NEWCGROUP, "pid": consts.CLONE_NEWPID,
               "user": consts.CLONE_NEWUSER}
_SIGKILL = 9


def describe(err: BaseException) -> str:
    """One line for the error report: the message without Python's decorations."""
    if isinstance(err, OSError) and err.strerror:
        text = err.strerror[:1].lower() + err.strerror[1:]
        return f"{err.filename}: {text}" if err.filename else text
    return str(err) or type(err).__name__


class InitContext:
    """What the init child needs, prepared by the parent before fork."""

    __slots__ = ("config", "bundle", "rootfs", "fifo_fd", "no_pivot", "console",
                 "cgroup_paths", "seccomp", "container_id", "preserve_fds")

    def __init__(self, config: dict, bundle: str, rootfs_path: str, fifo_fd: int,
                 no_pivot: bool = False, console: _socket.socket | None = None,
                 cgroup_paths: dict[str, str] | None = None,
                 seccomp: proc.Filter | None = None, container_id: str = "",
                 preserve_fds: int = 0) -> None:
        self.preserve_fds = preserve_fds
        self.seccomp = seccomp
        self.container_id = container_id
        self.config = config
        self.bundle = bundle
        self.rootfs = rootfs_path
        self.fifo_fd = fifo_fd
        self.no_pivot = no_pivot
        self.console = console
        self.cgroup_paths = cgroup_paths or {}


class ExecContext:
    """What an exec child needs: open namespace fds (type -> fd) and the process."""

    __slots__ = ("ns_fds", "process", "seccomp", "console", "preserve_fds")

    def __init__(self, ns_fds: dict[str, int], process: dict, seccomp: proc.Filter | None,
                 console: _socket.socket | None = None, preserve_fds: int = 0) -> None:
        self.preserve_fds = preserve_fds
        self.ns_fds = ns_fds
        self.process = process
        self.seccomp = seccomp
        self.console = console


def run_child(sc: Syscalls, chan: Channel, ctx: InitContext | ExecContext) -> None:
    """The child's whole life; never returns (execve or os._exit)."""
    code = 1
    try:
        proc.reset_signals()
        # die with the parent until it has let go of us (runc sets the same)
        sc.prctl(consts.PR_SET_PDEATHSIG, _SIGKILL)
        # not dumpable until execve (which resets it): the container's processes
        # must not reach our /proc/<pid>/exe (the host's python), fds or cwd
        # (runc's fix for CVE-2019-5736)
        sc.prctl(consts.PR_SET_DUMPABLE, 0)
        if isinstance(ctx, InitContext):
            _init(sc, chan, ctx)
        else:
            _exec(sc, chan, ctx)
    except BaseException as err:  # noqa: BLE001 - every failure must reach the parent
        if isinstance(err, proc.ExecError):
            code = 127 if err.errno == 2 else 126
        tr = sys.modules.get("dockyard.shim.trace")
        if tr:  # a traced verb: the step that failed, with its error
            tr.abort(describe(err))
        try:
            chan.send(Msg.ERROR, msg=describe(err))
        except OSError:
            pass
    os._exit(code)


def _wait_proceed(chan: Channel) -> None:
    """Block until the parent has put us in the container's cgroup."""
    msg = chan.recv()
    if msg is None or msg.get("type") != Msg.PROCEED:
        os._exit(1)  # the parent gave up (and reports why)


def _namespaces(sc: Syscalls, namespaces: list[dict], skip: int = 0) -> int:
    """Join the namespaces given by path, unshare the new ones (except those in
    `skip`); returns the flags of the new ones, skipped included."""
    flags = 0
    for ns in namespaces:
        kind = ns["type"]
        if kind in ("pid", "user"):
            continue
        path = ns.get("path")
        if path:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as err:
                raise OSError(err.errno, f"open {kind} namespace {path}: "
                                         f"{(err.strerror or '').lower()}") from None
            try:
                sc.setns(fd, CLONE_FLAGS[kind])
            except OSError as err:
                raise OSError(err.errno, f"join {kind} namespace {path}: "
                                         f"{(err.strerror or '').lower()}") from None
            finally:
                os.close(fd)
        else:
            flags |= CLONE_FLAGS[kind]
    if flags & ~skip:
        try:
            sc.unshare(flags & ~skip)
        except OSError as err:
            raise OSError(err.errno, f"unshare namespaces {flags:#x}: "
                                     f"{(err.strerror or '').lower()}") from None
    return flags


def _init(sc: Syscalls, chan: Channel, ctx: InitContext) -> None:
    from dockyard.shim import rootfs  # here, not at the top: `exec` never needs it

    proc.load_child_modules()

    config = ctx.config
    linux = config.get("linux") or {}
    process = config["process"]
    os.setsid()
    namespaces = linux.get("namespaces") or []
    # spans of a traced create (shim/trace.py, loaded only then), written before `ready`
    tr = sys.modules.get("dockyard.shim.trace")
    span = tr.begin("namespaces") if tr else None
    # a new cgroup namespace takes the cgroup we are in as its root: it waits
    # until the parent has moved us (see _join_cgroup below)
    new = _namespaces(sc, namespaces, skip=consts.CLONE_NEWCGROUP)
    if tr:
        tr.end(span, new=",".join(ns["type"] for ns in namespaces if not ns.get("path")),
               joined=",".join(ns["type"] for ns in namespaces if ns.get("path")))
        span = tr.begin("mounts", rootfs=ctx.rootfs, count=len(config.get("mounts") or []))
    os.umask(0)
    types = {ns["type"] for ns in namespaces}
    view = rootfs.CgroupView.from_host(ctx.cgroup_paths, "cgroup" in types,
                                       base=os.environ.get("DOCKYARD_CGROUP_ROOT")
                                       or "/sys/fs/cgroup")
    rootfs.set_propagation(sc, linux.get("rootfsPropagation"))
    rootfs.bind_rootfs(sc, ctx.rootfs)
    mounts = config.get("mounts") or []
    late = late_cgroup_mount(config, view.namespaced)
    joined = False
    for i, m in enumerate(mounts):
        if i == late:
            continue
        if m.get("type") == "cgroup" and not joined:
            _join_cgroup(sc, chan, new)
            joined = True
        rootfs.mount_one(sc, ctx.rootfs, ctx.bundle, m, view)
    if not joined and late is None:
        _join_cgroup(sc, chan, new)
        joined = True
    dev_bound = any(m["destination"].rstrip("/") == "/dev" and
                    (m.get("type") == "bind" or "bind" in (m.get("options") or ()) or
                     "rbind" in (m.get("options") or ())) for m in mounts)
    rootfs.create_devices(sc, ctx.rootfs, linux.get("devices") or [], defaults=not dev_bound)
    terminal = bool(process.get("terminal"))
    if not dev_bound:
        rootfs.dev_symlinks(ctx.rootfs, terminal)
    if tr:
        tr.end(span)
    if "uts" in types:
        if config.get("hostname"):
            sc.sethostname(config["hostname"])
        if config.get("domainname"):
            sc.setdomainname(config["domainname"])
    hooks = config.get("hooks") or {}
    if hooks.get("prestart") or hooks.get("createRuntime") or hooks.get("createContainer"):
        chan.send(Msg.HOOKS)
        msg = chan.recv()
        if msg is None or msg.get("type") != Msg.PROCEED:
            os._exit(1)
        _container_hooks("createContainer", hooks, ctx)
    # runc creates the cwd before pivot_root: root.readonly comes later
    cwd = rootfs.secure_join(ctx.rootfs, process.get("cwd") or "/")
    os.makedirs(cwd, 0o755, exist_ok=True)
    span = tr.begin("pivot_root" if not ctx.no_pivot else "move root") if tr else None
    if ctx.no_pivot:
        rootfs.move_root(sc, ctx.rootfs)
    else:
        rootfs.pivot_root(sc, ctx.rootfs)
    if tr:
        tr.end(span)
        span = tr.begin("process setup", user=str((process.get("user") or {}).get("uid", 0)))
    if terminal:
        if ctx.console is None:
            raise OSError(22, "process.terminal is true but no --console-socket was given")
        slave = proc_terminal(ctx.console, process.get("consoleSize"))
        if os.path.exists("/dev/console"):
            sc.mount(slave, "/dev/console", None, consts.MS_BIND)
    rootfs.write_sysctls(linux.get("sysctl") or {})
    rootfs.readonly_paths(sc, linux.get("readonlyPaths") or [])
    rootfs.mask_paths(sc, linux.get("maskedPaths") or [])
    if (config.get("root") or {}).get("readonly"):
        rootfs.readonly_root(sc)
    if not joined:
        # everything above overlapped with the parent's cgroup join; now the
        # cgroup namespace, and the cgroup mount inside the new root
        _join_cgroup(sc, chan, new)
        rootfs.mount_one(sc, "/", ctx.bundle, mounts[late], view)
    prepared = proc.prepare(sc, process, ctx.seccomp)
    if tr:
        tr.end(span, path=prepared.path)
    sc.prctl(consts.PR_SET_PDEATHSIG, 0)
    chan.send(Msg.READY)
    # Block until `start` opens the fifo for reading (runc's exec.fifo). The fd
    # is O_PATH, opened by the parent on the host path; reopening it through
    # /proc/self/fd works after pivot_root and the user switch.
    fd = os.open(f"/proc/self/fd/{ctx.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    # fd stays open: close-on-exec ends it at the execve, the end-of-file a traced
    # `start` waits for to time the exec
    os.close(ctx.fifo_fd)
    _container_hooks("startContainer", config.get("hooks") or {}, ctx)
    proc.finish(sc, prepared, ctx.preserve_fds)


def _container_hooks(kind: str, hooks: dict, ctx: InitContext) -> None:
    """createContainer/startContainer run from the init, in the container's
    namespaces; state pid is the container's view of the init (1)."""
    if not hooks.get(kind):
        return
    from dockyard.shim.hooks import run_hooks  # preloaded before fork

    from dockyard.oci.state import CREATED, CREATING, State
    status = CREATING if kind == "createContainer" else CREATED
    state = State(ctx.container_id, 1, status, ctx.bundle, "", "",
                  ctx.config.get("annotations")).hook_dict()
    run_hooks(kind, hooks[kind], state)


def late_cgroup_mount(config: dict, namespaced: bool) -> int | None:
    """Index of the `cgroup` mount if it may wait until after pivot_root, so the
    init does all other setup while the parent joins it to its cgroup (the
    mount needs the cgroup namespace, which needs the join). Only a fresh,
    namespaced mount with nothing mounted, masked or made read-only below it,
    and no create hooks (they expect the join done). The parent asks too: then
    the device nodes exist before the join and it applies resources early."""
    hooks = config.get("hooks") or {}
    if hooks.get("prestart") or hooks.get("createRuntime") or hooks.get("createContainer"):
        return None
    if not namespaced:
        return None
    mounts = config.get("mounts") or []
    found = [i for i, m in enumerate(mounts) if m.get("type") == "cgroup"]
    if len(found) != 1:
        return None
    dest = mounts[found[0]]["destination"].rstrip("/") + "/"
    linux = config.get("linux") or {}
    others = [m["destination"] for i, m in enumerate(mounts) if i != found[0]]
    others += list(linux.get("maskedPaths") or []) + list(linux.get("readonlyPaths") or [])
    if any((p.rstrip("/") + "/").startswith(dest) for p in others):
        return None
    return found[0]


def _join_cgroup(sc: Syscalls, chan: Channel, new: int) -> None:
    _wait_proceed(chan)
    if new & consts.CLONE_NEWCGROUP:
        try:
            sc.unshare(consts.CLONE_NEWCGROUP)
        except OSError as err:
            raise OSError(err.errno, "unshare the cgroup namespace: "
                                     f"{(err.strerror or '').lower()}") from None


def proc_terminal(sock: _socket.socket, size: dict | None) -> str:
    from dockyard.shim.console import setup_terminal  # preloaded before fork
    return setup_terminal(sock, size)


# join order: the cgroup namespace after the cgroup itself (done by the parent),
# the mount namespace last because it changes root and cwd
_JOIN_ORDER = ("ipc", "uts", "network", "cgroup", "mount")


def _exec(sc: Syscalls, chan: Channel, ctx: ExecContext) -> None:
    proc.load_child_modules()  # before setns(CLONE_NEWNS) hides the shim's files
    tr = sys.modules.get("dockyard.shim.trace")  # a traced exec (shim/trace.py)
    span = tr.begin("namespaces", joined=",".join(k for k in _JOIN_ORDER if k in ctx.ns_fds)) \
        if tr else None
    for kind in _JOIN_ORDER:
        fd = ctx.ns_fds.get(kind)
        if fd is None:
            continue
        try:
            sc.setns(fd, CLONE_FLAGS[kind])
        except OSError as err:
            raise OSError(err.errno, f"join the container's {kind} namespace: "
                                     f"{(err.strerror or '').lower()}") from None
        os.close(fd)
    if tr:
        tr.end(span)
    process = ctx.process
    # The setup below overlaps the parent's cgroup join (an RCU grace period);
    # only the exec itself must wait for it. A seccomp filter installed early
    # (no no_new_privs) could refuse the wait's read: then wait first.
    early_filter = ctx.seccomp is not None and not process.get("noNewPrivileges")
    if early_filter:
        _wait_proceed(chan)
    if process.get("terminal"):
        os.setsid()
        if ctx.console is None:
            raise OSError(22, "process.terminal is true but no --console-socket was given")
        proc_terminal(ctx.console, process.get("consoleSize"))
    span = tr.begin("process setup") if tr else None
    prepared = proc.prepare(sc, process, ctx.seccomp)
    if tr:
        tr.end(span, path=prepared.path)
    if not early_filter:
        _wait_proceed(chan)
    sc.prctl(consts.PR_SET_PDEATHSIG, 0)
    proc.finish(sc, prepared, ctx.preserve_fds)
