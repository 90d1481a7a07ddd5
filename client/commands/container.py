"""Container verbs: run, create, start, stop, restart, kill, rm, ps, logs, exec, attach,
top, wait, rename, pause, unpause, update, export, commit.

Owns: the API call sequence of each verb as the docker CLI makes it
(docker-api-flow.md §4-5) and its output. Parsing of create flags lives in
client/opts.py, the interactive stream plumbing in client/streams.py.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any

from dockyard.client import api, output
from dockyard.client.api import q
from dockyard.client.context import CLIError, Context, UsageError, add_verb

__all__ = ["register"]

PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
              "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
              "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
              "LocalVolumes": "LOCAL VOLUMES"}
PS_TABLE = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
            "{{.Ports}}\t{{.Names}}")


# --- helpers ---------------------------------------------------------------------------------


def write_bytes(stream: Any, data: bytes) -> None:
    """Write raw bytes to a text stream's buffer (or decoded, for StringIO in tests)."""
    buf = getattr(stream, "buffer", None)
    if buf is not None:
        stream.flush()
        buf.write(data)
        buf.flush()
    else:
        stream.write(data.decode("utf-8", "replace"))


def for_each(ctx: Context, names: list[str], action: Any, echo: bool = True) -> int:
    """Run action(name) for every name, print each name, report each failure; docker's loop."""
    failed = False
    for name in names:
        try:
            result = action(name)
        except api.APIError as e:
            ctx.err.write(f"Error response from daemon: {e.message}\n")
            failed = True
            continue
        if echo:
            ctx.out.write(f"{result if isinstance(result, str) else name}\n")
    return 1 if failed else 0


