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


def test_pull_cancel_leaves_a_shared_download_to_the_other_pull(tmp_path, registry):
    """In-process (managerd's images service): two pulls of one image share one
    download; cancelling the first returns at once, the second still completes
    from that same download, and the first's lease goes once the download ends."""
    import threading

    from dockyard.managerd import services
    from dockyard.managerd.config import Config
    from dockyard.managerd.images import pull as pullmod
    from dockyard.managerd.images.service import ImageService

    name = f"dy-cancel-{uuid.uuid4().hex[:8]}"
    img = im.busybox_image([im.tar_layer([im.file("big", os.urandom(BIG))])])
    im.push(registry, name, "latest", img)
    proxy = Proxy(registry.url, delay=0.02)  # ~7 s: a cancel that waited for it shows
    ctx = services.build_context(Config(root=str(tmp_path / "root"), state=str(tmp_path / "st")))
    svc = ImageService.from_context(ctx)
    ref = f"{proxy.host}/{name}:latest"
    big = img.layers[-1].digest
    token = pullmod.CancelToken()
    results: dict = {}

    def run(key, **kw):
        try:
            results[key] = pullmod.pull(svc, "test", ref, **kw)
        except Exception as err:  # noqa: BLE001 (checked below)
            results[key] = err

    try:
        first = threading.Thread(target=run, args=("first",), kwargs={"cancel_token": token})
        first.start()
        deadline = time.monotonic() + 30
        while not proxy.blob_gets(big):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = threading.Thread(target=run, args=("second",))
        second.start()
        # cancel only once the second pull has joined the running download (on a loaded
        # machine it can take seconds to get there)
        while not (svc.fetcher._jobs.get(big) and svc.fetcher._jobs[big].waiters >= 2):
            assert time.monotonic() < deadline + 30, "the second pull never joined"
            assert "second" not in results, results
            time.sleep(0.02)
        t0 = time.monotonic()
        token.cancel()
        first.join(30)
        assert isinstance(results["first"], pullmod.PullCancelled), results
        assert time.monotonic() - t0 < 3, "the cancel waited for the shared download"
        second.join(60)
        assert isinstance(results["second"], pullmod.PullResult), results
        assert len(proxy.blob_gets(big)) == 1, proxy.blob_gets(big)  # one shared download
        deadline = time.monotonic() + 10
        while svc.leases.list("test"):  # the first's lease, ended after the download
            assert time.monotonic() < deadline, svc.leases.list("test")
            time.sleep(0.1)
        ctx.gc.collect()
        assert svc.inspect("test", ref)["Id"] == img.id
        assert svc.content_exists("test", big)
    finally:
        proxy.close()
        svc.close()
        ctx.gc.close()
        ctx.close()


def test_pull_cancel_then_a_new_pull_of_the_blob_resumes(tmp_path):
    """A pull that wants a blob whose download was just given up (still stopping)
    starts a download of its own once the old one let go, resuming its bytes —
    it never joins the cancelled one (and fails with it)."""
    import contextlib
    import hashlib
    import threading

    from dockyard.managerd import services
    from dockyard.managerd.config import Config
    from dockyard.managerd.images.fetch import Cancelled, Fetcher
    from dockyard.managerd.images.manifest import Descriptor
    from dockyard.managerd.images.progress import discard

    blob = os.urandom(2 << 20)
    desc = Descriptor("application/octet-stream",
                      "sha256:" + hashlib.sha256(blob).hexdigest(), len(blob))
    opened: list[int] = []
    stuck = threading.Event()  # the first download blocks in its stream until set

    class Endpoint:
        @contextlib.contextmanager
        def open_blob(self, repo, digest, offset=0):
            opened.append(offset)

            def chunks():
                for at in range(offset, len(blob), 64 << 10):
                    if len(opened) == 1 and at - offset >= 256 << 10:
                        stuck.wait(10)
                    yield blob[at:at + (64 << 10)]
            yield chunks()

    ctx = services.build_context(Config(root=str(tmp_path / "root"), state=str(tmp_path / "st")))
    fetcher = Fetcher(ctx.content)
    try:
        fut1, job1, started1 = fetcher.fetch("test", Endpoint(), "r", desc, None, discard)
        deadline = time.monotonic() + 10
        while not stuck.is_set() and ingest_bytes(tmp_path / "root") < 256 << 10:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        fetcher.release(job1)  # its only pull gave up: cancelled, but still in its stream
        fut2, job2, started2 = fetcher.fetch("test", Endpoint(), "r", desc, None, discard)
        assert started2 and job2 is not job1
        stuck.set()
        with pytest.raises(Cancelled):
            fut1.result(10)
        assert fut2.result(10) == desc.digest
        assert opened[0] == 0 and opened[-1] >= 256 << 10, opened  # resumed
        assert ctx.content.read_all("test", desc.digest) == blob
    finally:
        stuck.set()
        fetcher.close()
        ctx.gc.close()
        ctx.close()


def ingest_bytes(root) -> int:
    total = 0
    for d, _, files in os.walk(root / "content" / "ingest"):
        if "data" in files:
            total += os.path.getsize(os.path.join(d, "data"))
    return total
