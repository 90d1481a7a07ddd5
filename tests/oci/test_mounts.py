"""mounts[]: bind/rbind, read-only binds, options, propagation, and symlinks
in the image that try to send a mount out of the rootfs."""

from __future__ import annotations

import os

import pytest
from helpers import busybox

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]


def mounts_of(text: str) -> dict[str, list[str]]:
    return {line.split()[1]: line.split() for line in text.splitlines() if len(line.split()) > 3}


def test_bind_ro_and_rw(shim, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "hello").write_text("from host\n")
    cfg = busybox.base_config(["sh", "-c", "cat /data/hello; cat /rw/hello; "
                               "echo x > /data/new 2>&1; echo y > /rw/new && echo rw-ok; "
                               "cat /proc/self/mounts"])
    cfg["mounts"] += [
        {"destination": "/data", "type": "bind", "source": str(src), "options": ["rbind", "ro"]},
        {"destination": "/rw", "type": "none", "source": str(src), "options": ["bind"]},
    ]
    res = shim.run_config(cfg)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("from host") == 2
    assert "Read-only file system" in res.stderr and "rw-ok" in res.stdout
    assert (src / "new").read_text() == "y\n"
    m = mounts_of(res.stdout)
    assert m["/data"][3].startswith("ro") and m["/rw"][3].startswith("rw")


def test_file_bind_and_relative_source(shim):
    cfg = busybox.base_config(["cat", "/etc/dy-file"])
    bundle = shim.bundle(cfg)
    (bundle / "dy-file").write_text("relative to bundle\n")
    cfg["mounts"].append({"destination": "/etc/dy-file", "type": "bind", "source": "dy-file",
                          "options": ["bind", "ro"]})
    (bundle / "config.json").write_text(__import__("json").dumps(cfg))
    cid = shim.container()
    res = shim("run", "--bundle", str(bundle), cid)
    assert res.stdout == "relative to bundle\n", res.stderr


def test_tmpfs_options(shim):
    cfg = busybox.base_config(["sh", "-c", "grep ' /scratch ' /proc/self/mounts; "
                               "stat -c %a /scratch"])
    cfg["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                          "options": ["nosuid", "nodev", "noexec", "mode=1770", "size=1m"]})
    res = shim.run_config(cfg)
    line, mode = res.stdout.splitlines()
    opts = line.split()[3].split(",")
    assert {"nosuid", "nodev", "noexec", "size=1024k"} <= set(opts), opts
    assert mode == "1770"


def test_symlinked_destination_stays_inside_rootfs(shim, tmp_path):
    """An image symlink /evil -> /../../../<host dir> must resolve inside the rootfs."""
    host_dir = tmp_path / "host-target"
    host_dir.mkdir()
    cfg = busybox.base_config(["sh", "-c", "ls /evil; grep -c host-target/sub /proc/self/mounts"])
    cfg["mounts"].append({"destination": "/evil/sub", "type": "tmpfs", "source": "tmpfs"})
    cfg["root"]["readonly"] = False
    bundle = shim.bundle(cfg)
    os.symlink(f"../../../../../../..{host_dir}", bundle / "rootfs/evil")
    cid = shim.container()
    res = shim("run", "--bundle", str(bundle), cid)
    assert res.returncode == 0, res.stderr
    assert not (host_dir / "sub").exists()  # nothing created on the host
    inside = bundle / "rootfs" / str(host_dir).lstrip("/") / "sub"
    assert inside.is_dir()  # created inside the rootfs instead
    assert res.stdout.split() == ["sub", "1"]  # mounted at the in-rootfs path


def test_mount_propagation_private_by_default(shim):
    # a mount made inside the container does not appear on the host
    cfg = busybox.base_config(["sh", "-c", "mount -t tmpfs dy-inner /tmp && echo mounted"])
    cfg["process"]["capabilities"] = {k: ["CAP_SYS_ADMIN"] for k in
                                      ("bounding", "effective", "permitted")}
    cfg["root"]["readonly"] = False
    res = shim.run_config(cfg)
    assert "mounted" in res.stdout, res.stderr
    with open("/proc/self/mountinfo") as f:
        assert "dy-inner" not in f.read()


def test_cgroup_mount_shows_own_cgroup(shim):
    cfg = busybox.base_config(["sh", "-c", "cat /sys/fs/cgroup/pids/cgroup.procs; "
                               "cat /proc/self/cgroup | grep pids"])
    res = shim.run_config(cfg)
    lines = res.stdout.split()
    assert lines[0] == "1"  # only the container's own processes, seen from its pid ns
    assert lines[-1].endswith(":pids:/")  # cgroup namespace root
