"""Put a test image straight into managerd's stores over its public gRPC API.

Used until (and besides) pulls: content blobs (manifest, config), the image
record, and the layer unpacked into a committed snapshot named by its chain
ID, as a pull leaves them. Single-layer images only.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
import uuid

from dockyard.managerd.client import Client
from dockyard.protos.services.content.v1 import content_pb2 as ctpb
from dockyard.protos.services.images.v1 import images_pb2 as ipb
from dockyard.protos.services.snapshots.v1 import snapshots_pb2 as spb
from dockyard.protos.types import descriptor_pb2

from dockyard import tarsafe


def _write(client: Client, media_type: str, data: bytes, digest: str) -> None:
    ref = f"seed-{uuid.uuid4().hex}"
    reqs = [ctpb.WriteContentRequest(action=ctpb.WRITE, ref=ref, total=len(data),
                                     expected=digest, offset=0, data=data),
            ctpb.WriteContentRequest(action=ctpb.COMMIT, ref=ref, total=len(data),
                                     expected=digest, offset=len(data))]
    try:
        for _ in client.content.Write(iter(reqs)):
            pass
    except Exception as err:  # noqa: BLE001 - already present is fine
        if "exist" not in str(err).lower():
            raise


def seed_image(address: str, namespace: str, name: str, image) -> None:
    with Client(address, namespace) as client:
        _write(client, image.config.media_type, image.config.data, image.config.digest)
        _write(client, image.manifest.media_type, image.manifest.data, image.manifest.digest)
        chain = image.diff_ids[0]
        key = f"seed-{uuid.uuid4().hex}"
        try:
            client.snapshots.Stat(spb.StatSnapshotRequest(key=chain))
        except Exception:  # noqa: BLE001 - not there yet: unpack it
            resp = client.snapshots.Prepare(spb.PrepareSnapshotRequest(key=key, parent=""))
            with tempfile.TemporaryDirectory() as target:
                for m in resp.mounts:
                    if m.type == "bind" or "bind" in m.options or "rbind" in m.options:
                        cmd = ["mount", "--bind", m.source, target]
                    else:
                        cmd = ["mount", "-t", m.type, m.source, target, "-o",
                               ",".join(m.options)]
                    subprocess.run(cmd, check=True)
                try:
                    with tarfile.open(fileobj=io.BytesIO(image.uncompressed[0])) as tar:
                        for member in tar:
                            tarsafe.extract(tar, member, target, trusted=True,
                                            numeric_owner=True)
                finally:
                    subprocess.run(["umount", target], check=True)
            client.snapshots.Commit(spb.CommitSnapshotRequest(name=chain, key=key))
        target = descriptor_pb2.Descriptor(media_type=image.manifest.media_type,
                                           digest=image.manifest.digest,
                                           size=len(image.manifest.data))
        try:
            client.images.Create(ipb.CreateImageRequest(image=ipb.Image(name=name,
                                                                        target=target)))
        except Exception as err:  # noqa: BLE001
            if "exist" not in str(err).lower():
                raise
