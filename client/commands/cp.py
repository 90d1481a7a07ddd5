"""`cp`: copy files between a container and the local filesystem (tar archives both ways).

Owns: docker cp's path rules (copy into an existing directory, or onto a new
name), building the upload tar and unpacking the download tar safely (no
member may land outside the destination), and `-` for tar on stdin/stdout.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import posixpath
from typing import Any

from dockyard.client import api
from dockyard.client.api import q
from dockyard.client.context import CLIError, Context, add_verb

__all__ = ["register", "split_arg"]

_GO_DIR = 1 << 31


def split_arg(arg: str) -> tuple[str | None, str]:
    """"ctr:/path" -> ("ctr", "/path"); a local path (even with a colon after a /) -> (None, p)."""
    if arg.startswith(("/", ".")) or arg == "-":
        return None, arg
    name, colon, path = arg.partition(":")
    if not colon or "/" in name:
        return None, arg
    return name, path or "/"


class _StreamReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (for tarfile's stream mode)."""

    def __init__(self, chunks: Any):
        self.chunks = iter(chunks)
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while not self.pending:
            try:
                self.pending = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def _stat_header(resp: api.Response) -> dict[str, Any]:
    raw = resp.headers.get("x-docker-container-path-stat")
    if not raw:
        return {}
    try:
        return json.loads(base64.b64decode(raw))
    except ValueError:
        return {}


def _from_container(ctx: Context, ns: argparse.Namespace, ctr: str, src: str,
                    dest: str) -> int:
    import tarfile

    from dockyard import tarsafe

    resp = ctx.client.request("GET", f"/containers/{q(ctr)}/archive", params={"path": src})
    if dest == "-":
        from dockyard.client.commands.container import write_bytes

        for chunk in resp.iter_bytes():
            write_bytes(ctx.out, chunk)
        return 0
    stat = _stat_header(resp)
    top = stat.get("name") or posixpath.basename(src.rstrip("/")) or "/"
    src_is_dir = bool((stat.get("mode") or 0) & _GO_DIR)
    if os.path.isdir(dest):
        into, rename = dest, None
    else:
        if dest.endswith("/"):
            raise CLIError(f"dockyard: destination directory {dest!r} must exist", 1)
        parent = os.path.dirname(os.path.abspath(dest))
        if not os.path.isdir(parent):
            raise CLIError(f"dockyard: destination directory {parent!r} does not exist", 1)
        if src_is_dir is False and os.path.exists(dest) and os.path.isdir(dest):
            into, rename = dest, None
        else:
            into, rename = parent, os.path.basename(dest)
    copied = 0
    with tarfile.open(fileobj=io.BufferedReader(_StreamReader(resp.iter_bytes())),
                      mode="r|") as tar:
        for member in tar:
            if rename is not None:
                head, _, rest = member.name.partition("/")
                if head == top or head == "":
                    member.name = rename + ("/" + rest if rest else "")
            if not ns.archive:
                member.uid = os.getuid()
                member.gid = os.getgid()
            tarsafe.extract(tar, member, into, trusted=False, numeric_owner=ns.archive)
            copied += member.size
    if not ns.quiet and ctx.err.isatty():
        from dockyard.client.output import human_size

        ctx.err.write(f"Successfully copied {human_size(copied)} to {dest}\n")
    return 0


def _to_container(ctx: Context, ns: argparse.Namespace, src: str, ctr: str, dest: str) -> int:
    import tarfile

    if src == "-":
        data = getattr(ctx.stdin, "buffer", ctx.stdin)
        body = iter(lambda: data.read(65536), b"")
        ctx.client.request("PUT", f"/containers/{q(ctr)}/archive",
                           params={"path": dest, "noOverwriteDirNonDir": True},
                           data=body, headers={"Content-Type": "application/x-tar"})
        return 0
    if not os.path.lexists(src):
        raise CLIError(f"dockyard: lstat {os.path.abspath(src)}: no such file or directory", 1)
    if ns.follow_link:
        src = os.path.realpath(src)
    arcname = os.path.basename(os.path.abspath(src).rstrip("/")) or "."
    target_dir = dest
    try:
        head = ctx.client.request("HEAD", f"/containers/{q(ctr)}/archive",
                                  params={"path": dest})
        dest_is_dir = bool((_stat_header(head).get("mode") or 0) & _GO_DIR)
    except api.APIError as e:
        if e.status != 404:
            raise
        dest_is_dir = False
        if dest.endswith("/"):
            raise CLIError(f"dockyard: destination directory {dest!r} must exist in the "
                           "container", 1) from e
    if not dest_is_dir:
        target_dir = posixpath.dirname(dest.rstrip("/")) or "/"
        arcname = posixpath.basename(dest.rstrip("/"))
    buf = io.BytesIO()

    def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
        if not ns.archive:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
        return info

    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(src, arcname=arcname, filter=owner)
    ctx.client.request("PUT", f"/containers/{q(ctr)}/archive",
                       params={"path": target_dir, "noOverwriteDirNonDir": True,
                               "copyUIDGID": ns.archive or None},
                       data=buf.getvalue(), headers={"Content-Type": "application/x-tar"})
    if not ns.quiet and ctx.err.isatty():
        from dockyard.client.output import human_size

        ctx.err.write(f"Successfully copied {human_size(len(buf.getvalue()))} to "
                      f"{ctr}:{dest}\n")
    return 0


def cp(ctx: Context, ns: argparse.Namespace) -> int:
    src_ctr, src = split_arg(ns.src)
    dst_ctr, dst = split_arg(ns.dest)
    if src_ctr and dst_ctr:
        raise CLIError("dockyard: copying between containers is not supported", 1)
    if not src_ctr and not dst_ctr:
        raise CLIError("dockyard: must specify at least one container source", 1)
    if src_ctr:
        return _from_container(ctx, ns, src_ctr, src, dst)
    return _to_container(ctx, ns, src, dst_ctr, dst)  # type: ignore[arg-type]


def register(subparsers: Any) -> None:
    p = add_verb(subparsers, "cp", cp, "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n"
                 "        dockyard cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
                 "Copy files/folders between a container and the local filesystem")
    p.add_argument("-a", "--archive", action="store_true",
                   help="Archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true",
                   help="Always follow symbol link in SRC_PATH")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="Suppress progress output during copy")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dest", metavar="DEST")