def parse_filters(items: list[str]) -> dict[str, dict[str, bool]] | None:
    """-f key=value (repeated) -> the API's map of maps."""
    if not items:
        return None
    out: dict[str, dict[str, bool]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise CLIError(f"dockyard: bad format of filter (expected name=value): {item}", 125)
        out.setdefault(key.strip().lower(), {})[value] = True
    return out


def _usage_error(ctx: Context, e: Exception) -> CLIError:
    return CLIError(f"dockyard: {e}\nSee 'dockyard {ctx.verb} --help'.", 125)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except (OSError, ValueError):
        return False


def _stdin_fd(ctx: Context) -> int | None:
    try:
        return ctx.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def start_failure_code(message: str) -> int:
    """docker run's exit code for a start error: 127 not found, 126 cannot invoke, else 125."""
    low = message.lower()
    if "executable file not found" in low or "no such file or directory" in low \
            or "not found" in low and "exec" in low:
        return 127
    if "permission denied" in low or "is a directory" in low or "not executable" in low:
        return 126
    return 125


def full_ref(image: str) -> str:
    """`busybox` -> `busybox:latest` for messages, as docker prints it."""
    from dockyard.client.opts import split_repo_tag

    repo, tag = split_repo_tag(image)
    return f"{repo}@{tag}" if tag.startswith("sha256:") else f"{repo}:{tag}"


# --- run / create ----------------------------------------------------------------------------


def _create(ctx: Context, params: dict, body: dict, pull: str, quiet: bool) -> str:
    """POST /containers/create; on "No such image" pull it (unless --pull=never) and retry."""
    from dockyard.client.commands.image import pull_image

    client = ctx.client
    if pull == "always":
        pull_image(ctx, body["Image"], platform=params.get("platform"), quiet=quiet,
                   out=ctx.err)
    try:
        resp = client.post("/containers/create", params=params, json=body)
    except api.APIError as e:
        if e.status != 404 or pull == "never" or "image" not in e.message.lower():
            raise
        ctx.err.write(f"Unable to find image '{full_ref(body['Image'])}' locally\n")
        pull_image(ctx, body["Image"], platform=params.get("platform"), quiet=quiet,
                   out=ctx.err)
        resp = client.post("/containers/create", params=params, json=body)
    for warning in resp.get("Warnings") or []:
        ctx.err.write(f"WARNING: {warning}\n")
    return resp["Id"]


def _build(ctx: Context, ns: argparse.Namespace, run: bool) -> tuple[dict, dict]:
    from dockyard.client.opts import build_create
    from dockyard.client.streams import terminal_size

    size = terminal_size(1) if ns.tty else None
    try:
        return build_create(ns, run=run, console_size=size)
    except UsageError as e:
        raise _usage_error(ctx, e) from e


def create(ctx: Context, ns: argparse.Namespace) -> int:
    params, body = _build(ctx, ns, run=False)
    cid = _create(ctx, params, body, ns.pull, ns.quiet)
    if ns.cidfile:
        _write_cidfile(ns.cidfile, cid)
    ctx.out.write(cid + "\n")
    return 0


def _write_cidfile(path: str, cid: str) -> None:
    try:
        with open(path, "x") as f:
            f.write(cid)
    except FileExistsError as e:
        raise CLIError(f"dockyard: container ID file found, make sure the other container "
                       f"isn't running or delete {path}", 125) from e


class _Waiter(threading.Thread):
    """Reads a wait request's answer in the background; `ready` is set once its headers came."""

    def __init__(self, pending: Any):
        super().__init__(daemon=True, name="dockyard-wait")
        self.pending = pending
        self.ready = threading.Event()
        self.result: dict | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            resp = api.check(self.pending.response())
            self.ready.set()
            self.result = resp.json()
        except BaseException as e:  # noqa: BLE001 -- handed to the main thread
            self.error = e
        finally:
            self.ready.set()

    def status(self) -> int:
        self.join()
        if self.error is not None:
            raise self.error
        result = self.result or {}
        if (result.get("Error") or {}).get("Message"):
            raise CLIError(f"dockyard: Error waiting for container: "
                           f"{result['Error']['Message']}", 125)
        return int(result.get("StatusCode", 0))


def _attached_session(ctx: Context, cid: str, *, tty: bool, stdin: bool, stdout: bool,
                      stderr: bool, wait_condition: str, detach_keys: str | None,
                      sig_proxy: bool, start: bool) -> int:
    """attach (hijack) -> wait -> start -> stream until EOF -> exit code (docker run's flow)."""
    from dockyard.client import streams

    client = ctx.client
    keys = streams.DEFAULT_DETACH
    if detach_keys:
        from dockyard.client.opts import parse_detach_keys

        keys = parse_detach_keys(detach_keys)
    params: dict[str, Any] = {"stream": True, "stdin": stdin or None,
                              "stdout": stdout or None, "stderr": stderr or None,
                              "detachKeys": detach_keys}
    conn = client.hijack(f"/containers/{q(cid)}/attach", params=params)
    waiter = _Waiter(client.open("POST", f"/containers/{q(cid)}/wait",
                                 params={"condition": wait_condition}))
    waiter.start()
    # the daemon answers wait's headers at once; a slow one must not hold the start back
    waiter.ready.wait(2.0)
    if waiter.ready.is_set() and waiter.error is not None:
        if conn is not None:
            conn.close()
        raise waiter.error
    if start:
        try:
            client.request("POST", f"/containers/{q(cid)}/start")
        except api.APIError as e:
            if conn is not None:
                conn.close()
            raise CLIError(f"dockyard: Error response from daemon: {e.message}",
                           start_failure_code(e.message)) from e
    in_fd = _stdin_fd(ctx) if stdin else None
    undo_resize = undo_signals = None
    try:
        if tty and _isatty(1):
            undo_resize = streams.watch_resize(
                1, lambda h, w: client.request("POST", f"/containers/{q(cid)}/resize",
                                               params={"h": h, "w": w}))
        if sig_proxy and not tty:
            undo_signals = streams.proxy_signals(
                lambda sig: client.request("POST", f"/containers/{q(cid)}/kill",
                                           params={"signal": sig}))
        detached = False
        if conn is not None:
            ctx.out.flush()
            raw = tty and in_fd is not None and _isatty(in_fd)
            if raw:
                with streams.RawTerminal(in_fd):
                    detached = streams.pump(conn, tty=tty, stdin_fd=in_fd,
                                            stdout_fd=_fd(ctx.out, 1),
                                            stderr_fd=_fd(ctx.err, 2), detach_keys=keys)
            else:
                detached = streams.pump(conn, tty=tty, stdin_fd=in_fd,
                                        stdout_fd=_fd(ctx.out, 1), stderr_fd=_fd(ctx.err, 2),
                                        detach_keys=keys)
        if detached:
            ctx.err.write("\r\n")
            return 0
        return waiter.status()
    finally:
        if undo_resize:
            undo_resize()
        if undo_signals:
            undo_signals()


def _fd(stream: Any, default: int) -> int:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return default


def run(ctx: Context, ns: argparse.Namespace) -> int:
    from dockyard.client.opts import _bool

    params, body = _build(ctx, ns, run=True)
    if ns.tty and ns.interactive and not ns.detach and not _isatty(_stdin_fd(ctx) or 0):
        raise CLIError("dockyard: the input device is not a TTY.  If you are using a pipe, "
                       "drop -t (use -i alone)", 1)
    cid = _create(ctx, params, body, ns.pull, ns.quiet)
    if ns.cidfile:
        _write_cidfile(ns.cidfile, cid)
    if ns.detach:
        try:
            ctx.client.request("POST", f"/containers/{q(cid)}/start")
        except api.APIError as e:
            raise CLIError(f"dockyard: Error response from daemon: {e.message}",
                           start_failure_code(e.message)) from e
        ctx.out.write(cid + "\n")
        return 0
    sig_proxy = _bool(ns.sig_proxy, "--sig-proxy")
    return _attached_session(
        ctx, cid, tty=body["Tty"], stdin=body["AttachStdin"], stdout=body["AttachStdout"],
        stderr=body["AttachStderr"], wait_condition="removed" if ns.rm else "next-exit",
        detach_keys=ns.detach_keys, sig_proxy=sig_proxy, start=True)


# --- lifecycle -------------------------------------------------------------------------------


def start(ctx: Context, ns: argparse.Namespace) -> int:
    if ns.attach or ns.interactive:
        if len(ns.containers) > 1:
            raise CLIError("dockyard: you cannot start and attach multiple containers at once",
                           1)
        info = ctx.client.get(f"/containers/{q(ns.containers[0])}/json")
        cfg = info.get("Config") or {}
        if (info.get("State") or {}).get("Running"):
            raise CLIError(f"dockyard: container {ns.containers[0]} is already running", 1)
        return _attached_session(
            ctx, info["Id"], tty=bool(cfg.get("Tty")),
            stdin=bool(ns.interactive and cfg.get("OpenStdin")), stdout=True, stderr=True,
            wait_condition="next-exit", detach_keys=ns.detach_keys,
            sig_proxy=not cfg.get("Tty"), start=True)
    return for_each(ctx, ns.containers,
                    lambda n: ctx.client.request("POST", f"/containers/{q(n)}/start"))


def stop(ctx: Context, ns: argparse.Namespace) -> int:
    params = {"t": ns.time, "signal": ns.signal}
    return for_each(ctx, ns.containers,
                    lambda n: ctx.client.request("POST", f"/containers/{q(n)}/stop",
                                                 params=params))


def restart(ctx: Context, ns: argparse.Namespace) -> int:
    params = {"t": ns.time, "signal": ns.signal}
    return for_each(ctx, ns.containers,
                    lambda n: ctx.client.request("POST", f"/containers/{q(n)}/restart",
                                                 params=params))


def kill(ctx: Context, ns: argparse.Namespace) -> int:
    return for_each(ctx, ns.containers,
                    lambda n: ctx.client.request("POST", f"/containers/{q(n)}/kill",
                                                 params={"signal": ns.signal}))


def rm(ctx: Context, ns: argparse.Namespace) -> int:
    params = {"force": ns.force or None, "v": ns.volumes or None, "link": ns.link or None}
    return for_each(ctx, ns.containers,
                    lambda n: ctx.client.request("DELETE", f"/containers/{q(n)}",
                                                 params=params))


def pause(ctx: Context, ns: argparse.Namespace) -> int:
    return for_each(ctx, ns.containers,
                    lambda n: ctx.client.request("POST", f"/containers/{q(n)}/pause"))


def unpause(ctx: Context, ns: argparse.Namespace) -> int:
    return for_each(ctx, ns.containers,
                    lambda n: ctx.client.request("POST", f"/containers/{q(n)}/unpause"))


def wait(ctx: Context, ns: argparse.Namespace) -> int:
    def one(name: str) -> str:
        result = ctx.client.post(f"/containers/{q(name)}/wait") or {}
        return str(result.get("StatusCode", 0))

    return for_each(ctx, ns.containers, one)


def rename(ctx: Context, ns: argparse.Namespace) -> int:
    if not ns.new_name.strip():
        raise CLIError("dockyard: Error: neither old nor new names may be empty", 1)
    ctx.client.request("POST", f"/containers/{q(ns.container)}/rename",
                       params={"name": ns.new_name})
    return 0


def update(ctx: Context, ns: argparse.Namespace) -> int:
    from dockyard.client.opts import parse_restart, parse_size

    try:
        body: dict[str, Any] = {}
        if ns.cpus:
            body["NanoCpus"] = int(round(float(ns.cpus) * 1e9))
        if ns.cpu_shares is not None:
            body["CpuShares"] = ns.cpu_shares
        if ns.cpu_period is not None:
            body["CpuPeriod"] = ns.cpu_period
        if ns.cpu_quota is not None:
            body["CpuQuota"] = ns.cpu_quota
        if ns.cpuset_cpus is not None:
            body["CpusetCpus"] = ns.cpuset_cpus
        if ns.cpuset_mems is not None:
            body["CpusetMems"] = ns.cpuset_mems
        if ns.memory:
            body["Memory"] = parse_size(ns.memory, "memory")
        if ns.memory_swap:
            body["MemorySwap"] = -1 if ns.memory_swap == "-1" else parse_size(ns.memory_swap)
        if ns.memory_reservation:
            body["MemoryReservation"] = parse_size(ns.memory_reservation)
        if ns.pids_limit is not None:
            body["PidsLimit"] = ns.pids_limit
        if ns.blkio_weight is not None:
            body["BlkioWeight"] = ns.blkio_weight
        if ns.restart:
            body["RestartPolicy"] = parse_restart(ns.restart)
    except (UsageError, ValueError) as e:
        raise _usage_error(ctx, e) from e
    if not body:
        raise CLIError("dockyard: you must provide one or more flags when using this command",
                       1)

    def one(name: str) -> str:
        resp = ctx.client.post(f"/containers/{q(name)}/update", json=body) or {}
        for w in resp.get("Warnings") or []:
            ctx.err.write(f"WARNING: {w}\n")
        return name

    return for_each(ctx, ns.containers, one)


# --- observation -----------------------------------------------------------------------------


def _join_host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ports(ports: list[dict] | None) -> str:
    """ps's PORTS column as docker's DisplayablePorts: sorted, runs of consecutive ports
    grouped ("0.0.0.0:8000-8002->8000-8002/tcp", "90-91/tcp"), remapped ports one by one."""
    def order(p: dict) -> tuple:
        return (p.get("PrivatePort") or 0, p.get("IP") or "", p.get("PublicPort") or 0,
                p.get("Type") or "")

    groups: dict[str, list[int]] = {}  # key -> [first, last], in creation order
    result: list[str] = []
    mappings: list[str] = []

    def form(key: str, first: int, last: int) -> str:
        ip, _, kind = key.rpartition("/")
        group = str(first) if first == last else f"{first}-{last}"
        if ip:
            group = f"{_join_host_port(ip, group)}->{group}"
        return f"{group}/{kind}"

    for p in sorted(ports or [], key=order):
        current = p.get("PrivatePort") or 0
        key = p.get("Type") or "tcp"
        if p.get("IP"):
            if p.get("PublicPort") != current:
                mappings.append(f"{_join_host_port(p['IP'], str(p.get('PublicPort') or 0))}"
                                f"->{current}/{key}")
                continue
            key = f"{p['IP']}/{key}"
        group = groups.get(key)
        if group is None:
            groups[key] = [current, current]
        elif current == group[1] + 1:
            group[1] = current
        else:
            result.append(form(key, *group))
            groups[key] = [current, current]  # keeps the key's place, as in docker
    result += [form(k, *g) for k, g in groups.items()]
    return ", ".join(result + mappings)


def ps_row(c: dict, trunc: bool, now: float | None = None) -> dict[str, Any]:
    """The template fields of one `GET /containers/json` item (docker's container context)."""
    names = [n.lstrip("/") for n in c.get("Names") or [] if n.count("/") <= 1]
    command = c.get("Command") or ""
    created = c.get("Created") or 0
    size = ""
    if "SizeRw" in c or "SizeRootFs" in c:
        size = output.human_size(c.get("SizeRw") or 0, 3)
        if c.get("SizeRootFs"):
            size += f" (virtual {output.human_size(c['SizeRootFs'], 3)})"
    labels = c.get("Labels") or {}
    networks = sorted((c.get("NetworkSettings") or {}).get("Networks") or {})
    from datetime import datetime

    image = c.get("Image") or ""
    if trunc and image.startswith("sha256:"):
        image = image[7:19]
    row = output.Row({
        "ID": c.get("Id", "")[:12] if trunc else c.get("Id", ""),
        "Image": image,
        "Command": '"' + (output.ellipsis(command, 20) if trunc else command) + '"',
        "CreatedAt": datetime.fromtimestamp(created).astimezone()
        .strftime("%Y-%m-%d %H:%M:%S %z %Z"),
        "RunningFor": output.since(created, now),
        "Ports": _ports(c.get("Ports")),
        "State": c.get("State", ""),
        "Status": c.get("Status", ""),
        "Size": size,
        "Names": ",".join(names),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "")
                           for m in c.get("Mounts") or []),
        "Networks": ",".join(networks),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
    })
    row.labels = labels
    return row


