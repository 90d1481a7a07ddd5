"""managerd's mounting (snapshots/mount.py): mount(2)/umount2(2) straight from the
process, with mount(8)'s reading of the option words, on the real kernel."""

from __future__ import annotations

import os
import uuid

import pytest
from dockyard.managerd.snapshots import mount as m
from dockyard.managerd.snapshots.mount import Mount, is_mountpoint, mount_all, unmount

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]


@pytest.fixture
def base(tmp_path):
    d = tmp_path / f"dy-mnt-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    yield d
    for dirpath, _, _ in sorted(os.walk(d), key=lambda w: -len(w[0])):
        if is_mountpoint(dirpath):
            unmount(dirpath, lazy=True)


def _dirs(base, *names):
    out = []
    for n in names:
        (base / n).mkdir(parents=True, exist_ok=True)
        out.append(str(base / n))
    return out


def test_plan_splits_flags_propagation_and_data():
    assert m._plan(Mount("overlay", "overlay", ("ro", "lowerdir=/a:/b", "nosuid"))) == (
        m.MS_RDONLY | m.MS_NOSUID, 0, "lowerdir=/a:/b")
    assert m._plan(Mount("bind", "/x", ("ro", "rbind", "rprivate"))) == (
        m.MS_RDONLY | m.MS_BIND | m.MS_REC, m.MS_PRIVATE | m.MS_REC, "")
    assert m._plan(Mount("none", "/x", ("bind", "rw"))) == (m.MS_BIND, 0, "")
    # words mount(8) handles itself, and overlays whose options exceed a page
    assert m._plan(Mount("ext4", "/img", ("loop",))) is None
    assert m._plan(Mount("bind", "/x", ("rbind", "x-systemd.automount"))) is None
    long = "lowerdir=" + ":".join(f"/very/long/path/number/{i}" for i in range(200))
    assert m._plan(Mount("overlay", "overlay", (long,))) is None


def test_overlay_mount_and_unmount(base):
    lower, upper, work, target = _dirs(base, "l", "u", "w", "t")
    with open(os.path.join(lower, "f"), "w") as f:
        f.write("lower")
    mount_all([Mount("overlay", "overlay", (f"lowerdir={lower}", f"upperdir={upper}",
                                            f"workdir={work}"))], target)
    assert is_mountpoint(target)
    with open(os.path.join(target, "g"), "w") as f:
        f.write("upper")
    assert open(os.path.join(target, "f")).read() == "lower"
    unmount(target)
    assert not is_mountpoint(target)
    assert os.listdir(upper) == ["g"]
    unmount(target)  # nothing mounted: no error


def test_read_only_rbind_is_read_only_and_stacks_unmount(base):
    src, target = _dirs(base, "src", "t")
    mount_all([Mount("bind", src, ("ro", "rbind"))], target)
    with pytest.raises(OSError):
        open(os.path.join(target, "new"), "w")
    # a second mount on top: unmount removes both
    mount_all([Mount("bind", src, ("rbind",))], target)
    unmount(target)
    assert not is_mountpoint(target)


def test_failed_mount_names_it_and_leaves_nothing(base):
    a, b, t1 = _dirs(base, "a", "b", "t1")
    with pytest.raises(OSError, match="overlay.*on .*t1"):
        mount_all([Mount("bind", a, ("rbind",), target=""),
                   Mount("overlay", "overlay", (f"lowerdir={base}/missing",), target="")],
                  t1)
    assert not is_mountpoint(t1)


def test_busy_unmount_raises_and_lazy_detaches(base):
    src, target = _dirs(base, "s", "t")
    mount_all([Mount("bind", src, ("rbind",))], target)
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        cwd = os.getcwd()
        os.chdir(target)  # a busy mount point
        try:
            with pytest.raises(OSError, match="unmount"):
                unmount(target)
        finally:
            os.chdir(cwd)
        unmount(target, lazy=True)
        assert not is_mountpoint(target)
    finally:
        os.close(fd)


def test_detach_frees_the_mount_point_and_tears_down_later(base):
    lower, upper, work, target = _dirs(base, "l", "u", "w", "t")
    mount_all([Mount("overlay", "overlay", (f"lowerdir={lower}", f"upperdir={upper}",
                                            f"workdir={work}"))], target)
    mount_all([Mount("bind", lower, ("rbind",))], target)  # two stacked: both go
    with open(os.path.join(upper, "kept"), "w") as f:
        f.write("x")
    m.detach(target)
    assert not is_mountpoint(target) and os.listdir(target) == []
    assert m.wait_detached(10)
    assert os.listdir(upper) == ["kept"]
    m.detach(target)  # nothing mounted: no error
    m.detach(str(base / "missing"))


def test_failed_propagation_change_undoes_the_mount(base, monkeypatch):
    src, target = _dirs(base, "src", "t")
    real = m._syscalls()

    class PropagationFails:
        def mount(self, source, dest, fstype, flags, data=None):
            if flags & m.MS_PRIVATE:
                raise OSError(22, "Invalid argument")
            return real.mount(source, dest, fstype, flags, data)

        def umount2(self, dest, flags):
            return real.umount2(dest, flags)

    monkeypatch.setattr(m, "_syscalls", PropagationFails)
    with pytest.raises(OSError, match="bind .*on .*t"):
        mount_all([Mount("bind", src, ("rbind", "ro", "rprivate"))], target)
    assert not is_mountpoint(target)
