"""Renders the daemon's JSON progress streams (pull, push, load, import) like docker.

Owns: docker's jsonmessage display: on a terminal one line per layer id,
redrawn in place with cursor movement (`<id>: Downloading [==>   ] 1.2MB/3.4MB`);
elsewhere plain lines with the byte-count updates left out. Must not: make
requests (it consumes an iterator of decoded messages).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TextIO

from dockyard.client.output import human_size

__all__ = ["StreamError", "progress_bar", "display"]


class StreamError(Exception):
    """An error the daemon reported inside an already-started stream (`errorDetail`)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def progress_bar(detail: dict[str, Any] | None, width: int = 120) -> str:
    """docker's JSONProgress.String(): "[=====>    ]  1.2MB/3.4MB", "" when nothing to show."""
    if not detail:
        return ""
    current = detail.get("current") or 0
    total = detail.get("total") or 0
    if current <= 0 and total <= 0:
        return ""
    if detail.get("units") == "items":
        return f"{current}/{total}" if total > 0 else str(current)
    if total <= 0:
        return f"{human_size(current):>8}"
    if current > total:
        return f"{human_size(current):>8}"
    percent = min(50, int(current / total * 100) // 2)
    bar = ""
    if width > 80:
        bar = "[" + "=" * percent + (">" if percent < 50 else "") + \
            " " * (50 - percent - (1 if percent < 50 else 0)) + "] "
    return f"{bar}{human_size(current):>8}/{human_size(total)}"


def _terminal_width(out: TextIO) -> int:
    try:
        return os.get_terminal_size(out.fileno()).columns
    except (OSError, AttributeError, ValueError):
        return 120


def display(messages: Iterable[dict[str, Any]], out: TextIO, tty: bool | None = None) -> list:
    """Draw a progress stream; returns the `aux` payloads; raises StreamError on errorDetail.

    Args:
        messages: decoded JSON messages, in order.
        out: where to draw.
        tty: redraw in place (default: whether out is a terminal).
    """
    if tty is None:
        try:
            tty = os.isatty(out.fileno())
        except (OSError, AttributeError, ValueError):
            tty = False
    width = _terminal_width(out) if tty else 120
    lines: dict[str, int] = {}  # layer id -> its line, counted from the first progress line
    aux: list = []
    for msg in messages:
        if msg.get("errorDetail") or msg.get("error"):
            detail = msg.get("errorDetail") or {}
            raise StreamError(detail.get("message") or msg.get("error") or "unknown error")
        if "aux" in msg:
            aux.append(msg["aux"])
            continue
        ident = msg.get("id") or ""
        has_progress = "progressDetail" in msg
        bar = progress_bar(msg.get("progressDetail"), width)
        if not tty and bar:
            continue  # byte counts would flood a log file; docker skips them too
        diff = 0
        if tty and ident and (has_progress or msg.get("progress")):
            if ident not in lines:
                lines[ident] = len(lines)
                out.write("\n")
            diff = len(lines) - lines[ident]
            out.write(f"\x1b[{diff}A")
        elif ident == "" or not has_progress:
            lines = {}
        if tty and has_progress:
            out.write("\x1b[2K\r")
        text = f"{ident}: " if ident else ""
        if "stream" in msg:
            text += msg["stream"]
            out.write(text if text.endswith("\n") or not tty else text)
        else:
            status = msg.get("status", "")
            if tty and has_progress:
                out.write(f"{text}{status} {bar}".rstrip() + "\r")
            else:
                out.write(f"{text}{status}\n")
        if diff:
            out.write(f"\x1b[{diff}B")
        out.flush()
    return aux
