"""Image verbs: pull, push, images, rmi, tag, save, load, import, history.

Owns: the API calls of each image verb (docker-api-flow.md §7) and their
output; progress drawing is client/progress.py.
"""

from __future__ import annotations

import argparse
import base64
import json
from typing import Any, TextIO

from dockyard.client import output
from dockyard.client.api import q
from dockyard.client.context import CLIError, Context, add_verb
from dockyard.client.opts import split_repo_tag

__all__ = ["register", "pull_image"]

IMAGE_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID",
                 "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                 "Digest": "DIGEST", "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE",
                 "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE"}
IMAGE_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                   "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}
HISTORY_TABLE = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"


def registry_auth(ref: str) -> str:
    """X-Registry-Auth for ref: the saved `dockyard login` entry of its registry, or {}."""
    from dockyard.client.commands.system import load_auth, registry_of

    entry = load_auth().get(registry_of(ref))
    payload = json.dumps(entry or {}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode()


def _progress(ctx: Context, resp: Any, out: TextIO, quiet: bool) -> list:
    from dockyard.client.progress import StreamError, display

    try:
        if quiet:
            aux = []
            for msg in resp.iter_json():
                if msg.get("errorDetail") or msg.get("error"):
                    raise StreamError((msg.get("errorDetail") or {}).get("message")
                                      or msg.get("error"))
            return aux
        return display(resp.iter_json(), out)
    except StreamError as e:
        raise CLIError(f"dockyard: {e.message}", 1) from e


def pull_image(ctx: Context, ref: str, *, platform: str | None = None, quiet: bool = False,
               out: TextIO | None = None, all_tags: bool = False) -> None:
    """POST /images/create and draw its progress (also run's and create's pull)."""
    repo, tag = split_repo_tag(ref)
    params = {"fromImage": repo, "tag": None if all_tags else tag, "platform": platform}
    resp = ctx.client.request("POST", "/images/create", params=params,
                              headers={"X-Registry-Auth": registry_auth(ref)})
    _progress(ctx, resp, out or ctx.out, quiet)


def pull(ctx: Context, ns: argparse.Namespace) -> int:
    pull_image(ctx, ns.name, platform=ns.platform, quiet=ns.quiet, all_tags=ns.all_tags)
    if ns.quiet:
        repo, tag = split_repo_tag(ns.name)
        ctx.out.write(f"{repo}{'@' if tag.startswith('sha256:') else ':'}{tag}\n")
    return 0


def push(ctx: Context, ns: argparse.Namespace) -> int:
    repo, tag = split_repo_tag(ns.name)
    params = {"tag": None if ns.all_tags else tag}
    resp = ctx.client.request("POST", f"/images/{q(repo)}/push", params=params,
                              headers={"X-Registry-Auth": registry_auth(ns.name)})
    # the daemon's own "<tag>: digest: ... size: ..." status line is the summary; its aux
    # record carries the same for programs (docker uses it for content trust only)
    _progress(ctx, resp, ctx.out, ns.quiet)
    if ns.quiet:
        ctx.out.write(f"{repo}:{tag}\n")
    return 0


def _image_rows(items: list[dict], trunc: bool, digests: bool) -> list[dict[str, Any]]:
    from datetime import datetime

    rows = []
    for img in items:
        ident = img.get("Id", "")
        short = ident.split(":", 1)[-1][:12] if trunc else ident
        tags = img.get("RepoTags") or []
        tags = [t for t in tags if t != "<none>:<none>"] or ["<none>:<none>"]
        repo_digests = img.get("RepoDigests") or []
        for t in tags:
            repo, tag = ("<none>", "<none>") if t == "<none>:<none>" else split_repo_tag(t)
            digest = "<none>"
            for d in repo_digests:
                if repo != "<none>" and d.startswith(repo + "@"):
                    digest = d.split("@", 1)[1]
            if repo == "<none>" and repo_digests:
                repo = repo_digests[0].split("@", 1)[0]
                digest = repo_digests[0].split("@", 1)[1]
            created = img.get("Created") or 0
            rows.append({
                "Repository": repo, "Tag": tag, "ID": short, "Digest": digest,
                "CreatedSince": output.since(created),
                "CreatedAt": datetime.fromtimestamp(created).astimezone()
                .strftime("%Y-%m-%d %H:%M:%S %z %Z"),
                "Size": output.human_size(img.get("Size") or 0, 3),
                "VirtualSize": output.human_size(img.get("VirtualSize")
                                                 or img.get("Size") or 0, 3),
                "SharedSize": output.human_size(img["SharedSize"], 3)
                if (img.get("SharedSize") or -1) >= 0 else "N/A",
                "UniqueSize": "N/A",
                "Containers": str(img["Containers"]) if (img.get("Containers") or -1) >= 0
                else "N/A",
            })
    return rows


def images(ctx: Context, ns: argparse.Namespace) -> int:
    from dockyard.client.commands.container import parse_filters

    filters = parse_filters(ns.filter) or {}
    if ns.repository:
        filters.setdefault("reference", {})[ns.repository] = True
    items = ctx.client.get("/images/json", params={"all": ns.all or None,
                                                   "filters": filters or None,
                                                   "digests": ns.digests or None}) or []
    items.sort(key=lambda i: i.get("Created") or 0, reverse=True)
    rows = _image_rows(items, not ns.no_trunc, ns.digests)
    default = IMAGE_TABLE
    if ns.digests:
        default = ("table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}"
                   "\t{{.Size}}")
    if ns.quiet:
        seen: list[str] = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        ctx.out.write("".join(f"{i}\n" for i in seen))
        return 0
    try:
        output.render_rows(rows, ns.format, default, IMAGE_HEADERS, ctx.out)
    except output.TemplateError as e:
        raise CLIError(f"dockyard: template parsing error: {e}", 125) from e
    return 0


def rmi(ctx: Context, ns: argparse.Namespace) -> int:
    from dockyard.client import api

    failed = False
    for name in ns.images:
        try:
            result = ctx.client.delete(f"/images/{q(name)}",
                                       params={"force": ns.force or None,
                                               "noprune": ns.no_prune or None}) or []
        except api.APIError as e:
            ctx.err.write(f"Error response from daemon: {e.message}\n")
            failed = True
            continue
        for item in result:
            for key in ("Untagged", "Deleted"):
                if item.get(key):
                    ctx.out.write(f"{key}: {item[key]}\n")
    return 1 if failed else 0


def tag(ctx: Context, ns: argparse.Namespace) -> int:
    repo, t = split_repo_tag(ns.target)
    ctx.client.request("POST", f"/images/{q(ns.source)}/tag", params={"repo": repo, "tag": t})
    return 0


def save(ctx: Context, ns: argparse.Namespace) -> int:
    from dockyard.client.commands.container import _fd, _isatty, save_stream

    if not ns.output and _isatty(_fd(ctx.out, 1)):
        raise CLIError("dockyard: cowardly refusing to save to a terminal. Use the -o flag "
                       "or redirect", 1)
    resp = ctx.client.request("GET", "/images/get", params={"names": ns.images})
    save_stream(ctx, resp, ns.output)
    return 0


def _read_input(ctx: Context, path: str | None) -> Any:
    """A file (or stdin) as an iterator of chunks, streamed to the daemon."""
    if path and path != "-":
        try:
            f = open(path, "rb")  # noqa: SIM115 -- closed by the generator below
        except OSError as e:
            raise CLIError(f"dockyard: open {path}: {e.strerror}", 1) from e
    else:
        f = getattr(ctx.stdin, "buffer", ctx.stdin)

    def chunks() -> Any:
        try:
            while True:
                data = f.read(1 << 16)
                if not data:
                    return
                yield data if isinstance(data, bytes) else data.encode()
        finally:
            if path and path != "-":
                f.close()

    return chunks()


def load(ctx: Context, ns: argparse.Namespace) -> int:
    from dockyard.client.commands.container import _isatty, _stdin_fd

    if not ns.input and _isatty(_stdin_fd(ctx) or 0):
        raise CLIError("dockyard: requested load from stdin, but stdin is empty", 1)
    resp = ctx.client.request("POST", "/images/load", params={"quiet": ns.quiet or None},
                              data=_read_input(ctx, ns.input),
                              headers={"Content-Type": "application/x-tar"})
    if "json" in resp.headers.get("content-type", ""):
        _progress(ctx, resp, ctx.out, False)
    else:
        ctx.out.write(resp.read().decode("utf-8", "replace"))
    return 0


def import_(ctx: Context, ns: argparse.Namespace) -> int:
    repo = t = None
    if ns.reference:
        repo, t = split_repo_tag(ns.reference)
    params: dict[str, Any] = {"fromSrc": "-", "repo": repo, "tag": t, "message": ns.message,
                              "changes": ns.change or None, "platform": ns.platform}
    data = None
    if ns.file.startswith(("http://", "https://")):
        params["fromSrc"] = ns.file
    else:
        data = _read_input(ctx, ns.file)
    resp = ctx.client.request("POST", "/images/create", params=params, data=data,
                              headers={"Content-Type": "application/x-tar"})
    from dockyard.client.progress import StreamError

    last = ""
    try:
        for msg in resp.iter_json():
            if msg.get("errorDetail") or msg.get("error"):
                raise StreamError((msg.get("errorDetail") or {}).get("message")
                                  or msg.get("error"))
            last = msg.get("status") or msg.get("stream") or last
    except StreamError as e:
        raise CLIError(f"dockyard: {e.message}", 1) from e
    if last:
        ctx.out.write(last.strip() + "\n")
    return 0


def history(ctx: Context, ns: argparse.Namespace) -> int:
    from datetime import datetime

    items = ctx.client.get(f"/images/{q(ns.image)}/history") or []
    trunc = not ns.no_trunc
    rows = []
    for h in items:
        ident = h.get("Id") or "<missing>"
        if trunc and ident.startswith("sha256:"):
            ident = ident[7:19]
        created_by = (h.get("CreatedBy") or "").replace("\t", " ")
        created = h.get("Created") or 0
        rows.append({
            "ID": ident,
            "CreatedSince": output.since(created) if ns.human else
            datetime.fromtimestamp(created).astimezone().isoformat(),
            "CreatedAt": datetime.fromtimestamp(created).astimezone().isoformat(),
            "CreatedBy": output.ellipsis(created_by, 45) if trunc else created_by,
            "Size": output.human_size(h.get("Size") or 0, 3) if ns.human
            else str(h.get("Size") or 0),
            "Comment": h.get("Comment") or "",
        })
    if ns.quiet:
        ctx.out.write("".join(f"{r['ID']}\n" for r in rows))
        return 0
    try:
        output.render_rows(rows, ns.format, HISTORY_TABLE, HISTORY_HEADERS, ctx.out)
    except output.TemplateError as e:
        raise CLIError(f"dockyard: template parsing error: {e}", 125) from e
    return 0


def register(subparsers: Any) -> None:
    p = add_verb(subparsers, "pull", pull, "[OPTIONS] NAME[:TAG|@DIGEST]",
                 "Download an image from a registry")
    p.add_argument("-a", "--all-tags", action="store_true",
                   help="Download all tagged images in the repository")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")

    p = add_verb(subparsers, "push", push, "[OPTIONS] NAME[:TAG]",
                 "Upload an image to a registry")
    p.add_argument("-a", "--all-tags", action="store_true",
                   help="Push all tags of an image to the repository")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("name", metavar="NAME[:TAG]")

    p = add_verb(subparsers, "images", images, "[OPTIONS] [REPOSITORY[:TAG]]", "List images")
    p.add_argument("-a", "--all", action="store_true",
                   help="Show all images (default hides intermediate images)")
    p.add_argument("--digests", action="store_true", help="Show digests")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template: 'table', "
                                    "'table TEMPLATE', 'json', or a Go template")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")

    p = add_verb(subparsers, "rmi", rmi, "[OPTIONS] IMAGE [IMAGE...]",
                 "Remove one or more images")
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="Do not delete untagged parents")
    p.add_argument("images", nargs="+", metavar="IMAGE")

    p = add_verb(subparsers, "tag", tag, "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
                 "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")

    p = add_verb(subparsers, "save", save, "[OPTIONS] IMAGE [IMAGE...]",
                 "Save one or more images to a tar archive (streamed to STDOUT by default)")
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("images", nargs="+", metavar="IMAGE")

    p = add_verb(subparsers, "load", load, "[OPTIONS]", "Load an image from a tar archive "
                                                        "or STDIN")
    p.add_argument("-i", "--input", help="Read from tar archive file, instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")

    p = add_verb(subparsers, "import", import_, "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
                 "Import the contents from a tarball to create a filesystem image")
    p.add_argument("-c", "--change", action="append", default=[],
                   help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", help="Set commit message for imported image")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    p.add_argument("file", metavar="file|URL|-")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")

    p = add_verb(subparsers, "history", history, "[OPTIONS] IMAGE",
                 "Show the history of an image")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("-H", "--human", default=True, action=argparse.BooleanOptionalAction,
                   help="Print sizes and dates in human readable format (default true)")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("image", metavar="IMAGE")

