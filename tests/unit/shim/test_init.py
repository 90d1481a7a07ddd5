"""init.py's pure decisions: when the cgroup mount may wait, error wording."""

from __future__ import annotations

import errno

from dockyard.shim.init import describe, late_cgroup_mount
from dockyard.shim.process import ExecError, environ, find_executable


def config(**linux) -> dict:
    return {"mounts": [{"destination": "/proc", "type": "proc"},
                       {"destination": "/sys/fs/cgroup", "type": "cgroup"},
                       {"destination": "/data", "type": "bind", "source": "/x"}],
            "linux": {"maskedPaths": ["/proc/kcore"], **linux}}


def test_late_cgroup_mount_when_safe():
    assert late_cgroup_mount(config(), namespaced=True) == 1
    assert late_cgroup_mount(config(), namespaced=False) is None  # binds need host paths


def test_not_late_with_something_below_it_or_create_hooks():
    cfg = config(readonlyPaths=["/sys/fs/cgroup/memory"])
    assert late_cgroup_mount(cfg, namespaced=True) is None
    cfg = config()
    cfg["mounts"].append({"destination": "/sys/fs/cgroup/x", "type": "tmpfs"})
    assert late_cgroup_mount(cfg, namespaced=True) is None
    cfg = config()
    cfg["hooks"] = {"prestart": [{"path": "/bin/true"}]}
    assert late_cgroup_mount(cfg, namespaced=True) is None
    cfg = config()
    cfg["mounts"] = cfg["mounts"][:1]
    assert late_cgroup_mount(cfg, namespaced=True) is None  # nothing to defer


def test_describe_keeps_runc_phrases():
    assert describe(ExecError(errno.ENOENT, 'exec: "x": executable file not found in $PATH')) \
        == 'exec: "x": executable file not found in $PATH'
    assert describe(FileNotFoundError(2, "No such file or directory", "/etc/x")) == \
        "/etc/x: no such file or directory"
    assert describe(ValueError("bad")) == "bad"


def test_find_executable(tmp_path):
    exe = tmp_path / "tool"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    plain = tmp_path / "plain"
    plain.write_text("")
    env = {"PATH": f"/nonexistent:{tmp_path}"}
    assert find_executable("tool", env) == str(exe)
    assert find_executable(str(exe), env) == str(exe)
    for name, phrase in (("nope", "executable file not found in $PATH"),
                         (str(tmp_path / "nope"), "no such file or directory"),
                         (str(plain), "permission denied"),
                         (str(tmp_path), "permission denied")):
        try:
            find_executable(name, env)
        except ExecError as err:
            assert phrase in str(err), (name, str(err))
        else:
            raise AssertionError(name)


def test_environ_last_wins():
    assert environ(["A=1", "B=x=y", "A=2", "junk", "=v"]) == {"A": "2", "B": "x=y"}
