"""Docker-shaped image verbs: tag, remove (untag vs delete, in use), prune, history."""

from __future__ import annotations

import uuid

import pytest
from dockyard.managerd.images import pull as pullmod
from dockyard.managerd.metadata.containers import Container, Runtime
from helpers import images as im

from dockyard.errdefs import FailedPrecondition, InvalidArgument, NotFound

NS = "test"
pytestmark = pytest.mark.timeout(120)


def pull_new(svc, registry, **config):
    img = im.busybox_image([im.tar_layer([im.file("id", uuid.uuid4().hex)])], **config)
    name = f"s{uuid.uuid4().hex[:10]}"
    im.push(registry, name, "latest", img)
    ref = f"{registry.host}/{name}:latest"
    pullmod.pull(svc, NS, ref)
    return img, ref


def test_tag_remove_untag_then_delete(svc, registry):
    img, ref = pull_new(svc, registry)
    assert svc.tag(NS, ref, "mine:v1") == "docker.io/library/mine:v1"
    assert svc.tag(NS, img.id, "mine:v2") == "docker.io/library/mine:v2"
    assert sorted(svc.inspect(NS, "mine:v1")["RepoTags"]) == sorted([ref, "mine:v1", "mine:v2"])
    with pytest.raises(InvalidArgument):
        svc.tag(NS, ref, "Bad:Tag!")
    # an ID with several tags needs force
    with pytest.raises(FailedPrecondition, match="referenced in multiple repositories"):
        svc.remove(NS, img.id)
    assert svc.remove(NS, "mine:v1") == [{"Untagged": "mine:v1"}]
    assert svc.remove(NS, "mine:v2") == [{"Untagged": "mine:v2"}]
    assert svc.remove(NS, ref) == [{"Untagged": ref}, {"Deleted": img.id}]
    with pytest.raises(NotFound, match="No such image"):
        svc.inspect(NS, img.id)
    assert svc.snapshots.list(NS, svc.snapshotter) == []


def test_remove_refused_while_a_container_uses_it(svc, registry):
    img, ref = pull_new(svc, registry)
    svc.ctx.containers.create(NS, Container(uuid.uuid4().hex, Runtime("runc"), b"{}",
                                            image=ref))
    with pytest.raises(FailedPrecondition, match="is using its referenced image"):
        svc.remove(NS, ref)
    assert svc.remove(NS, ref, force=True)[-1] == {"Deleted": img.id}


def test_moved_tag_leaves_dangling_then_prune(svc, registry):
    old = im.busybox_image([im.tar_layer([im.file("v", "1")])])
    new = im.busybox_image([im.tar_layer([im.file("v", "2")])])
    name = f"s{uuid.uuid4().hex[:10]}"
    im.push(registry, name, "latest", old)
    pullmod.pull(svc, NS, f"{registry.host}/{name}")
    im.push(registry, name, "latest", new)
    res = pullmod.pull(svc, NS, f"{registry.host}/{name}")
    assert not res.up_to_date and res.config.digest == new.id
    old_info = svc.inspect(NS, old.id)  # still there, untagged, like <none>:<none>
    assert old_info["RepoTags"] == []
    assert len(svc.list_images(NS)) == 2
    deleted, reclaimed = svc.prune(NS)
    assert deleted == [{"Deleted": old.id}] and reclaimed >= 0
    assert [i.id for i in svc.list_images(NS)] == [new.id]
    # all=True also removes tagged images no container uses
    deleted, _ = svc.prune(NS, all_unused=True)
    assert {"Deleted": new.id} in deleted
    assert svc.list_images(NS) == []


def test_history_and_id_prefix(svc, registry):
    img = im.make_image([im.busybox_tar(), im.tar_layer([im.file("a", "b" * 100)])],
                        history=[{"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs"},
                                 {"created": "2024-01-02T00:00:00Z", "created_by": "ENV X=1",
                                  "empty_layer": True},
                                 {"created": "2024-01-03T00:00:00Z", "created_by": "ADD a",
                                  "comment": "last"}], Cmd=["sh"])
    name = f"s{uuid.uuid4().hex[:10]}"
    im.push(registry, name, "latest", img)
    pullmod.pull(svc, NS, f"{registry.host}/{name}")
    hist = svc.history(NS, img.id[7:19])
    assert [h["CreatedBy"] for h in hist] == ["ADD a", "ENV X=1", "ADD rootfs"]
    assert hist[0]["Id"] == img.id and hist[1]["Id"] == "<missing>"
    assert hist[0]["Size"] == 100 and hist[1]["Size"] == 0 and hist[2]["Size"] > 1_000_000
    assert hist[0]["Created"] == 1704240000 and hist[0]["Comment"] == "last"
    assert hist[0]["Tags"] == [f"{registry.host}/{name}:latest"]
    with pytest.raises(NotFound):
        svc.resolve(NS, "ffffffffffff")
