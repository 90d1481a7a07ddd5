"""Byte streams in Docker's formats: stdcopy frames and json-file logs.

Owns the 8-byte multiplexing header (moby `pkg/stdcopy`), reading the
json-file log the task monitor writes (`{"log","stream","time"}` per line) with
since/until/tail/timestamps/follow, and Docker's JSON-lines progress
messages. Must not talk to managerd.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

from dockyard.apid.container import parse_time

__all__ = ["frame", "STDIN", "STDOUT", "STDERR", "SYSERR", "read_log", "json_line"]

STDIN, STDOUT, STDERR, SYSERR = 0, 1, 2, 3
_STREAM_IDS = {"stdout": STDOUT, "stderr": STDERR}


def frame(stream: int, data: bytes) -> bytes:
    """One stdcopy frame: stream byte, 3 zero bytes, big-endian length, payload."""
    return struct.pack(">BxxxI", stream, len(data)) + data


def json_line(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\r\n"


def _tail_lines(path: str, n: int) -> tuple[list[bytes], int]:
    """The last n lines of a file, and the offset after them (reads backwards in blocks)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        if n == 0:
            return [], end
        pos, buf = end, b""
        while pos > 0 and buf.count(b"\n") <= n:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
        lines = buf.splitlines(keepends=True)
        return lines[-n:], end


async def read_log(path: str, *, stdout: bool, stderr: bool, since: float = 0.0,
                   until: float = 0.0, tail: int = -1, timestamps: bool = False,
                   follow: bool = False, is_running: Callable[[], bool] = lambda: False,
                   poll: float = 0.1) -> AsyncIterator[tuple[int, bytes]]:
    """Yield (stream id, bytes) records of a json-file log.

    Args:
        tail: number of last records, -1 for all.
        follow: keep reading new records while is_running() (then drain and stop).
    """
    wanted = {k for k, on in (("stdout", stdout), ("stderr", stderr)) if on}

    def decode(line: bytes) -> tuple[int, bytes] | None:
        try:
            rec = json.loads(line)
        except ValueError:
            return None
        stream = rec.get("stream", "stdout")
        if stream not in wanted:
            return None
        t = rec.get("time", "")
        ts = parse_time(t) if (since or until) else 0.0
        if since and ts < since:
            return None
        if until and ts > until:
            return None
        data = rec.get("log", "").encode()
        if timestamps:
            data = t.encode() + b" " + data
        return _STREAM_IDS.get(stream, STDOUT), data

    if not os.path.exists(path):
        if not follow:
            return
        while not os.path.exists(path):
            if not is_running():
                return
            await asyncio.sleep(poll)
    if tail >= 0:
        lines, offset = _tail_lines(path, tail)
    else:
        lines, offset = [], 0
    for line in lines:
        rec = decode(line)
        if rec:
            yield rec
    partial = b""
    while True:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read(1 << 20)
        if chunk:
            offset += len(chunk)
            data = partial + chunk
            *complete, partial = data.split(b"\n")
            for line in complete:
                rec = decode(line)
                if rec:
                    yield rec
            continue
        if not follow:
            return
        if until and until < __import__("time").time():
            return
        if not is_running():
            # one more read to drain what the monitor wrote before exiting
            with open(path, "rb") as f:
                f.seek(offset)
                rest = f.read()
            for line in (partial + rest).split(b"\n"):
                rec = decode(line) if line else None
                if rec:
                    yield rec
            return
        await asyncio.sleep(poll)
