"""managerd + its per-task monitors, side by side with containerd 1.6 + containerd-shim-runc-v2.

    python bench/manager.py [-n 15] [--count 50] [--runtimes shim,runc]

Two figures (issue 3 §9):

1. **cycle**: create + start + wait + delete of a busybox ``/bin/true`` container,
   median of n. containerd: ``ctr run --rm IMAGE ID /bin/true`` (its CLI start-up is
   part of the figure; ``ctr version`` is measured too so it can be subtracted).
   dockyard: the same verbs through the gRPC client in this process (snapshot prepare,
   Containers.Create, Tasks.Create/Start/Wait/Delete, Containers.Delete, snapshot remove).
2. **memory**: ``count`` running ``sleep`` containers; the daemon's RSS and everything
   kept alive per container (containerd-shim-runc-v2 processes / dockyard monitors), RSS
   and PSS (PSS splits pages shared between processes, e.g. the Python interpreter).

Each daemon runs on its own temporary root, state and socket, with a busybox image
built here (an OCI layout tarball for ``ctr images import``, a committed snapshot for
managerd). Everything started is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from helpers import busybox  # noqa: E402
from helpers import tasks as th  # noqa: E402

IMAGE = "docker.io/library/dybench:latest"


def rss_pss(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        text = f.read()
    rss = int(text.split("\nRss:")[1].split()[0])
    pss = int(text.split("\nPss:")[1].split()[0])
    return rss, pss


def pids_matching(*needles: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().decode(errors="replace")
            except OSError:
                continue
            if all(n in cmd for n in needles):
                out.append(int(pid))
    return out


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _oci_tar(rootfs: Path, dest: Path) -> None:
    """An OCI image layout tarball with one uncompressed layer (ctr images import)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for path in sorted(rootfs.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(rootfs)), recursive=False)
    layer_bytes = layer.getvalue()
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer_desc = blob(layer_bytes)
    config = json.dumps({"architecture": _arch(), "os": "linux",
                         "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                                    "Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]}}
                        ).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
    }).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(manifest),
        "annotations": {"io.containerd.image.name": IMAGE,
                        "org.opencontainers.image.ref.name": "latest"}}]}
    with tarfile.open(dest, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            add(f"blobs/sha256/{digest.split(':')[1]}", data)


class Containerd:
    """containerd 1.6 on its own root/state/socket, driven with ctr."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.sock = str(work / "containerd.sock")
        self.ns = f"dybench-{uuid.uuid4().hex[:8]}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cfg = self.work / "config.toml"
        cfg.write_text(f"""version = 2
root = "{self.work}/root"
state = "{self.work}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.work}/opt"
""")
        log = open(self.work / "containerd.log", "wb")
        self.proc = subprocess.Popen(["containerd", "--config", str(cfg)], stdout=log,
                                     stderr=log, start_new_session=True)
        deadline = time.monotonic() + 30
        while self.ctr("version", check=False).returncode != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("containerd did not start: " +
                                   (self.work / "containerd.log").read_text()[-2000:])
            time.sleep(0.1)

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["ctr", "-a", self.sock, "-n", self.ns, *args],
                              capture_output=True, check=check, stdin=subprocess.DEVNULL)

    def shims(self) -> list[int]:
        return pids_matching("containerd-shim-runc-v2", self.sock)

    def stop(self) -> None:
        if self.proc is None:
            return
        out = self.ctr("tasks", "ls", "-q", check=False).stdout.decode().split()
        for cid in out:
            self.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
        for cid in out:
            for _ in range(50):
                if self.ctr("tasks", "rm", "-f", cid, check=False).returncode == 0:
                    break
                time.sleep(0.1)
        for cid in self.ctr("containers", "ls", "-q", check=False).stdout.decode().split():
            self.ctr("containers", "rm", cid, check=False)
        self.ctr("images", "rm", IMAGE, check=False)
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in self.shims():  # shims outlive containerd on purpose
            os.kill(pid, 9)
        _unmount_under(str(self.work))
        # ctr puts containers in /<namespace>/<id> cgroups and runc state under
        # /run/containerd/runc/<namespace>: the per-namespace parents stay behind
        for hierarchy in os.listdir("/sys/fs/cgroup"):
            parent = os.path.join("/sys/fs/cgroup", hierarchy, self.ns)
            for dirpath, _, _ in sorted(os.walk(parent), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
        shutil.rmtree(f"/run/containerd/runc/{self.ns}", ignore_errors=True)


class Managerd:
    """dockyard-managerd on its own root/state/socket, driven through its gRPC client."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.sock = str(work / "managerd.sock")
        self.ns = f"dybench-{uuid.uuid4().hex[:8]}"
        self.proc: subprocess.Popen | None = None
        self.client = None
        self.base = ""
        self.shim = str(work / "dockyard-shim")

    def start(self) -> None:
        Path(self.shim).write_text(f"#!{sys.executable} -IS\nimport sys\n"
                                   f"sys.path.insert(0, {str(REPO / 'src')!r})\n"
                                   "from dockyard.shim.cli import main\nsys.exit(main())\n")
        os.chmod(self.shim, 0o755)
        log = open(self.work / "managerd.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dockyard.managerd", "--root", f"{self.work}/root",
             "--state", f"{self.work}/state", "--address", f"unix://{self.sock}",
             "--log-root", f"{self.work}/logs", "--runtime", self.shim],
            stdout=log, stderr=log, cwd=str(REPO), start_new_session=True)
        from dockyard.managerd.client import Client

        self.client = Client(f"unix://{self.sock}", self.ns)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client.wait_ready(1)
                self.base = th.commit_busybox(self.client)
                return
            except Exception as err:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("managerd did not start: " +
                                       (self.work / "managerd.log").read_text()[-2000:]) from err
                time.sleep(0.1)

    def run(self, cid: str, args: list[str], runtime: str, wait: bool = True) -> None:
        from dockyard.protos.services.tasks.v1 import tasks_pb2 as tpb

        stub = th.tasks_stub(self.client)
        th.make_container(self.client, cid, args, runtime, self.base)
        stub.Create(tpb.CreateTaskRequest(container_id=cid, log_path="-"))
        stub.Start(tpb.StartRequest(container_id=cid))
        if wait:
            stub.Wait(tpb.WaitRequest(container_id=cid))
            th.remove_container(self.client, cid)

    def _in_dir(self, prefix: str) -> list[int]:
        out = []
        for pid in os.listdir("/proc"):
            try:
                if pid.isdigit() and os.readlink(f"/proc/{pid}/cwd").startswith(prefix):
                    out.append(int(pid))
            except OSError:
                continue
        return out

    def monitors(self) -> list[int]:
        """Monitor processes: each works in its task's directory."""
        return self._in_dir(f"{self.work}/state/tasks/")

    def zygotes(self) -> list[int]:
        return self._in_dir(f"{self.work}/state/monitors")

    def daemon(self) -> tuple[int, int]:
        """managerd's own (RSS, PSS), its monitor zygote included."""
        rss, pss = rss_pss(self.proc.pid)
        for pid in self.zygotes():
            r, p = rss_pss(pid)
            rss, pss = rss + r, pss + p
        return rss, pss

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.client is not None:
            try:
                from dockyard.protos.services.containers.v1 import containers_pb2 as cpb
                for c in self.client.containers.List(cpb.ListContainersRequest()).containers:
                    th.remove_container(self.client, c.id)
            except Exception as err:
                print(f"cleanup: {err}", file=sys.stderr)
            self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in self.monitors() + self.zygotes():
            os.kill(pid, 9)
        _unmount_under(str(self.work))


