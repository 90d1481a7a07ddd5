"""The container process: from an OCI `process` object to execve(2).

Owns the steps the container's init and an exec'd process share once they
are inside the container's namespaces and root: executable lookup in the
container's PATH, rlimits and OOM score, the working directory, the user
switch wrapped around the capability calls, no_new_privs, seccomp and the
exec itself, in runc's order (`standard_init_linux.go`, `setns_init_linux.go`).
Capabilities, seccomp and rlimits are shim-kernel's modules; this module
only calls them at the right moment. It must not mount or fork.

Exec failures keep runc's phrases ("no such file or directory",
"permission denied", "executable file not found in $PATH"): the docker CLI
maps them to exit codes 127/126 by string matching.
"""

from __future__ import annotations

import _signal
import errno
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.shim._sys.syscalls import Syscalls

__all__ = ["ExecError", "Filter", "Prepared", "preload", "find_executable", "environ", "prepare", "finish",
           "reset_signals"]

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PR_SET_NO_NEW_PRIVS = 38


class ExecError(OSError):
    """The program cannot be executed; str() is runc's message."""

    def __str__(self) -> str:
        return self.strerror or ""


def find_executable(name: str, env: dict[str, str]) -> str:
    """Resolve args[0] the way runc (Go's exec.LookPath) does, inside the current root.

    Raises:
        ExecError: ENOENT/EACCES with runc's wording.
    """
    if "/" in name:
        _check_exec(name, name)
        return name
    for directory in (env.get("PATH") or _DEFAULT_PATH).split(":"):
        path = os.path.join(directory or ".", name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK):
            return path
    raise ExecError(errno.ENOENT, f'exec: "{name}": executable file not found in $PATH')


