"""Pure parts: WWW-Authenticate parsing, Docker config.json, X-Registry-Auth, platforms,
loopback/insecure rules, chain IDs."""

from __future__ import annotations

import base64
import json

import pytest
from dockyard.managerd.images import auth, platforms
from dockyard.managerd.images.manifest import chain_ids, parse_config, parse_manifest
from dockyard.managerd.images.registry import RegistryOptions, is_loopback

from dockyard.errdefs import InvalidArgument, NotFound


def test_parse_challenges():
    [c] = auth.parse_challenges('Bearer realm="https://auth.docker.io/token",'
                                'service="registry.docker.io",scope="repository:library/a:pull"')
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                        "scope": "repository:library/a:pull"}
    cs = auth.parse_challenges('Basic realm="x y", Bearer realm="https://r",error="invalid"')
    assert [c.scheme for c in cs] == ["basic", "bearer"]
    assert cs[0].params["realm"] == "x y" and cs[1].params["error"] == "invalid"
    assert auth.parse_challenges('Bearer realm=unquoted,service=s')[0].params == {
        "realm": "unquoted", "service": "s"}


def test_docker_config(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
        "127.0.0.1:5000": {"username": "u", "password": "p:with:colons"},
        "https://reg.example.com/v2/": {"auth": base64.b64encode(b"e:x:y").decode(),
                                        "identitytoken": "tok"}}}))
    creds = auth.load_docker_config(cfg)
    assert creds["docker.io"] == auth.Credentials("hub", "pw")
    assert creds["127.0.0.1:5000"].password == "p:with:colons"
    assert creds["reg.example.com"] == auth.Credentials("e", "x:y", "tok")
    assert auth.load_docker_config(tmp_path / "missing.json") == {}
    cfg.write_text("{not json")
    with pytest.raises(InvalidArgument, match="config.json"):
        auth.load_docker_config(cfg)
    cfg.write_text(json.dumps({"auths": {"h": {"auth": base64.b64encode(b"nocolon").decode()}}}))
    with pytest.raises(InvalidArgument, match="user:password"):
        auth.load_docker_config(cfg)


def test_registry_auth_header():
    raw = json.dumps({"username": "a", "password": "b", "serveraddress": "x"}).encode()
    value = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert auth.decode_registry_auth(value) == auth.Credentials("a", "b")
    assert not auth.decode_registry_auth("")
    assert not auth.decode_registry_auth(base64.b64encode(b"{}").decode())
    with pytest.raises(InvalidArgument):
        auth.decode_registry_auth("!!!")


def test_loopback_and_insecure():
    for host in ("localhost", "localhost:5000", "127.0.0.1", "127.1.2.3:80", "[::1]:5000", "::1"):
        assert is_loopback(host), host
    for host in ("example.com", "10.0.0.1:5000", "[2001:db8::1]:5000"):
        assert not is_loopback(host), host
    opts = RegistryOptions(insecure=("reg.lan:5000", "10.0.0.0/8"))
    assert opts.allows_http("reg.lan:5000") and opts.allows_http("10.1.2.3:443")
    assert not opts.allows_http("reg.lan") and not opts.allows_http("example.com")


def idx(*plats):
    return [{"mediaType": "m", "digest": f"sha256:{i:064x}", "size": 1,
             "platform": p} for i, p in enumerate(plats)]


def test_platform_select():
    ms = idx({"os": "linux", "architecture": "amd64"},
             {"os": "linux", "architecture": "arm64", "variant": "v8"},
             {"os": "linux", "architecture": "arm", "variant": "v6"},
             {"os": "linux", "architecture": "arm", "variant": "v7"},
             {"os": "unknown", "architecture": "unknown"})
    assert platforms.select(ms, platforms.parse("linux/amd64")) is ms[0]
    assert platforms.select(ms, platforms.parse("linux/arm64")) is ms[1]  # no variant = v8
    assert platforms.select(ms, platforms.parse("linux/arm/v7")) is ms[3]
    assert platforms.select(ms[:3], platforms.parse("linux/arm/v7")) is ms[2]  # v6 runs on v7
    with pytest.raises(NotFound, match="linux/arm/v5"):
        platforms.select(ms, platforms.parse("linux/arm/v5"))
    with pytest.raises(NotFound, match="available: unknown/unknown"):
        platforms.select(ms[4:], platforms.parse("linux/amd64"))
    assert str(platforms.parse("arm64")) == "linux/arm64/v8"
    assert str(platforms.host()) == "linux/amd64"
    for bad in ("", "a/b/c/d", "linux//x"):
        with pytest.raises(InvalidArgument):
            platforms.parse(bad)


def test_chain_ids_and_parsers():
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    import hashlib
    assert chain_ids([a, b]) == [a, "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()]
    with pytest.raises(InvalidArgument, match="diff_ids"):
        parse_config(json.dumps({"rootfs": {"diff_ids": [a]}}).encode(), 2)
    with pytest.raises(InvalidArgument, match="unsupported layer media type"):
        parse_manifest(json.dumps({"schemaVersion": 2, "config": {
            "mediaType": "x", "digest": a, "size": 1}, "layers": [
            {"mediaType": "application/x-foreign", "digest": b, "size": 1}]}).encode(), "m")
    with pytest.raises(InvalidArgument, match="schemaVersion"):
        parse_manifest(b'{"schemaVersion": 1}', "m")
