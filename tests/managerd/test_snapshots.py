"""Snapshots through gRPC with real overlayfs/bind mounts: layers shared, usage, removal rules."""

from __future__ import annotations

import os
import time

import pytest
from dockyard.managerd.snapshots.mount import Mount, is_mountpoint, mount_all, unmount
from dockyard.protos.services.snapshots.v1 import snapshots_pb2 as pb

from dockyard import errdefs

pytestmark = [pytest.mark.timeout(60), pytest.mark.privileged]


@pytest.fixture
def mounter(tmp_path):
    """mount(mounts) -> a mounted dir; everything is unmounted at the end, even on failure."""
    targets = []

    def mount(mounts) -> str:
        target = tmp_path / f"mnt{len(targets)}"
        target.mkdir()
        targets.append(str(target))
        mount_all([Mount(m.type, m.source, tuple(m.options), m.target) for m in mounts],
                  str(target))
        return str(target)

    yield mount
    for t in reversed(targets):
        unmount(t)
        assert not is_mountpoint(t)


def _mounts(c, **kw):
    return c.snapshots.Prepare(pb.PrepareSnapshotRequest(**kw), timeout=10).mounts


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_layers_prepare_commit_mount(client, mounter, snapshotter):
    s = snapshotter
    # layer 1: a file
    root = mounter(_mounts(client, snapshotter=s, key="l1-work"))
    with open(os.path.join(root, "a.txt"), "w") as f:
        f.write("layer1")
    os.makedirs(os.path.join(root, "meta"))
    os.symlink("../a.txt", os.path.join(root, "meta", "link"))
    os.link(os.path.join(root, "a.txt"), os.path.join(root, "meta", "hard"))
    os.chown(os.path.join(root, "meta"), 1234, 5678)
    os.chmod(os.path.join(root, "meta"), 0o1750)
    client.snapshots.Commit(pb.CommitSnapshotRequest(snapshotter=s, name="layer1",
                                                     key="l1-work"), timeout=10)
    # layer 2 on top: another file, a deletion
    root2 = mounter(_mounts(client, snapshotter=s, key="l2-work", parent="layer1"))
    assert open(os.path.join(root2, "a.txt")).read() == "layer1"
    with open(os.path.join(root2, "b.txt"), "w") as f:
        f.write("layer2")
    client.snapshots.Commit(pb.CommitSnapshotRequest(snapshotter=s, name="layer2",
                                                     key="l2-work"), timeout=10)
    # two containers share both layers; writes stay private
    c1 = mounter(_mounts(client, snapshotter=s, key="ctr1", parent="layer2"))
    c2 = mounter(_mounts(client, snapshotter=s, key="ctr2", parent="layer2"))
    os.unlink(os.path.join(c1, "a.txt"))
    with open(os.path.join(c1, "c.txt"), "w") as f:
        f.write("x" * 10000)
    assert sorted(os.listdir(c1)) == ["b.txt", "c.txt", "meta"]
    assert sorted(os.listdir(c2)) == ["a.txt", "b.txt", "meta"]
    # owners, modes, links survive the layering (native copies with cp -a)
    st = os.lstat(os.path.join(c2, "meta"))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 5678, 0o1750)
    assert os.readlink(os.path.join(c2, "meta", "link")) == "../a.txt"
    assert os.stat(os.path.join(c2, "meta", "hard")).st_ino == os.stat(
        os.path.join(c2, "a.txt")).st_ino
    usage = client.snapshots.Usage(pb.UsageRequest(snapshotter=s, key="ctr1"), timeout=10)
    assert usage.size >= 10000 and usage.inodes >= 2
    # a read-only view of the image
    view = mounter(client.snapshots.View(pb.ViewSnapshotRequest(
        snapshotter=s, key="v1", parent="layer2"), timeout=10).mounts)
    assert sorted(os.listdir(view)) == ["a.txt", "b.txt", "meta"]
    with pytest.raises(OSError):
        open(os.path.join(view, "new"), "w")
    info = client.snapshots.Stat(pb.StatSnapshotRequest(snapshotter=s, key="ctr1"), timeout=5)
    assert (info.info.kind, info.info.parent) == (pb.ACTIVE, "layer2")
    names = {i.name: i.kind for r in client.snapshots.List(
        pb.ListSnapshotsRequest(snapshotter=s), timeout=5) for i in r.info}
    assert names == {"layer1": pb.COMMITTED, "layer2": pb.COMMITTED, "ctr1": pb.ACTIVE,
                     "ctr2": pb.ACTIVE, "v1": pb.VIEW}
    committed = [i.name for r in client.snapshots.List(pb.ListSnapshotsRequest(
        snapshotter=s, filters=["kind==committed"]), timeout=5) for i in r.info]
    assert sorted(committed) == ["layer1", "layer2"]


