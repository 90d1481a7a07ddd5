"""Calling an OCI runtime binary (dockyard-shim, runc, crun) with runc's command line.

This module owns the argv of every runtime verb, exactly as go-runc builds it
(``<rt> --root R --log B/log.json --log-format json <verb> <flags> <id>``),
and the exit-code contract (shim/cli.py documents it; runc's is the same minus 2):

| code | meaning | raised as |
| --- | --- | --- |
| 0 | success | - |
| 1 | the runtime refused or failed; its last ``level=error`` record in log.json (stderr when the log has none) says why | NotFound / AlreadyExists / FailedPrecondition / InvalidArgument chosen from those words, else RuntimeFailed |
| 2 | the runtime rejected its command line (an incompatible runtime) | RuntimeFailed |
| other | e.g. 255 from ``exec --detach`` whose program could not start; a crash | as for 1 |

Messages keep the runtime's words ("no such file or directory", "permission
denied": apid maps them to exit codes 127/126).

It runs verbs that return quickly (start, kill, delete, state, ps, pause,
resume, update, events --stats). ``create`` and ``exec`` are run by the task's
monitor, which must be the parent of what they leave behind; this module only
builds their argv. Processes are started with subprocess (vfork+exec): managerd
is threaded and never forks.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass

from dockyard.managerd import trace

from dockyard import errdefs

__all__ = ["Runtime", "RuntimeFailed", "resolve_binary", "last_error", "error_for"]

log = logging.getLogger(__name__)

# Error texts of runc (and dockyard-shim, which mirrors them) -> errdefs class.
_CLASSIFY: tuple[tuple[str, type[errdefs.EngineError]], ...] = (
    ("container does not exist", errdefs.NotFound),
    ("does not exist", errdefs.NotFound),
    ("already exists", errdefs.AlreadyExists),
    ("not running", errdefs.FailedPrecondition),
    ("not stopped", errdefs.FailedPrecondition),
    ("is not paused", errdefs.FailedPrecondition),
    ("is paused", errdefs.FailedPrecondition),
    ("cannot start", errdefs.FailedPrecondition),
    ("has stopped", errdefs.FailedPrecondition),
    ("invalid", errdefs.InvalidArgument),
)


class RuntimeFailed(errdefs.FailedPrecondition):
    """The runtime binary failed; ``message`` is its own last error record.

    A FailedPrecondition by default (the runtime refused this operation for this
    container); classified further by ``error_for``.
    """


def resolve_binary(name: str) -> str:
    """Absolute path of a runtime given as a path or a name on PATH.

    Raises:
        NotFound: no such executable.
    """
    path = name if "/" in name else shutil.which(name)
    if not path or not os.access(path, os.X_OK) or os.path.isdir(path):
        raise errdefs.NotFound(f"runtime {name!r}: no such executable (not a path, not on PATH)")
    return os.path.abspath(path)


def last_error(log_path: str, fallback: str = "") -> str:
    """The msg of the last error record in a runtime's json log, or fallback."""
    msg = ""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("level") in ("error", "fatal", "panic"):
            msg = str(rec.get("msg", ""))
            break
    return msg or fallback.strip() or "unknown error (no error record in the runtime's log)"


def error_for(verb: str, container_id: str, message: str, rc: int = 1) -> errdefs.EngineError:
    """An errdefs error for a failed runtime verb (exit code rc), naming the reason."""
    text = f"runtime {verb} of {container_id} failed: {message}"
    if rc == 2:
        return RuntimeFailed(f"{text} (exit 2: the runtime rejected its command line)")
    lowered = message.lower()
    for needle, cls in _CLASSIFY:
        if needle in lowered:
            return cls(text)
    return RuntimeFailed(text if rc == 1 else f"{text} (exit {rc})")


