"""stop / rm -f time the SIGKILL's exit, not the cleanup after it (reliability).

Under load (50 concurrent `docker rm -f`), managerd's task delete after each exit
(runtime delete, unmounts) took seconds; apid counted it against the SIGKILL's
10 s patience, reported "did not receive an exit event" and left containers
shown running although the kill had worked.
"""

from __future__ import annotations

import asyncio

import pytest
from dockyard.apid import daemon as apid_daemon
from dockyard.apid.app import create_app
from dockyard.apid.daemon import Daemon, DaemonConfig
from fakes.apid_manager import FakeManager
from starlette.testclient import TestClient

pytestmark = pytest.mark.timeout(30)

SLOW_DELETE = 1.0


class SlowDeleteManager(FakeManager):
    """Task deletes take SLOW_DELETE seconds, as on a loaded host."""

    async def delete_task(self, container_id: str):
        await asyncio.sleep(SLOW_DELETE)
        return await super().delete_task(container_id)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setattr(apid_daemon, "KILL_PATIENCE", (0.3, 0.3))  # < SLOW_DELETE
    manager = SlowDeleteManager()
    manager.add_image("docker.io/library/busybox:latest")
    daemon = Daemon(manager, DaemonConfig(data_root=str(tmp_path), exec_root=str(tmp_path),
                                          host_resolv_conf="/nonexistent", manage_netns=False,
                                          volume_copy_up=False))
    with TestClient(create_app(daemon)) as client:
        yield client, manager


def _running(client) -> str:
    cid = client.post("/containers/create", json={"Image": "busybox",
                                                   "Cmd": ["sleep", "100"]}).json()["Id"]
    assert client.post(f"/containers/{cid}/start").status_code == 204
    return cid


def test_rm_force_waits_for_a_slow_cleanup_after_the_exit(env):
    client, manager = env
    cid = _running(client)
    r = client.delete(f"/containers/{cid}", params={"force": "1"})
    assert r.status_code == 204, r.text
    assert [c for c in manager.calls if c[0] == "kill"] == [("kill", cid, 9)]  # no retry
    assert client.get(f"/containers/{cid}/json").status_code == 404


def test_stop_with_slow_cleanup_reports_the_exit_code(env):
    client, manager = env
    cid = _running(client)
    assert client.post(f"/containers/{cid}/stop", params={"t": "1"}).status_code == 204
    state = client.get(f"/containers/{cid}/json").json()["State"]
    assert state["ExitCode"] == 143 and not state["Running"]
    assert ("kill", cid, 9) not in manager.calls  # SIGTERM was enough: no SIGKILL