def test_overlay_mounts_share_parent_dirs(client):
    _mounts(client, key="base-w")
    client.snapshots.Commit(pb.CommitSnapshotRequest(name="base", key="base-w"), timeout=5)
    m1 = _mounts(client, key="s1", parent="base")[0]
    m2 = _mounts(client, key="s2", parent="base")[0]
    assert m1.type == "overlay"
    lower1 = [o for o in m1.options if o.startswith("lowerdir=")]
    lower2 = [o for o in m2.options if o.startswith("lowerdir=")]
    assert lower1 == lower2  # the committed layer is shared, not copied
    again = client.snapshots.Mounts(pb.MountsRequest(key="s1"), timeout=5).mounts
    assert list(again) == [m1]


def test_remove_rules(client, managerd):
    _mounts(client, key="p-w")
    client.snapshots.Commit(pb.CommitSnapshotRequest(name="p", key="p-w"), timeout=5)
    _mounts(client, key="child", parent="p")
    with pytest.raises(errdefs.FailedPrecondition, match="children"):
        client.snapshots.Remove(pb.RemoveSnapshotRequest(key="p"), timeout=5)
    client.snapshots.Remove(pb.RemoveSnapshotRequest(key="child"), timeout=5)
    client.snapshots.Remove(pb.RemoveSnapshotRequest(key="p"), timeout=5)
    with pytest.raises(errdefs.NotFound, match="snapshot p"):
        client.snapshots.Stat(pb.StatSnapshotRequest(key="p"), timeout=5)
    # the directories are renamed away at once and emptied by a background thread
    deadline = time.monotonic() + 10
    while True:
        hidden = [n for n in os.listdir(managerd.root / "snapshots" / "overlayfs")
                  if n.startswith(".")]
        if not hidden or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert hidden == []


def test_errors(client):
    _mounts(client, key="dup")
    with pytest.raises(errdefs.AlreadyExists, match="dup"):
        _mounts(client, key="dup")
    with pytest.raises(errdefs.NotFound, match="nope"):
        _mounts(client, key="k", parent="nope")
    with pytest.raises(errdefs.FailedPrecondition, match="not committed"):
        _mounts(client, key="k", parent="dup")
    with pytest.raises(errdefs.InvalidArgument, match="snapshotter"):
        _mounts(client, key="k", snapshotter="zfs")
    with pytest.raises(errdefs.InvalidArgument, match="key"):
        _mounts(client, key="")
    client.snapshots.View(pb.ViewSnapshotRequest(key="view-only"), timeout=5)
    with pytest.raises(errdefs.FailedPrecondition, match="view"):
        client.snapshots.Commit(pb.CommitSnapshotRequest(name="n", key="view-only"), timeout=5)


def test_namespaces_isolate_snapshots(managerd, ns):
    with managerd.client(ns) as a, managerd.client(ns + "-other") as b:
        _mounts(a, key="mine")
        with pytest.raises(errdefs.NotFound):
            b.snapshots.Stat(pb.StatSnapshotRequest(key="mine"), timeout=5)
        _mounts(b, key="mine")  # same key, other namespace: fine


def test_update_labels(client):
    _mounts(client, key="lab", labels={"a": "1"})
    info = client.snapshots.Update(pb.UpdateSnapshotRequest(
        info=pb.Info(name="lab", labels={"b": "2"}), update_mask={"paths": ["labels.b"]}),
        timeout=5).info
    assert info.labels == {"a": "1", "b": "2"}


def test_many_layers_overflowing_a_page_of_options(client, mounter):
    parent = ""
    for i in range(80):  # 80 absolute lowerdirs are longer than mount(2)'s page
        client.snapshots.Prepare(pb.PrepareSnapshotRequest(key=f"w{i}", parent=parent),
                                 timeout=5)
        client.snapshots.Commit(pb.CommitSnapshotRequest(name=f"layer{i}", key=f"w{i}"),
                                timeout=5)
        parent = f"layer{i}"
    mounts = _mounts(client, key="top", parent=parent)
    assert len(",".join(mounts[0].options)) > 4096
    root = mounter(mounts)
    with open(os.path.join(root, "f"), "w") as f:
        f.write("ok")
    assert os.listdir(root) == ["f"]


def test_default_snapshotter_flag(managerd_factory, client, ns):
    # the shared daemon runs with --snapshotter auto: overlayfs works here
    assert _mounts(client, key="auto")[0].source.split("/snapshots/")[1].startswith("overlayfs/")
    m = managerd_factory(["--snapshotter", "native"])
    with m.client(ns) as c:
        mounts = _mounts(c, key="k")
        assert mounts[0].type == "bind" and "/snapshots/native/" in mounts[0].source
        assert c.snapshots.Stat(pb.StatSnapshotRequest(snapshotter="native", key="k"),
                                timeout=5).info.name == "k"