@dataclass
class Runtime:
    """One runtime binary, for the containers of one namespace.

    Attributes:
        binary: absolute path of the runtime executable.
        root: the runtime's --root (state dirs), ``<state>/runtime/<namespace>``.
        bundle: the container's bundle; its log.json receives the runtime's log records.
        timeout: seconds any verb may take.
    """

    binary: str
    root: str
    bundle: str
    timeout: float = 60.0

    @property
    def log_path(self) -> str:
        return os.path.join(self.bundle, "log.json")

    def argv(self, *args: str) -> list[str]:
        """The runtime's argv: global flags as go-runc passes them, then args."""
        return [self.binary, "--root", self.root, "--log", self.log_path, "--log-format",
                "json", *args]

    def create_argv(self, container_id: str, pid_file: str) -> list[str]:
        """create's argv (the monitor inserts --console-socket before the id for a tty)."""
        # a traced call: leading NAME=VALUE words the monitor moves into the runtime's env
        return [*trace.env_argv("create", container_id),
                *self.argv("create", "--bundle", self.bundle, "--pid-file", pid_file,
                           container_id)]

    def run_argv(self, container_id: str, pid_file: str) -> list[str]:
        """``run --detach``'s argv: create and start in one runtime process (the monitor
        runs it for a task whose create was deferred to its start)."""
        return [*trace.env_argv("run", container_id),
                *self.argv("run", "--detach", "--bundle", self.bundle, "--pid-file", pid_file,
                           container_id)]

    def exec_argv(self, container_id: str, process_file: str, pid_file: str) -> list[str]:
        """exec's argv (run detached by the monitor; --console-socket added for a tty)."""
        return [*trace.env_argv("exec", container_id),
                *self.argv("exec", "--process", process_file, "--detach", "--pid-file",
                           pid_file, container_id)]

    def run(self, verb: str, container_id: str, *flags: str, args: tuple[str, ...] = (),
            stdin: bytes | None = None) -> bytes:
        """Run ``<verb> <flags> <id> <args>`` and return its stdout.

        Raises:
            EngineError: the runtime exited non-zero (message from log.json) or timed out.
        """
        argv = self.argv(verb, *flags, container_id, *args)
        try:
            with trace.runtime_call(verb, container_id) as env:  # env None: not traced
                proc = subprocess.run(argv, input=stdin, capture_output=True, env=env,
                                      timeout=self.timeout, **({} if stdin is not None
                                                               else {"stdin": subprocess.DEVNULL}))
        except subprocess.TimeoutExpired as err:
            raise errdefs.Unavailable(f"runtime {verb} of {container_id} did not finish in "
                                      f"{self.timeout:g} s") from err
        except OSError as err:
            raise errdefs.NotFound(f"runtime {self.binary}: {err.strerror}") from err
        if proc.returncode != 0:
            message = last_error(self.log_path, proc.stderr.decode(errors="replace"))
            log.debug("runtime failed verb=%s container_id=%s rc=%s msg=%s", verb,
                      container_id, proc.returncode, message)
            raise error_for(verb, container_id, message, proc.returncode)
        return proc.stdout

    def start(self, container_id: str) -> None:
        self.run("start", container_id)

    def kill(self, container_id: str, signal: int, all_processes: bool = False) -> None:
        """``kill [--all] ID SIG``, the signal as a number (as go-runc passes it)."""
        self.run("kill", container_id, *(["--all"] if all_processes else []), args=(str(signal),))

    def delete(self, container_id: str, force: bool = False) -> None:
        self.run("delete", container_id, *(["--force"] if force else []))

    def state(self, container_id: str) -> dict:
        """The OCI state (``status``: created/running/paused/stopped, ``pid``)."""
        return _json(self.run("state", container_id), "state", container_id)

    def ps(self, container_id: str) -> list[int]:
        """Host pids of every process in the container."""
        return [int(p) for p in _json(self.run("ps", container_id, "--format", "json"), "ps",
                                      container_id) or []]

    def pause(self, container_id: str) -> None:
        self.run("pause", container_id)

    def resume(self, container_id: str) -> None:
        self.run("resume", container_id)

    def update(self, container_id: str, resources: dict) -> None:
        """Apply linux.resources (runtime-spec LinuxResources) to the running container."""
        self.run("update", container_id, "--resources", "-",
                 stdin=json.dumps(resources).encode())

    def stats(self, container_id: str) -> dict:
        """``events --stats``: one ``{"type":"stats","id":..,"data":{...}}`` record."""
        out = self.run("events", container_id, "--stats")
        for line in out.splitlines():
            if line.strip():
                rec = _json(line, "events --stats", container_id)
                if isinstance(rec, dict):
                    return rec
        raise errdefs.Unavailable(f"runtime events --stats of {container_id} printed nothing")


def _json(data: bytes, verb: str, container_id: str):
    try:
        return json.loads(data)
    except ValueError as err:
        raise errdefs.Unavailable(f"runtime {verb} of {container_id} printed invalid JSON: "
                                  f"{data[:200]!r}") from err