def _unmount_under(prefix: str) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def timed(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=15, help="cycles per figure (median)")
    p.add_argument("--count", type=int, default=50, help="sleeping containers")
    p.add_argument("--runtimes", default="shim,runc",
                   help="managerd runtimes for the cycle: shim,runc")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="dy-bench-"))
    cd = Containerd(work / "containerd")
    md = Managerd(work / "managerd")
    results: dict[str, object] = {}
    try:
        (work / "containerd").mkdir()
        (work / "managerd").mkdir()
        rootfs = busybox.make_rootfs(work / "rootfs")
        _oci_tar(rootfs, work / "busybox.tar")
        cd.start()
        cd.ctr("images", "import", str(work / "busybox.tar"))
        md.start()
        runc = shutil.which("runc")

        # 1. cycle: the stacks take turns, so a load that drifts (a shared machine)
        # weighs on all of them alike
        cd.ctr("run", "--rm", IMAGE, "warm", "/bin/true")
        results["ctr version"] = statistics.median(timed(lambda i: cd.ctr("version"), a.n))
        stacks = {"containerd": lambda i: cd.ctr("run", "--rm", IMAGE, f"c{i}", "/bin/true")}
        for name in a.runtimes.split(","):
            binary = md.shim if name == "shim" else runc
            md.run(f"warm-{name}", ["/bin/true"], binary)
            stacks[f"managerd+{name}"] = (lambda i, b=binary, nm=name:
                                          md.run(f"{nm}-{i}", ["/bin/true"], b))
        samples: dict[str, list[float]] = {k: [] for k in stacks}
        for i in range(a.n):
            for key, fn in stacks.items():
                samples[key] += timed(lambda _, f=fn, j=i: f(j), 1)
        for key, values in samples.items():
            results[key] = statistics.median(values)

        # 2. memory with `count` sleeping containers
        cd_idle = rss_pss(cd.proc.pid)
        md_idle = md.daemon()
        for i in range(a.count):
            cd.ctr("run", "-d", IMAGE, f"s{i}", "sleep", "100000")
            md.run(f"s{i}", ["sleep", "100000"], runc or md.shim, wait=False)
        time.sleep(1)
        shims = [rss_pss(pid) for pid in cd.shims()]
        mons = [rss_pss(pid) for pid in md.monitors()]
        results["mem"] = {
            "containerd": (cd_idle, rss_pss(cd.proc.pid), len(shims),
                           sum(r for r, _ in shims), sum(p for _, p in shims)),
            "managerd": (md_idle, md.daemon(), len(mons),
                         sum(r for r, _ in mons), sum(p for _, p in mons)),
        }
    finally:
        md.stop()
        cd.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(report(results, a))
    return 0


