"""Pulls from a real registry on loopback into managerd's stores."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
from dockyard.managerd.images import pull as pullmod
from dockyard.managerd.images.auth import Credentials
from dockyard.managerd.images.registry import Client, RegistryOptions
from dockyard.managerd.snapshots.mount import mount_all, unmount
from helpers import images as im
from helpers.registry import Proxy

from dockyard.errdefs import InvalidArgument, NotFound, PermissionDenied

NS = "test"
pytestmark = pytest.mark.timeout(120)


def repo() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def nothing_left(svc) -> None:
    """No image record, blob, or snapshot survives a failed pull (gc ran)."""
    assert svc.images.list(NS) == []
    assert os.listdir(svc.content.store.blobs) == []
    assert svc.snapshots.list(NS, svc.snapshotter) == []
    assert os.listdir(svc.staging_root) == []


def test_pull_busybox(svc, registry):
    img = im.busybox_image()
    im.push(registry, "busybox", "latest", img)
    events = []
    res = pullmod.pull(svc, NS, f"{registry.host}/busybox:latest", progress=events.append)
    assert res.name == f"{registry.host}/busybox:latest"
    assert res.config.digest == img.id
    statuses = [e.status for e in events]
    for s in ("resolving", "resolved", "waiting", "downloading", "verifying",
              "download complete", "extracting", "pull complete"):
        assert s in statuses
    info = svc.inspect(NS, f"{registry.host}/busybox")
    assert info["Id"] == img.id
    assert info["RepoTags"] == [f"{registry.host}/busybox:latest"]
    assert info["RepoDigests"] == [f"{registry.host}/busybox@{img.digest}"]
    assert info["Config"]["Cmd"] == ["sh"]
    assert info["RootFS"]["Layers"] == img.diff_ids
    assert info["Os"] == "linux" and info["Architecture"] == "amd64"
    assert info["Size"] > 1_000_000
    path = svc.snapshots.path(NS, svc.snapshotter, res.layers[0])
    assert os.access(os.path.join(path, "bin/busybox"), os.X_OK)
    # again: nothing fetched, up to date
    events.clear()
    res2 = pullmod.pull(svc, NS, f"{registry.host}/busybox:latest", progress=events.append)
    assert res2.up_to_date
    assert [e.status for e in events if e.id == img.layers[0].digest[7:19]] == ["already exists"]
    # by digest
    res3 = pullmod.pull(svc, NS, f"{registry.host}/busybox@{img.digest}")
    assert res3.name == f"{registry.host}/busybox@{img.digest}"
    res4 = pullmod.pull(svc, NS, f"{registry.host}/busybox:whatever@{img.digest}")
    assert res4.name == f"{registry.host}/busybox@{img.digest}" and res4.up_to_date


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_pull_with_auth(svc, mode, request, tmp_path):
    reg = request.getfixturevalue(f"registry_{mode}")
    img = im.busybox_image(Cmd=["echo", mode])
    name = repo()
    im.push(reg, name, "v1", img)
    ref = f"{reg.host}/{name}:v1"
    if mode == "token":  # token servers give anonymous pulls a token with no access here
        reg.token_server.anonymous_pull = False
    try:
        with pytest.raises(PermissionDenied):
            pullmod.pull(svc, NS, ref)
        with pytest.raises(PermissionDenied):
            pullmod.pull(svc, NS, ref, credentials=Credentials(reg.auth[0], "wrong"))
        # credentials from a Docker config.json
        cfg = tmp_path / "config.json"
        auth = base64.b64encode(":".join(reg.auth).encode()).decode()
        cfg.write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
        svc.registry = Client(RegistryOptions(config_path=str(cfg)))
        res = pullmod.pull(svc, NS, ref)
        assert res.config.digest == img.id
        assert svc.inspect(NS, ref)["Config"]["Cmd"] == ["echo", mode]
        if mode == "token":
            scopes = [s for s, user in reg.token_server.requests if user == reg.auth[0]]
            assert [f"repository:{name}:pull"] in scopes
    finally:
        if mode == "token":
            reg.token_server.anonymous_pull = True
    nothing_left_after = svc.images.list(NS)
    assert len(nothing_left_after) == 1


def mounted(svc, tmp_path, image_ref):
    """Mount an image's rootfs (a view on its top layer); returns (path, cleanup)."""
    info = svc.inspect(NS, image_ref)
    from dockyard.managerd.images.manifest import chain_ids
    top = chain_ids(info["RootFS"]["Layers"])[-1]
    key = f"view-{uuid.uuid4().hex}"
    lease = svc.leases.create(NS).id  # keeps the view from the collector
    mounts = svc.snapshots.view(NS, svc.snapshotter, key, top, lease=lease)
    target = tmp_path / key
    target.mkdir()
    mount_all(mounts, str(target))

    def cleanup():
        unmount(str(target))
        svc.snapshots.remove(NS, svc.snapshotter, key)
        svc.leases.delete(NS, lease)
    return target, cleanup