def _check_exec(name: str, path: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ExecError(errno.ENOENT,
                        f'exec: "{name}": stat {path}: no such file or directory') from None
    except PermissionError:
        raise ExecError(errno.EACCES, f'exec: "{name}": stat {path}: permission denied') \
            from None
    except NotADirectoryError:
        raise ExecError(errno.ENOTDIR, f'exec: "{name}": stat {path}: not a directory') \
            from None
    if stat.S_ISDIR(st.st_mode) or not os.access(path, os.X_OK):
        raise ExecError(errno.EACCES, f'exec: "{name}": permission denied')


def environ(env: list[str] | None) -> dict[str, str]:
    """OCI `KEY=value` strings as a mapping (later duplicates win, as in execve users)."""
    out: dict[str, str] = {}
    for item in env or ():
        key, sep, value = item.partition("=")
        if key and sep:
            out[key] = value
    return out


def reset_signals() -> None:
    """Undo what the Python runtime changed: it ignores SIGPIPE and SIGXFSZ and
    handles SIGINT; ignored dispositions survive execve, so the container's
    program would inherit them."""
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGINT):
        _signal.signal(sig, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


def _home(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def load_child_modules() -> None:
    """Import what only the child runs (rlimits + `resource`, caps). The
    parent calls it just before fork (importing in the freshly forked child
    measured slower: every first touch of the inherited heap copies a page);
    the child calls it again before pivot_root/setns as a no-op safety net.
    Verbs that never fork (state, kill, ...) never load these."""
    import dockyard.shim.caps  # noqa: F401
    import dockyard.shim.rlimits  # noqa: F401


def preload(process: dict, seccomp: dict | None, hooks: dict | None = None) -> Filter | None:
    """Before fork, in the parent: import every module the child will need
    (after pivot_root or setns(CLONE_NEWNS) the shim's own files are out of
    reach) and compile the seccomp profile, so a bad profile fails `create`
    with nothing built yet."""
    if process.get("terminal"):
        import dockyard.shim.console  # noqa: F401
    if hooks and (hooks.get("createContainer") or hooks.get("startContainer")):
        import subprocess  # noqa: F401

        import dockyard.shim.hooks  # noqa: F401

    if not seccomp:
        return None
    from dockyard.shim.seccomp import compile_filter, install_filter  # noqa: F401
    return Filter(compile_filter(seccomp), seccomp.get("flags"))


class Filter:
    """A compiled seccomp program and the OCI flags to install it with."""

    __slots__ = ("program", "flags")

    def __init__(self, program: bytes, flags: list[str] | None) -> None:
        self.program = program
        self.flags = flags


class Prepared:
    """What `prepare` resolved for `finish`: path, argv, env, and the process."""

    __slots__ = ("path", "args", "env", "process", "seccomp")

    def __init__(self, path: str, args: list[str], env: dict[str, str], process: dict,
                 seccomp: object) -> None:
        self.path = path
        self.args = args
        self.env = env
        self.process = process
        self.seccomp = seccomp


def prepare(sc: Syscalls, process: dict, seccomp: Filter | None) -> Prepared:
    """Everything that may fail and must be reported before the exec fifo:
    rlimits, OOM score, cwd, user + capabilities, the executable's path,
    the compiled seccomp filter. Runs inside the container's root, as root."""
    from dockyard.shim import rlimits  # loaded by load_child_modules()
    from dockyard.shim.caps import apply_capabilities

    rlimits.apply(process.get("rlimits"))
    if process.get("oomScoreAdj") is not None:
        rlimits.oom_score_adj(process["oomScoreAdj"])
    env = environ(process.get("env"))
    user = process.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    if "HOME" not in env:
        env["HOME"] = _home(uid)
    cwd = process.get("cwd") or "/"
    try:
        if not os.path.isdir(cwd):
            os.makedirs(cwd, 0o755, exist_ok=True)
    except OSError as err:
        raise OSError(err.errno, f"mkdir cwd {cwd}: {(err.strerror or '').lower()}") from None
    path = find_executable(process["args"][0], env)
    program = seccomp
    nnp = process.get("noNewPrivileges", False)
    if program is not None and not nnp:
        # without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it
        # while still root (runc does the same)
        _install(sc, program)
        program = None

    def change_user() -> None:
        os.setgroups(list(user.get("additionalGids") or []))
        os.setgid(gid)
        os.setuid(uid)

    apply_capabilities(process.get("capabilities") or {}, change_user=change_user, sys=sc)
    if nnp:
        sc.prctl(_PR_SET_NO_NEW_PRIVS, 1)
    os.umask(user.get("umask", 0o022) if user.get("umask") is not None else 0o022)
    try:
        os.chdir(cwd)
    except OSError as err:
        raise OSError(err.errno, f"chdir to cwd {cwd!r} set in config.json failed: "
                                 f"{(err.strerror or '').lower()}") from None
    return Prepared(path, list(process["args"]), env, process, program)


def _install(sc: Syscalls, seccomp: Filter) -> None:
    from dockyard.shim.seccomp import install_filter  # preloaded before fork
    install_filter(seccomp.program, seccomp.flags, sys=sc)


def close_extra_fds(keep: int) -> None:
    """Mark every fd >= keep close-on-exec: the program gets stdio plus the
    caller's `--preserve-fds`, nothing the shim's caller leaked to us."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(keep, 1024))
    for fd in fds:
        if fd >= keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def finish(sc: Syscalls, prepared: Prepared, preserve_fds: int = 0) -> None:
    """Install seccomp (when still pending) and execve; returns only by raising."""
    close_extra_fds(3 + preserve_fds)
    if prepared.seccomp is not None:
        _install(sc, prepared.seccomp)
    try:
        os.execve(prepared.path, prepared.args, prepared.env)
    except FileNotFoundError:
        raise ExecError(errno.ENOENT, f'exec: "{prepared.args[0]}": '
                                      "no such file or directory") from None
    except PermissionError:
        raise ExecError(errno.EACCES, f'exec: "{prepared.args[0]}": permission denied') \
            from None
    except OSError as err:
        raise ExecError(err.errno, f'exec: "{prepared.args[0]}": '
                                   f"{(err.strerror or '').lower()}") from None
