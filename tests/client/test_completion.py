"""scripts/dockyard-completion.bash in a real bash: commands, `network` subcommands, their
flags (from this checkout's `dockyard ... --help`) and values (networks, containers, modes).

A `dockyard` wrapper first on PATH runs this checkout's CLI for --help and answers the
listing calls (`network ls`, `ps`) with fixed names, so no daemon is needed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts/dockyard-completion.bash"

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")]


@pytest.fixture(scope="module")
def shell_env(tmp_path_factory):
    bindir = tmp_path_factory.mktemp("completion-bin")
    wrapper = bindir / "dockyard"
    wrapper.write_text(f"""#!/bin/sh
case "$*" in
  *"network ls --format"*) printf 'dynet-a\\ndynet-b\\n'; exit 0 ;;
  *"ps"*"--format"*) printf 'dy-web\\n'; exit 0 ;;
  *"volume ls -q"*) printf 'dy-vol\\n'; exit 0 ;;
esac
exec {sys.executable} -m dockyard.client "$@"
""")
    wrapper.chmod(0o755)
    return {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(bindir)}


def complete(env: dict[str, str], line: str) -> list[str]:
    """COMPREPLY for the command line `line` (completing its last word, maybe empty)."""
    words = line.split(" ")
    script = (f"source {SCRIPT}\n"
              f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
              f"COMP_CWORD={len(words) - 1}\n"
              "_dockyard\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    r = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.split("\n") if w]


def test_network_is_a_command_with_its_subcommands(shell_env):
    assert "network" in complete(shell_env, "dockyard netw")
    assert "port" in complete(shell_env, "dockyard po")
    assert complete(shell_env, "dockyard network ") == ["connect", "create", "disconnect",
                                                        "inspect", "ls", "prune", "rm"]
    assert "port" in complete(shell_env, "dockyard container po")


def test_network_subcommand_flags_come_from_help(shell_env):
    flags = complete(shell_env, "dockyard network create --")
    assert {"--subnet", "--gateway", "--internal", "--label", "--driver"} <= set(flags)
    assert complete(shell_env, "dockyard network ls --no") == ["--no-trunc"]
    assert "--force" in complete(shell_env, "dockyard network prune --")


def test_run_network_flags_and_values(shell_env):
    flags = complete(shell_env, "dockyard run --")
    assert {"--network", "--network-alias", "--ip", "--device", "--device-cgroup-rule",
            "--publish", "--publish-all", "--expose", "--dns", "--ipc", "--pid",
            "--uts"} <= set(flags)
    assert complete(shell_env, "dockyard run --network ") == ["bridge", "host", "none",
                                                              "container:", "dynet-a",
                                                              "dynet-b"]
    assert complete(shell_env, "dockyard run --ipc sh") == ["shareable"]
    assert complete(shell_env, "dockyard create --pid ") == ["host", "container:"]


def test_network_and_container_names(shell_env):
    assert complete(shell_env, "dockyard network rm dynet-") == ["dynet-a", "dynet-b"]
    assert complete(shell_env, "dockyard network connect ") == ["dynet-a", "dynet-b"]
    assert complete(shell_env, "dockyard network connect dynet-a ") == ["dy-web"]
    assert complete(shell_env, "dockyard port ") == ["dy-web"]


def test_volume_subcommands_flags_and_names(shell_env):
    assert "volume" in complete(shell_env, "dockyard vol")
    assert complete(shell_env, "dockyard volume ") == ["create", "inspect", "ls", "prune",
                                                       "rm"]
    assert "--all" in complete(shell_env, "dockyard volume prune --")
    assert complete(shell_env, "dockyard volume rm ") == ["dy-vol"]