def ps(ctx: Context, ns: argparse.Namespace) -> int:
    params: dict[str, Any] = {"all": ns.all or None, "size": ns.size or None,
                              "filters": parse_filters(ns.filter)}
    if ns.latest:
        params["limit"] = 1
    elif ns.last is not None and ns.last != -1:
        params["limit"] = ns.last
    if ns.last is not None or ns.latest:
        params["all"] = True
    items = ctx.client.get("/containers/json", params=params) or []
    rows = [ps_row(c, not ns.no_trunc) for c in items]
    default = PS_TABLE + ("\t{{.Size}}" if ns.size else "")
    try:
        output.render_rows(rows, ns.format, default, PS_HEADERS, ctx.out, "ID", ns.quiet)
    except output.TemplateError as e:
        raise CLIError(f"dockyard: template parsing error: {e}", 125) from e
    return 0


def logs(ctx: Context, ns: argparse.Namespace) -> int:
    from dockyard.client.streams import Demux

    info = ctx.client.get(f"/containers/{q(ns.container)}/json")
    tty = bool((info.get("Config") or {}).get("Tty"))
    params = {"stdout": True, "stderr": True, "follow": ns.follow or None,
              "timestamps": ns.timestamps or None, "tail": ns.tail,
              "since": _time_arg(ns.since), "until": _time_arg(ns.until),
              "details": ns.details or None}
    resp = ctx.client.request("GET", f"/containers/{q(info['Id'])}/logs", params=params)
    demux = None if tty else Demux()
    for chunk in resp.iter_bytes():
        if demux is None:
            write_bytes(ctx.out, chunk)
            continue
        for stream, payload in demux.feed(chunk):
            write_bytes(ctx.err if stream == 2 else ctx.out, payload)
    return 0


