"""Pumping bytes between a hijacked connection and a process's stdio.

Owns the stream side of `attach` and `exec start` (docker-api-flow.md §4-6):
stdin from the client (raw, never framed) to the process, with detach keys
and StdinOnce (client half-close closes the container's stdin); stdout and
stderr to the client as stdcopy frames without a TTY or raw bytes with one;
the connection closed once the output ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from dockyard.apid.hijack import RawStream
from dockyard.apid.manager import AttachSession
from dockyard.apid.streams import frame

from dockyard import errdefs

__all__ = ["parse_detach_keys", "pump", "DEFAULT_DETACH_KEYS"]

log = logging.getLogger(__name__)

DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q


def parse_detach_keys(spec: str | None) -> bytes:
    """`ctrl-p,ctrl-q` / `a,ctrl-x` -> bytes (moby term.ToBytes)."""
    if not spec:
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if len(key) == 1:
            out.append(ord(key))
        elif key.lower().startswith("ctrl-") and len(key) == 6:
            ch = key[5].lower()
            codes = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            elif ch in codes:
                out.append(codes[ch])
            else:
                raise errdefs.InvalidArgument(f"Invalid detach keys ({spec}) provided")
        else:
            raise errdefs.InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


async def pump(raw: RawStream, session: AttachSession, *, tty: bool, stdin: bool,
               stdin_once: bool, detach_keys: bytes | None = None, close: bool = True) -> bool:
    """Run both directions until the output ends or the client detaches/disconnects.

    Returns:
        True if the client detached with the detach keys.
    """
    detached = asyncio.Event()

    async def stdin_loop() -> None:
        matched = 0
        keys = detach_keys if tty else None
        while True:
            data = await raw.read()
            if not data:
                if stdin_once:
                    with contextlib.suppress(errdefs.EngineError, OSError):
                        await session.close_stdin()
                return
            if keys:
                out = bytearray()
                for b in data:
                    if b == keys[matched]:
                        matched += 1
                        if matched == len(keys):
                            detached.set()
                            return
                        continue
                    if matched:
                        out += keys[:matched]
                        matched = 0
                    out.append(b)
                data = bytes(out)
            if data:
                try:
                    await session.write(data)
                except (errdefs.EngineError, OSError):
                    return

    async def output_loop() -> None:
        async for stream_id, data in session.frames():
            if not data:
                continue
            ok = await raw.write(data if tty else frame(stream_id, data))
            if not ok:
                return

    out_task = asyncio.create_task(output_loop())
    in_task = asyncio.create_task(stdin_loop()) if stdin else None
    waiters = {out_task, asyncio.create_task(detached.wait())}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in list(waiters) + ([in_task] if in_task else []):
            if not task.done():
                task.cancel()
        with contextlib.suppress(Exception):
            await session.close()
        if close:
            await raw.close()
    return detached.is_set()

