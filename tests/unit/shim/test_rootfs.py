"""rootfs.py against a recording FakeSyscalls and a tmp_path tree: no root needed."""

from __future__ import annotations

import os
import stat

import pytest
from dockyard.shim import rootfs
from dockyard.shim._sys.consts import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SLAVE,
    MS_STRICTATIME,
)
from fakes.syscalls import EINVAL, EPERM, FakeSyscalls


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "rootfs"
    for d in ("bin", "etc", "dev", "proc"):
        (r / d).mkdir(parents=True)
    return r


def test_parse_options():
    flags, prop, data = rootfs.parse_options(
        ["nosuid", "noexec", "rw", "ro", "mode=755", "rprivate", "size=1m", "strictatime"])
    assert flags == MS_NOSUID | MS_NOEXEC | MS_RDONLY | MS_STRICTATIME
    assert prop == [MS_PRIVATE | MS_REC]
    assert data == "mode=755,size=1m"
    flags, _, _ = rootfs.parse_options(["ro", "rw", "rbind"])
    assert flags == MS_BIND | MS_REC


def test_secure_join_keeps_symlinks_inside(root):
    os.symlink("/etc", root / "abs")
    os.symlink("../../../../../../tmp", root / "up")
    os.symlink("loop", root / "loop")
    assert rootfs.secure_join(str(root), "/abs/passwd") == f"{root}/etc/passwd"
    assert rootfs.secure_join(str(root), "/up/x") == f"{root}/tmp/x"
    assert rootfs.secure_join(str(root), "/../../etc/./x/..") == f"{root}/etc"
    assert rootfs.secure_join(str(root), "/") == str(root)
    with pytest.raises(OSError, match="too many levels"):
        rootfs.secure_join(str(root), "/loop/x")


def test_mount_all_creates_destinations_and_orders_calls(root, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "file").write_text("x")
    sc = FakeSyscalls()
    rootfs.mount_all(sc, str(root), str(tmp_path), [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/data/deep", "type": "bind", "source": str(src),
         "options": ["rbind", "ro", "nosuid", "rslave"]},
        {"destination": "/etc/hosts", "type": "bind", "source": "file", "options": ["bind"]},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["nodev", "mode=700"]},
    ])
    assert sc.mounts() == [
        ("proc", f"{root}/proc", "proc", 0, None),
        (str(src), f"{root}/data/deep", None, MS_BIND | MS_REC, None),
        (None, f"{root}/data/deep", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID, None),
        (None, f"{root}/data/deep", None, MS_SLAVE | MS_REC, None),
        (f"{tmp_path}/file", f"{root}/etc/hosts", None, MS_BIND, None),
        ("tmpfs", f"{root}/run", "tmpfs", MS_NODEV, "mode=700"),
    ]
    assert (root / "data/deep").is_dir()
    assert (root / "etc/hosts").is_file()  # file bind: a file target


def test_missing_bind_source_is_named(root, tmp_path):
    with pytest.raises(rootfs.MountError, match="mount source .*nope.* no such file"):
        rootfs.mount_all(FakeSyscalls(), str(root), str(tmp_path),
                         [{"destination": "/x", "type": "bind", "source": "/nope"}])


def test_mount_failure_names_source_and_destination(root, tmp_path):
    sc = FakeSyscalls(fail={"mount": EINVAL})
    with pytest.raises(rootfs.MountError) as err:
        rootfs.mount_all(sc, str(root), str(tmp_path),
                         [{"destination": "/bad", "type": "weirdfs", "source": "src"}])
    assert str(err.value) == "mount `src` on `/bad` (type weirdfs): invalid argument"