def _time_arg(value: str | None) -> str | None:
    """--since/--until: unix seconds, RFC 3339, or a duration back from now ("10m")."""
    if not value:
        return None
    if value.replace(".", "", 1).isdigit():
        return value
    from dockyard.client.opts import parse_duration

    try:
        return f"{time.time() - parse_duration(value) / 1e9:.9f}"
    except UsageError:
        pass
    stamp = output.parse_time(value)
    if stamp is None:
        raise CLIError(f"dockyard: invalid time {value!r}: use unix seconds, RFC 3339 or a "
                       "duration such as 10m", 125)
    return f"{stamp:.9f}"


def top(ctx: Context, ns: argparse.Namespace) -> int:
    params = {"ps_args": " ".join(ns.ps_args)} if ns.ps_args else None
    result = ctx.client.get(f"/containers/{q(ns.container)}/top", params=params) or {}
    lines = ["\t".join(result.get("Titles") or [])]
    lines += ["\t".join(str(c) for c in proc) for proc in result.get("Processes") or []]
    ctx.out.write(output.tabulate(lines, minwidth=0, padding=3))
    return 0


# --- exec / attach ---------------------------------------------------------------------------


def exec_(ctx: Context, ns: argparse.Namespace) -> int:
    from dockyard.client import streams
    from dockyard.client.opts import parse_env_file

    if not ns.command:
        raise CLIError("dockyard: \"exec\" requires at least 2 arguments.\n"
                       "See 'dockyard exec --help'.", 125)
    in_fd = _stdin_fd(ctx)
    if ns.tty and ns.interactive and not _isatty(in_fd if in_fd is not None else 0):
        raise CLIError("dockyard: the input device is not a TTY", 1)
    env: list[str] = []
    try:
        for path in ns.env_file:
            env += parse_env_file(path)
    except UsageError as e:
        raise _usage_error(ctx, e) from e
    for item in ns.env:
        key, eq, _ = item.partition("=")
        if eq:
            env.append(item)
        elif key in os.environ:
            env.append(f"{key}={os.environ[key]}")
    size = streams.terminal_size(1) if ns.tty else None
    body: dict[str, Any] = {
        "User": ns.user or "", "Privileged": bool(ns.privileged), "Tty": bool(ns.tty),
        "AttachStdin": bool(ns.interactive) and not ns.detach,
        "AttachStdout": not ns.detach, "AttachStderr": not ns.detach,
        "Detach": bool(ns.detach), "DetachKeys": ns.detach_keys or "",
        "Env": env or None, "WorkingDir": ns.workdir or "", "Cmd": list(ns.command),
    }
    if size:
        body["ConsoleSize"] = list(size)
    client = ctx.client
    eid = client.post(f"/containers/{q(ns.container)}/exec", json=body)["Id"]
    start_body = {"Detach": bool(ns.detach), "Tty": bool(ns.tty)}
    if size:
        start_body["ConsoleSize"] = list(size)
    if ns.detach:
        client.request("POST", f"/exec/{eid}/start", json=start_body)
        return 0
    conn = client.hijack(f"/exec/{eid}/start", json=start_body)
    undo = None
    try:
        if ns.tty and _isatty(1):
            undo = streams.watch_resize(
                1, lambda h, w: client.request("POST", f"/exec/{eid}/resize",
                                               params={"h": h, "w": w}))
        if conn is not None:
            stdin_fd = in_fd if ns.interactive else None
            keys = streams.DEFAULT_DETACH
            if ns.detach_keys:
                from dockyard.client.opts import parse_detach_keys

                keys = parse_detach_keys(ns.detach_keys)
            ctx.out.flush()
            if ns.tty and stdin_fd is not None and _isatty(stdin_fd):
                with streams.RawTerminal(stdin_fd):
                    detached = streams.pump(conn, tty=True, stdin_fd=stdin_fd,
                                            stdout_fd=_fd(ctx.out, 1),
                                            stderr_fd=_fd(ctx.err, 2), detach_keys=keys)
            else:
                detached = streams.pump(conn, tty=bool(ns.tty), stdin_fd=stdin_fd,
                                        stdout_fd=_fd(ctx.out, 1), stderr_fd=_fd(ctx.err, 2),
                                        detach_keys=keys)
            if detached:
                return 0
    finally:
        if undo:
            undo()
    for _ in range(50):
        info = client.get(f"/exec/{eid}/json") or {}
        if not info.get("Running"):
            break
        time.sleep(0.05)
    code = info.get("ExitCode")
    return int(code) if code is not None else 0


