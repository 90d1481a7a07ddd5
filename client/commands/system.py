"""System verbs: version, info, events, login, logout and `system df|prune|info|events`.

Owns: those verbs' API calls and output, and the CLI's saved registry
credentials (~/.dockyard/config.json, or $DOCKYARD_CONFIG/config.json: docker's
`auths` layout) that pull/push send as X-Registry-Auth.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from datetime import UTC
from typing import TYPE_CHECKING

from dockyard.client import api
from dockyard.client.context import CLIError, Context, add_verb

if TYPE_CHECKING:
    from typing import Any

__all__ = ["register", "load_auth", "registry_of", "config_path"]

DEFAULT_REGISTRY = "docker.io"


# --- credentials -----------------------------------------------------------------------------


def config_path() -> str:
    base = os.environ.get("DOCKYARD_CONFIG") or os.path.join(os.path.expanduser("~"),
                                                             ".dockyard")
    return os.path.join(base, "config.json")


def registry_of(ref: str) -> str:
    """The registry host of an image reference or server address (docker's rule)."""
    ref = ref.split("://", 1)[-1].rstrip("/")
    first, slash, _ = ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    if not slash and ("." in first or ":" in first or first == "localhost"):
        return first  # a bare server address given to login
    return DEFAULT_REGISTRY


def _read_config() -> dict[str, Any]:
    try:
        with open(config_path(), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise CLIError(f"dockyard: cannot read {config_path()}: {e}", 1) from e


def load_auth() -> dict[str, dict[str, str]]:
    """registry -> {"username","password","serveraddress"} from the config file."""
    out = {}
    for server, entry in (_read_config().get("auths") or {}).items():
        try:
            user, _, password = base64.b64decode(entry.get("auth", "")).decode().partition(":")
        except ValueError:
            continue
        out[server] = {"username": user, "password": password, "serveraddress": server}
    return out


def _write_config(cfg: dict[str, Any]) -> None:
    path = config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f, indent="\t")
    os.replace(tmp, path)


def login(ctx: Context, ns: argparse.Namespace) -> int:
    server = registry_of(ns.server) if ns.server else DEFAULT_REGISTRY
    user = ns.username
    password = ns.password
    if ns.password_stdin:
        if password:
            raise CLIError("dockyard: --password and --password-stdin are mutually exclusive",
                           125)
        if not user:
            raise CLIError("dockyard: Must provide --username with --password-stdin", 125)
        password = ctx.stdin.read().rstrip("\r\n")
    if not user:
        ctx.out.write("Username: ")
        ctx.out.flush()
        user = ctx.stdin.readline().strip()
    if not password:
        import getpass

        password = getpass.getpass("Password: ")
    if not user or not password:
        raise CLIError("dockyard: Error: Non-null Username and Password Required", 1)
    resp = ctx.client.post("/auth", json={"username": user, "password": password,
                                          "serveraddress": server}) or {}
    cfg = _read_config()
    cfg.setdefault("auths", {})[server] = {
        "auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    _write_config(cfg)
    ctx.err.write(f"WARNING! Your password will be stored unencrypted in {config_path()}.\n")
    ctx.out.write(f"{resp.get('Status') or 'Login Succeeded'}\n")
    return 0


def logout(ctx: Context, ns: argparse.Namespace) -> int:
    server = registry_of(ns.server) if ns.server else DEFAULT_REGISTRY
    cfg = _read_config()
    if server not in (cfg.get("auths") or {}):
        ctx.out.write(f"Not logged in to {server}\n")
        return 0
    del cfg["auths"][server]
    _write_config(cfg)
    ctx.out.write(f"Removing login credentials for {server}\n")
    return 0


# --- version / info --------------------------------------------------------------------------


def version(ctx: Context, ns: argparse.Namespace) -> int:
    from dockyard import __version__

    # sys/os rather than the platform module: it costs `dockyard version` ~30 ms to import
    client_info = {"Version": __version__, "ApiVersion": "1.41",
                   "PythonVersion": "{}.{}.{}".format(*sys.version_info[:3]),
                   "Os": sys.platform, "Arch": os.uname().machine,
                   "Platform": {"Name": "dockyard"}}
    server: dict[str, Any] | None = None
    server_error: CLIError | None = None
    try:
        server = ctx.client.get("/version")
    except api.DaemonUnreachable as e:
        from dockyard.client.context import daemon_hint

        server_error = CLIError(daemon_hint(e), 1)
    if ns.format:
        from dockyard.client import output

        doc = {"Client": client_info, "Server": server}
        if ns.format == "json":
            ctx.out.write(json.dumps(doc) + "\n")
        else:
            try:
                ctx.out.write(output.Template(ns.format.replace("\\n", "\n")
                                              .replace("\\t", "\t")).render(doc) + "\n")
            except output.TemplateError as e:
                raise CLIError(f"dockyard: template parsing error: {e}", 1) from e
    else:
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(client_info["Arch"],
                                                            client_info["Arch"])
        ctx.out.write("Client:\n"
                      f" Version:           {__version__}\n"
                      f" API version:       {client_info['ApiVersion']}\n"
                      f" Python version:    {client_info['PythonVersion']}\n"
                      f" OS/Arch:           {client_info['Os']}/{arch}\n")
        if server:
            ctx.out.write(f"\nServer: {(server.get('Platform') or {}).get('Name', 'dockyard')}\n")
            comps = server.get("Components") or [{"Name": "Engine", "Version":
                                                  server.get("Version", ""),
                                                  "Details": server}]
            for comp in comps:
                det = comp.get("Details") or {}
                ctx.out.write(f" {comp.get('Name', '')}:\n"
                              f"  Version:          {comp.get('Version', '')}\n")
                if det.get("ApiVersion"):
                    ctx.out.write(f"  API version:      {det['ApiVersion']} (minimum version "
                                  f"{det.get('MinAPIVersion', '')})\n")
                for key, label in (("GitCommit", "Git commit"), ("Os", "OS"),
                                   ("Arch", "Arch"), ("KernelVersion", "Kernel version")):
                    if det.get(key):
                        ctx.out.write(f"  {label + ':':<18}{det[key]}\n")
    if server_error:
        raise server_error
    return 0


def info(ctx: Context, ns: argparse.Namespace) -> int:
    from dockyard.client import output

    data = ctx.client.get("/info") or {}
    if ns.format:
        if ns.format == "json":
            ctx.out.write(json.dumps(data) + "\n")
            return 0
        try:
            ctx.out.write(output.Template(ns.format.replace("\\n", "\n")).render(data) + "\n")
        except output.TemplateError as e:
            raise CLIError(f"dockyard: template parsing error: {e}", 1) from e
        return 0
    w = ctx.out.write
    w("Server:\n")
    w(f" Containers: {data.get('Containers', 0)}\n"
      f"  Running: {data.get('ContainersRunning', 0)}\n"
      f"  Paused: {data.get('ContainersPaused', 0)}\n"
      f"  Stopped: {data.get('ContainersStopped', 0)}\n"
      f" Images: {data.get('Images', 0)}\n")
    for key, label in (("ServerVersion", "Server Version"), ("Driver", "Storage Driver"),
                       ("LoggingDriver", "Logging Driver"), ("CgroupDriver", "Cgroup Driver"),
                       ("CgroupVersion", "Cgroup Version"),
                       ("DefaultRuntime", "Default Runtime"),
                       ("KernelVersion", "Kernel Version"),
                       ("OperatingSystem", "Operating System"), ("OSType", "OSType"),
                       ("Architecture", "Architecture"), ("NCPU", "CPUs")):
        if data.get(key) not in (None, ""):
            w(f" {label}: {data[key]}\n")
    if data.get("Runtimes"):
        w(f" Runtimes: {' '.join(sorted(data['Runtimes']))}\n")
    if data.get("MemTotal"):
        w(f" Total Memory: {output.bytes_size(data['MemTotal'])}\n")
    for key, label in (("Name", "Name"), ("ID", "ID"), ("DockerRootDir", "Docker Root Dir")):
        if data.get(key):
            w(f" {label}: {data[key]}\n")
    for warning in data.get("Warnings") or []:
        ctx.err.write(f"{warning}\n")
    return 0


# --- events ----------------------------------------------------------------------------------


def _event_line(ev: dict[str, Any]) -> str:
    from datetime import datetime

    nano = ev.get("timeNano") or int((ev.get("time") or 0) * 1e9)
    stamp = datetime.fromtimestamp(nano // 1_000_000_000, UTC).astimezone()
    ts = stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{nano % 1_000_000_000:09d}" + \
        stamp.strftime("%z")[:3] + ":" + stamp.strftime("%z")[3:]
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    text = f"{ts} {ev.get('Type', '')} {ev.get('Action', '')} {actor.get('ID', '')}"
    if attrs:
        text += " (" + ", ".join(f"{k}={v}" for k, v in sorted(attrs.items())) + ")"
    return text


def events(ctx: Context, ns: argparse.Namespace) -> int:
    from dockyard.client import output
    from dockyard.client.commands.container import _time_arg, parse_filters

    params = {"since": _time_arg(ns.since), "until": _time_arg(ns.until),
              "filters": parse_filters(ns.filter)}
    tmpl = None
    if ns.format and ns.format != "json":
        try:
            tmpl = output.Template(ns.format.replace("\\t", "\t").replace("\\n", "\n"))
        except output.TemplateError as e:
            raise CLIError(f"dockyard: template parsing error: {e}", 125) from e
    resp = ctx.client.request("GET", "/events", params=params)
    for ev in resp.iter_json():
        if ns.format == "json":
            ctx.out.write(json.dumps(ev, separators=(",", ":")) + "\n")
        elif tmpl is not None:
            ctx.out.write(tmpl.render(ev) + "\n")
        else:
            ctx.out.write(_event_line(ev) + "\n")
        ctx.out.flush()
    return 0


# --- df / prune ------------------------------------------------------------------------------


def df(ctx: Context, ns: argparse.Namespace) -> int:
    from dockyard.client import output

    data = ctx.client.get("/system/df") or {}
    imgs = data.get("Images") or []
    ctrs = data.get("Containers") or []
    vols = data.get("Volumes") or []
    cache = data.get("BuildCache") or []
    img_size = data.get("LayersSize") or sum(i.get("Size") or 0 for i in imgs)
    img_active = [i for i in imgs if (i.get("Containers") or 0) > 0]
    img_reclaim = img_size - sum(i.get("Size") or 0 for i in img_active)
    ctr_size = sum(c.get("SizeRw") or 0 for c in ctrs)
    ctr_active = [c for c in ctrs if c.get("State") == "running"]
    ctr_reclaim = sum(c.get("SizeRw") or 0 for c in ctrs if c.get("State") != "running")
    vol_size = sum((v.get("UsageData") or {}).get("Size") or 0 for v in vols)
    vol_active = [v for v in vols if ((v.get("UsageData") or {}).get("RefCount") or 0) > 0]
    vol_reclaim = sum((v.get("UsageData") or {}).get("Size") or 0 for v in vols
                      if v not in vol_active)
    cache_size = sum(c.get("Size") or 0 for c in cache)

    def pct(part: int, total: int) -> str:
        return f"{output.human_size(part, 3)} ({int(part * 100 / total) if total else 0}%)"

    rows = [
        {"Type": "Images", "TotalCount": str(len(imgs)), "Active": str(len(img_active)),
         "Size": output.human_size(img_size, 3), "Reclaimable": pct(img_reclaim, img_size)},
        {"Type": "Containers", "TotalCount": str(len(ctrs)), "Active": str(len(ctr_active)),
         "Size": output.human_size(ctr_size, 3), "Reclaimable": pct(ctr_reclaim, ctr_size)},
        {"Type": "Local Volumes", "TotalCount": str(len(vols)),
         "Active": str(len(vol_active)), "Size": output.human_size(vol_size, 3),
         "Reclaimable": pct(vol_reclaim, vol_size)},
        {"Type": "Build Cache", "TotalCount": str(len(cache)), "Active": "0",
         "Size": output.human_size(cache_size, 3), "Reclaimable": output.human_size(cache_size,
                                                                                     3)},
    ]
    headers = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
               "Reclaimable": "RECLAIMABLE"}
    try:
        output.render_rows(rows, ns.format, "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t"
                           "{{.Size}}\t{{.Reclaimable}}", headers, ctx.out)
    except output.TemplateError as e:
        raise CLIError(f"dockyard: template parsing error: {e}", 125) from e
    return 0


def prune(ctx: Context, ns: argparse.Namespace) -> int:
    from dockyard.client import output
    from dockyard.client.commands.container import parse_filters

    what = ["all stopped containers", "all networks not used by at least one container"]
    if ns.volumes:
        what.append("all anonymous volumes not used by at least one container")
    what.append("all images without at least one container associated to them" if ns.all
                else "all dangling images")
    if not ns.force:
        ctx.out.write("WARNING! This will remove:\n" + "".join(f"  - {w}\n" for w in what)
                      + "\nAre you sure you want to continue? [y/N] ")
        ctx.out.flush()
        answer = ctx.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return 0
    filters = parse_filters(ns.filter) or {}
    total = 0
    steps = [("/containers/prune", "ContainersDeleted", "Deleted Containers", filters),
             ("/networks/prune", "NetworksDeleted", "Deleted Networks", filters)]
    if ns.volumes:
        steps.append(("/volumes/prune", "VolumesDeleted", "Deleted Volumes", filters))
    img_filters = dict(filters)
    img_filters["dangling"] = {"false" if ns.all else "true": True}
    steps.append(("/images/prune", "ImagesDeleted", "Deleted Images", img_filters))
    for path, key, title, flt in steps:
        try:
            result = ctx.client.post(path, params={"filters": flt or None}) or {}
        except api.APIError as e:
            if e.status == 404 and path in ("/networks/prune", "/volumes/prune"):
                continue  # networking/volumes not served by this apid yet
            raise
        items = result.get(key) or []
        if items:
            ctx.out.write(f"{title}:\n")
            for item in items:
                if isinstance(item, dict):
                    for k in ("Untagged", "Deleted"):
                        if item.get(k):
                            ctx.out.write(f"{k.lower()}: {item[k]}\n")
                else:
                    ctx.out.write(f"{item}\n")
            ctx.out.write("\n")
        total += result.get("SpaceReclaimed") or 0
    ctx.out.write(f"Total reclaimed space: {output.human_size(total, 3)}\n")
    return 0


def system(ctx: Context, ns: argparse.Namespace) -> int:
    if not getattr(ns, "sub", None):
        ctx.out.write("Usage:  dockyard system COMMAND\n\nCommands:\n"
                      "  df          Show dockyard disk usage\n"
                      "  events      Get real time events from the server\n"
                      "  info        Display system-wide information\n"
                      "  prune       Remove unused data\n")
        return 0
    return ns.sub(ctx, ns)


def _info_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", help="Format output using a custom template")


def _events_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("--since", help="Show all events created since timestamp")
    p.add_argument("--until", help="Stream events until this timestamp")


def register(subparsers: Any) -> None:
    from dockyard.client.context import DockyardParser, HelpFormatter

    p = add_verb(subparsers, "version", version, "[OPTIONS]",
                 "Show the dockyard version information")
    p.add_argument("-f", "--format", help="Format output using a custom template")

    p = add_verb(subparsers, "info", info, "[OPTIONS]", "Display system-wide information")
    _info_flags(p)

    p = add_verb(subparsers, "events", events, "[OPTIONS]",
                 "Get real time events from the server")
    _events_flags(p)

    p = add_verb(subparsers, "login", login, "[OPTIONS] [SERVER]", "Log in to a registry")
    p.add_argument("-u", "--username", help="Username")
    p.add_argument("-p", "--password", help="Password")
    p.add_argument("--password-stdin", action="store_true",
                   help="Take the password from stdin")
    p.add_argument("server", nargs="?", metavar="SERVER")

    p = add_verb(subparsers, "logout", logout, "[SERVER]", "Log out from a registry")
    p.add_argument("server", nargs="?", metavar="SERVER")

    p = add_verb(subparsers, "system", system, "COMMAND", "Manage dockyard")
    sub = p.add_subparsers(dest="system_verb", parser_class=DockyardParser)
    s = sub.add_parser("df", prog="dockyard system df", formatter_class=HelpFormatter,
                       description="Show dockyard disk usage")
    s.add_argument("--format", help="Format output using a custom template")
    s.add_argument("-v", "--verbose", action="store_true", help="Show detailed information")
    s.set_defaults(sub=df)
    s = sub.add_parser("prune", prog="dockyard system prune", formatter_class=HelpFormatter, description="Remove unused data")
    s.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused images not just dangling ones")
    s.add_argument("--filter", action="append", default=[], help="Provide filter values")
    s.add_argument("-f", "--force", action="store_true",
                   help="Do not prompt for confirmation")
    s.add_argument("--volumes", action="store_true", help="Prune anonymous volumes")
    s.set_defaults(sub=prune)
    s = sub.add_parser("info", prog="dockyard system info", formatter_class=HelpFormatter,
                       description="Display system-wide information")
    _info_flags(s)
    s.set_defaults(sub=info)
    s = sub.add_parser("events", prog="dockyard system events", formatter_class=HelpFormatter,
                       description="Get real time events from the server")
    _events_flags(s)
    s.set_defaults(sub=events)
