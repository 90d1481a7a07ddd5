"""Push to real registries, and push + pull round trips."""

from __future__ import annotations

import uuid

import httpx
import pytest
from dockyard.managerd.images import pull as pullmod
from dockyard.managerd.images import push as pushmod
from dockyard.managerd.images.auth import Credentials
from helpers import images as im

from dockyard.errdefs import NotFound, PermissionDenied

NS = "test"
pytestmark = pytest.mark.timeout(120)


def repo() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


def test_push_mount_and_round_trip(svc, registry, registry_basic, new_service):
    img = im.busybox_image([im.tar_layer([im.file("hello", "world")])], Cmd=["cat", "/hello"])
    src = repo()
    im.push(registry, src, "v1", img)
    pullmod.pull(svc, NS, f"{registry.host}/{src}:v1")
    # same registry, other repository: blobs are mounted, not uploaded
    dest = repo()
    svc.tag(NS, f"{registry.host}/{src}:v1", f"{registry.host}/{dest}:v2")
    events = []
    res = pushmod.push(svc, NS, f"{registry.host}/{dest}:v2", progress=events.append)
    assert res.digest == img.digest  # manifest bytes kept exactly
    by_status = {(e.id, e.status) for e in events}
    for layer in img.layers:
        assert (layer.digest[7:19], "mounted") in by_status
    r = httpx.get(f"{registry.url}/v2/{dest}/manifests/v2",
                  headers={"Accept": img.manifest.media_type})
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == img.digest
    # again: everything exists
    events.clear()
    pushmod.push(svc, NS, f"{registry.host}/{dest}:v2", progress=events.append)
    assert {e.status for e in events if e.id == img.layers[1].digest[7:19]} == {
        "preparing", "layer already exists"}
    # another registry with basic auth: uploads (chunked for the test)
    other = repo()
    svc.tag(NS, f"{registry.host}/{src}:v1", f"{registry_basic.host}/{other}:v3")
    with pytest.raises(PermissionDenied):
        pushmod.push(svc, NS, f"{registry_basic.host}/{other}:v3")
    events.clear()
    pushmod.push(svc, NS, f"{registry_basic.host}/{other}:v3", progress=events.append,
                 credentials=Credentials(*registry_basic.auth), chunk_size=256 * 1024)
    assert (img.layers[0].digest[7:19], "pushed") in {(e.id, e.status) for e in events}
    assert any(e.status == "pushing" and 0 < e.current < e.total for e in events)
    # round trip: a fresh store pulls what was pushed
    svc2 = new_service()
    res2 = pullmod.pull(svc2, NS, f"{registry_basic.host}/{other}:v3",
                        credentials=Credentials(*registry_basic.auth))
    assert res2.config.digest == img.id
    assert svc2.inspect(NS, f"{registry_basic.host}/{other}:v3")["Config"]["Cmd"] == [
        "cat", "/hello"]


def test_push_unknown_image(svc, registry):
    with pytest.raises(NotFound, match="No such image"):
        pushmod.push(svc, NS, f"{registry.host}/nothing:here")


def test_push_multi_platform_index(svc, registry):
    amd = im.busybox_image(arch="amd64")
    arm = im.busybox_image([im.tar_layer([im.file("a", "arm")])], arch="arm64")
    index = im.multi_platform([amd, arm])
    name = repo()
    im.push(registry, name, "multi", index)
    pullmod.pull(svc, NS, f"{registry.host}/{name}:multi")
    dest = repo()
    svc.tag(NS, f"{registry.host}/{name}:multi", f"{registry.host}/{dest}:one")
    # only this platform's manifest is local: the push sends that manifest alone
    res = pushmod.push(svc, NS, f"{registry.host}/{dest}:one")
    assert res.digest == amd.digest


def test_push_with_token_auth_scopes(svc, registry, registry_token):
    img = im.busybox_image([im.tar_layer([im.file("t", "token")])])
    src = repo()
    im.push(registry, src, "v1", img)
    pullmod.pull(svc, NS, f"{registry.host}/{src}:v1")
    dest = repo()
    svc.tag(NS, f"{registry.host}/{src}:v1", f"{registry_token.host}/{dest}:v1")
    pushmod.push(svc, NS, f"{registry_token.host}/{dest}:v1",
                 credentials=Credentials(*registry_token.auth))
    scopes = [s for s, user in registry_token.token_server.requests if user]
    assert [f"repository:{dest}:pull,push"] in scopes
    r = httpx.get(f"{registry_token.url}/v2/{dest}/manifests/v1")
    assert r.status_code == 401  # the registry really wants a token
