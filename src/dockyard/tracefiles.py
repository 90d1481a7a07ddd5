"""Retention of trace span files (`<trace dir>/<trace id>.jsonl`).

apid, managerd and the shim append spans to one file per trace (format:
apid/trace.py); nothing else ever removes them. Both daemons run a `Sweeper`
on their trace directory: at start and then periodically it removes span
files older than `max_age`, beyond the newest `max_files`, and the oldest ones
while all of them together exceed `max_bytes` (0 disables a limit). Only
regular files named like a span file (32 hex + `.jsonl`) are considered;
anything else in the directory is left alone. A file still being written has a
fresh mtime, so age never removes an active trace; a writer that appends after
a removal simply creates the file again.

Owns: the policy and the sweeping thread. Must not: read span contents or
follow symlinks in the directory.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import stat
import threading
import time
from dataclasses import dataclass

__all__ = ["Retention", "Sweeper", "prune", "parse_duration", "parse_size", "add_arguments",
           "from_args"]

log = logging.getLogger(__name__)

_SPAN_FILE = re.compile(r"[0-9a-f]{32}\.jsonl")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


@dataclass(frozen=True)
class Retention:
    """Limits on a trace directory; 0 disables one."""

    max_age: float = 3600.0  # seconds since the file was last written
    max_files: int = 1000
    max_bytes: int = 256 << 20

    def interval(self) -> float:
        """How often a sweeper runs: a quarter of the age limit, between 1 s and 60 s."""
        return min(60.0, max(1.0, self.max_age / 4)) if self.max_age else 60.0


def parse_duration(text: str) -> float:
    """`90`, `90s`, `15m`, `2h`, `1d` -> seconds (`0` = no limit).

    Raises:
        ValueError: naming the bad value.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if not m:
        raise ValueError(f"invalid duration {text!r}: use a number with s, m, h or d "
                         "(e.g. 30m; 0 = no limit)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_size(text: str) -> int:
    """`1048576`, `512k`, `256m`, `1g` -> bytes (`0` = no limit).

    Raises:
        ValueError: naming the bad value.
    """
    m = re.fullmatch(r"\s*(\d+)\s*([kmg]?)b?\s*", text.lower())
    if not m:
        raise ValueError(f"invalid size {text!r}: use a number of bytes with k, m or g "
                         "(e.g. 256m; 0 = no limit)")
    return int(m.group(1)) * _SIZES[m.group(2)]


def prune(directory: str, retention: Retention, now: float | None = None) -> list[str]:
    """Remove the span files of `directory` that are beyond the limits; returns their names."""
    now = time.time() if now is None else now
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed: list[str] = []
    try:
        files = []
        for name in os.listdir(dfd):
            if not _SPAN_FILE.fullmatch(name):
                continue
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                files.append((st.st_mtime, st.st_size, name))
        files.sort(reverse=True)  # newest first: the limits keep those
        total = 0
        over = False
        for i, (mtime, size, name) in enumerate(files):
            total += size
            over = over or bool(retention.max_bytes and total > retention.max_bytes)
            if (over or (retention.max_files and i >= retention.max_files)
                    or (retention.max_age and now - mtime > retention.max_age)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=dfd)
                    removed.append(name)
    finally:
        os.close(dfd)
    return removed


class Sweeper:
    """A daemon thread pruning one trace directory at start and every interval."""

    def __init__(self, directory: str, retention: Retention) -> None:
        self.directory = directory
        self.retention = retention
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> list[str]:
        try:
            removed = prune(self.directory, self.retention)
        except OSError as err:  # never take the daemon down for its trace files
            log.warning("trace retention dir=%s: %s", self.directory, err)
            return []
        if removed:
            log.info("trace retention removed=%d dir=%s", len(removed), self.directory)
        return removed

    def start(self) -> Sweeper:
        if not (self.retention.max_age or self.retention.max_files or
                self.retention.max_bytes):
            return self  # every limit disabled: keep everything
        self._thread = threading.Thread(target=self._run, name="trace-retention",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self.sweep()
            if self._stop.wait(self.retention.interval()):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def _typed(parse):
    def conv(text: str):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    conv.__name__ = parse.__name__
    return conv


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: a whole number "
                                         "(0 = no limit)")
    return int(text)


def add_arguments(p: argparse.ArgumentParser, env=os.environ.get) -> None:
    """The retention flags both daemons take (env: DOCKYARD_TRACE_MAX_AGE/_FILES/_BYTES)."""
    d = Retention()
    p.add_argument("--trace-max-age", type=_typed(parse_duration),
                   default=env("DOCKYARD_TRACE_MAX_AGE", "1h"),
                   help="remove span files not written for this long (s, m, h, d; 0 = keep; "
                        "default %(default)s)")
    p.add_argument("--trace-max-files", type=_count,
                   default=env("DOCKYARD_TRACE_MAX_FILES", str(d.max_files)),
                   help="keep at most this many span files, newest first (0 = no limit; "
                        "default %(default)s)")
    p.add_argument("--trace-max-bytes", type=_typed(parse_size),
                   default=env("DOCKYARD_TRACE_MAX_BYTES", "256m"),
                   help="remove the oldest span files beyond this total size (k, m, g; "
                        "0 = no limit; default %(default)s)")


def from_args(a: argparse.Namespace) -> Retention:
    return Retention(a.trace_max_age, a.trace_max_files, a.trace_max_bytes)
