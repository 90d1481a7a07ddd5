"""The shim's lean path: `start`, `delete`, `state` and `kill` on built-in modules only.

Every container runs the shim at least three times (create, start, delete),
and start, delete, state and kill do little: read state.json and
/proc/<pid>/stat, then open the exec fifo, signal the init, or remove a few
directories. Through the full CLI they cost CPython's start-up plus ~5 ms of
imports: `os` (_collections_abc, posixpath, stat), the `dockyard` package
(which imports `os`), cli.py, log.py, container.py, oci/state.py. This
module does the common case of those verbs with built-in modules only
(`posix`, `_signal`, `time`, `sys`) and the `_json` extension, and the
launcher loads it as one file, without package resolution (`launcher()`).

The rule that keeps it small: anything off the common path returns None
*before* acting, and the launcher then runs the full CLI (cli.py), which
does the same work with every check and every error message: unknown or
invalid ids, wrong states (errors are worded there only), hooks, paused
containers, `kill --all`, `delete --force` of a live container, `--debug`,
traced calls (TRACEPARENT), flags this module does not know; for `exec`
it first starts shim/_warm.py's no-op cgroup writer, so the kernel's grace
period runs while cli.py loads. Once it has
acted, a step that fails hands over too when the full verb is safe to run
again from there (delete: a cgroup rmdir or the state dir's rename that
fails; start: an init that died before reading the fifo, which the full
verb reports as stopped).
What it does must stay what container.py does: tests/unit/shim/test_lean.py
and tests/oci/test_lean.py compare both paths.

It must not import `os` or anything through the `dockyard` package (shim/_warm.py is
loaded by path, and is built-in-only too): that is its whole point.
"""

import posix
import sys

__all__ = ["main", "run", "launcher"]

RUNTIME_ROOT = "/run/dockyard/runtime"  # dockyard.paths.RUNTIME_ROOT (a test keeps them equal)
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")
_SIGKILL = 9
_ENOENT = 2
_ENOTEMPTY = 39
_EEXIST = 17


def launcher(python: str, root: str) -> str:
    """The text of an installed `dockyard-shim` for a checkout at `root`: `python -IS`
    from the shebang, this file loaded by path (its cached .pyc is used), and the
    full CLI from `root`/src when this module hands over. scripts/install.sh,
    bench/runtime.py and the tests write it."""
    return (f"#!{python} -IS\n"
            '"""dockyard-shim (written by scripts/install.sh): shim/lean.py, then '
            'shim/cli.py."""\n'
            "import sys\n"
            "from _frozen_importlib_external import SourceFileLoader\n"
            'lean = type(sys)("dockyard.shim.lean")\n'
            f"lean.__file__ = {root + '/shim/lean.py'!r}\n"
            "exec(SourceFileLoader(lean.__name__, lean.__file__)"
            ".get_code(lean.__name__), lean.__dict__)\n"
            f"lean.run({root + '/src'!r})\n")


def run(src: str | None = None) -> None:
    """The launcher's entry: the lean verb, else the full CLI (found in `src`, or
    already importable); never returns."""
    code = main(sys.argv[1:])
    if code is None:
        if src is not None:
            sys.path.insert(0, src)
        from dockyard.shim.cli import main as full
        full()  # exits the process itself
    posix._exit(code)


def main(argv: list[str]) -> int | None:
    """Run the verb in `argv` (the shim's arguments) if it is a common case;
    its exit code, or None: nothing done, the full CLI must run it."""
    parsed = _parse(argv)
    if parsed is None or posix.environ.get(b"TRACEPARENT"):
        if _verb(argv) == "exec":
            _warm().start()  # the cgroup lock's grace period passes while cli.py loads
        return None
    root, verb, container_id, rest = parsed
    directory = f"{root}/{container_id}"
    state = _load(directory)
    if state is None:
        return None
    if verb == "state":
        return _state(directory, container_id, state)
    if verb == "start":
        return _start(directory, state)
    if verb == "kill":
        return _kill(state, rest)
    return _delete(directory, state, rest)


# --- command line ----------------------------------------------------------

_VERBS = {"start": (), "state": (), "kill": (), "delete": ("--force", "-f")}