def attach(ctx: Context, ns: argparse.Namespace) -> int:
    from dockyard.client.opts import _bool

    info = ctx.client.get(f"/containers/{q(ns.container)}/json")
    state = info.get("State") or {}
    if not state.get("Running"):
        raise CLIError("dockyard: You cannot attach to a stopped container, start it first", 1)
    if state.get("Paused"):
        raise CLIError("dockyard: You cannot attach to a paused container, unpause it first", 1)
    cfg = info.get("Config") or {}
    tty = bool(cfg.get("Tty"))
    stdin = not ns.no_stdin and bool(cfg.get("OpenStdin"))
    return _attached_session(ctx, info["Id"], tty=tty, stdin=stdin, stdout=True, stderr=True,
                             wait_condition="not-running", detach_keys=ns.detach_keys,
                             sig_proxy=_bool(ns.sig_proxy, "--sig-proxy") and not tty,
                             start=False)


# --- filesystem to images --------------------------------------------------------------------


def export(ctx: Context, ns: argparse.Namespace) -> int:
    if not ns.output and _isatty(_fd(ctx.out, 1)):
        raise CLIError("dockyard: cowardly refusing to save to a terminal. Use the -o flag "
                       "or redirect", 1)
    resp = ctx.client.request("GET", f"/containers/{q(ns.container)}/export")
    save_stream(ctx, resp, ns.output)
    return 0