def whiteout_image(**kw):
    return im.busybox_image([
        im.tar_layer([im.dir("data"), im.file("data/a", "a"), im.file("data/b", "b"),
                      im.dir("keep"), im.file("keep/x", "x"), im.file("etc/motd", "hi"),
                      im.hardlink("data/a-link", "data/a")]),
        im.tar_layer([im.whiteout("data/b"), im.opaque("keep"), im.file("keep/y", "y"),
                      im.whiteout("etc/motd"), im.file("data/c", "c", mode=0o600, uid=42)]),
    ], **kw)


@pytest.mark.privileged
@pytest.mark.parametrize("compression,fmt", [("gzip", "oci"), ("zstd", "oci"),
                                              ("none", "docker"), ("gzip", "docker")])
def test_multi_layer_whiteouts_mounted(svc, registry, tmp_path, compression, fmt):
    img = whiteout_image(compression=compression, fmt=fmt)
    name = repo()
    im.push(registry, name, "latest", img)
    res = pullmod.pull(svc, NS, f"{registry.host}/{name}")
    assert len(res.layers) == 3
    root, cleanup = mounted(svc, tmp_path, f"{registry.host}/{name}")
    try:
        assert sorted(os.listdir(root / "data")) == ["a", "a-link", "c"]
        assert os.listdir(root / "keep") == ["y"]
        assert not (root / "etc/motd").exists()
        assert (root / "etc/passwd").exists()
        st = os.stat(root / "data/c")
        assert (st.st_mode & 0o777, st.st_uid) == (0o600, 42)
        assert os.stat(root / "data/a-link").st_ino == os.stat(root / "data/a").st_ino
    finally:
        cleanup()


def test_hardlink_into_a_lower_layer(svc, registry):
    img = im.busybox_image([im.tar_layer([im.file("data/orig", "shared")]),
                            im.tar_layer([im.hardlink("data/link", "data/orig")])])
    name = repo()
    im.push(registry, name, "latest", img)
    res = pullmod.pull(svc, NS, f"{registry.host}/{name}")
    top = svc.snapshots.path(NS, svc.snapshotter, res.layers[-1])
    assert open(os.path.join(top, "data/link")).read() == "shared"
    assert os.lstat(os.path.join(top, "data/link")).st_ino == \
        os.lstat(os.path.join(top, "data/orig")).st_ino
    assert os.listdir(svc.staging_root) == []


def test_native_snapshotter_whiteouts(native_svc, registry):
    svc = native_svc
    img = whiteout_image()
    name = repo()
    im.push(registry, name, "latest", img)
    res = pullmod.pull(svc, NS, f"{registry.host}/{name}")
    top = svc.snapshots.path(NS, "native", res.layers[-1])
    assert sorted(os.listdir(os.path.join(top, "data"))) == ["a", "a-link", "c"]
    assert os.listdir(os.path.join(top, "keep")) == ["y"]
    assert not os.path.exists(os.path.join(top, "etc/motd"))


