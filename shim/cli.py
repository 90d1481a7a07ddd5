"""dockyard-shim's command line: runc's flags and verbs, parsed and dispatched.

Owns argv parsing (no argparse: it imports `re`, `gettext` and friends,
more than the whole start-up budget), the exit codes, and the printing of
results and errors. Each verb is a short function calling `Container`
methods (youki `commands/*.rs`); imports happen inside the verb, so
`state` never loads ctypes and `create` never loads `select`.

Usage: dockyard-shim [global flags] <command> [flags] <id> [args]

Global flags: --root DIR (/run/dockyard/runtime), --log FILE, --log-format
text|json, --debug, --systemd-cgroup (refused: cgroupfs only), --rootless
(accepted, ignored when false), --version/-v.

Exit codes (the contract managerd's runtime wrapper maps):

| code | when |
| --- | --- |
| 0 | success; also `delete --force` of an unknown id |
| 1 | any error (unknown/duplicate/invalid id, bad config or signal, wrong state, a failed create); one log record says why |
| 2 | bad command line (unknown command or flag, missing argument) |
| n | `run` and attached `exec`: the process's exit status (128+signal if killed) |
| 255 | attached `exec` whose program could not be executed |
| 126/127 | `run` whose program failed to exec after start (permission denied / not found) |
"""

from __future__ import annotations

import os
import sys

from dockyard.shim.log import Logger

from dockyard import paths
from dockyard.errdefs import EngineError, FailedPrecondition, InvalidArgument, NotFound
from dockyard.oci import _json

__all__ = ["main", "parse_flags", "UsageError"]

VERSION = "0.1.0"
SPEC_VERSION = "1.0.2-dev"


class UsageError(Exception):
    """The command line itself is wrong (exit 2)."""


# flag spellings -> (destination, kind); kind: bool, value, multi
_GLOBAL = {
    "--root": ("root", "value"), "--log": ("log", "value"),
    "--log-format": ("log_format", "value"), "--debug": ("debug", "bool"),
    "--systemd-cgroup": ("systemd_cgroup", "bool"), "--rootless": ("rootless", "value"),
    "--criu": ("criu", "value"), "--version": ("version", "bool"), "-v": ("version", "bool"),
    "--help": ("help", "bool"), "-h": ("help", "bool"),
}
_CREATE = {
    "--bundle": ("bundle", "value"), "-b": ("bundle", "value"),
    "--pid-file": ("pid_file", "value"), "--console-socket": ("console_socket", "value"),
    "--no-pivot": ("no_pivot", "bool"), "--no-new-keyring": ("no_new_keyring", "bool"),
    "--preserve-fds": ("preserve_fds", "value"), "--detach": ("detach", "bool"),
    "-d": ("detach", "bool"), "--pidfd-socket": ("pidfd_socket", "value"),
}
_RUN = {**_CREATE, "--keep": ("keep", "bool"), "--no-subreaper": ("no_subreaper", "bool")}
_EXEC = {
    "--process": ("process", "value"), "-p": ("process", "value"),
    "--console-socket": ("console_socket", "value"), "--detach": ("detach", "bool"),
    "-d": ("detach", "bool"), "--pid-file": ("pid_file", "value"), "--tty": ("tty", "bool"),
    "-t": ("tty", "bool"), "--cwd": ("cwd", "value"), "--env": ("env", "multi"),
    "-e": ("env", "multi"), "--user": ("user", "value"), "-u": ("user", "value"),
    "--additional-gids": ("additional_gids", "multi"), "-g": ("additional_gids", "multi"),
    "--cap": ("cap", "multi"), "-c": ("cap", "multi"), "--no-new-privs": ("no_new_privs", "bool"),
    "--process-label": ("process_label", "value"), "--apparmor": ("apparmor", "value"),
    "--preserve-fds": ("preserve_fds", "value"), "--ignore-paused": ("ignore_paused", "bool"),
    "--cgroup": ("cgroup", "multi"), "--pidfd-socket": ("pidfd_socket", "value"),
}
_UPDATE = {f"--{name}": (name.replace("-", "_"), "value") for name in (
    "resources", "memory", "memory-reservation", "memory-swap", "kernel-memory",
    "kernel-memory-tcp", "cpu-shares", "cpu-quota", "cpu-period", "cpu-rt-period",
    "cpu-rt-runtime", "cpuset-cpus", "cpuset-mems", "pids-limit", "blkio-weight",
    "l3-cache-schema", "mem-bw-schema")}
