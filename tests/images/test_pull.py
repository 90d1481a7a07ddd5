"""Pulls from a real registry on loopback into managerd's stores."""

from __future__ import annotations

import os

from dockyard.managerd.images import pull as pullmod
from helpers import images as im

NS = "test"


def test_pull_busybox(svc, registry):
    img = im.busybox_image()
    im.push(registry, "busybox", "latest", img)
    events = []
    res = pullmod.pull(svc, NS, f"{registry.host}/busybox:latest", progress=events.append)
    assert res.name == f"{registry.host}/busybox:latest"
    assert res.config.digest == img.id
    statuses = [e.status for e in events]
    assert "pull complete" in statuses and "downloading" in statuses
    info = svc.inspect(NS, f"{registry.host}/busybox")
    assert info["Id"] == img.id
    assert info["RepoTags"] == [f"{registry.host}/busybox:latest"]
    assert info["RepoDigests"] == [f"{registry.host}/busybox@{img.digest}"]
    assert info["Config"]["Cmd"] == ["sh"]
    assert info["RootFS"]["Layers"] == img.diff_ids
    path = svc.snapshots.path(NS, svc.snapshotter, res.layers[0])
    assert os.access(os.path.join(path, "bin/busybox"), os.X_OK)
    # again: nothing fetched, up to date
    events.clear()
    res2 = pullmod.pull(svc, NS, f"{registry.host}/busybox:latest", progress=events.append)
    assert res2.up_to_date
    assert [e.status for e in events if e.id == img.layers[0].digest[7:19]] == ["already exists"]
