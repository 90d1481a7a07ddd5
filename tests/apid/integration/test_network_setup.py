"""scripts/setup.sh starts apid with a default bridge when asked (DOCKYARD_BRIDGE; the
system engine at the default roots gets dockyard0 without asking), and stop.sh takes it
down again: this checkout, its own roots, a `dy` bridge, no install step."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from client.engine import cleanup
from test_network_bridge import free_subnet, links, settled

REPO = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.privileged, pytest.mark.slow, pytest.mark.timeout(300)]


def test_setup_sh_starts_apid_with_a_default_bridge(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("setup.sh needs root")
    bridge = "dy" + uuid.uuid4().hex[:8]
    subnet = free_subnet()
    env = {**os.environ, "DOCKYARD_RUN": str(tmp_path / "run"),
           "DOCKYARD_DATA_ROOT": str(tmp_path / "data"), "DOCKYARD_LOG_DIR": str(tmp_path / "log"),
           "DOCKYARD_BIN_DIR": "", "DOCKYARD_COMPLETION_DIR": "", "DOCKYARD_NO_SYSTEMD": "1",
           "DOCKYARD_SKIP_INSTALL": "1", "DOCKYARD_BRIDGE": bridge,
           "DOCKYARD_BIP": f"{subnet.network_address + 1}/24"}
    env.pop("DOCKER_HOST", None)
    env.pop("DOCKYARD_HOST", None)
    docker_env = {**env, "DOCKER_HOST": f"unix://{tmp_path}/run/dockyard.sock",
                  "DOCKER_CONFIG": str(tmp_path / "docker-config")}
    try:
        setup = subprocess.run([str(REPO / "scripts/setup.sh")], env=env, capture_output=True,
                               text=True, timeout=240)
        assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-2000:]
        net = subprocess.run(["docker", "network", "inspect", "bridge"], env=docker_env,
                             capture_output=True, text=True, timeout=60)
        assert net.returncode == 0, net.stderr
        info = json.loads(net.stdout)[0]
        assert info["Options"]["com.docker.network.bridge.name"] == bridge
        assert info["IPAM"]["Config"][0]["Subnet"] == str(subnet)
        out = subprocess.run(["docker", "run", "--rm", "busybox", "sh", "-c",
                              "ip -o -4 addr show eth0"], env=docker_env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0 and str(subnet.network_address)[:-1] in out.stdout, \
            out.stdout + out.stderr
    finally:
        subprocess.run([str(REPO / "scripts/stop.sh")], env=env, capture_output=True,
                       timeout=60)
        gone = settled(lambda: bridge not in links(), timeout=15)
        if not gone:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        cleanup(tmp_path)  # mounts under the roots (snapshots), then the files
    assert gone, "stop.sh left the default bridge"
