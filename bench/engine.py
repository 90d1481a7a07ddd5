"""The whole engine (apid + managerd + shim) side by side with dockerd, through the docker CLI.

    python bench/engine.py [-n 10] [--count 50] [--parallel 10] [--list 200] [--cli PATH]

Three figures (issue 5 §11), each through the *same* docker CLI binary with
only DOCKER_HOST changed:

1. **run --rm**: `docker run --rm busybox true`, median of n (target: dockyard at
   most 0.5x dockerd).
2. **run -d x count**: `docker run -d busybox sleep 600` for `count` containers,
   `parallel` at a time; wall time of the batch.
3. **list**: `GET /containers/json?all=1` with `--list` containers present (created,
   not started), median of 20 requests over the socket.

dockerd runs on its own --data-root, --exec-root, socket, pidfile and bridge
(`dybench<rand>`, created here; never --bridge=none) with its own managed
containerd; iptables is left alone (--iptables=false) so nothing leaks onto the
host's tables. dockyard runs managerd + apid on temporary roots. Both pull the
same busybox image from a loopback registry started here. Everything started
is stopped and removed at the end, also on failure.

Both daemons run at the same time and the measurements are interleaved (run
--rm alternates between them, the order swapped every round; the list requests
alternate too): on a shared, loaded machine a load swing then hits both
figures alike. Besides the ratio of the medians, the report gives the median
of the per-round ratios of run --rm (each dockyard run against the dockerd run
next to it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import http.client
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from helpers import images  # noqa: E402
from helpers.managerd import ManagerdProcess  # noqa: E402
from helpers.registry import start_registry  # noqa: E402


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


def wait_socket(path: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}")
        if os.path.exists(path):
            try:
                conn = UnixHTTP(path)
                conn.request("GET", "/_ping")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
        time.sleep(0.2)
    raise RuntimeError(f"{path} did not answer")


class Engine:
    def __init__(self, name: str, sock: str, cli: str) -> None:
        self.name, self.sock, self.cli = name, sock, cli

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}")
        r = subprocess.run([self.cli, *args], env=env, capture_output=True, timeout=300)
        if check and r.returncode != 0:
            raise RuntimeError(f"{self.name}: docker {' '.join(args)}: {r.stderr.decode()}")
        return r

    def get(self, path: str) -> tuple[int, bytes]:
        conn = UnixHTTP(self.sock)
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()

    def cleanup(self) -> None:
        ids = self.docker("ps", "-aq", check=False).stdout.decode().split()
        for i in range(0, len(ids), 50):
            self.docker("rm", "-f", *ids[i:i + 50], check=False)


def start_dockerd(base: Path, cli: str, stack: contextlib.ExitStack) -> Engine:
    bridge = f"dybench{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    stack.callback(subprocess.run, ["ip", "link", "del", bridge], capture_output=True)
    subprocess.run(["ip", "addr", "add", "172.31.250.1/24", "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    sock = str(base / "dockerd.sock")
    log = open(base / "dockerd.log", "wb")
    proc = subprocess.Popen(
        ["dockerd", "--data-root", str(base / "docker"), "--exec-root", str(base / "dexec"),
         "-H", f"unix://{sock}", "--pidfile", str(base / "dockerd.pid"), "--bridge", bridge,
         "--iptables=false", "--ip-masq=false", "--userland-proxy=false",
         "--containerd-namespace", f"dybench-{bridge}", "--containerd-plugins-namespace",
         f"dybench-{bridge}p", "--storage-driver", "overlay2"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        subprocess.run(["umount", "-R", str(base / "docker")], capture_output=True)
        subprocess.run(["umount", "-R", str(base / "dexec")], capture_output=True)

    stack.callback(stop)
    wait_socket(sock, proc)
    return Engine("dockerd", sock, cli)


def shim_python() -> str:
    """The interpreter scripts/install.sh gives the installed dockyard-shim: the venv's,
    which install.sh builds on Debian's /usr/bin/python3 (libpython linked statically:
    ~3 ms less per start than a shared-libpython build) when that is a 3.11+. The shim
    runs with -I -S, on the standard library alone, so it needs nothing from the venv."""
    debian = "/usr/bin/python3"
    if os.path.exists(debian) and subprocess.run(
            [debian, "-c", "import sys; assert sys.version_info >= (3, 11)"],
            capture_output=True).returncode == 0:
        return debian
    return sys.executable


def start_dockyard(base: Path, cli: str, stack: contextlib.ExitStack,
                   runtime: str | None = None) -> Engine:
    shim = base / "dockyard-shim"
    shim.write_text(f"#!{shim_python()} -IS\nimport sys\nsys.path.insert(0, "
                    f"{str(REPO / 'src')!r})\nfrom dockyard.shim.cli import main\n"
                    "sys.exit(main())\n")
    shim.chmod(0o755)
    managerd = ManagerdProcess(base / "managerd", ["--runtime", runtime or str(shim),
                                                   "--log-root",
                                                   str(base / "ydata" / "containers"),
                                                   "--log-level", "warning"]).start()
    stack.callback(managerd.stop)
    sock = str(base / "apid.sock")
    log = open(base / "apid.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard.apid", "--data-root", str(base / "ydata"),
         "--exec-root", str(base / "yexec"), "-H", f"unix://{sock}", "--managerd",
         managerd.address, "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)

    stack.callback(stop)
    wait_socket(sock, proc)
    return Engine("dockyard", sock, cli)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(engines: list[Engine], image: str, n: int, count: int, parallel: int,
          listed: int) -> dict[str, dict[str, float]]:
    """Every figure for every engine, interleaved (see the module docstring)."""
    out: dict[str, dict[str, float]] = {e.name: {} for e in engines}
    for e in engines:
        e.docker("pull", image)
        e.docker("run", "--rm", image, "true")  # warm caches
    runs: dict[str, list[float]] = {e.name: [] for e in engines}
    for i in range(n):
        for e in (engines if i % 2 == 0 else engines[::-1]):
            runs[e.name].append(timed(functools.partial(e.docker, "run", "--rm", image,
                                                         "true")))
    for e in engines:
        out[e.name]["run_rm"] = statistics.median(runs[e.name])
        out[e.name]["_runs"] = runs[e.name]  # type: ignore[assignment]
    for e in engines:
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            t0 = time.perf_counter()
            list(pool.map(lambda _, e=e: e.docker("run", "-d", image, "sleep", "600"),
                          range(count)))
            out[e.name]["run_d_batch"] = time.perf_counter() - t0
        e.cleanup()
    for e in engines:
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda _, e=e: e.docker("create", image, "true"),
                          range(listed)))
        status, body = e.get("/containers/json?all=1")
        assert status == 200 and body.count(b'"Id"') >= listed, (status, body[:200])
    lists: dict[str, list[float]] = {e.name: [] for e in engines}
    for _ in range(20):
        for e in engines:
            lists[e.name].append(timed(functools.partial(e.get, "/containers/json?all=1")))
    for e in engines:
        out[e.name]["list"] = statistics.median(lists[e.name])
        e.cleanup()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=10)
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--parallel", type=int, default=10)
    p.add_argument("--list", type=int, default=200)
    p.add_argument("--cli", default="/usr/local/bin/docker" if os.path.exists(
        "/usr/local/bin/docker") else "/usr/bin/docker")
    p.add_argument("--only", choices=["dockerd", "dockyard"])
    p.add_argument("--runtime", default=None,
                   help="dockyard's OCI runtime (default: this checkout's dockyard-shim; "
                        "`runc` shows the engine without the Python runtime)")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/engine.py needs root", file=sys.stderr)
        return 2
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dybench-") as tmp, contextlib.ExitStack() as stack:
        base = Path(tmp)
        reg = stack.enter_context(start_registry(base / "registry"))
        images.push(reg, "busybox", "latest", images.busybox_image(cmd=["sh"]))
        image = f"{reg.host}/busybox:latest"
        engines = []
        for name in ("dockerd", "dockyard"):
            if a.only and a.only != name:
                continue
            (base / name).mkdir()
            engines.append(start_dockyard(base / name, a.cli, stack, a.runtime)
                           if name == "dockyard" else start_dockerd(base / name, a.cli, stack))
        try:
            results = bench(engines, image, a.n, a.count, a.parallel, a.list)
        finally:
            for e in engines:
                e.cleanup()
    for name, r in results.items():
        print(f"{name}: " + ", ".join(f"{k}={v * 1000:.0f} ms" for k, v in r.items()
                                      if not k.startswith("_")), flush=True)
    cli_version = subprocess.run([a.cli, "--version"], capture_output=True,
                                 text=True).stdout.strip()
    load = os.getloadavg()[0]
    print(f"\n{platform.node()} {platform.release()} {os.cpu_count()} cpus, load "
          f"{load_start:.1f} -> {load:.1f}; {cli_version}; n={a.n} count={a.count} "
          f"parallel={a.parallel} list={a.list}; dockyard runtime="
          f"{a.runtime or 'dockyard-shim'}")
    print("| figure | dockerd | dockyard | ratio |\n| --- | --- | --- | --- |")
    labels = {"run_rm": "`docker run --rm busybox true` (median)",
              "run_d_batch": f"`docker run -d` x{a.count}, {a.parallel} at a time (wall)",
              "list": f"`GET /containers/json?all=1`, {a.list} containers (median)"}
    for key, label in labels.items():
        d = results.get("dockerd", {}).get(key)
        y = results.get("dockyard", {}).get(key)
        ratio = f"{y / d:.2f}x" if d and y else "-"

        def fmt(v):
            return (f"{v * 1000:.0f} ms" if v is not None else "-")
        print(f"| {label} | {fmt(d)} | {fmt(y)} | {ratio} |")
    if len(results) == 2:
        pairs = [y / d for d, y in zip(results["dockerd"]["_runs"],
                                       results["dockyard"]["_runs"], strict=True)]
        print(f"\nrun --rm, per-round ratios (dockyard / dockerd): median "
              f"{statistics.median(pairs):.2f}x, range {min(pairs):.2f}-{max(pairs):.2f}x; "
              "runs in ms: dockerd " + " ".join(f"{v * 1000:.0f}" for v in
                                                results["dockerd"]["_runs"])
              + " / dockyard " + " ".join(f"{v * 1000:.0f}" for v in
                                          results["dockyard"]["_runs"]))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
