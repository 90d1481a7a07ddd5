"""Volume verbs: `volume create|ls|inspect|rm|prune` on apid's volumes API (`local` driver).

Owns: the requests the docker CLI makes for each (POST /volumes/create with
Driver/DriverOpts/Labels, GET /volumes with filters, DELETE with force, prune
with all=true for -a) and their output (the `volume ls` table and json in
natural name order, inspect's array, prune's list and reclaimed space).
"""

from __future__ import annotations

import argparse
from typing import Any

from dockyard.client import api, output
from dockyard.client.api import q
from dockyard.client.commands.container import parse_filters
from dockyard.client.commands.network import inspect_objects, kv_pairs, natural_key
from dockyard.client.context import CLIError, Context, add_verb

__all__ = ["register"]

VOL_HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE",
               "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Links": "LINKS",
               "Size": "SIZE", "Availability": "AVAILABILITY", "Group": "GROUP",
               "Status": "STATUS"}
VOL_TABLE = "table {{.Driver}}\t{{.Name}}"


def volume_create(ctx: Context, ns: argparse.Namespace) -> int:
    name = ns.volume or ns.name or ""
    if ns.volume and ns.name and ns.volume != ns.name:
        raise CLIError("dockyard: conflicting options: cannot specify a volume-name through "
                       "both --name and as a positional arg", 125)
    body = {"Name": name, "Driver": ns.driver, "DriverOpts": kv_pairs(ns.opt, "--opt", ctx),
            "Labels": kv_pairs(ns.label, "--label", ctx)}
    vol = ctx.client.post("/volumes/create", json=body) or {}
    ctx.out.write(f"{vol.get('Name', '')}\n")
    return 0


def vol_row(v: dict[str, Any]) -> output.Row:
    """The template fields of one volume (docker's volume context; keys in json order)."""
    labels = v.get("Labels") or {}
    usage = v.get("UsageData") or {}
    row = output.Row({
        "Availability": "N/A", "Driver": v.get("Driver", ""), "Group": "N/A",
        "Labels": ",".join(f"{k}={val}" for k, val in labels.items()),
        "Links": str(usage["RefCount"]) if "RefCount" in usage else "N/A",
        "Mountpoint": v.get("Mountpoint", ""), "Name": v.get("Name", ""),
        "Scope": v.get("Scope", ""),
        "Size": output.human_size(usage["Size"]) if usage.get("Size", -1) >= 0 else "N/A",
        "Status": "N/A",
    })
    row.labels = labels
    return row


def volume_ls(ctx: Context, ns: argparse.Namespace) -> int:
    resp = ctx.client.get("/volumes", params={"filters": parse_filters(ns.filter)}) or {}
    for warning in resp.get("Warnings") or []:
        ctx.err.write(f"{warning}\n")
    vols = sorted(resp.get("Volumes") or [], key=lambda v: natural_key(v.get("Name", "")))
    try:
        output.render_rows([vol_row(v) for v in vols], ns.format, VOL_TABLE, VOL_HEADERS,
                           ctx.out, "Name", ns.quiet)
    except output.TemplateError as e:
        raise CLIError(f"dockyard: template parsing error: {e}", 125) from e
    return 0


def volume_inspect(ctx: Context, ns: argparse.Namespace) -> int:
    return inspect_objects(ctx, ns.volumes, ns.format,
                           lambda name: ctx.client.get(f"/volumes/{q(name)}"))


def volume_rm(ctx: Context, ns: argparse.Namespace) -> int:
    errors = []
    for name in ns.volumes:
        try:
            ctx.client.request("DELETE", f"/volumes/{q(name)}",
                               params={"force": "1" if ns.force else None})
        except api.APIError as e:
            if ns.force and e.status == 404:
                ctx.out.write(f"{name}\n")
                continue
            errors.append(f"Error response from daemon: {e.message}\n")
            continue
        ctx.out.write(f"{name}\n")
    ctx.out.flush()
    for line in errors:  # after the names, as docker prints them
        ctx.err.write(line)
    return 1 if errors else 0


def volume_prune(ctx: Context, ns: argparse.Namespace) -> int:
    if not ns.force:
        what = "all local volumes" if ns.all else "anonymous local volumes"
        ctx.out.write(f"WARNING! This will remove {what} not used by at least one container."
                      "\nAre you sure you want to continue? [y/N] ")
        ctx.out.flush()
        answer = (ctx.stdin.readline() if ctx.stdin else "").strip().lower()
        if answer not in ("y", "yes"):
            return 0
    filters = parse_filters(ns.filter) or {}
    if ns.all:
        filters["all"] = {"true": True}
    report = ctx.client.post("/volumes/prune", params={"filters": filters or None}) or {}
    deleted = report.get("VolumesDeleted") or []
    reclaimed = 0
    if deleted:
        ctx.out.write("Deleted Volumes:\n" + "".join(f"{v}\n" for v in deleted) + "\n")
        reclaimed = report.get("SpaceReclaimed") or 0
    ctx.out.write(f"Total reclaimed space: {output.human_size(reclaimed)}\n")
    return 0


def register(subparsers: Any) -> None:
    p = add_verb(subparsers, "volume create", volume_create, "[OPTIONS] [VOLUME]",
                 "Create a volume")
    p.add_argument("-d", "--driver", default="local",
                   help="Specify volume driver name (default \"local\")")
    p.add_argument("--label", action="append", default=[], help="Set metadata for a volume")
    p.add_argument("--name", help=argparse.SUPPRESS)
    p.add_argument("-o", "--opt", action="append", default=[],
                   help="Set driver specific options (e.g. type=tmpfs,device=tmpfs,o=size=64m)")
    p.add_argument("volume", nargs="?", metavar="VOLUME")

    p = add_verb(subparsers, "volume ls", volume_ls, "[OPTIONS]", "List volumes")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Provide filter values (e.g. \"dangling=true\")")
    p.add_argument("--format", help="Format output using a custom template: 'table', "
                                    "'table TEMPLATE', 'json', or a Go template")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display volume names")

    p = add_verb(subparsers, "volume inspect", volume_inspect, "[OPTIONS] VOLUME [VOLUME...]",
                 "Display detailed information on one or more volumes")
    p.add_argument("-f", "--format", help="Format output using a custom template: 'json', "
                                          "or a Go template")
    p.add_argument("volumes", nargs="+", metavar="VOLUME")

    p = add_verb(subparsers, "volume rm", volume_rm, "[OPTIONS] VOLUME [VOLUME...]",
                 "Remove one or more volumes")
    p.add_argument("-f", "--force", action="store_true",
                   help="Force the removal of one or more volumes")
    p.add_argument("volumes", nargs="+", metavar="VOLUME")

    p = add_verb(subparsers, "volume prune", volume_prune, "[OPTIONS]",
                 "Remove unused local volumes")
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused volumes, not just anonymous ones")
    p.add_argument("--filter", action="append", default=[],
                   help="Provide filter values (e.g. \"label=<label>\")")
    p.add_argument("-f", "--force", action="store_true",
                   help="Do not prompt for confirmation")
