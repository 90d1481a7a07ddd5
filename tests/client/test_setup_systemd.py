"""setup.sh's systemd path: the units it writes, started by a stand-in `systemctl` that
runs each unit's Environment= and ExecStart= the way systemd would (systemd is not PID 1
on these machines), must bring up a working engine; stop.sh stops it through systemctl."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .engine import cleanup

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.privileged, pytest.mark.slow, pytest.mark.timeout(300)]

FAKE_SYSTEMCTL = r"""#!/usr/bin/env bash
# records every call; `enable --now` / `stop` start and stop the units' ExecStart
echo "$*" >> "$FAKE_SYSTEMD_STATE/calls"
case "$1" in
  daemon-reload|list-unit-files) exit 0 ;;
  enable)
    shift; [ "$1" = --now ] && shift
    for u in "$@"; do
      f=$DOCKYARD_SYSTEMD_DIR/$u
      envs=$(sed -n 's/^Environment=//p' "$f")
      cmd=$(sed -n 's/^ExecStart=//p' "$f")
      # shellcheck disable=SC2086
      env $envs setsid $cmd >> "$FAKE_SYSTEMD_STATE/$u.log" 2>&1 < /dev/null &
      echo $! > "$FAKE_SYSTEMD_STATE/$u.pid"
    done ;;
  stop)
    shift
    for u in "$@"; do
      pid=$(cat "$FAKE_SYSTEMD_STATE/$u.pid")
      kill -TERM "$pid"
      for _ in $(seq 1 150); do [ -d /proc/$pid ] || break; sleep 0.1; done
    done ;;
esac
"""


def test_setup_writes_units_that_run_the_engine(tmp_path_factory):
    base = tmp_path_factory.mktemp("dy-systemd")
    fakebin = base / "fakebin"
    fakebin.mkdir()
    (fakebin / "systemctl").write_text(FAKE_SYSTEMCTL)
    (fakebin / "systemctl").chmod(0o755)
    state = base / "systemd-state"
    state.mkdir()
    units = base / "units"
    env = {**os.environ, "PATH": f"{fakebin}:{os.environ['PATH']}",
           "DOCKYARD_RUN": str(base / "run"), "DOCKYARD_DATA_ROOT": str(base / "data"),
           "DOCKYARD_LOG_DIR": str(base / "log"), "DOCKYARD_BIN_DIR": "",
           "DOCKYARD_COMPLETION_DIR": "", "DOCKYARD_SKIP_INSTALL": "1",
           "DOCKYARD_FORCE_SYSTEMD": "1", "DOCKYARD_SYSTEMD_DIR": str(units),
           "FAKE_SYSTEMD_STATE": str(state)}
    env.pop("DOCKYARD_HOST", None)
    try:
        setup = subprocess.run([str(REPO / "scripts/setup.sh")], env=env, capture_output=True,
                               text=True, timeout=240)
        assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-2000:] + "".join(
            p.read_text()[-2000:] for p in state.glob("*.log"))
        managerd = (units / "dockyard-managerd.service").read_text()
        apid = (units / "dockyard-apid.service").read_text()
        assert "KillMode=process" in managerd  # containers' monitors survive a restart
        assert "Delegate=yes" in managerd
        assert f"--address unix://{base}/run/managerd.sock" in managerd
        assert "Requires=dockyard-managerd.service" in apid
        assert f"--managerd unix://{base}/run/managerd.sock" in apid
        calls = (state / "calls").read_text().splitlines()
        assert calls[:2] == ["daemon-reload", "enable --now dockyard-managerd.service "
                                              "dockyard-apid.service"]
        host = f"unix://{base}/run/dockyard.sock"
        hello = subprocess.run([str(REPO / ".venv/bin/dockyard"), "-H", host, "run", "--rm",
                                "busybox", "echo", "hello"], capture_output=True, text=True,
                               timeout=120)
        assert (hello.returncode, hello.stdout) == (0, "hello\n"), hello.stderr
    finally:
        stop = subprocess.run([str(REPO / "scripts/stop.sh")], env=env, capture_output=True,
                              text=True, timeout=60)
        calls = (state / "calls").read_text() if (state / "calls").exists() else ""
        cleanup(base)
    assert stop.returncode == 0 and "(systemd)" in stop.stdout
    assert "stop dockyard-apid.service dockyard-managerd.service" in calls
