"""dockyard-apid flags: listeners, TLS rules."""

from __future__ import annotations

import pytest
from dockyard.apid.__main__ import _validate, parse_args


def test_defaults_and_several_hosts():
    cfg = parse_args([])
    assert cfg.hosts == ["unix:///run/dockyard/dockyard.sock"]
    cfg = parse_args(["-H", "unix:///tmp/a.sock", "-H", "tcp://127.0.0.1:2375"])
    assert cfg.hosts == ["unix:///tmp/a.sock", "tcp://127.0.0.1:2375"]
    _validate(cfg)  # loopback plain TCP is allowed


def test_plain_tcp_refused_off_loopback():
    with pytest.raises(SystemExit, match="refusing plain TCP"):
        _validate(parse_args(["-H", "tcp://0.0.0.0:2375"]))
    _validate(parse_args(["-H", "tcp://0.0.0.0:2375", "--insecure-tcp-forced"]))
    _validate(parse_args(["-H", "tcp://0.0.0.0:2376", "--tlsverify", "--tlscacert", "ca",
                          "--tlscert", "c", "--tlskey", "k"]))
    with pytest.raises(SystemExit, match="unsupported host"):
        _validate(parse_args(["-H", "fd://"]))