def _parse(argv: list[str]) -> tuple[str, str, str, list[str]] | None:
    """(root, verb, id, verb arguments) for the forms handled here, else None."""
    root = RUNTIME_ROOT
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        name, eq, value = argv[i].partition("=")
        if name not in ("--root", "--log", "--log-format"):
            return None  # --debug, --systemd-cgroup, --version, ...: cli.py
        if not eq:
            if i + 1 >= len(argv):
                return None
            i += 1
            value = argv[i]
        if name == "--root":
            root = value
        elif name == "--log-format" and value not in ("text", "json"):
            return None
        i += 1  # --log: only errors are logged, and those are cli.py's
    if i >= len(argv) or argv[i] not in _VERBS:
        return None
    verb, rest = argv[i], argv[i + 1:]
    flags = [a for a in rest if a.startswith("-")]
    args = [a for a in rest if not a.startswith("-")]
    if any(f not in _VERBS[verb] for f in flags) or not args:
        return None
    if len(args) > (2 if verb == "kill" else 1):
        return None
    container_id = args[0]
    if not (len(container_id) <= 1024 and container_id[0].isalnum()
            and container_id.isascii() and _ID_CHARS.issuperset(container_id)):
        return None
    if not root.startswith("/"):
        root = posix.getcwd() + "/" + root
    return root.rstrip("/") or "/", verb, container_id, flags + args[1:]


def _verb(argv: list[str]) -> str | None:
    """The command word after the global flags (cli._split_globals' rule)."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        if "=" not in argv[i] and argv[i] in ("--root", "--log", "--log-format", "--criu",
                                              "--rootless"):
            i += 1
        i += 1
    return argv[i] if i < len(argv) else None


def _warm():  # noqa: ANN202
    """shim/_warm.py (built-in modules only), loaded by path next to this file and
    registered under its package name, so cli.py and container.py import this
    same module later and see its writer."""
    warm = sys.modules.get("dockyard.shim._warm")
    if warm is None:
        from _frozen_importlib_external import SourceFileLoader

        path = __file__.rpartition("/")[0] + "/_warm.py"
        warm = type(sys)("dockyard.shim._warm")
        warm.__file__ = path
        exec(SourceFileLoader(warm.__name__, path).get_code(warm.__name__), warm.__dict__)
        sys.modules[warm.__name__] = warm
    return warm


# --- state -------------------------------------------------------------------

def _load(directory: str) -> dict | None:
    """state.json, or None when it is missing, unreadable or not the shape we know."""
    try:
        fd = posix.open(f"{directory}/state.json", posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := posix.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        posix.close(fd)
    try:
        text = b"".join(chunks).decode()
        data, end = _scanner()(text, 0)
    except (ValueError, StopIteration, SystemError):  # the bare C scanner's failures
        return None
    if text[end:].strip() or not isinstance(data, dict) or not data.get("pid") \
            or not data.get("start_time"):
        return None
    return data


def _scanner():  # noqa: ANN202
    """_json's C scanner with json.JSONDecoder's settings (as dockyard.oci._json)."""
    import _json

    class Context:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = None
        memo: dict = {}
    return _json.make_scanner(Context())


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time) of a pid from /proc, None if it is gone."""
    try:
        fd = posix.open(f"/proc/{pid}/stat", posix.O_RDONLY | posix.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = posix.read(fd, 4096)
    except ProcessLookupError:
        return None
    finally:
        posix.close(fd)
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[19])


def _alive(pid: int, start: int) -> bool:
    """container.py `_alive`: same start time, not a zombie."""
    info = _proc_stat(pid) if pid > 0 else None
    return info is not None and info[1] == start and info[0] not in ("Z", "X")


def _read(path: str) -> str | None:
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        return posix.read(fd, 4096).decode()
    except OSError:
        return None
    finally:
        posix.close(fd)


def _status(directory: str, state: dict) -> str | None:
    """container.Container.status() from the saved data; None when only the
    cgroup manager could tell (no saved freezer path)."""
    if not _alive(int(state["pid"]), int(state["start_time"])):
        return "stopped"
    saved = state.get("cgroup") or {}
    if saved.get("version") == 1 and (saved.get("paths") or {}).get("freezer"):
        path, frozen = saved["paths"]["freezer"] + "/freezer.state", "FROZEN"
    elif saved.get("version") == 2 and saved.get("path"):
        path, frozen = saved["path"] + "/cgroup.freeze", "1"
    else:
        return None
    if (_read(path) or "").strip() == frozen:
        return "paused"
    try:
        posix.stat(f"{directory}/exec.fifo")
    except FileNotFoundError:
        return "running"
    return "created"


def _hooks(state: dict, kind: str) -> bool:
    return bool(((state.get("config") or {}).get("hooks") or {}).get(kind))


# --- verbs -------------------------------------------------------------------

def _state(directory: str, container_id: str, state: dict) -> int | None:
    """cli.cmd_state: oci.state.State.to_dict() as indented JSON."""
    status = _status(directory, state)
    if status is None:
        return None
    out = {"ociVersion": "1.0.2-dev", "id": container_id,
           "pid": 0 if status == "stopped" else int(state["pid"]), "status": status,
           "bundle": state.get("bundle", ""), "rootfs": state.get("rootfs", ""),
           "created": state.get("created", "")}
    if state.get("annotations"):
        out["annotations"] = state["annotations"]
    out["owner"] = ""
    _write(1, _pretty(out, "") + "\n")
    return 0