def report(r: dict, a) -> str:
    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    lines = [f"cycle (create+start+wait+delete of /bin/true, median of {a.n}):", "",
             "| stack | median | vs containerd |", "| --- | --- | --- |",
             f"| containerd 1.6 + runc (`ctr run --rm`) | {ms(r['containerd'])} | 1.00 |"]
    for key, value in r.items():
        if key.startswith("managerd+"):
            lines.append(f"| {key} (gRPC client) | {ms(value)} | "
                         f"{value / r['containerd']:.2f} |")
    lines += [f"| (`ctr version` round trip, part of every ctr figure) | "
              f"{ms(r['ctr version'])} | |", "",
              f"memory with {a.count} running `sleep` containers (KiB):", "",
              "| stack | daemon RSS idle -> loaded | per-container processes | "
              "RSS per container | PSS per container | daemon growth per container |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name, label in (("containerd", "containerd + containerd-shim-runc-v2"),
                        ("managerd", "managerd (+ monitor zygote) + monitors")):
        idle, loaded, n, rss, pss = r["mem"][name]
        lines.append(f"| {label} | {idle[0]} -> {loaded[0]} | {n} | {rss // max(n, 1)} | "
                     f"{pss // max(n, 1)} | {(loaded[0] - idle[0]) // a.count} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
