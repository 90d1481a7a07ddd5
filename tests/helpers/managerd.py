"""Run a real dockyard-managerd on temporary roots (tests of managerd, apid, images...).

    m = ManagerdProcess(tmp_path).start()     # waits for health SERVING
    with m.client("my-ns") as c: ...          # dockyard.managerd.client.Client
    m.kill(); m.start()                       # restart survival
    m.stop()                                  # SIGTERM, returns the exit status

Fixtures built on it live in tests/managerd/conftest.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

__all__ = ["ManagerdProcess"]


class ManagerdProcess:
    """A dockyard-managerd subprocess with its own --root, --state and socket."""

    def __init__(self, base: Path, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.base = Path(base)
        self.root = self.base / "root"
        self.state = self.base / "state"
        self.socket = self.base / "managerd.sock"
        self.address = f"unix://{self.socket}"
        self.extra_args = list(extra_args or [])
        self.env = env
        self.log_path = self.base / "managerd.log"
        self.proc: subprocess.Popen | None = None
        self._clients: list = []

    def start(self, timeout: float = 20.0) -> ManagerdProcess:
        self.base.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "dockyard.managerd", "--root", str(self.root),
               "--state", str(self.state), "--address", self.address,
               "--log-root", str(self.base / "logs"),  # task logs stay in the temp dir
               "--log-level", "debug",
               "--trace-dir", str(self.base / "trace"),  # traced calls: never the host's /run
               *self.extra_args]
        env = {**os.environ, **(self.env or {})}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env, cwd=str(REPO))
        log.close()
        self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout: float = 20.0) -> None:
        from grpc_health.v1 import health_pb2
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"managerd exited with {self.proc.returncode}:\n{self.log()}")
            if self.socket.exists():
                try:
                    with self.client("default") as c:
                        resp = c.health.Check(health_pb2.HealthCheckRequest(service=""),
                                              timeout=2)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except Exception:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"managerd not serving within {timeout}s:\n{self.log()}")

    def client(self, namespace: str = "default", lease: str | None = None):
        from dockyard.managerd.client import Client
        return Client(self.address, namespace, lease)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal the daemon and wait; returns its exit status (None if not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> int | None:
        """kill -9 (restart-survival tests)."""
        return self.stop(signal.SIGKILL)

    def restart(self, sig: int = signal.SIGTERM) -> ManagerdProcess:
        self.stop(sig)
        return self.start()
