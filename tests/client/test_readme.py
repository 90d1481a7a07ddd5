"""The README's first command on a fresh clone: `scripts/setup.sh` installs everything,
starts the engine, loads busybox, and `dockyard run --rm busybox echo hello` prints hello.
Then: a second run starts no second daemon, and scripts/stop.sh stops both.

The clone gets its own roots and sockets through setup.sh's environment overrides,
so it runs beside any engine already on the machine.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .engine import cleanup

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.privileged, pytest.mark.slow, pytest.mark.timeout(900)]


def _alive(pid: int) -> bool:
    """Running, not a zombie: a daemon that setup.sh put in the background is reparented,
    and whoever inherits it (pid 1 here, or a subreaper test process) may not reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def clone(tmp_path_factory):
    base = tmp_path_factory.mktemp("dy-readme")
    src = base / "dockyard"
    subprocess.run(["git", "clone", "-q", str(REPO), str(src)], check=True, timeout=120)
    env = {**os.environ,
           "DOCKYARD_RUN": str(base / "run"), "DOCKYARD_DATA_ROOT": str(base / "data"),
           "DOCKYARD_LOG_DIR": str(base / "log"), "DOCKYARD_BIN_DIR": str(base / "bin"),
           "DOCKYARD_COMPLETION_DIR": str(base / "completion"), "DOCKYARD_NO_SYSTEMD": "1"}
    env.pop("DOCKYARD_HOST", None)
    yield src, base, env
    stop = subprocess.run([str(src / "scripts/stop.sh")], env=env, capture_output=True,
                          text=True, timeout=60)
    if stop.returncode != 0:
        print(stop.stdout, stop.stderr)
    cleanup(base)


def test_setup_on_a_fresh_clone_then_run_busybox(clone):
    src, base, env = clone
    setup = subprocess.run([str(src / "scripts/setup.sh")], env=env, capture_output=True,
                           text=True, timeout=600)
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    assert "Try:" in setup.stdout and "run --rm busybox echo hello" in setup.stdout
    dockyard = base / "bin/dockyard"
    assert dockyard.is_symlink() and Path(os.readlink(dockyard)).parent == src / ".venv/bin"
    assert (base / "completion/dockyard").read_text().startswith("# bash completion")
    host = f"unix://{base}/run/dockyard.sock"

    hello = subprocess.run([str(dockyard), "-H", host, "run", "--rm", "busybox", "echo",
                            "hello"], capture_output=True, text=True, timeout=120, env=env)
    assert (hello.returncode, hello.stdout) == (0, "hello\n"), hello.stderr

    pids = {n: int((base / f"run/dockyard-{n}.pid").read_text()) for n in ("managerd", "apid")}
    again = subprocess.run([str(src / "scripts/setup.sh")], env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "dockyard-managerd is already running" in again.stdout
    assert "busybox:latest is already loaded" in again.stdout
    assert {n: int((base / f"run/dockyard-{n}.pid").read_text())
            for n in ("managerd", "apid")} == pids
    daemons = subprocess.run(["pgrep", "-f", f"dockyard-(managerd|apid) .*{base}/"],
                             capture_output=True, text=True).stdout.split()
    assert sorted(map(int, daemons)) == sorted(pids.values())

    stop = subprocess.run([str(src / "scripts/stop.sh")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert not any(_alive(p) for p in pids.values())
    down = subprocess.run([str(dockyard), "-H", host, "ps"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert down.returncode == 1 and "sudo scripts/setup.sh" in down.stderr
