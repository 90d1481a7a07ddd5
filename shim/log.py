"""The shim's own log records, in runc's two formats.

Owns where and how a record is written: `--log FILE` (appended) or stderr;
`--log-format text` gives logrus' `time="..." level=error msg="..."`,
`json` gives `{"level","msg","time"}` (containerd reads the last error
record of its log.json). With `--log`, an error also goes to stderr as the
bare message, as runc's `fatal()` does. It must not raise: logging never
turns a result into a failure.
"""

from __future__ import annotations

import os
import sys
import time

from dockyard.oci import _json

__all__ = ["Logger"]


def _now() -> str:
    ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


class Logger:
    __slots__ = ("path", "fmt", "debug_enabled")

    def __init__(self, path: str | None = None, fmt: str = "text", debug: bool = False) -> None:
        self.path = path
        self.fmt = fmt
        self.debug_enabled = debug

    def _record(self, level: str, msg: str) -> str:
        if self.fmt == "json":
            return _json.dumps({"level": level, "msg": msg, "time": _now()}) + "\n"
        quoted = _json.dumps(msg)
        return f'time="{_now()}" level={level} msg={quoted}\n'

    def _write(self, line: str) -> None:
        try:
            if self.path:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                             0o644)
                try:
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
            else:
                sys.stderr.write(line)
                sys.stderr.flush()
        except OSError:
            pass

    def error(self, msg: str) -> None:
        self._write(self._record("error", msg))
        if self.path:
            try:
                sys.stderr.write(msg + "\n")
                sys.stderr.flush()
            except OSError:
                pass

    def warning(self, msg: str) -> None:
        self._write(self._record("warning", msg))

    def debug(self, msg: str) -> None:
        if self.debug_enabled:
            self._write(self._record("debug", msg))