def _start(directory: str, state: dict) -> int | None:
    """Container.start: open the exec fifo, read the init's `0`, unlink the fifo."""
    if _status(directory, state) != "created" or _hooks(state, "poststart"):
        return None
    fifo = f"{directory}/exec.fifo"
    try:
        fd = posix.open(fifo, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        posix.set_blocking(fd, True)
        if not _wait_fifo(fd, int(state["pid"]), int(state["start_time"])):
            return None  # the init died: cli.py reports the stopped container
    finally:
        posix.close(fd)
    try:
        posix.unlink(fifo)
    except FileNotFoundError:
        pass
    return 0


def _wait_fifo(fd: int, pid: int, start: int) -> bool:
    """Container._wait_fifo: True once the init's `0` arrived, False if it died."""
    import time
    delay = 0.0002
    while True:
        if posix.read(fd, 1) == b"0":
            return True
        if not _alive(pid, start):
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _kill(state: dict, rest: list[str]) -> int | None:
    """Container.kill without --all: the init, through a pidfd taken before the
    start-time check (never a reused pid)."""
    signum = _signal_number(rest[0] if rest else "SIGTERM")
    if signum is None:
        return None
    pid, start = int(state["pid"]), int(state["start_time"])
    try:
        fd = posix.pidfd_open(pid)
    except OSError:
        return None
    try:
        if not _alive(pid, start):
            return None
        import _signal
        try:
            _signal.pidfd_send_signal(fd, signum)
        except ProcessLookupError:
            return None
    finally:
        posix.close(fd)
    return 0


def _signal_number(text: str) -> int | None:
    """container.parse_signal for valid input; None for anything else."""
    if text.isdigit():
        return int(text) if 0 < int(text) < 65 else None
    import _signal
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if name.startswith("SIG_"):
        return None
    num = getattr(_signal, name, None)
    return num if isinstance(num, int) and num > 0 else None


def _delete(directory: str, state: dict, rest: list[str]) -> int | None:
    """Container.delete of a stopped container: rmdir the saved cgroup
    directories, remove the state dir. A live one (with --force) is cli.py's."""
    if _status(directory, state) != "stopped" or _hooks(state, "poststop"):
        return None
    saved = state.get("cgroup") or {}
    if saved.get("version") == 1 and isinstance(saved.get("paths"), dict):
        dirs = list(saved["paths"].values())
    elif saved.get("version") == 2 and saved.get("path"):
        dirs = [saved["path"]]
    else:
        return None
    for path in dirs:
        try:
            posix.rmdir(path)
        except FileNotFoundError:
            continue
        except OSError:
            return None  # sub-cgroups, or EBUSY while the last task exits: cli.py retries
    parent, _, name = directory.rpartition("/")
    hidden = f"{parent}/.{name}.deleting"
    try:
        posix.rename(directory, hidden)
    except FileNotFoundError:
        return 0
    except OSError as err:
        if err.errno not in (_ENOTEMPTY, _EEXIST):
            return None  # the state dir is untouched: cli.py retries and words the error
        try:
            _rmtree(hidden)
            posix.rename(directory, hidden)
        except OSError:
            return None
    _rmtree(hidden)
    return 0


def _rmtree(path: str) -> None:
    """container._rmtree: the state dir holds files and no links to follow."""
    try:
        entries = list(posix.scandir(path))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _rmtree(entry.path)
        else:
            posix.unlink(entry.path)
    posix.rmdir(path)


# --- output ------------------------------------------------------------------

def _pretty(obj: object, indent: str) -> str:
    """dockyard.oci._json.dumps(obj, indent=2) for the state object's types."""
    import _json
    inner = indent + "  "
    if isinstance(obj, dict) and obj:
        items = [f"{_json.encode_basestring(str(k))}: {_pretty(v, inner)}" for k, v in obj.items()]
        return "{\n" + inner + (",\n" + inner).join(items) + "\n" + indent + "}"
    if isinstance(obj, list) and obj:
        return "[\n" + inner + (",\n" + inner).join(_pretty(v, inner) for v in obj) + \
            "\n" + indent + "]"
    if isinstance(obj, str):
        return _json.encode_basestring(obj)
    if obj is None or isinstance(obj, bool):
        return {None: "null", True: "true", False: "false"}[obj]
    if isinstance(obj, dict | list):
        return "{}" if isinstance(obj, dict) else "[]"
    return repr(obj)


def _write(fd: int, text: str) -> None:
    data = text.encode()
    while data:
        data = data[posix.write(fd, data):]
