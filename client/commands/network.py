"""Network verbs: `network create|ls|inspect|rm|prune|connect|disconnect`, and `port`.

Owns: the Docker Engine networks API calls the docker CLI makes for each verb
(POST /networks/create with IPAM, GET /networks with filters, connect's
EndpointConfig, prune's report), their output (the `network ls` table, the
inspect array, prune's "Deleted Networks:" list) and `port`'s listing of a
container's NetworkSettings.Ports in docker's natural order. apid does the
networking; this module only talks to its API.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from typing import Any

from dockyard.client import api, output
from dockyard.client.api import q
from dockyard.client.commands.container import parse_filters
from dockyard.client.context import CLIError, Context, add_verb

__all__ = ["register", "natural_key", "created_at", "inspect_objects", "kv_pairs"]

NET_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
               "IPv4": "IPV4", "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
               "CreatedAt": "CREATED AT"}
NET_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"


def natural_key(text: str) -> list[Any]:
    """docker's sortorder.NaturalLess: digit runs compare as numbers ("net9" < "net10")."""
    return [(0, int(part), part) if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", text) if part]


def created_at(stamp: str) -> str:
    """RFC 3339 -> Go's time.String() as docker prints it ("2026-11-29 17:00:00 +0000 UTC")."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", stamp or "")
    if not m:
        return stamp or ""
    frac = (m.group(3) or "").rstrip("0").rstrip(".")
    zone = m.group(4)
    tail = "+0000 UTC" if zone == "Z" else f"{zone.replace(':', '')} {zone.replace(':', '')}"
    return f"{m.group(1)} {m.group(2)}{frac} {tail}"


def _usage(ctx: Context, message: str) -> CLIError:
    return CLIError(f"dockyard: {message}\nSee 'dockyard {ctx.verb} --help'.", 125)


def kv_pairs(items: list[str], what: str, ctx: Context) -> dict[str, str]:
    """Repeated KEY=VALUE flags (--opt, --label, ...) -> a dict; a usage error (125)
    for an entry without a key."""
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise _usage(ctx, f"invalid argument {item!r} for {what}: use KEY=VALUE")
        out[key] = value
    return out


# --- create ----------------------------------------------------------------------------------


def _ipam_config(ctx: Context, ns: argparse.Namespace) -> list[dict[str, Any]]:
    """--subnet/--ip-range/--gateway/--aux-address -> IPAM.Config (docker's consolidateIpam)."""
    import ipaddress

    def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise _usage(ctx, f"invalid CIDR address: {text}") from None

    if len(ns.subnet) < len(ns.ip_range) or len(ns.subnet) < len(ns.gateway):
        raise _usage(ctx, "every ip-range or gateway must have a corresponding subnet")
    configs: list[dict[str, Any]] = []
    nets = []
    for s in ns.subnet:
        n = net(s)
        if any(n.version == o.version and n.overlaps(o) for o in nets):
            raise _usage(ctx, "multiple overlapping subnet configuration is not supported")
        nets.append(n)
        configs.append({"Subnet": s})
    for r in ns.ip_range:
        rn = net(r)
        for n, cfg in zip(nets, configs, strict=True):
            if rn.version == n.version and rn.subnet_of(n):  # type: ignore[arg-type]
                if cfg.get("IPRange"):
                    raise _usage(ctx, f"cannot configure multiple ranges ({cfg['IPRange']}, "
                                      f"{r}) on the same subnet ({cfg['Subnet']})")
                cfg["IPRange"] = r
                break
        else:
            raise _usage(ctx, f"no matching subnet for range {r}")
    for g in ns.gateway:
        try:
            gw = ipaddress.ip_address(g)
        except ValueError:
            raise _usage(ctx, f"invalid argument {g!r} for \"--gateway\" flag: invalid "
                              f"string being converted to IP address: {g}") from None
        for n, cfg in zip(nets, configs, strict=True):
            if gw.version == n.version and gw in n:
                if cfg.get("Gateway"):
                    raise _usage(ctx, f"cannot configure multiple gateways ({g}, "
                                      f"{cfg['Gateway']}) for the same subnet "
                                      f"({cfg['Subnet']})")
                cfg["Gateway"] = g
                break
        else:
            raise _usage(ctx, f"no matching subnet for gateway {g}")
    for aux in ns.aux_address:
        key, eq, value = aux.partition("=")
        if not eq:
            raise _usage(ctx, f"invalid argument {aux!r} for \"--aux-address\" flag: use "
                              "NAME=IP")
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            raise _usage(ctx, f"no matching subnet for aux-address {value}") from None
        for n, cfg in zip(nets, configs, strict=True):
            if ip.version == n.version and ip in n:
                cfg.setdefault("AuxiliaryAddresses", {})[key] = value
                break
        else:
            raise _usage(ctx, f"no matching subnet for aux-address {value}")
    return configs


def network_create(ctx: Context, ns: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "Name": ns.name,
        "Driver": ns.driver,
        "Scope": ns.scope or "",
        "IPAM": {"Driver": ns.ipam_driver, "Options": kv_pairs(ns.ipam_opt, "--ipam-opt", ctx),
                 "Config": _ipam_config(ctx, ns)},
        "Internal": bool(ns.internal),
        "Attachable": bool(ns.attachable),
        "Ingress": bool(ns.ingress),
        "ConfigOnly": bool(ns.config_only),
        "ConfigFrom": {"Network": ns.config_from} if ns.config_from else None,
        "Options": kv_pairs(ns.opt, "--opt", ctx),
        "Labels": kv_pairs(ns.label, "--label", ctx),
    }
    if ns.ipv6 is not None:
        body["EnableIPv6"] = ns.ipv6
    if ns.ipv4 is not None:
        body["EnableIPv4"] = ns.ipv4
    resp = ctx.client.post("/networks/create", json=body) or {}
    ctx.out.write(f"{resp.get('Id', '')}\n")
    return 0


# --- ls / inspect / rm / prune ---------------------------------------------------------------


def net_row(n: dict[str, Any], trunc: bool) -> output.Row:
    """The template fields of one `GET /networks` item (docker's network context)."""
    labels = n.get("Labels") or {}
    nid = n.get("Id", "")
    # keys in docker's `--format json` order (Go marshals the context's map sorted)
    row = output.Row({
        "CreatedAt": created_at(n.get("Created", "")),
        "Driver": n.get("Driver", ""),
        "ID": nid[:12] if trunc else nid,
        "IPv4": "true" if n.get("EnableIPv4") else "false",
        "IPv6": "true" if n.get("EnableIPv6") else "false",
        "Internal": "true" if n.get("Internal") else "false",
        "Labels": ",".join(f"{k}={v}" for k, v in labels.items()),
        "Name": n.get("Name", ""),
        "Scope": n.get("Scope", ""),
    })
    row.labels = labels
    return row


def network_ls(ctx: Context, ns: argparse.Namespace) -> int:
    nets = ctx.client.get("/networks", params={"filters": parse_filters(ns.filter)}) or []
    nets.sort(key=lambda n: natural_key(n.get("Name", "")))
    rows = [net_row(n, not ns.no_trunc) for n in nets]
    try:
        output.render_rows(rows, ns.format, NET_TABLE, NET_HEADERS, ctx.out, "ID", ns.quiet)
    except output.TemplateError as e:
        raise CLIError(f"dockyard: template parsing error: {e}", 125) from e
    return 0


def inspect_objects(ctx: Context, names: list[str], fmt: str | None,
                    get: Callable[[str], Any]) -> int:
    """docker's inspect loop: the objects as a 4-space JSON array (or each through -f),
    then one "Error response from daemon" line per name that failed; 1 if any did."""
    tmpl = None
    if fmt and fmt != "json":
        try:
            tmpl = output.Template(fmt.replace("\\t", "\t").replace("\\n", "\n"))
        except output.TemplateError as e:
            raise CLIError(f"dockyard: template parsing error: {e}", 125) from e
    found: list[Any] = []
    errors: list[str] = []
    for name in names:
        try:
            obj = get(name)
        except api.APIError as e:
            errors.append(f"Error response from daemon: {e.message}\n")  # after the output
            continue
        if tmpl is not None:
            try:
                ctx.out.write(tmpl.render(obj) + "\n")
            except output.TemplateError as e:
                raise CLIError(f"dockyard: template: {e}", 1) from e
        elif fmt == "json":
            ctx.out.write(json.dumps(obj) + "\n")
        else:
            found.append(obj)
    if tmpl is None and fmt != "json":
        ctx.out.write(json.dumps(found, indent=4, ensure_ascii=False) + "\n")
    ctx.out.flush()
    for line in errors:
        ctx.err.write(line)
    return 1 if errors else 0


def network_inspect(ctx: Context, ns: argparse.Namespace) -> int:
    params = {"verbose": "true" if ns.verbose else None}
    return inspect_objects(ctx, ns.networks, ns.format,
                           lambda name: ctx.client.get(f"/networks/{q(name)}", params=params))


def network_rm(ctx: Context, ns: argparse.Namespace) -> int:
    def one(name: str) -> str:
        try:
            ctx.client.request("DELETE", f"/networks/{q(name)}")
        except api.APIError as e:
            if ns.force and e.status == 404:
                return ""  # -f: a missing network is no error (and prints nothing)
            raise
        return name

    failed = False
    for name in ns.networks:
        try:
            shown = one(name)
        except api.APIError as e:
            ctx.err.write(f"Error response from daemon: {e.message}\n")
            failed = True
            continue
        if shown:
            ctx.out.write(f"{shown}\n")
    return 1 if failed else 0


def network_prune(ctx: Context, ns: argparse.Namespace) -> int:
    if not ns.force:
        ctx.out.write("WARNING! This will remove all custom networks not used by at least one "
                      "container.\nAre you sure you want to continue? [y/N] ")
        ctx.out.flush()
        answer = (ctx.stdin.readline() if ctx.stdin else "").strip().lower()
        if answer not in ("y", "yes"):
            return 0
    report = ctx.client.post("/networks/prune",
                             params={"filters": parse_filters(ns.filter)}) or {}
    deleted = report.get("NetworksDeleted") or []
    if deleted:
        ctx.out.write("Deleted Networks:\n" + "".join(f"{n}\n" for n in deleted) + "\n")
    return 0


# --- connect / disconnect --------------------------------------------------------------------


def network_connect(ctx: Context, ns: argparse.Namespace) -> int:
    ep: dict[str, Any] = {}
    if ns.ip or ns.ip6 or ns.link_local_ip:
        ep["IPAMConfig"] = {k: v for k, v in (("IPv4Address", ns.ip), ("IPv6Address", ns.ip6),
                                              ("LinkLocalIPs", ns.link_local_ip)) if v}
    if ns.alias:
        ep["Aliases"] = list(ns.alias)
    if ns.link:
        ep["Links"] = list(ns.link)
    if ns.driver_opt:
        ep["DriverOpts"] = kv_pairs(ns.driver_opt, "--driver-opt", ctx)
    if ns.gw_priority:
        ep["GwPriority"] = ns.gw_priority
    ctx.client.request("POST", f"/networks/{q(ns.network)}/connect",
                       json={"Container": ns.container, "EndpointConfig": ep})
    return 0


def network_disconnect(ctx: Context, ns: argparse.Namespace) -> int:
    ctx.client.request("POST", f"/networks/{q(ns.network)}/disconnect",
                       json={"Container": ns.container, "Force": bool(ns.force)})
    return 0


# --- port ------------------------------------------------------------------------------------


def _join_host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def port(ctx: Context, ns: argparse.Namespace) -> int:
    info = ctx.client.get(f"/containers/{q(ns.container)}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    lines: list[str] = []
    if ns.port:
        number, _, proto = ns.port.partition("/")
        if not number.isdigit() or int(number) > 65535:
            why = "value out of range" if number.isdigit() else "invalid syntax"
            raise CLIError(f"Error: invalid port ({number}): strconv.ParseUint: parsing "
                           f"\"{number}\": {why}", 1)
        frontends = ports.get(f"{number}/{proto or 'tcp'}") or []
        if not frontends:
            raise CLIError(f"Error: No public port '{ns.port}' published for {ns.container}", 1)
        lines = [_join_host_port(f.get("HostIp", ""), f.get("HostPort", "")) for f in frontends]
    else:
        for private, frontends in ports.items():
            for f in frontends or []:
                lines.append(f"{private} -> "
                             f"{_join_host_port(f.get('HostIp', ''), f.get('HostPort', ''))}")
    lines.sort(key=natural_key)
    if lines:
        ctx.out.write("\n".join(lines) + "\n")
    return 0


# --- registration ----------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    p = add_verb(subparsers, "network create", network_create, "[OPTIONS] NETWORK",
                 "Create a network")
    p.add_argument("--attachable", action="store_true",
                   help="Enable manual container attachment")
    p.add_argument("--aux-address", action="append", default=[],
                   help="Auxiliary IPv4 or IPv6 addresses used by Network driver")
    p.add_argument("--config-from", help="The network from which to copy the configuration")
    p.add_argument("--config-only", action="store_true",
                   help="Create a configuration only network")
    p.add_argument("-d", "--driver", default="bridge",
                   help="Driver to manage the Network (default \"bridge\")")
    p.add_argument("--gateway", action="append", default=[],
                   help="IPv4 or IPv6 Gateway for the master subnet")
    p.add_argument("--ingress", action="store_true",
                   help="Create swarm routing-mesh network")
    p.add_argument("--internal", action="store_true",
                   help="Restrict external access to the network")
    p.add_argument("--ip-range", action="append", default=[],
                   help="Allocate container ip from a sub-range")
    p.add_argument("--ipam-driver", default="default",
                   help="IP Address Management Driver (default \"default\")")
    p.add_argument("--ipam-opt", action="append", default=[],
                   help="Set IPAM driver specific options")
    for flag, what in (("ipv4", "Enable or disable IPv4 address assignment (default true)"),
                       ("ipv6", "Enable or disable IPv6 address assignment")):
        p.add_argument(f"--{flag}", action="store_const", const=True, default=None, help=what)
        # docker's booleans also take =true/=false (argparse matches these whole words)
        for word, value in (("true", True), ("1", True), ("false", False), ("0", False)):
            p.add_argument(f"--{flag}={word}", dest=flag, action="store_const", const=value,
                           help=argparse.SUPPRESS)
    p.add_argument("--label", action="append", default=[],
                   help="Set metadata on a network")
    p.add_argument("-o", "--opt", action="append", default=[],
                   help="Set driver specific options (e.g. "
                        "com.docker.network.bridge.name=NAME)")
    p.add_argument("--scope", help="Control the network's scope")
    p.add_argument("--subnet", action="append", default=[],
                   help="Subnet in CIDR format that represents a network segment")
    p.add_argument("name", metavar="NETWORK")

    p = add_verb(subparsers, "network ls", network_ls, "[OPTIONS]", "List networks")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Provide filter values (e.g. \"driver=bridge\")")
    p.add_argument("--format", help="Format output using a custom template: 'table', "
                                    "'table TEMPLATE', 'json', or a Go template")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate the output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display network IDs")

    p = add_verb(subparsers, "network inspect", network_inspect,
                 "[OPTIONS] NETWORK [NETWORK...]",
                 "Display detailed information on one or more networks")
    p.add_argument("-f", "--format", help="Format output using a custom template: 'json', "
                                          "or a Go template")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="Verbose output for diagnostics")
    p.add_argument("networks", nargs="+", metavar="NETWORK")

    p = add_verb(subparsers, "network rm", network_rm, "NETWORK [NETWORK...]",
                 "Remove one or more networks")
    p.add_argument("-f", "--force", action="store_true",
                   help="Do not error if the network does not exist")
    p.add_argument("networks", nargs="+", metavar="NETWORK")

    p = add_verb(subparsers, "network prune", network_prune, "[OPTIONS]",
                 "Remove all unused networks")
    p.add_argument("--filter", action="append", default=[],
                   help="Provide filter values (e.g. \"until=<timestamp>\")")
    p.add_argument("-f", "--force", action="store_true",
                   help="Do not prompt for confirmation")

    p = add_verb(subparsers, "network connect", network_connect,
                 "[OPTIONS] NETWORK CONTAINER", "Connect a container to a network")
    p.add_argument("--alias", action="append", default=[],
                   help="Add network-scoped alias for the container")
    p.add_argument("--driver-opt", action="append", default=[],
                   help="driver options for the network")
    p.add_argument("--gw-priority", type=int, default=0,
                   help="Highest gw-priority provides the default gateway")
    p.add_argument("--ip", help="IPv4 address (e.g., \"172.30.100.104\")")
    p.add_argument("--ip6", help="IPv6 address (e.g., \"2001:db8::33\")")
    p.add_argument("--link", action="append", default=[],
                   help="Add link to another container")
    p.add_argument("--link-local-ip", action="append", default=[],
                   help="Add a link-local address for the container")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")

    p = add_verb(subparsers, "network disconnect", network_disconnect,
                 "[OPTIONS] NETWORK CONTAINER", "Disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true",
                   help="Force the container to disconnect from a network")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")

    p = add_verb(subparsers, "port", port, "CONTAINER [PRIVATE_PORT[/PROTO]]",
                 "List port mappings or a specific mapping for the container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
