"""A real managerd + apid whose spans meet in one directory, for the end-to-end trace tests.

Reuses apid's integration pieces (ApidProcess from tests/apid/integration/conftest.py,
seed_image from its seed.py) and tests/helpers/managerd.py: managerd runs this
checkout's shim and is told `--trace-dir <apid exec-root>/trace`, the directory
apid reads for GET /v1/traces/{id}. One stack per module; the busybox image is
put into managerd's stores directly (no registry).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from helpers import images
from helpers.managerd import ManagerdProcess

_APID_IT = Path(__file__).resolve().parents[1] / "apid" / "integration"
IMAGE = "dockyard.test/busybox:latest"


def _load(name: str, path: Path):  # noqa: ANN202
    """A module of apid's integration tests by path (`apid` would be the real package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class TraceStack:
    def __init__(self, managerd: ManagerdProcess, apid, trace_dir: Path) -> None:
        self.managerd = managerd
        self.apid = apid
        self.trace_dir = trace_dir
        self.image = IMAGE

    def http(self, traceparent: str | None = None) -> httpx.Client:
        headers = {"traceparent": traceparent} if traceparent else {}
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.apid.socket)),
                            base_url="http://apid", timeout=60, headers=headers)


@pytest.fixture(scope="module")
def trace_stack(tmp_path_factory, shim_bin):
    if os.geteuid() != 0:
        pytest.skip("the stack needs root (mounts, namespaces, cgroups)")
    apid_it = _load("dockyard_tests_apid_integration", _APID_IT / "conftest.py")
    seed = _load("dockyard_tests_apid_seed", _APID_IT / "seed.py")
    base = tmp_path_factory.mktemp("trace-stack")
    trace_dir = base / "exec" / "trace"  # <apid exec-root>/trace
    managerd = ManagerdProcess(base / "managerd", [
        "--runtime", shim_bin, "--trace-dir", str(trace_dir),
        "--log-root", str(base / "data" / "containers")],
        # a TRACEPARENT in managerd's own environment must not reach untraced runtimes
        env={"TRACEPARENT": f"00-{'1' * 32}-{'2' * 16}-01",
             "DOCKYARD_TRACE_DIR": str(trace_dir)}).start()
    apid = apid_it.ApidProcess(base, managerd.address)
    try:
        apid.start()
        seed.seed_image(managerd.address, "moby", IMAGE, images.busybox_image(cmd=["sh"]))
    except BaseException:
        apid.stop()
        managerd.stop()
        raise
    st = TraceStack(managerd, apid, trace_dir)
    yield st
    with st.http() as client:
        try:
            for c in client.get("/containers/json", params={"all": 1}).json():
                client.delete(f"/containers/{c['Id']}", params={"force": 1})
        except httpx.HTTPError:
            pass
    apid.stop()
    managerd.stop()
    shutil.rmtree(base / "data", ignore_errors=True)


@pytest.fixture
def name() -> str:
    return f"dy-{uuid.uuid4().hex[:10]}"
