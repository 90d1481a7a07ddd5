"""docker-compose.dev.yml and its Dockerfile: valid for Debian's docker-compose, consistent
with the daemons' flags and with this checkout's layout."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.dev.yml"


def _config() -> dict:
    exe = shutil.which("docker-compose")
    if not exe:
        pytest.skip("Debian's docker-compose is not installed (scripts/install.sh --test)")
    out = subprocess.run([exe, "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    # docker-compose is a Python program: the interpreter it runs on has PyYAML
    yaml_py = Path(exe).read_text().splitlines()[0].removeprefix("#!").split()[0]
    parsed = subprocess.run([yaml_py, "-c", "import json,sys,yaml; "
                             "print(json.dumps(yaml.safe_load(sys.stdin)))"],
                            input=out.stdout, capture_output=True, text=True, timeout=30)
    assert parsed.returncode == 0, parsed.stderr
    return json.loads(parsed.stdout)


def test_compose_config_is_valid_and_complete():
    cfg = _config()
    services = cfg["services"]
    assert set(services) == {"managerd", "apid", "registry", "busybox"}
    seed = services["busybox"]
    assert "scripts/busybox_image.py" in " ".join(seed["command"])
    assert (REPO / "scripts/busybox_image.py").exists()
    assert services["registry"]["image"].startswith("registry:2")
    for name in ("managerd", "apid"):
        svc = services[name]
        assert svc["privileged"] is True
        # docker-compose 1.x prints short syntax (source:target:mode), v2 long syntax
        targets = {}
        for v in svc["volumes"]:
            if isinstance(v, str):
                source, target = v.split(":")[:2]
            else:
                source, target = v["source"], v["target"]
            targets[target] = source
        assert targets["/run/dockyard"] == "run"  # the sockets, shared
        assert targets["/var/lib/dockyard"] == "data"  # the data root on a volume
    assert "build" in services["managerd"]
    assert set(cfg["volumes"]) >= {"run", "data"}


def test_compose_commands_parse_with_the_daemons_own_flags():
    services = _config()["services"]
    from dockyard.apid.__main__ import parse_args as apid_args
    from dockyard.managerd.__main__ import parse_args as managerd_args

    m_cmd = services["managerd"]["command"]
    a_cmd = services["apid"]["command"]
    assert m_cmd[0] == "dockyard-managerd" and a_cmd[0] == "dockyard-apid"
    m = managerd_args(m_cmd[1:])
    a = apid_args(a_cmd[1:])
    assert m.address == a.managerd == "unix:///run/dockyard/managerd.sock"
    assert m.trace_dir == f"{a.exec_root}/trace"  # spans land where apid serves them from
    assert a.hosts == [services["apid"]["environment"]["DOCKYARD_HOST"]]


def test_dockerfile_copies_what_exists():
    text = (REPO / "Dockerfile").read_text()
    sources = []
    for line in text.splitlines():
        if line.startswith("COPY "):
            sources += line.split()[1:-1]
    assert sources
    for src in sources:
        assert (REPO / src).exists(), f"Dockerfile copies {src}, which this checkout lacks"
    assert "scripts/install.sh" in text
