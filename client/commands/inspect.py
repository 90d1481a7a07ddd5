"""`inspect`: low-level JSON of containers, images, networks and volumes (`--type`, `-f`
templates, `-s`).

Owns: looking a name up as a container, an image, a network, then a volume
(docker's order), docker's 4-space JSON array output, and per-object template
rendering.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from dockyard.client import api, output
from dockyard.client.api import q
from dockyard.client.context import CLIError, Context, add_verb

__all__ = ["register"]


def _lookup(ctx: Context, name: str, kind: str | None, size: bool) -> Any:
    if kind in (None, "container"):
        try:
            return ctx.client.get(f"/containers/{q(name)}/json",
                                  params={"size": size or None})
        except api.APIError as e:
            if e.status != 404 or kind == "container":
                raise
    if kind in (None, "image"):
        try:
            return ctx.client.get(f"/images/{q(name)}/json")
        except api.APIError as e:
            if e.status != 404 or kind == "image":
                raise
    for what, path in (("network", f"/networks/{q(name)}"), ("volume", f"/volumes/{q(name)}")):
        if kind in (None, what):
            try:
                return ctx.client.get(path)
            except api.APIError as e:
                if e.status != 404 or kind == what:
                    raise
    raise api.APIError(404, f"No such object: {name}")


def inspect(ctx: Context, ns: argparse.Namespace) -> int:
    tmpl = None
    if ns.format and ns.format != "json":
        try:
            tmpl = output.Template(ns.format.replace("\\t", "\t").replace("\\n", "\n"))
        except output.TemplateError as e:
            raise CLIError(f"dockyard: template parsing error: {e}", 125) from e
    found: list[Any] = []
    failed = False
    for name in ns.names:
        try:
            obj = _lookup(ctx, name, ns.type, ns.size)
        except api.APIError as e:
            ctx.err.write(f"Error: {e.message}\n" if e.status == 404
                          else f"Error response from daemon: {e.message}\n")
            failed = True
            continue
        if tmpl is not None:
            try:
                ctx.out.write(tmpl.render(obj) + "\n")
            except output.TemplateError as e:
                raise CLIError(f"dockyard: template: {e}", 1) from e
        elif ns.format == "json":
            ctx.out.write(json.dumps(obj) + "\n")
        else:
            found.append(obj)
    if tmpl is None and ns.format != "json":
        ctx.out.write(json.dumps(found, indent=4, ensure_ascii=False) + "\n")
    return 1 if failed else 0


def register(subparsers: Any) -> None:
    p = add_verb(subparsers, "inspect", inspect, "[OPTIONS] NAME|ID [NAME|ID...]",
                 "Return low-level information on dockyard objects")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_argument("-s", "--size", action="store_true",
                   help="Display total file sizes if the type is container")
    p.add_argument("--type", choices=["container", "image", "network", "volume"],
                   help="Return JSON for specified type")
    p.add_argument("names", nargs="+", metavar="NAME|ID")