_UPDATE["-r"] = ("resources", "value")

_COMMANDS: dict[str, tuple[dict, int, int]] = {
    # name: (flags, min positionals, max positionals (-1 = any))
    "spec": ({"--bundle": ("bundle", "value"), "-b": ("bundle", "value"),
              "--rootless": ("rootless", "bool")}, 0, 0),
    "create": (_CREATE, 1, 1),
    "start": ({}, 1, 1),
    "run": (_RUN, 1, 1),
    "state": ({}, 1, 1),
    "list": ({"--format": ("format", "value"), "-f": ("format", "value"),
              "--quiet": ("quiet", "bool"), "-q": ("quiet", "bool")}, 0, 0),
    "kill": ({"--all": ("all", "bool"), "-a": ("all", "bool")}, 1, 2),
    "delete": ({"--force": ("force", "bool"), "-f": ("force", "bool")}, 1, 1),
    "exec": (_EXEC, 1, -1),
    "ps": ({"--format": ("format", "value"), "-f": ("format", "value")}, 1, -1),
    "pause": ({}, 1, 1),
    "resume": ({}, 1, 1),
    "update": (_UPDATE, 1, 1),
    "events": ({"--stats": ("stats", "bool"), "--interval": ("interval", "value")}, 1, 1),
    "features": ({}, 0, 0),
}


def _boolean(text: str, flag: str) -> bool:
    if text in ("true", "1", "t", "T", "TRUE", "True"):
        return True
    if text in ("false", "0", "f", "F", "FALSE", "False"):
        return False
    raise UsageError(f"invalid boolean value {text!r} for {flag}")


def parse_flags(args: list[str], spec: dict, stop_at_positional: bool = False
                ) -> tuple[dict, list[str]]:
    """Parse `--flag value`, `--flag=value`, `-f value` and booleans.

    Returns (options, positionals). With stop_at_positional everything after
    the first positional is positional (exec's command line, ps's ps-args).
    """
    opts: dict = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positional.extend(args[i:])
            break
        if not arg.startswith("-") or arg == "-" or (positional and stop_at_positional):
            positional.append(arg)
            if stop_at_positional:
                positional.extend(args[i:])
                break
            continue
        name, eq, value = arg.partition("=")
        if name not in spec and arg.startswith("-") and not arg.startswith("--") \
                and len(arg) > 2 and arg[:2] in spec:
            name, eq, value = arg[:2], "=", arg[2:]  # -e FOO=1 spelled -eFOO=1
        if name not in spec:
            raise UsageError(f"flag provided but not defined: {name}")
        dest, kind = spec[name]
        if kind == "bool":
            opts[dest] = _boolean(value, name) if eq else True
            continue
        if not eq:
            if i >= len(args):
                raise UsageError(f"flag needs an argument: {name}")
            value = args[i]
            i += 1
        if kind == "multi":
            opts.setdefault(dest, []).append(value)
        else:
            opts[dest] = value
    return opts, positional


