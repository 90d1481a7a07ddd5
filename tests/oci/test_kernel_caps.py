"""Capabilities applied for real in a fresh python child, read back from
/proc/self/status before and after an execve (as the container process sees them)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dockyard.shim import caps

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]

SRC = str(Path(__file__).resolve().parents[2] / "src")
DOCKER_DEFAULT = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                  "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                  "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


def apply_and_exec(capabilities: dict, uid: int | None = None) -> tuple[dict, dict]:
    """(status before exec, status after exec of /bin/cat /proc/self/status)."""
    code = f"""
        import json, os, sys
        sys.path.insert(0, {SRC!r})
        from dockyard.shim import caps
        CAPS = {json.dumps(capabilities)}
        UID = {uid!r}

        def change_user():
            os.setgroups([])
            os.setgid(UID)
            os.setuid(UID)

        caps.apply_capabilities(CAPS, change_user=change_user if UID is not None else None)
        with open("/proc/self/status") as f:
            print(json.dumps(dict(l.strip().split(":\\t") for l in f if l.startswith("Cap"))),
                  flush=True)
        os.execv("/bin/cat", ["cat", "/proc/self/status"])
    """
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    first, rest = proc.stdout.split("\n", 1)
    after = dict(line.split(":\t") for line in rest.splitlines() if line.startswith("Cap"))
    return ({k: int(v, 16) for k, v in json.loads(first).items()},
            {k: int(v, 16) for k, v in after.items()})


def test_root_with_dockers_defaults():
    mask = caps.mask(DOCKER_DEFAULT)
    assert mask == 0xA80425FB
    before, after = apply_and_exec({k: DOCKER_DEFAULT for k in ("bounding", "effective",
                                                                 "permitted")})
    want = {"CapInh": 0, "CapPrm": mask, "CapEff": mask, "CapBnd": mask, "CapAmb": 0}
    assert before == want
    assert after == want  # root keeps what the bounding set allows across exec


def test_non_root_without_ambient_ends_with_nothing_usable():
    # Docker's `--user 1000`: CapPrm = CapEff = 0 after exec, CapBnd = a80425fb
    before, after = apply_and_exec({k: DOCKER_DEFAULT for k in ("bounding", "effective",
                                                                 "permitted")}, uid=1000)
    assert before["CapPrm"] == before["CapEff"] == 0xA80425FB  # kept through setuid
    assert after == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0xA80425FB, "CapAmb": 0}


def test_non_root_keeps_ambient_capabilities_across_exec():
    keep = ["CAP_NET_BIND_SERVICE", "CAP_KILL"]
    config = {"bounding": keep + ["CAP_SETUID", "CAP_SETGID"], "effective": keep,
              "permitted": keep, "inheritable": keep, "ambient": keep}
    before, after = apply_and_exec(config, uid=1000)
    bits = caps.mask(keep)
    assert bits == 0x420
    assert before == {"CapInh": bits, "CapPrm": bits, "CapEff": bits, "CapBnd": 0x4E0,
                      "CapAmb": bits}
    assert after == before


def test_runc_spec_defaults_skip_ambient_without_inheritable():
    # `runc spec` lists ambient caps but no inheritable ones: they are skipped, not an error
    three = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    before, _ = apply_and_exec({k: three for k in ("bounding", "effective", "permitted",
                                                   "ambient")})
    assert before["CapAmb"] == 0 and before["CapEff"] == caps.mask(three)
