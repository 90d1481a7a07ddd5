"""Reference parsing and normalisation, checked against Docker's rules."""

from __future__ import annotations

import pytest
from dockyard.managerd.images import reference

from dockyard.errdefs import InvalidArgument

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text,canonical,familiar", [
    ("redis", "docker.io/library/redis:latest", "redis:latest"),
    ("redis:7", "docker.io/library/redis:7", "redis:7"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("user/app/sub:1.0", "docker.io/user/app/sub:1.0", "user/app/sub:1.0"),
    ("docker.io/redis", "docker.io/library/redis:latest", "redis:latest"),
    ("index.docker.io/library/redis", "docker.io/library/redis:latest", "redis:latest"),
    ("docker.io/library/redis:x", "docker.io/library/redis:x", "redis:x"),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
    ("localhost:5000/a/b@" + D, "localhost:5000/a/b@" + D, "localhost:5000/a/b@" + D),
    ("127.0.0.1:5000/busybox:latest", "127.0.0.1:5000/busybox:latest",
     "127.0.0.1:5000/busybox:latest"),
    ("Host/x", "Host/x:latest", "Host/x:latest"),
    ("quay.io/coreos/etcd:v3", "quay.io/coreos/etcd:v3", "quay.io/coreos/etcd:v3"),
    ("busybox@" + D, "docker.io/library/busybox@" + D, "busybox@" + D),
    ("busybox:1.35@" + D, "docker.io/library/busybox:1.35@" + D, "busybox:1.35@" + D),
    ("a_b__c-d---e/x.y", "docker.io/a_b__c-d---e/x.y:latest", "a_b__c-d---e/x.y:latest"),
    ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
    ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
])
def test_normalise(text, canonical, familiar):
    ref = reference.parse(text)
    assert str(ref) == canonical
    assert ref.familiar() == familiar


def test_parts():
    ref = reference.parse("localhost:5000/a/b:t@" + D)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("localhost:5000", "a/b", "t", D)
    assert ref.name == "localhost:5000/a/b"
    assert ref.object == D
    assert reference.parse("x").object == "latest"
    assert reference.parse("x", default_tag=None).tag is None
    assert str(ref.with_tag("v2")) == "localhost:5000/a/b:v2"
    assert str(ref.with_digest(D)) == "localhost:5000/a/b@" + D
    assert reference.parse("docker.io/library/a/b").familiar_name() == "library/a/b"


@pytest.mark.parametrize("text,words", [
    ("", "empty"),
    ("Redis", "lowercase"),
    ("a/B", "lowercase"),
    ("redis:", "invalid tag"),
    ("redis:-x", "invalid tag"),
    ("redis:" + "t" * 129, "invalid tag"),
    ("redis@sha256:abc", "invalid digest"),
    ("redis@sha256:" + "A" * 64, "lowercase hex"),
    ("redis@md5:" + "a" * 32, "unsupported algorithm"),
    ("a//b", "invalid path component"),
    ("a/-b", "invalid path component"),
    ("a/b_", "invalid path component"),
    ("a/b..c", "invalid path component"),
    (":tag", "missing repository"),
    ("@" + D, "missing repository"),
    (" redis", "whitespace"),
    ("a" * 256, "longer than 255"),
    ("exa_mple.com/x", "invalid registry host"),
    ("-bad.com/x", "invalid registry host"),
])
def test_invalid(text, words):
    with pytest.raises(InvalidArgument, match=words) as err:
        reference.parse(text)
    assert "invalid" in str(err.value) or "empty" in str(err.value)


def test_with_tag_invalid():
    with pytest.raises(InvalidArgument, match="invalid tag"):
        reference.parse("x").with_tag(".bad")


def test_image_id():
    assert reference.is_image_id("a" * 64)
    assert not reference.is_image_id("a" * 63)
    assert not reference.is_image_id("redis")
