"""A cancelled pull stops: the HTTP client of `POST /images/create` going away, or
a cancelled Transfer.Pull gRPC call.

A big layer behind a slow proxy (tests/helpers/registry.py `Proxy`) keeps the
download going for seconds. After the cancel: the blob's ingest stops growing
(the download stopped), the pull's lease is gone, no image record, no
half-unpacked `extract-*` snapshot and no staging dir is left. The bytes
already downloaded stay as a resumable ingest (managerd/images/pull.py's
design): pulling again resumes with a Range request and completes.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
from helpers import images as im
from helpers.registry import Proxy

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(180)]

BIG = 24_000_000  # ~4 s through the proxy at 6.4 MB/s


@pytest.fixture
def slow(stack, registry):
    """(proxy, reference through it, image) of a fresh image with one big layer."""
    name = f"dy-cancel-{uuid.uuid4().hex[:8]}"
    img = im.busybox_image([im.tar_layer([im.file("big", os.urandom(BIG))])],
                           Labels={"dy": name})
    im.push(registry, name, "latest", img)
    proxy = Proxy(registry.url, delay=0.01)
    yield proxy, f"{proxy.host}/{name}:latest", img
    proxy.close()


def ingest_size(stack, digest: str) -> int:
    """Bytes in managerd's ingest of that blob (0 if none)."""
    for d, _, files in os.walk(stack.managerd.root / "content" / "ingest"):
        if "meta.json" in files:
            try:
                with open(os.path.join(d, "meta.json")) as f:
                    if json.load(f).get("expected") == digest:
                        return os.path.getsize(os.path.join(d, "data"))
            except (OSError, ValueError):
                continue
    return 0


def wait_downloading(stack, digest: str) -> None:
    deadline = time.monotonic() + 30
    while ingest_size(stack, digest) < 1_000_000:
        assert time.monotonic() < deadline, "the download did not start"
        time.sleep(0.05)


def assert_pull_stopped(stack, ref: str, digest: str) -> None:
    """The download stops, and nothing of the pull is left but the resumable ingest."""
    from dockyard.protos.services.images.v1 import images_pb2
    from dockyard.protos.services.leases.v1 import leases_pb2
    from dockyard.protos.services.snapshots.v1 import snapshots_pb2

    deadline = time.monotonic() + 15
    with stack.managerd.client("moby") as c:
        while True:
            leases = [lease for lease in c.leases.List(leases_pb2.ListLeasesRequest()).leases
                      if lease.labels.get("dockyard.images/pull") == ref]
            if not leases:
                break
            assert time.monotonic() < deadline, f"the pull's lease is still there: {leases}"
            time.sleep(0.1)
        size = ingest_size(stack, digest)
        time.sleep(1.0)
        assert ingest_size(stack, digest) == size, "the download goes on"
        assert 0 < size < BIG  # partial data kept for a resume
        names = [i.name for i in c.images.List(images_pb2.ListImagesRequest()).images]
        assert ref not in names
        snaps = [info.name for resp in c.snapshots.List(snapshots_pb2.ListSnapshotsRequest(
            snapshotter="overlayfs")) for info in resp.info]
        assert not [s for s in snaps if s.startswith("extract-")], snaps
    staging = stack.managerd.root / "images" / "staging"
    assert not staging.exists() or os.listdir(staging) == []


def assert_resumes(stack, proxy: Proxy, ref: str, img) -> None:
    proxy.delay = 0
    r = stack.docker("pull", ref, timeout=120)
    assert r.returncode == 0, r.stderr.decode() + stack.apid.log()
    ranges = proxy.blob_gets(img.layers[-1].digest)
    assert ranges[-1] and ranges[-1] != "bytes=0-", ranges  # resumed, not restarted
    with stack.http() as c:
        assert c.get(f"/images/{ref}/json").json()["Id"] == img.id
    stack.docker("rmi", ref)


def test_pull_cancel_by_http_disconnect(stack, slow):
    proxy, ref, img = slow
    digest = img.layers[-1].digest
    repo, tag = ref.rsplit(":", 1)
    with stack.http() as c:
        with c.stream("POST", "/images/create", params={"fromImage": repo, "tag": tag},
                      timeout=60) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if '"Downloading"' in line and ingest_size(stack, digest) > 1_000_000:
                    break
            # leaving the block closes the half-read response: the connection goes
    assert_pull_stopped(stack, ref, digest)
    with stack.http() as c:
        assert c.get("/_ping").status_code == 200
    assert_resumes(stack, proxy, ref, img)


def test_pull_cancel_of_the_grpc_call(stack, slow):
    from dockyard.protos.services.transfer.v1 import transfer_pb2, transfer_pb2_grpc

    proxy, ref, img = slow
    digest = img.layers[-1].digest
    with stack.managerd.client("moby") as c:
        call = c.stub(transfer_pb2_grpc.TransferStub).Pull(
            transfer_pb2.PullRequest(reference=ref))
        for msg in call:
            if msg.status == "downloading" and ingest_size(stack, digest) > 1_000_000:
                break
        call.cancel()
    assert_pull_stopped(stack, ref, digest)
    assert_resumes(stack, proxy, ref, img)


def test_pull_cancel_before_the_download_leaves_nothing(stack, slow):
    """Cancelled while resolving (an early disconnect): no lease, no record, no ingest."""
    from dockyard.protos.services.transfer.v1 import transfer_pb2, transfer_pb2_grpc

    proxy, ref, img = slow
    with stack.managerd.client("moby") as c:
        call = c.stub(transfer_pb2_grpc.TransferStub).Pull(
            transfer_pb2.PullRequest(reference=ref))
        next(iter(call))  # "resolving"
        call.cancel()
    time.sleep(1.5)
    from dockyard.protos.services.leases.v1 import leases_pb2
    with stack.managerd.client("moby") as c:
        assert not [lease for lease in c.leases.List(leases_pb2.ListLeasesRequest()).leases
                    if lease.labels.get("dockyard.images/pull") == ref]
    assert ingest_size(stack, img.layers[-1].digest) < BIG
    with stack.http() as c:
        assert c.get(f"/images/{ref}/json").status_code == 404
    # and a complete pull still works
    proxy.delay = 0
    r = stack.docker("pull", ref, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    stack.docker("rmi", ref)
