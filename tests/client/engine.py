"""A real dockyard-managerd + dockyard-apid on temporary roots, for the CLI's
integration tests, and the `dockyard` command line pointed at it.

Each engine gets its own exec root, data root and sockets (so it can run beside
another engine), a busybox:latest image (loaded from an archive built from the
host's busybox, or pulled from a loopback registry when the engine cannot load),
and on stop removes its containers, stops the daemons and unmounts what is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOCKYARD = [sys.executable, "-m", "dockyard.client"]


class EngineUnavailable(Exception):
    """The engine could not be started or given a busybox image (tests skip with this)."""


class Engine:
    def __init__(self, base: Path, extra_env: dict[str, str] | None = None):
        """extra_env: for the daemons too (DOCKYARD_BRIDGE/DOCKYARD_BIP give a bridge)."""
        self.base = base
        self.run_dir = base / "run"
        self.data = base / "data"
        self.host = f"unix://{self.run_dir}/dockyard.sock"
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "DOCKYARD_HOST": self.host,
                    "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                    "DOCKYARD_CONFIG": str(base / "config"), **(extra_env or {})}

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.base / f"{name}.log", "ab")  # noqa: SIM115 -- the child keeps it
        self.procs[name] = subprocess.Popen([sys.executable, "-m", f"dockyard.{name}", *args],
                                            stdout=log, stderr=log, env=self.env,
                                            cwd=str(REPO), start_new_session=True)
        log.close()

    def log(self, name: str) -> str:
        try:
            return (self.base / f"{name}.log").read_text(errors="replace")[-3000:]
        except FileNotFoundError:
            return ""

    def _wait(self, what: str, ok, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise EngineUnavailable(f"{name} exited with {p.returncode}:\n"
                                            f"{self.log(name)}")
            if ok():
                return
            time.sleep(0.1)
        raise EngineUnavailable(f"{what} not up within {timeout}s")

    def start(self) -> Engine:
        self.run_dir.mkdir(parents=True)
        self.data.mkdir(parents=True)
        msock = self.run_dir / "managerd.sock"
        self._spawn("managerd", ["--root", str(self.data / "manager"),
                                 "--state", str(self.run_dir / "manager"),
                                 "--address", f"unix://{msock}",
                                 "--trace-dir", str(self.run_dir / "trace")])  # apid's
        self._wait("managerd", msock.exists)
        self._spawn("apid", ["--data-root", str(self.data), "--exec-root", str(self.run_dir),
                             "-H", self.host, "--managerd", f"unix://{msock}"])
        self._wait("apid", lambda: self.cli("version").returncode == 0)
        return self

    def cli(self, *args: str, input: bytes | str | None = None, timeout: float = 60,
            text: bool = True) -> subprocess.CompletedProcess:
        """Run `dockyard ARGS` against this engine, as a user would."""
        return subprocess.run([*DOCKYARD, *args], input=input, capture_output=True,
                              text=text, env=self.env, timeout=timeout)

    def ensure_busybox(self, tarball: Path) -> None:
        """busybox:latest in the engine: `dockyard load`, else pull from a loopback registry."""
        if self.cli("image", "inspect", "busybox:latest").returncode == 0:
            return
        subprocess.run([sys.executable, str(REPO / "scripts/busybox_image.py"), str(tarball)],
                       check=True, timeout=60)
        loaded = self.cli("load", "-i", str(tarball), timeout=120)
        if loaded.returncode == 0:
            return
        sys.path.insert(0, str(REPO / "tests"))
        try:
            from helpers import images
            from helpers.registry import start_registry
        except ImportError as e:
            raise EngineUnavailable(f"load failed ({loaded.stderr.strip()}) and no registry "
                                    f"helpers: {e}") from e
        with start_registry(self.base / "registry") as reg:
            images.push(reg, "busybox", "latest", images.busybox_image())
            pulled = self.cli("pull", f"{reg.host}/busybox:latest", timeout=120)
            if pulled.returncode != 0:
                raise EngineUnavailable(f"this engine can neither load ({loaded.stderr.strip()})"
                                        f" nor pull ({pulled.stderr.strip()}) an image")
            tagged = self.cli("tag", f"{reg.host}/busybox:latest", "busybox:latest")
            if tagged.returncode != 0:
                raise EngineUnavailable(f"tag failed: {tagged.stderr.strip()}")

    def stop(self) -> None:
        if self.procs.get("apid") and self.procs["apid"].poll() is None:
            ids = self.cli("ps", "-aq", "--no-trunc", timeout=30).stdout.split()
            if ids:
                self.cli("rm", "-f", *ids, timeout=60)
            # user networks (and their bridges) outlive apid by design: remove them
            nets = self.cli("network", "ls", "-q", "--filter", "type=custom", timeout=30)
            if nets.returncode == 0 and nets.stdout.split():
                self.cli("network", "rm", *nets.stdout.split(), timeout=60)
        for name in ("apid", "managerd"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        _unmount_under(self.base)


def _unmount_under(base: Path) -> None:
    """Lazily unmount anything still mounted below base (deepest first)."""
    prefix = str(base.resolve())
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def cleanup(base: Path) -> None:
    _unmount_under(base)
    shutil.rmtree(base, ignore_errors=True)