def save_stream(ctx: Context, resp: api.Response, path: str | None) -> None:
    """Write a response body to path (atomically) or to stdout."""
    if path:
        tmp = f"{path}.dockyard-tmp"
        try:
            with open(tmp, "wb") as f:
                for chunk in resp.iter_bytes():
                    f.write(chunk)
            os.replace(tmp, path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise CLIError(f"dockyard: failed to save to {path}: {e.strerror}", 1) from e
        return
    for chunk in resp.iter_bytes():
        write_bytes(ctx.out, chunk)


def commit(ctx: Context, ns: argparse.Namespace) -> int:
    from dockyard.client.opts import split_repo_tag

    repo = tag = None
    if ns.repository:
        repo, tag = split_repo_tag(ns.repository)
    params = {"container": ns.container, "repo": repo, "tag": tag,
              "comment": ns.message, "author": ns.author,
              "pause": "1" if ns.pause else "0", "changes": ns.change or None}
    result = ctx.client.post("/commit", params=params, json={}) or {}
    ctx.out.write(f"{result.get('Id', '')}\n")
    return 0


# --- registration ----------------------------------------------------------------------------


def _create_flags(p: Any, run: bool) -> None:
    # opts.py is only imported when run/create is the verb being parsed (start-up cost)
    if getattr(p, "add_argument", None) is not None and isinstance(p, argparse.ArgumentParser):
        from dockyard.client.opts import add_create_flags

        add_create_flags(p, run=run)


def register(subparsers: Any) -> None:
    p = add_verb(subparsers, "run", run, "[OPTIONS] IMAGE [COMMAND] [ARG...]",
                 "Create and run a new container from an image", short_help=False)
    _create_flags(p, run=True)
    p.set_defaults(failure_code=125)

    p = add_verb(subparsers, "create", create, "[OPTIONS] IMAGE [COMMAND] [ARG...]",
                 "Create a new container", short_help=False)
    _create_flags(p, run=False)
    p.set_defaults(failure_code=125)

    p = add_verb(subparsers, "start", start, "[OPTIONS] CONTAINER [CONTAINER...]",
                 "Start one or more stopped containers")
    p.add_argument("-a", "--attach", action="store_true",
                   help="Attach STDOUT/STDERR and forward signals")
    p.add_argument("-i", "--interactive", action="store_true", help="Attach container's STDIN")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    for name, func, summary in (("stop", stop, "Stop one or more running containers"),
                                ("restart", restart, "Restart one or more containers")):
        p = add_verb(subparsers, name, func, "[OPTIONS] CONTAINER [CONTAINER...]", summary)
        p.add_argument("-t", "--time", "--timeout", type=int,
                       help="Seconds to wait before killing the container")
        p.add_argument("-s", "--signal", help="Signal to send to the container")
        p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = add_verb(subparsers, "kill", kill, "[OPTIONS] CONTAINER [CONTAINER...]",
                 "Kill one or more running containers")
    p.add_argument("-s", "--signal", help="Signal to send to the container")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = add_verb(subparsers, "rm", rm, "[OPTIONS] CONTAINER [CONTAINER...]",
                 "Remove one or more containers")
    p.add_argument("-f", "--force", action="store_true",
                   help="Force the removal of a running container (uses SIGKILL)")
    p.add_argument("-v", "--volumes", action="store_true",
                   help="Remove anonymous volumes associated with the container")
    p.add_argument("-l", "--link", action="store_true", help="Remove the specified link")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    for name, func, summary in (("pause", pause, "Pause all processes within one or more "
                                                 "containers"),
                                ("unpause", unpause, "Unpause all processes within one or "
                                                     "more containers"),
                                ("wait", wait, "Block until one or more containers stop, "
                                               "then print their exit codes")):
        p = add_verb(subparsers, name, func, "CONTAINER [CONTAINER...]", summary)
        p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = add_verb(subparsers, "rename", rename, "CONTAINER NEW_NAME", "Rename a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")

    p = add_verb(subparsers, "update", update, "[OPTIONS] CONTAINER [CONTAINER...]",
                 "Update configuration of one or more containers")
    p.add_argument("--cpus", help="Number of CPUs")
    p.add_argument("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    p.add_argument("--cpu-period", type=int, help="Limit CPU CFS period")
    p.add_argument("--cpu-quota", type=int, help="Limit CPU CFS quota")
    p.add_argument("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    p.add_argument("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)")
    p.add_argument("-m", "--memory", help="Memory limit")
    p.add_argument("--memory-swap", help="Swap limit equal to memory plus swap")
    p.add_argument("--memory-reservation", help="Memory soft limit")
    p.add_argument("--pids-limit", type=int, help="Tune container pids limit")
    p.add_argument("--blkio-weight", type=int, help="Block IO (relative weight)")
    p.add_argument("--restart", help="Restart policy to apply when a container exits")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = add_verb(subparsers, "ps", ps, "[OPTIONS]", "List containers")
    p.add_argument("-a", "--all", action="store_true",
                   help="Show all containers (default shows just running)")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template: 'table', "
                                    "'table TEMPLATE', 'json', or a Go template")
    p.add_argument("-n", "--last", type=int, help="Show n last created containers")
    p.add_argument("-l", "--latest", action="store_true",
                   help="Show the latest created container")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display container IDs")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")

    p = add_verb(subparsers, "logs", logs, "[OPTIONS] CONTAINER",
                 "Fetch the logs of a container")
    p.add_argument("--details", action="store_true", help="Show extra details")
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("--since", help="Show logs since timestamp or relative (e.g. 42m)")
    p.add_argument("-n", "--tail", default="all", help="Number of lines to show from the end")
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("--until", help="Show logs before a timestamp or relative (e.g. 42m)")
    p.add_argument("container", metavar="CONTAINER")

    p = add_verb(subparsers, "top", top, "CONTAINER [ps OPTIONS]",
                 "Display the running processes of a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("ps_args", nargs=argparse.REMAINDER)

    p = add_verb(subparsers, "exec", exec_, "[OPTIONS] CONTAINER COMMAND [ARG...]",
                 "Execute a command in a running container")
    p.add_argument("-d", "--detach", action="store_true",
                   help="Detached mode: run command in the background")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("-e", "--env", action="append", default=[],
                   help="Set environment variables")
    p.add_argument("--env-file", action="append", default=[],
                   help="Read in a file of environment variables")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="Keep STDIN open even if not attached")
    p.add_argument("--privileged", action="store_true",
                   help="Give extended privileges to the command")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
    p.add_argument("-w", "--workdir", help="Working directory inside the container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")

    p = add_verb(subparsers, "attach", attach, "[OPTIONS] CONTAINER",
                 "Attach local standard input, output, and error streams to a running "
                 "container")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("--no-stdin", action="store_true", help="Do not attach STDIN")
    p.add_argument("--sig-proxy", default="true", metavar="bool",
                   help="Proxy all received signals to the process (default true)")
    p.add_argument("container", metavar="CONTAINER")

    p = add_verb(subparsers, "export", export, "[OPTIONS] CONTAINER",
                 "Export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("container", metavar="CONTAINER")

    p = add_verb(subparsers, "commit", commit, "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
                 "Create a new image from a container's changes")
    p.add_argument("-a", "--author", help="Author (e.g., \"John Hannibal Smith "
                                          "<hannibal@a-team.com>\")")
    p.add_argument("-c", "--change", action="append", default=[],
                   help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", help="Commit message")
    p.add_argument("-p", "--pause", default=True, action=argparse.BooleanOptionalAction,
                   help="Pause container during commit (default true)")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