def test_cgroup_v1_mounts_each_hierarchy(root):
    view = rootfs.CgroupView([("cpu", "cgroup", "rw,cpu"), ("memory", "cgroup", "rw,memory"),
                              ("cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
                              ("unified", "cgroup2", "rw")], {}, namespaced=True)
    sc = FakeSyscalls()
    dest = f"{root}/sys/fs/cgroup"
    os.makedirs(dest)
    rootfs.mount_cgroup(sc, dest, MS_NOSUID | MS_RDONLY, view)
    assert sc.mounts()[0] == ("tmpfs", dest, "tmpfs", MS_NOSUID, "mode=755")
    assert ("cgroup", f"{dest}/memory", "cgroup", MS_NOSUID | MS_RDONLY, "memory") in sc.mounts()
    assert sc.mounts()[-1][3] & MS_REMOUNT and sc.mounts()[-1][3] & MS_RDONLY
    assert os.readlink(f"{dest}/cpuacct") == "cpu,cpuacct"
    assert not any(m[1].endswith("unified") for m in sc.mounts())


def test_cgroup_without_namespace_binds_container_dirs(root):
    view = rootfs.CgroupView([("pids", "cgroup", "rw,pids")],
                             {"pids": "/sys/fs/cgroup/pids/dockyard/c1"}, namespaced=False)
    sc = FakeSyscalls()
    rootfs.mount_cgroup(sc, f"{root}/cg", 0, view)
    assert ("/sys/fs/cgroup/pids/dockyard/c1", f"{root}/cg/pids", None, MS_BIND | MS_REC,
            None) in sc.mounts()


def test_cgroup_v2_host(root):
    sc = FakeSyscalls()
    rootfs.mount_cgroup(sc, f"{root}/cg", MS_NOSUID,
                        rootfs.CgroupView([("", "cgroup2", "rw")], {}, True))
    assert sc.mounts() == [("cgroup2", f"{root}/cg", "cgroup2", MS_NOSUID, None)]


def test_devices_mknod_and_bind_fallback(root):
    sc = FakeSyscalls()
    rootfs.create_devices(sc, str(root), [{"path": "/dev/fuse", "type": "c", "major": 10,
                                           "minor": 229, "fileMode": 0o600}])
    nodes = {c[1]: c for c in sc.calls if c[0] == "mknod"}
    assert nodes[f"{root}/dev/null"][2] == stat.S_IFCHR | 0o666
    assert nodes[f"{root}/dev/null"][3] == os.makedev(1, 3)
    assert nodes[f"{root}/dev/fuse"][2] == stat.S_IFCHR | 0o600
    assert len(nodes) == 7
    # where mknod is refused, the host node is bound instead
    sc = FakeSyscalls(fail={"mknod": PermissionError(1, "denied")})
    rootfs.create_devices(sc, str(root), [], defaults=True)
    assert ("/dev/null", f"{root}/dev/null", None, MS_BIND, None) in sc.mounts()


def test_dev_symlinks(root):
    (root / "dev/pts").mkdir()
    rootfs.dev_symlinks(str(root), terminal=True)
    assert os.readlink(root / "dev/fd") == "/proc/self/fd"
    assert os.readlink(root / "dev/stderr") == "/proc/self/fd/2"
    assert os.readlink(root / "dev/ptmx") == "pts/ptmx"
    assert (root / "dev/console").is_file()


def test_pivot_root_sequence(root, monkeypatch):
    sc = FakeSyscalls()
    dirs = []
    monkeypatch.setattr(os, "fchdir", lambda fd: dirs.append(fd))
    monkeypatch.setattr(os, "chdir", lambda path: dirs.append(path))
    rootfs.pivot_root(sc, str(root))
    assert sc.names() == ["pivot_root", "mount", "umount2"]
    assert sc.calls[0] == ("pivot_root", ".", ".")
    assert sc.calls[1] == ("mount", None, ".", None, MS_SLAVE | MS_REC, None)
    assert sc.calls[2] == ("umount2", ".", MNT_DETACH)
    assert dirs[-1] == "/"


def test_pivot_root_failure_is_reported(root):
    sc = FakeSyscalls(fail={"pivot_root": EPERM})
    cwd = os.getcwd()
    try:
        with pytest.raises(rootfs.MountError, match="pivot_root .*operation not permitted"):
            rootfs.pivot_root(sc, str(root))
    finally:
        os.chdir(cwd)


def test_masked_and_readonly_paths(root):
    (root / "proc/kcore").write_text("")
    (root / "proc/acpi").mkdir()
    sc = FakeSyscalls()
    rootfs.mask_paths(sc, [f"{root}/proc/kcore", f"{root}/proc/acpi", f"{root}/proc/none"])
    assert sc.mounts() == [("/dev/null", f"{root}/proc/kcore", None, MS_BIND, None),
                           ("tmpfs", f"{root}/proc/acpi", "tmpfs", MS_RDONLY, None)]
    sc = FakeSyscalls()
    rootfs.readonly_paths(sc, [f"{root}/proc/acpi", f"{root}/missing"])
    assert [m[3] & (MS_BIND | MS_REMOUNT | MS_RDONLY) for m in sc.mounts()] == \
        [MS_BIND, MS_BIND | MS_REMOUNT | MS_RDONLY]


def test_propagation_default_and_explicit():
    sc = FakeSyscalls()
    rootfs.set_propagation(sc, None)
    rootfs.set_propagation(sc, "private")
    assert [m[3] for m in sc.mounts()] == [MS_SLAVE | MS_REC, MS_PRIVATE]


def test_sysctls(tmp_path):
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel/msgmax").write_text("")
    rootfs.write_sysctls({"kernel.msgmax": "42"}, proc_sys=str(tmp_path))
    assert (tmp_path / "kernel/msgmax").read_text() == "42"
    with pytest.raises(rootfs.MountError, match="sysctl net.nope=1"):
        rootfs.write_sysctls({"net.nope": "1"}, proc_sys=str(tmp_path))