def _split_globals(argv: list[str]) -> tuple[dict, str | None, list[str]]:
    opts: dict = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            return opts, arg, argv[i + 1:]
        name, eq, value = arg.partition("=")
        if name not in _GLOBAL:
            raise UsageError(f"flag provided but not defined: {name}")
        dest, kind = _GLOBAL[name]
        i += 1
        if kind == "bool":
            opts[dest] = _boolean(value, name) if eq else True
        else:
            if not eq:
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: {name}")
                value = argv[i]
                i += 1
            opts[dest] = value
    return opts, None, []


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Entry point of bin/dockyard-shim; returns the process exit code.

    Called without argv (as the program), it ends the process itself with
    os._exit once stdout/stderr are flushed: interpreter finalization costs
    several milliseconds and the shim holds nothing that needs it.
    """
    if argv is not None:
        return _main(argv)
    # a short-lived process with few cyclic objects: collections during the
    # imports are wasted work (os._exit below frees everything anyway)
    import gc
    gc.disable()
    code = _main(sys.argv[1:])
    warm = sys.modules.get("dockyard.shim._warm")
    if warm is not None:
        warm.reap()  # exec's no-op cgroup writer
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _main(argv: list[str]) -> int:
    log = Logger()
    try:
        gopts, command, rest = _split_globals(argv)
        log = Logger(gopts.get("log"), gopts.get("log_format", "text"), gopts.get("debug", False))
        if gopts.get("log_format", "text") not in ("text", "json"):
            raise UsageError(f"invalid log-format {gopts['log_format']!r}: use text or json")
        if gopts.get("version"):
            _out(f"dockyard-shim version {VERSION}\ncommit: dockyard\nspec: {SPEC_VERSION}\n")
            return 0
        if command is None or gopts.get("help"):
            _out("usage: dockyard-shim [global flags] <command> [flags] <id> [args]\n"
                 "commands: " + ", ".join(_COMMANDS) + "\n")
            return 0 if gopts.get("help") else 2
        if gopts.get("systemd_cgroup"):
            raise InvalidArgument("--systemd-cgroup is not supported: dockyard-shim manages "
                                  "cgroups through cgroupfs (use a cgroupsPath such as "
                                  "/dockyard/<id>)")
        if gopts.get("rootless") not in (None, "false", "auto"):
            raise InvalidArgument("rootless mode is not supported")
        if command not in _COMMANDS:
            raise UsageError(f"no such command: {command}")
        if command == "exec":
            # the cgroup lock's grace period passes while we import and parse (_warm.py)
            from dockyard.shim import _warm
            _warm.start()  # (already started by shim/lean.py when it loaded this CLI)
        spec, least, most = _COMMANDS[command]
        opts, pos = parse_flags(rest, spec, stop_at_positional=command in ("exec", "ps"))
        if len(pos) < least or (most >= 0 and len(pos) > most):
            raise UsageError(f"{command}: expected {least}"
                             f"{'' if most == least else ' or more' if most < 0 else f'-{most}'}"
                             f" argument(s), got {len(pos)}")
        root = os.path.abspath(gopts.get("root") or paths.RUNTIME_ROOT)
        traceparent = os.environ.get("TRACEPARENT")
        if traceparent:  # a traced request (imported only then: start-up time)
            from dockyard.shim import trace
            return trace.run_verb(traceparent, command, pos[0] if pos else "",
                                  lambda: _VERBS[command](root, opts, pos, log))
        if log.debug_enabled:
            log.debug(f"{command} {' '.join(pos)} (root {root})")
        return _VERBS[command](root, opts, pos, log)
    except UsageError as err:
        log.error(str(err))
        return 2
    except EngineError as err:
        log.error(str(err))
        return 1
    except _shim_error() as err:  # type: ignore[misc]
        log.error(str(err))
        return err.exit_code
    except OSError as err:
        from dockyard.shim.init import describe
        log.error(describe(err))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # noqa: BLE001 - a bug still gets one log record, not a traceback
        log.error(f"internal error: {type(err).__name__}: {err}")
        if log.debug_enabled:
            import traceback
            traceback.print_exc()
        return 1


def _shim_error() -> type:
    mod = sys.modules.get("dockyard.shim.container")
    return mod.ShimError if mod is not None else _Never


class _Never(Exception):
    exit_code = 1


# --- verbs ---------------------------------------------------------------

def _create_options(opts: dict):  # noqa: ANN202
    from dockyard.shim.container import CreateOptions
    _refuse_unsupported(opts)
    try:
        preserve = int(opts.get("preserve_fds") or 0)
    except ValueError:
        raise InvalidArgument(f"invalid --preserve-fds {opts['preserve_fds']!r}") from None
    return CreateOptions(bundle=opts.get("bundle") or ".", pid_file=opts.get("pid_file"),
                         console_socket=opts.get("console_socket"),
                         no_pivot=opts.get("no_pivot", False),
                         no_new_keyring=opts.get("no_new_keyring", False),
                         preserve_fds=preserve)


def cmd_create(root: str, opts: dict, pos: list[str], log: Logger) -> int:
    from dockyard.shim.container import Container
    Container.create(root, pos[0], _create_options(opts))
    return 0


def cmd_start(root: str, opts: dict, pos: list[str], log: Logger) -> int:
    from dockyard.shim.container import load
    c = load(root, pos[0])
    c.start()
    _poststart(c)
    return 0


def _poststart(c) -> None:  # noqa: ANN001
    if (c.config.get("hooks") or {}).get("poststart"):
        try:
            c.run_hooks("poststart")
        except Exception:
            c.destroy_processes(c.status())
            raise


def cmd_run(root: str, opts: dict, pos: list[str], log: Logger) -> int:
    from dockyard.shim.container import Container, wait_forwarding
    create = _create_options(opts)
    ours = None  # attached + terminal + no console socket: we hold the pty (runc does)
    if not opts.get("detach") and not create.console_socket and _wants_terminal(create.bundle):
        import _socket
        ours, create.console = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        c = Container.create(root, pos[0], create, keep_channel=not opts.get("detach"))
    finally:
        if create.console is not None:
            create.console.close()
    master = -1
    if ours is not None:
        from dockyard.shim.console import receive_master
        master, _ = receive_master(ours)
        ours.close()
    try:
        c.start()
        _poststart(c)
    except BaseException:
        c.destroy_processes(c.status())
        if c.chan is not None:
            os.waitpid(c.init_pid, 0)
        c.remove()
        raise
    if opts.get("detach"):
        return 0
    msg = c.chan.recv()  # EOF once the program is exec'd
    c.chan.close()
    if master >= 0:
        from dockyard.shim.console import proxy
        proxy(master)
    code = wait_forwarding(c.init_pid)
    if msg is not None and msg.get("type") == "error":
        log.error(str(msg.get("msg")))
    if not opts.get("keep"):
        c.remove()
    return code


def _wants_terminal(bundle: str) -> bool:
    """process.terminal of the bundle's config (errors are left to create)."""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            config = _json.loads(f.read())
        return bool(config["process"]["terminal"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def cmd_state(root: str, opts: dict, pos: list[str], log: Logger) -> int:
    from dockyard.shim.container import load
    c = load(root, pos[0])
    _out(_json.dumps(c.state().to_dict(), indent=2) + "\n")
    return 0


def _owner(path: str) -> str:
    import pwd
    try:
        uid = os.stat(path).st_uid
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OSError):
        return "#?"


def cmd_list(root: str, opts: dict, pos: list[str], log: Logger) -> int:
    from dockyard.shim.container import list_ids, load
    states = []
    for cid in list_ids(root):
        try:
            c = load(root, cid)
        except (NotFound, ValueError, OSError):
            continue
        states.append(c.state(_owner(c.dir)).to_dict())
    fmt = opts.get("format") or "table"
    if opts.get("quiet"):
        _out("".join(s["id"] + "\n" for s in states))
    elif fmt == "json":
        _out(_json.dumps(states) + "\n")
    elif fmt == "table":
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
                 for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        _out("".join("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                     + "\n" for r in rows))
    else:
        raise InvalidArgument(f"invalid format option {fmt!r}: use table or json")
    return 0


def cmd_kill(root: str, opts: dict, pos: list[str], log: Logger) -> int:
    from dockyard.shim.container import load, parse_signal
    c = load(root, pos[0])
    signal = parse_signal(pos[1] if len(pos) > 1 else "SIGTERM")
    c.kill(signal, opts.get("all", False))
    return 0


def cmd_delete(root: str, opts: dict, pos: list[str], log: Logger) -> int:
    from dockyard.shim.container import check_id, load
    force = opts.get("force", False)
    try:
        c = load(root, pos[0])
    except NotFound:
        check_id(pos[0])
        if force:
            return 0
        raise
    except FailedPrecondition:  # unreadable state.json: only --force may drop it
        if not force:
            raise
        from dockyard.shim.container import remove_state_dir
        remove_state_dir(os.path.join(root, pos[0]))
        return 0
    c.delete(force)
    return 0


def _exec_process(c, opts: dict, args: list[str]) -> dict:  # noqa: ANN001
    from dockyard.oci.spec import validate_process
    if opts.get("process"):
        try:
            with open(opts["process"], "rb") as f:
                process = _json.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"open {opts['process']}: no such file or directory") from None
        except ValueError as err:
            raise InvalidArgument(f"parse process {opts['process']}: {err}") from None
        validate_process(process, "process")
        return process
    if not args:
        raise UsageError("exec: no command given (use --process or give the command)")
    base = c.config.get("process") or {}
    process = {k: v for k, v in base.items() if k not in ("terminal", "consoleSize")}
    process["args"] = args
    process["terminal"] = bool(opts.get("tty"))
    if opts.get("cwd"):
        process["cwd"] = opts["cwd"]
    env = list(base.get("env") or [])
    env.extend(opts.get("env") or [])
    process["env"] = env
    if opts.get("user"):
        uid, _, gid = opts["user"].partition(":")
        try:
            process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError:
            raise InvalidArgument(f"invalid --user {opts['user']!r}: use uid[:gid]") from None
    if opts.get("additional_gids"):
        process.setdefault("user", {})["additionalGids"] = [int(g) for g in
                                                             opts["additional_gids"]]
    if opts.get("cap"):
        caps = {k: list(v) for k, v in (base.get("capabilities") or {}).items()}
        for name in opts["cap"]:
            for kind in ("bounding", "effective", "permitted", "ambient"):
                if name not in caps.setdefault(kind, []):
                    caps[kind].append(name)
        process["capabilities"] = caps
    if opts.get("no_new_privs"):
        process["noNewPrivileges"] = True
    validate_process(process, "process")
    return process


def _refuse_unsupported(opts: dict) -> None:
    """Flags runc has for features dockyard-shim lacks: an error, never a silent no-op."""
    for key, what in (("cgroup", "joining a sub-cgroup (--cgroup)"),
                      ("apparmor", "AppArmor profiles"), ("process_label", "SELinux labels"),
                      ("pidfd_socket", "--pidfd-socket")):
        if opts.get(key):
            raise InvalidArgument(f"{what} not supported by dockyard-shim")


def cmd_exec(root: str, opts: dict, pos: list[str], log: Logger) -> int:
    from dockyard.shim.container import load
    _refuse_unsupported(opts)
    c = load(root, pos[0])
    process = _exec_process(c, opts, pos[1:])
    try:
        preserve = int(opts.get("preserve_fds") or 0)
    except ValueError:
        raise InvalidArgument(f"invalid --preserve-fds {opts['preserve_fds']!r}") from None
    return c.exec(process, opts.get("detach", False), opts.get("pid_file"),
                  opts.get("console_socket"), preserve)


def cmd_ps(root: str, opts: dict, pos: list[str], log: Logger) -> int:
    from dockyard.shim.container import load
    c = load(root, pos[0])
    mgr = c.manager()
    pids = mgr.pids() if mgr is not None else []
    fmt = opts.get("format") or "table"
    if fmt == "json":
        _out(_json.dumps(pids) + "\n")
        return 0
    if fmt != "table":
        raise InvalidArgument(f"invalid format option {fmt!r}: use table or json")
    import subprocess
    out = subprocess.run(["ps", *(pos[1:] or ["-ef"])], capture_output=True, text=True,
                         check=False).stdout.splitlines()
    if not out:
        return 0
    header = out[0].split()
    if "PID" not in header:
        raise InvalidArgument("ps output has no PID column")
    col = header.index("PID")
    wanted = {str(p) for p in pids}
    _out("\n".join([out[0]] + [line for line in out[1:]
                               if len(line.split()) > col and line.split()[col] in wanted])
         + "\n")
    return 0


def cmd_pause(root: str, opts: dict, pos: list[str], log: Logger) -> int:
    from dockyard.shim.container import load

    from dockyard.oci.state import Status
    c = load(root, pos[0])
    status = c.status()
    if not Status.can_pause(status):
        raise FailedPrecondition(f"container not running or created: {status}")
    c.manager().freeze()
    return 0


def cmd_resume(root: str, opts: dict, pos: list[str], log: Logger) -> int:
    from dockyard.shim.container import load

    from dockyard.oci.state import Status
    c = load(root, pos[0])
    status = c.status()
    if not Status.can_resume(status):
        raise FailedPrecondition(f"container not paused: {status}")
    c.manager().thaw()
    return 0


def _size(text: str, flag: str) -> int:
    """`512m`, `1g`, `1048576`, `-1` (go-units RAMInBytes, binary units)."""
    value = text.strip().lower()
    mult = 1
    for suffix, m in (("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30), ("tb", 1 << 40),
                      ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40),
                      ("b", 1)):
        if value.endswith(suffix):
            value, mult = value[:-len(suffix)], m
            break
    try:
        return int(float(value) * mult) if value != "-1" else -1
    except ValueError:
        raise InvalidArgument(f"invalid value {text!r} for --{flag}") from None


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f"invalid value {text!r} for --{flag}") from None


def update_resources(opts: dict, stdin: object = None) -> dict:
    """`update` flags -> OCI LinuxResources (the --resources JSON, then single flags)."""
    resources: dict = {}
    source = opts.get("resources")
    if source:
        try:
            if source == "-":
                raw = (stdin or sys.stdin).read()  # type: ignore[attr-defined]
            else:
                with open(source) as f:
                    raw = f.read()
            resources = _json.loads(raw)
        except ValueError as err:
            raise InvalidArgument(f"parse resources JSON: {err}") from None
        except FileNotFoundError:
            raise NotFound(f"open {source}: no such file or directory") from None
        if not isinstance(resources, dict):
            raise InvalidArgument("resources JSON must be an object (OCI linux.resources)")
    mem = resources.setdefault("memory", {})
    cpu = resources.setdefault("cpu", {})
    for flag, key in (("memory", "limit"), ("memory_reservation", "reservation"),
                      ("memory_swap", "swap"), ("kernel_memory", "kernel"),
                      ("kernel_memory_tcp", "kernelTCP")):
        if opts.get(flag):
            mem[key] = _size(opts[flag], flag.replace("_", "-"))
    for flag, key in (("cpu_shares", "shares"), ("cpu_quota", "quota"),
                      ("cpu_period", "period"), ("cpu_rt_period", "realtimePeriod"),
                      ("cpu_rt_runtime", "realtimeRuntime")):
        if opts.get(flag):
            cpu[key] = _int(opts[flag], flag.replace("_", "-"))
    if opts.get("cpuset_cpus"):
        cpu["cpus"] = opts["cpuset_cpus"]
    if opts.get("cpuset_mems"):
        cpu["mems"] = opts["cpuset_mems"]
    if opts.get("pids_limit"):
        resources["pids"] = {"limit": _int(opts["pids_limit"], "pids-limit")}
    if opts.get("blkio_weight"):
        resources["blockIO"] = {"weight": _int(opts["blkio_weight"], "blkio-weight")}
    for key in ("memory", "cpu"):
        if not resources[key]:
            del resources[key]
    return resources


def cmd_update(root: str, opts: dict, pos: list[str], log: Logger) -> int:
    from dockyard.shim.container import load

    from dockyard.oci.state import STOPPED
    c = load(root, pos[0])
    if c.status() == STOPPED:
        raise FailedPrecondition("container not running")
    resources = update_resources(opts)
    c.manager().set(resources)
    # keep the stored config in step, as runc does, so `events`/later reads agree
    linux = c.data["config"].setdefault("linux", {})
    merged = linux.setdefault("resources", {})
    for key, value in resources.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    c.save()
    return 0


def _duration(text: str) -> float:
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suffix, mult in units:
        if text.endswith(suffix):
            try:
                return float(text[:-len(suffix)]) * mult
            except ValueError:
                break
    raise InvalidArgument(f"invalid --interval {text!r}: use a duration such as 5s or 500ms")


def cmd_events(root: str, opts: dict, pos: list[str], log: Logger) -> int:
    import time

    from dockyard.shim.container import load

    from dockyard.oci.state import STOPPED
    c = load(root, pos[0])
    if c.status() == STOPPED:
        raise FailedPrecondition("container not running")
    mgr = c.manager()
    if opts.get("stats"):
        _out(_json.dumps({"type": "stats", "id": c.id, "data": mgr.stats()}) + "\n")
        return 0
    interval = _duration(opts.get("interval") or "5s")
    if interval <= 0:
        raise InvalidArgument("--interval must be positive")
    ooms = mgr.oom_count()
    next_stats = time.monotonic()
    while c.status() != STOPPED:
        count = mgr.oom_count()
        if count > ooms:
            _out(_json.dumps({"type": "oom", "id": c.id}) + "\n")
            ooms = count
        if time.monotonic() >= next_stats:
            _out(_json.dumps({"type": "stats", "id": c.id, "data": mgr.stats()}) + "\n")
            next_stats += interval
        time.sleep(min(0.2, interval))
    return 0


def cmd_spec(root: str, opts: dict, pos: list[str], log: Logger) -> int:
    from dockyard.oci.spec import default_spec
    if opts.get("rootless"):
        raise InvalidArgument("rootless containers are not supported by dockyard-shim")
    bundle = opts.get("bundle") or "."
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise InvalidArgument("File config.json exists. Remove it first or use a "
                              "different bundle")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except FileNotFoundError:
        raise NotFound(f"bundle {bundle}: no such directory") from None
    try:
        os.write(fd, (_json.dumps(default_spec(), indent=2) + "\n").encode())
    finally:
        os.close(fd)
    return 0


def cmd_features(root: str, opts: dict, pos: list[str], log: Logger) -> int:
    from dockyard.shim.features import features
    _out(_json.dumps(features(), indent=2) + "\n")
    return 0


_VERBS = {
    "spec": cmd_spec, "create": cmd_create, "start": cmd_start, "run": cmd_run,
    "state": cmd_state, "list": cmd_list, "kill": cmd_kill, "delete": cmd_delete,
    "exec": cmd_exec, "ps": cmd_ps, "pause": cmd_pause, "resume": cmd_resume,
    "update": cmd_update, "events": cmd_events, "features": cmd_features,
}
