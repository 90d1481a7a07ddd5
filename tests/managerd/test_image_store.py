"""Images metadata service: create/get/list/update/delete, filters, errors."""

from __future__ import annotations

import pytest
from dockyard.protos.services.images.v1 import images_pb2 as pb
from dockyard.protos.types.descriptor_pb2 import Descriptor

from dockyard import errdefs

pytestmark = pytest.mark.timeout(60)

MT = "application/vnd.oci.image.manifest.v1+json"


def _img(name, digest="sha256:" + "a" * 64, **kw):
    return pb.Image(name=name, target=Descriptor(media_type=MT, digest=digest, size=123), **kw)


def test_crud(client):
    made = client.images.Create(pb.CreateImageRequest(image=_img(
        "docker.io/library/busybox:latest", labels={"x": "1"})), timeout=5).image
    assert made.created_at.seconds > 0
    got = client.images.Get(pb.GetImageRequest(name="docker.io/library/busybox:latest"),
                            timeout=5).image
    assert got == made and got.target.size == 123
    upd = client.images.Update(pb.UpdateImageRequest(
        image=_img("docker.io/library/busybox:latest", digest="sha256:" + "b" * 64),
        update_mask={"paths": ["target"]}), timeout=5).image
    assert upd.target.digest == "sha256:" + "b" * 64 and upd.labels == {"x": "1"}
    client.images.Delete(pb.DeleteImageRequest(name="docker.io/library/busybox:latest",
                                               sync=True), timeout=10)
    with pytest.raises(errdefs.NotFound, match="busybox"):
        client.images.Get(pb.GetImageRequest(name="docker.io/library/busybox:latest"), timeout=5)


def test_list_filters(client):
    for name, d in (("a:1", "c"), ("a:2", "c"), ("b:1", "d")):
        client.images.Create(pb.CreateImageRequest(image=_img(name, "sha256:" + d * 64,
                                                              labels={"repo": name[0]})),
                             timeout=5)

    def names(*f):
        return [i.name for i in client.images.List(pb.ListImagesRequest(filters=list(f)),
                                                   timeout=5).images]

    assert names() == ["a:1", "a:2", "b:1"]
    assert names("labels.repo==a") == ["a:1", "a:2"]
    assert names("target.digest==sha256:" + "d" * 64) == ["b:1"]
    assert names("name~=:1$") == ["a:1", "b:1"]


def test_errors(client):
    client.images.Create(pb.CreateImageRequest(image=_img("dup")), timeout=5)
    with pytest.raises(errdefs.AlreadyExists, match="image dup"):
        client.images.Create(pb.CreateImageRequest(image=_img("dup")), timeout=5)
    with pytest.raises(errdefs.InvalidArgument, match="digest"):
        client.images.Create(pb.CreateImageRequest(image=_img("bad", "sha256:xyz")), timeout=5)
    with pytest.raises(errdefs.InvalidArgument, match="name"):
        client.images.Create(pb.CreateImageRequest(image=_img("")), timeout=5)
    with pytest.raises(errdefs.NotFound, match="image ghost"):
        client.images.Delete(pb.DeleteImageRequest(name="ghost"), timeout=5)
    with pytest.raises(errdefs.InvalidArgument, match="cannot update"):
        client.images.Update(pb.UpdateImageRequest(image=_img("dup"),
                                                   update_mask={"paths": ["name"]}), timeout=5)