def test_multi_platform(svc, registry):
    amd = im.busybox_image([im.tar_layer([im.file("arch", "amd64")])], arch="amd64")
    arm = im.busybox_image([im.tar_layer([im.file("arch", "arm64")])], arch="arm64",
                           variant="v8")
    index = im.multi_platform([amd, arm])
    name = repo()
    im.push(registry, name, "multi", index)
    ref = f"{registry.host}/{name}:multi"
    res = pullmod.pull(svc, NS, ref, platform="linux/arm64")
    assert res.config.digest == arm.id
    assert res.target.digest == index.digest
    res = pullmod.pull(svc, NS, ref)  # this host: amd64
    assert res.config.digest == amd.id
    assert svc.inspect(NS, ref)["Architecture"] == "amd64"
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x"):
        pullmod.pull(svc, NS, ref, platform="linux/s390x")


def test_unknown_tag_and_repo(svc, registry):
    with pytest.raises(NotFound, match="MANIFEST_UNKNOWN|NAME_UNKNOWN|not found"):
        pullmod.pull(svc, NS, f"{registry.host}/{repo()}:nope")


def test_corrupt_blob_refused_and_nothing_left(svc, registry):
    img = im.busybox_image([im.tar_layer([im.file("f", os.urandom(50_000))])])
    name = repo()
    im.push(registry, name, "latest", img)
    path = registry.blob_path(img.layers[1].digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    try:
        with pytest.raises(InvalidArgument, match=img.layers[1].digest):
            pullmod.pull(svc, NS, f"{registry.host}/{name}")
        nothing_left(svc)
    finally:
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


def test_wrong_diff_id_refused(svc, registry):
    layer = im.tar_layer([im.file("f", "x")])
    img = im.make_image([im.busybox_tar(), layer],
                        diff_ids=[im.sha256(im.busybox_tar()), "sha256:" + "0" * 64])
    name = repo()
    im.push(registry, name, "latest", img)
    with pytest.raises(InvalidArgument, match=f"layer {img.layers[1].digest}.*diff_id"):
        pullmod.pull(svc, NS, f"{registry.host}/{name}")
    nothing_left(svc)


@pytest.mark.parametrize("entries", [
    [im.file("../escape", "x")],
    [im.symlink("up", "../../../.."), im.file("up/escape", "x")],
    [im.hardlink("hl", "../../../etc/passwd")],
])
def test_escaping_layer_refused(svc, registry, entries, tmp_path):
    img = im.busybox_image([im.tar_layer(entries)])
    name = repo()
    im.push(registry, name, "latest", img)
    with pytest.raises(InvalidArgument, match=f"layer {img.layers[1].digest}: entry"):
        pullmod.pull(svc, NS, f"{registry.host}/{name}")
    nothing_left(svc)
    assert not os.path.exists(os.path.join(svc.snapshots.root, "..", "escape"))


def test_resume_after_broken_download(svc, registry):
    big = os.urandom(3_000_000)
    img = im.busybox_image([im.tar_layer([im.file("big", big)])])
    name = repo()
    im.push(registry, name, "latest", img)
    proxy = Proxy(registry.url, cut_after=2_000_000, cuts=1)
    try:
        pullmod.pull(svc, NS, f"{proxy.host}/{name}")
    finally:
        proxy.close()
    ranges = proxy.blob_gets(img.layers[1].digest)
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    top = svc.snapshots.path(NS, svc.snapshotter, pullmod.chain_ids(img.diff_ids)[-1])
    assert open(os.path.join(top, "big"), "rb").read() == big


def test_blob_redirects_followed(svc, registry):
    img = im.busybox_image(Cmd=["redirected"])
    name = repo()
    im.push(registry, name, "latest", img)
    proxy = Proxy(registry.url, redirect_blobs=True)
    try:
        res = pullmod.pull(svc, NS, f"{proxy.host}/{name}")
    finally:
        proxy.close()
    assert res.config.digest == img.id
    assert proxy.blob_gets(img.layers[0].digest)


def test_concurrent_pulls_fetch_once(svc, registry):
    img = im.busybox_image([im.tar_layer([im.file("big", os.urandom(2_000_000))])])
    name = repo()
    im.push(registry, name, "latest", img)
    proxy = Proxy(registry.url, delay=0.01)
    errors = []

    def run(tag_ref):
        try:
            pullmod.pull(svc, NS, tag_ref)
        except Exception as err:  # noqa: BLE001
            errors.append(err)
    try:
        threads = [threading.Thread(target=run, args=(f"{proxy.host}/{name}",)),
                   threading.Thread(target=run, args=(f"{proxy.host}/{name}@{img.digest}",))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        proxy.close()
    assert not errors
    assert len(proxy.blob_gets(img.layers[1].digest)) == 1
    assert len(svc.images.list(NS)) == 2


def test_concurrent_pulls_in_two_namespaces_fetch_once(svc, registry):
    img = im.busybox_image([im.tar_layer([im.file("big", os.urandom(1_500_000))])])
    name = repo()
    im.push(registry, name, "latest", img)
    proxy = Proxy(registry.url, delay=0.01)
    errors = []

    def run(ns):
        try:
            pullmod.pull(svc, ns, f"{proxy.host}/{name}")
        except Exception as err:  # noqa: BLE001
            errors.append(err)
    try:
        threads = [threading.Thread(target=run, args=(ns,)) for ns in ("ns-a", "ns-b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        proxy.close()
    assert not errors
    assert len(proxy.blob_gets(img.layers[1].digest)) == 1
    for ns in ("ns-a", "ns-b"):
        assert svc.content_exists(ns, img.layers[1].digest)
        assert svc.inspect(ns, f"{proxy.host}/{name}")["Id"] == img.id


KILL_CHILD = r"""
import sys
sys.path.insert(0, {tests!r})
from dockyard.managerd.config import Config
from dockyard.managerd import services
from dockyard.managerd.images.service import ImageService
from dockyard.managerd.images import pull
ctx = services.build_context(Config(root={root!r}, state={state!r}))
svc = ImageService.from_context(ctx)
pull.pull(svc, "test", {ref!r})
"""


def test_pull_killed_halfway_then_completed(tmp_path, registry):
    from dockyard.managerd import services
    from dockyard.managerd.config import Config
    from dockyard.managerd.images.service import ImageService

    def make_service(root):
        ctx = services.build_context(Config(root=str(root / "root"), state=str(root / "state")))
        return ctx, ImageService.from_context(ctx)
    big = os.urandom(4_000_000)
    img = im.busybox_image([im.tar_layer([im.file("big", big)])])
    name = repo()
    im.push(registry, name, "latest", img)
    proxy = Proxy(registry.url, delay=0.02)  # ~3 MB/s
    try:
        code = KILL_CHILD.format(tests=str(os.path.dirname(os.path.dirname(__file__))),
                                 root=str(tmp_path / "root"), state=str(tmp_path / "state"),
                                 ref=f"{proxy.host}/{name}")
        child = subprocess.Popen([sys.executable, "-c", code])
        ingest = tmp_path / "root/content/ingest"
        deadline = time.monotonic() + 30
        big_digest = img.layers[1].digest

        def big_ingest_size() -> int:
            for d, _, _files in os.walk(ingest):
                try:
                    meta = json.loads(open(os.path.join(d, "meta.json")).read())
                    if meta.get("expected") == big_digest:
                        return os.path.getsize(os.path.join(d, "data"))
                except (OSError, ValueError):
                    continue
            return 0
        while time.monotonic() < deadline and big_ingest_size() < 500_000:
            time.sleep(0.05)
        child.kill()
        child.wait()
        proxy.delay = 0
        ctx, svc = make_service(tmp_path)
        try:
            res = pullmod.pull(svc, NS, f"{proxy.host}/{name}")
            assert res.config.digest == img.id
            ranges = proxy.blob_gets(img.layers[1].digest)
            assert ranges[-1] and ranges[-1] != "bytes=0-", ranges  # resumed, not restarted
            top = svc.snapshots.path(NS, svc.snapshotter, res.layers[-1])
            assert open(os.path.join(top, "big"), "rb").read() == big
            # the killed pull's half-made snapshot is gone once its lease is collected
            keys = [s.name for s in svc.snapshots.list(NS, svc.snapshotter)]
            assert all(k.startswith("sha256:") for k in keys) or any(
                k.startswith("extract-") for k in keys)
        finally:
            svc.close()
            ctx.gc.close()
            ctx.close()
    finally:
        proxy.close()
