"""Garbage collection: images keep their blobs and unpacked layer snapshots, containers
their rootfs, leases work in progress; everything else goes, on disk too."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from dockyard.managerd.gc import chain_ids
from dockyard.protos.services.containers.v1 import containers_pb2 as cpb
from dockyard.protos.services.content.v1 import content_pb2 as ctpb
from dockyard.protos.services.gc.v1 import gc_pb2
from dockyard.protos.services.images.v1 import images_pb2 as ipb
from dockyard.protos.services.leases.v1 import leases_pb2 as lpb
from dockyard.protos.services.snapshots.v1 import snapshots_pb2 as spb
from dockyard.protos.types.descriptor_pb2 import Descriptor
from google.protobuf.timestamp_pb2 import Timestamp

from dockyard import errdefs

pytestmark = pytest.mark.timeout(60)


def _d(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def _has_blob(c, digest) -> bool:
    try:
        c.content.Info(ctpb.InfoRequest(digest=digest), timeout=5)
        return True
    except errdefs.NotFound:
        return False


def _snaps(c) -> set[str]:
    return {i.name for r in c.snapshots.List(spb.ListSnapshotsRequest(), timeout=5)
            for i in r.info}


def _image(c, tag: str) -> dict:
    """Blobs of a two-layer image (index -> manifest -> config + layers) and its snapshots."""
    layers = [f"layer-a-{tag}".encode(), f"layer-b-{tag}".encode()]
    diff_ids = [_d(b"diff" + x) for x in layers]
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": _d(config),
                                                           "size": len(config)},
                           "layers": [{"digest": _d(x), "size": len(x)} for x in layers]}).encode()
    index = json.dumps({"schemaVersion": 2,
                        "manifests": [{"digest": _d(manifest), "size": len(manifest)}]}).encode()
    blobs = [config, manifest, index, *layers]
    lease = c.leases.Create(lpb.CreateLeaseRequest(), timeout=5).lease.id
    lc = c.with_lease(lease)
    for b in blobs:
        lc.write_content(b)
    parent = ""
    chains = chain_ids(diff_ids)
    for chain in chains:
        lc.snapshots.Prepare(spb.PrepareSnapshotRequest(key=f"extract-{chain}", parent=parent),
                             timeout=5)
        lc.snapshots.Commit(spb.CommitSnapshotRequest(name=chain, key=f"extract-{chain}"),
                            timeout=5)
        parent = chain
    c.images.Create(ipb.CreateImageRequest(image=ipb.Image(name=tag, target=Descriptor(
        media_type="application/vnd.oci.image.index.v1+json", digest=_d(index),
        size=len(index)))), timeout=5)
    c.leases.Delete(lpb.DeleteLeaseRequest(id=lease, sync=True), timeout=10)
    return {"blobs": [_d(b) for b in blobs], "chains": chains}


def test_image_keeps_its_graph_until_deleted(client, managerd):
    img = _image(client, "img1")
    stray = client.write_content(b"stray blob")
    client.snapshots.Prepare(spb.PrepareSnapshotRequest(key="stray-snap"), timeout=5)
    res = client.gc.Collect(gc_pb2.CollectRequest(immediate=True), timeout=30)
    assert res.content_removed >= 1 and res.snapshots_removed >= 1
    assert all(_has_blob(client, d) for d in img["blobs"])
    assert not _has_blob(client, stray)
    assert _snaps(client) == set(img["chains"])
    # a container on top keeps its rootfs
    client.snapshots.Prepare(spb.PrepareSnapshotRequest(key="ctr-rootfs",
                                                        parent=img["chains"][-1]), timeout=5)
    client.containers.Create(cpb.CreateContainerRequest(container=cpb.Container(
        id="ctr", runtime=cpb.Runtime(name="runc"), spec=b"{}", snapshot_key="ctr-rootfs")),
        timeout=5)
    client.images.Delete(ipb.DeleteImageRequest(name="img1", sync=True), timeout=30)
    assert not any(_has_blob(client, d) for d in img["blobs"])
    assert _snaps(client) == {*img["chains"], "ctr-rootfs"}  # parents of a live snapshot stay
    for d in img["blobs"]:
        assert not (managerd.root / "content/blobs/sha256" / d[7:]).exists()
    client.containers.Delete(cpb.DeleteContainerRequest(id="ctr"), timeout=5)
    client.gc.Collect(gc_pb2.CollectRequest(immediate=True), timeout=30)
    assert _snaps(client) == set()


def test_shared_blob_survives_other_namespace_gc(managerd, ns):
    with managerd.client(ns) as a, managerd.client(ns + "-b") as b:
        img = _image(a, "shared")
        for d in img["blobs"]:  # b records the same blobs without an image
            with pytest.raises(errdefs.AlreadyExists):
                list(b.content.Write(iter([ctpb.WriteContentRequest(
                    action=ctpb.STAT, ref="x" + d, expected=d)]), timeout=5))
        b.gc.Collect(gc_pb2.CollectRequest(immediate=True), timeout=30)
        assert not any(_has_blob(b, d) for d in img["blobs"])
        assert all(a.read_content(d) for d in img["blobs"])


def test_lease_protects_until_deleted(client):
    lease = client.leases.Create(lpb.CreateLeaseRequest(id="work", labels={"why": "pull"}),
                                 timeout=5).lease
    assert lease.id == "work" and lease.created_at.seconds > 0
    lc = client.with_lease("work")
    digest = lc.write_content(b"in progress")
    lc.snapshots.Prepare(spb.PrepareSnapshotRequest(key="unpacking"), timeout=5)
    res = {(r.type, r.id) for r in client.leases.ListResources(
        lpb.ListResourcesRequest(id="work"), timeout=5).resources}
    assert ("content", digest) in res and ("snapshots/overlayfs", "unpacking") in res
    client.gc.Collect(gc_pb2.CollectRequest(immediate=True), timeout=30)
    assert _has_blob(client, digest) and _snaps(client) == {"unpacking"}
    assert [le.id for le in client.leases.List(lpb.ListLeasesRequest(
        filters=["labels.why==pull"]), timeout=5).leases] == ["work"]
    client.leases.Delete(lpb.DeleteLeaseRequest(id="work", sync=True), timeout=30)
    assert not _has_blob(client, digest)
    assert _snaps(client) == {"unpacking"}  # a fresh active snapshot has a grace period
    client.gc.Collect(gc_pb2.CollectRequest(immediate=True), timeout=30)
    assert _snaps(client) == set()
    with pytest.raises(errdefs.NotFound, match="lease work"):
        client.leases.Delete(lpb.DeleteLeaseRequest(id="work"), timeout=5)


def test_expired_lease_protects_nothing(client):
    past = Timestamp()
    past.FromNanoseconds(time.time_ns() - 10**9)
    client.leases.Create(lpb.CreateLeaseRequest(id="old", expires_at=past), timeout=5)
    digest = client.with_lease("old").write_content(b"expired work")
    res = client.gc.Collect(gc_pb2.CollectRequest(immediate=True), timeout=30)
    assert res.leases_removed >= 1
    assert not _has_blob(client, digest)


def test_lease_resource_api_and_errors(client):
    client.leases.Create(lpb.CreateLeaseRequest(id="l1"), timeout=5)
    with pytest.raises(errdefs.AlreadyExists, match="lease l1"):
        client.leases.Create(lpb.CreateLeaseRequest(id="l1"), timeout=5)
    digest = client.write_content(b"added later")
    client.leases.AddResource(lpb.AddResourceRequest(
        id="l1", resource=lpb.Resource(id=digest, type="content")), timeout=5)
    client.gc.Collect(gc_pb2.CollectRequest(immediate=True), timeout=30)
    assert _has_blob(client, digest)
    client.leases.DeleteResource(lpb.DeleteResourceRequest(
        id="l1", resource=lpb.Resource(id=digest, type="content")), timeout=5)
    client.gc.Collect(gc_pb2.CollectRequest(immediate=True), timeout=30)
    assert not _has_blob(client, digest)
    with pytest.raises(errdefs.InvalidArgument, match="type"):
        client.leases.AddResource(lpb.AddResourceRequest(
            id="l1", resource=lpb.Resource(id="x", type="bogus")), timeout=5)
    with pytest.raises(errdefs.NotFound, match="lease nope"):
        client.with_lease("nope").write_content(b"no such lease")


def test_gc_root_label(client):
    digest = client.write_content(b"pinned", labels={"dockyard.io/gc.root": "1"})
    ref = client.write_content(b"referenced",)
    client.content.Update(ctpb.UpdateRequest(info=ctpb.Info(
        digest=digest, labels={"dockyard.io/gc.ref.content.x": ref}),
        update_mask={"paths": ["labels.dockyard.io/gc.ref.content.x"]}), timeout=5)
    client.gc.Collect(gc_pb2.CollectRequest(immediate=True), timeout=30)
    assert _has_blob(client, digest) and _has_blob(client, ref)


def test_image_delete_collects_in_background(client):
    img = _image(client, "bg")
    client.images.Delete(ipb.DeleteImageRequest(name="bg"), timeout=10)
    deadline = time.monotonic() + 20
    while any(_has_blob(client, d) for d in img["blobs"]):
        assert time.monotonic() < deadline, "background collection did not run"
        time.sleep(0.1)
    assert _snaps(client) == set()  # committed layers have no grace period
