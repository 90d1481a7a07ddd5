"""A real stack for apid's integration tests: registry + managerd + dockyard-apid.

Session-scoped (one per xdist worker): a loopback registry holding a busybox
image, a managerd and an apid on temporary roots and sockets. Tests drive it
with docker-py, the docker CLI (DOCKER_HOST) and curl, and name their
containers with a `dy-` + uuid prefix.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from helpers import images
from helpers.managerd import ManagerdProcess
from helpers.registry import registry  # noqa: F401 - session fixture

sys.path.insert(0, str(Path(__file__).parent))  # `from seed import seed_image`

DOCKER_CLIS = [p for p in ("/usr/local/bin/docker", "/usr/bin/docker") if os.path.exists(p)]


class ApidProcess:
    def __init__(self, base: Path, managerd: str) -> None:
        self.base = base
        self.socket = base / "apid.sock"
        self.host = f"unix://{self.socket}"
        self.data_root = base / "data"
        self.exec_root = base / "exec"
        self.managerd = managerd
        self.proc: subprocess.Popen | None = None
        self.log_path = base / "apid.log"

    def start(self, timeout: float = 20.0) -> ApidProcess:
        cmd = [sys.executable, "-m", "dockyard.apid", "--data-root", str(self.data_root),
               "--exec-root", str(self.exec_root), "-H", self.host, "--managerd", self.managerd,
               "--log-level", "info"]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log_path, "ab"),
                                     stderr=subprocess.STDOUT)
        transport = httpx.HTTPTransport(uds=str(self.socket))
        deadline = time.monotonic() + timeout
        with httpx.Client(transport=transport, base_url="http://apid") as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"apid exited: {self.log()}")
                try:
                    if client.get("/_ping").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"apid did not start: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> ApidProcess:
        self.stop()
        return self.start()


class Stack:
    def __init__(self, managerd: ManagerdProcess, apid: ApidProcess, image: str) -> None:
        self.managerd = managerd
        self.apid = apid
        self.image = image  # "127.0.0.1:PORT/busybox:latest"

    docker_cli = DOCKER_CLIS[0] if DOCKER_CLIS else "docker"

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, DOCKER_HOST=self.apid.host, DOCKER_CONFIG=str(
            self.apid.base / "docker-config"))

    def docker(self, *args: str, cli: str | None = None, timeout: float = 60,
               input: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([cli or DOCKER_CLIS[0], *args], env=self.env, input=input,
                              capture_output=True, timeout=timeout)

    def http(self) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.apid.socket)),
                            base_url="http://apid", timeout=30)


@pytest.fixture(scope="session")
def stack(tmp_path_factory, registry, shim_bin):  # noqa: F811
    if os.geteuid() != 0:
        pytest.skip("the stack needs root (mounts, namespaces, cgroups)")
    if not DOCKER_CLIS:
        pytest.skip("the docker CLI is not installed")
    base = tmp_path_factory.mktemp("apid-stack")
    img = images.busybox_image(cmd=["sh"])
    images.push(registry, "busybox", "latest", img)
    # DOCKYARD_TEST_RUNTIME=runc runs the same tests on runc (a reference for the shim)
    runtime = os.environ.get("DOCKYARD_TEST_RUNTIME") or shim_bin
    managerd = ManagerdProcess(base / "managerd", [
        "--runtime", runtime, "--log-root", str(base / "data" / "containers"),
        "--trace-dir", str(base / "exec" / "trace")]).start()  # spans where apid serves them
    apid = ApidProcess(base, managerd.address)
    try:
        apid.start()
    except BaseException:
        managerd.stop()
        raise
    (base / "docker-config").mkdir(exist_ok=True)
    st = Stack(managerd, apid, f"{registry.host}/busybox:latest")
    yield st
    # remove what tests left behind, then stop the daemons (containers die with their
    # monitors only when removed)
    with st.http() as client:
        try:
            for c in client.get("/containers/json", params={"all": 1}).json():
                client.delete(f"/containers/{c['Id']}", params={"force": 1})
        except httpx.HTTPError:
            pass
    apid.stop()
    managerd.stop()
    shutil.rmtree(base / "data", ignore_errors=True)


@pytest.fixture(scope="session")
def pulled(stack) -> str:
    """The busybox image, pulled into managerd through apid."""
    r = stack.docker("pull", stack.image, timeout=120)
    if b"does not implement" in r.stderr:
        pytest.skip("managerd has no Transfer service yet")
    assert r.returncode == 0, r.stderr.decode() + stack.apid.log()
    return stack.image


@pytest.fixture(scope="session")
def busybox(stack) -> str:
    """A busybox image put into managerd's stores directly (no pull), by name."""
    from seed import seed_image

    name = "dockyard.test/busybox:latest"
    seed_image(stack.managerd.address, "moby", name,
               images.busybox_image(cmd=["sh"], Labels={"org.dockyard.test": "1"}))
    return name


@pytest.fixture
def name() -> str:
    return f"dy-{uuid.uuid4().hex[:10]}"
