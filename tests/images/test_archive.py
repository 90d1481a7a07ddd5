"""save/load (Docker archive and OCI layout), import, export and commit."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import uuid

import pytest
from dockyard.managerd.images import archive, commit
from dockyard.managerd.images import pull as pullmod
from dockyard.managerd.images.apply import ChunkReader
from dockyard.managerd.images.manifest import chain_ids
from dockyard.managerd.metadata.containers import Container, Runtime
from dockyard.managerd.snapshots.mount import mount_all, unmount
from helpers import images as im

from dockyard.errdefs import InvalidArgument, NotFound

NS = "test"
pytestmark = pytest.mark.timeout(120)


def repo() -> str:
    return f"a{uuid.uuid4().hex[:10]}"


def top_dir(svc, name):
    info = svc.inspect(NS, name)
    return svc.snapshots.path(NS, svc.snapshotter, chain_ids(info["RootFS"]["Layers"])[-1])


def load_bytes(svc, data: bytes):
    return archive.load(svc, NS, ChunkReader([data[i:i + 65536]
                                              for i in range(0, len(data), 65536)]))


@pytest.fixture
def pulled(svc, registry):
    img = im.busybox_image([im.tar_layer([im.file("etc/id", "pulled")])], Cmd=["cat", "/etc/id"])
    name = repo()
    im.push(registry, name, "v1", img)
    ref = f"{registry.host}/{name}:v1"
    pullmod.pull(svc, NS, ref)
    return img, ref


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_save_load_round_trip(svc, pulled, new_service, tmp_path, fmt):
    img, ref = pulled
    data = b"".join(archive.save(svc, NS, [ref], fmt))
    path = tmp_path / "save.tar"
    path.write_bytes(data)
    names = tarfile.open(path).getnames()
    assert "oci-layout" in names and "index.json" in names
    assert ("manifest.json" in names) == (fmt == "docker")
    # a real peer reads it: skopeo
    transport = "docker-archive" if fmt == "docker" else "oci-archive"
    out = subprocess.run(["skopeo", "inspect", "--config", f"{transport}:{path}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["config"]["Cmd"] == ["cat", "/etc/id"]
    other = new_service()
    res = load_bytes(other, data)
    assert res.names == [ref]
    info = other.inspect(NS, ref)
    assert info["Id"] == img.id
    assert info["RepoTags"] == [ref]
    assert info["RepoDigests"] == []  # loaded, not pulled
    assert open(os.path.join(top_dir(other, ref), "etc/id")).read() == "pulled"
    # the manifest bytes (and so the digest) survive the round trip
    assert other.content_exists(NS, img.digest)


def test_load_legacy_docker_archive(svc):
    img = im.busybox_image([im.tar_layer([im.file("legacy", "yes")])], Env=["A=b"])
    data = im.docker_archive(img, ["legacy/app:1", "second:2"])
    res = load_bytes(svc, data)
    assert sorted(res.names) == ["docker.io/legacy/app:1", "docker.io/library/second:2"]
    info = svc.inspect(NS, "legacy/app:1")
    assert info["Id"] == img.id and sorted(info["RepoTags"]) == ["legacy/app:1", "second:2"]
    assert info["Config"]["Env"] == ["A=b"]
    assert open(os.path.join(top_dir(svc, "second:2"), "legacy")).read() == "yes"
    # save by ID writes every tag
    data2 = b"".join(archive.save(svc, NS, [img.id[7:19]]))
    manifest = json.loads(tarfile.open(fileobj=io.BytesIO(data2)).extractfile(
        "manifest.json").read())
    assert sorted(manifest[0]["RepoTags"]) == ["legacy/app:1", "second:2"]


def test_load_oci_layout_untagged_and_named(svc):
    img = im.busybox_image(Cmd=["true"])
    res = load_bytes(svc, im.oci_archive(img))
    assert res.names == [] and res.ids == [img.id]
    assert svc.inspect(NS, img.id)["RepoTags"] == []
    img2 = im.busybox_image(Cmd=["false"])
    res = load_bytes(svc, im.oci_archive(img2, "example.com/x/y:z"))
    assert res.names == ["example.com/x/y:z"]


def test_load_refuses_bad_archives(svc):
    with pytest.raises(InvalidArgument, match="neither manifest.json nor index.json"):
        load_bytes(svc, im.tar_layer([im.file("hello", "x")]))
    with pytest.raises(InvalidArgument):
        load_bytes(svc, b"not a tar at all" * 100)
    # a blob whose bytes do not match its name
    img = im.busybox_image()
    data = im.oci_archive(img)
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=buf, mode="w") as dst:
        for ti in src:
            body = src.extractfile(ti).read()
            if ti.name.endswith(img.config.digest[7:]):
                body = body.replace(b"amd64", b"arm64")
            dst.addfile(ti, io.BytesIO(body))
    with pytest.raises(InvalidArgument, match="does not match"):
        load_bytes(svc, buf.getvalue())
    # wrong diff_ids in a legacy archive
    bad = im.make_image([im.busybox_tar()], diff_ids=["sha256:" + "1" * 64])
    with pytest.raises(InvalidArgument, match="diff_id"):
        load_bytes(svc, im.docker_archive(bad, ["bad:1"]))
    assert svc.images.list(NS) == []
    assert os.listdir(svc.content.store.blobs) == []
    assert svc.snapshots.list(NS, svc.snapshotter) == []


def test_import_rootfs(svc, tmp_path):
    for compression in ("none", "gzip"):
        data = im.compress(im.busybox_tar(), compression)
        img_id, name = commit.import_rootfs(
            svc, NS, io.BytesIO(data), reference=f"imported:{compression}",
            changes=["CMD [\"sh\", \"-c\", \"echo hi\"]", "ENV A=1 B=2", "WORKDIR /tmp",
                     "EXPOSE 80", "LABEL k=v"], message="from a test")
        info = svc.inspect(NS, name)
        assert info["Id"] == img_id
        assert info["Config"] == {"Cmd": ["sh", "-c", "echo hi"], "Env": ["A=1", "B=2"],
                                  "WorkingDir": "/tmp", "ExposedPorts": {"80/tcp": {}},
                                  "Labels": {"k": "v"}}
        assert info["RootFS"]["Layers"] == [im.sha256(im.busybox_tar())]
        assert svc.history(NS, name)[0]["Comment"] == "from a test"
        assert os.access(os.path.join(top_dir(svc, name), "bin/busybox"), os.X_OK)
    with pytest.raises(InvalidArgument, match="unsupported instruction"):
        commit.import_rootfs(svc, NS, io.BytesIO(im.busybox_tar()), changes=["RUN x"])


def make_container(svc, image_ref: str):
    info = svc.inspect(NS, image_ref)
    key = f"c-{uuid.uuid4().hex}"
    cid = uuid.uuid4().hex
    svc.snapshots.prepare(NS, svc.snapshotter, key, chain_ids(info["RootFS"]["Layers"])[-1])
    svc.ctx.containers.create(NS, Container(cid, Runtime("runc"), b"{}", image=image_ref,
                                            snapshotter=svc.snapshotter, snapshot_key=key))
    return cid, key


@pytest.mark.privileged
def test_commit_and_export(svc, pulled, tmp_path):
    _img, ref = pulled
    cid, key = make_container(svc, ref)
    root = tmp_path / "mnt"
    root.mkdir()
    mount_all(svc.snapshots.mounts(NS, svc.snapshotter, key), str(root))
    try:
        (root / "new.txt").write_text("new")
        os.unlink(root / "etc/id")  # a whiteout in the upper dir
        (root / "home/user").mkdir(parents=True)
        os.rmdir(root / "var")
        (root / "var").mkdir()  # a removed then recreated dir: opaque
        (root / "var/x").write_text("x")
    finally:
        unmount(str(root))
    # export: the merged filesystem
    data = b"".join(commit.export_container(svc, NS, cid))
    names = set(tarfile.open(fileobj=io.BytesIO(data)).getnames())
    assert {"new.txt", "bin/busybox", "home/user"} <= names
    assert "etc/id" not in names and "etc/passwd" in names
    # commit: a new image on top
    img_id, name = commit.commit_container(svc, NS, cid, reference="committed:1",
                                           author="me", comment="c1", changes=["USER nobody"])
    info = svc.inspect(NS, "committed:1")
    assert info["Id"] == img_id and info["Author"] == "me"
    assert info["Config"]["User"] == "nobody" and info["Config"]["Cmd"] == ["cat", "/etc/id"]
    assert len(info["RootFS"]["Layers"]) == 3
    top = top_dir(svc, "committed:1")
    assert open(os.path.join(top, "new.txt")).read() == "new"
    st = os.lstat(os.path.join(top, "etc/id"))
    assert os.major(st.st_rdev) == 0 and (st.st_mode & 0o170000) == 0o020000  # whiteout
    assert os.getxattr(os.path.join(top, "var"), "trusted.overlay.opaque") == b"y"
    assert svc.history(NS, "committed:1")[0]["Comment"] == "c1"
    with pytest.raises(NotFound, match="No such container"):
        commit.commit_container(svc, NS, "nope")


def test_commit_native_snapshotter(native_svc, registry):
    svc = native_svc
    img = im.busybox_image([im.tar_layer([im.file("etc/id", "x"), im.dir("gone"),
                                          im.file("gone/f", "f")])])
    name = repo()
    im.push(registry, name, "v1", img)
    ref = f"{registry.host}/{name}:v1"
    pullmod.pull(svc, NS, ref)
    cid, key = make_container(svc, ref)
    root = svc.snapshots.path(NS, "native", key)  # a full copy: change it in place
    with open(os.path.join(root, "added"), "w") as f:
        f.write("added")
    os.unlink(os.path.join(root, "etc/id"))
    os.unlink(os.path.join(root, "gone/f"))
    os.rmdir(os.path.join(root, "gone"))
    commit.commit_container(svc, NS, cid, reference="native:1")
    info = svc.inspect(NS, "native:1")
    layer = chain_ids(info["RootFS"]["Layers"])[-1]
    top = svc.snapshots.path(NS, "native", layer)
    assert open(os.path.join(top, "added")).read() == "added"
    assert not os.path.exists(os.path.join(top, "etc/id"))
    assert not os.path.exists(os.path.join(top, "gone"))
    assert os.path.exists(os.path.join(top, "bin/busybox"))
    # the diff holds only the changes
    diff = svc.content.read_all(NS, svc.resolve(NS, "native:1").layers[-1].digest)
    names = tarfile.open(fileobj=io.BytesIO(diff)).getnames()
    assert sorted(names) == [".wh.gone", "added", "etc/.wh.id"]
