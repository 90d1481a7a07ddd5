"""Events: changes are streamed to subscribers, filtered by topic and namespace."""

from __future__ import annotations

import itertools
import queue
import threading
import time

import pytest
from dockyard.protos.events import container_pb2 as evpb
from dockyard.protos.services.containers.v1 import containers_pb2 as cpb
from dockyard.protos.services.events.v1 import events_pb2 as pb
from google.protobuf.any_pb2 import Any

pytestmark = pytest.mark.timeout(60)


class Collector:
    """Subscribes in a thread; .get() returns the next envelope."""

    def __init__(self, client, filters):
        self.q: queue.Queue = queue.Queue()
        self.stream = client.events.Subscribe(pb.SubscribeRequest(filters=filters))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for env in self.stream:
                self.q.put(env)
        except Exception as err:  # cancelled at the end of the test
            self.q.put(err)

    def get(self, timeout=10):
        return self.q.get(timeout=timeout)

    def close(self):
        self.stream.cancel()
        self.thread.join(10)


def _wait_live(collectors, probe, timeout=10.0):
    """Publish probes until every subscription has seen one, then drain them all."""
    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    while len(seen) < len(collectors):
        assert time.monotonic() < deadline, "subscriptions never went live"
        probe()
        time.sleep(0.1)
        seen |= {i for i, col in enumerate(collectors) if not col.q.empty()}
    time.sleep(0.2)
    for col in collectors:
        while not col.q.empty():
            col.get()


def _create(c, cid):
    c.containers.Create(cpb.CreateContainerRequest(container=cpb.Container(
        id=cid, runtime=cpb.Runtime(name="runc"), spec=b"{}")), timeout=5)


def test_container_events_streamed_with_filters(managerd, ns):
    with managerd.client(ns) as c, managerd.client(ns + "-x") as other:
        all_ns = Collector(c, [f"namespace=={ns}"])
        creates = Collector(c, [f'topic=="/containers/create",namespace=={ns}'])
        try:
            n = itertools.count()
            _wait_live([all_ns, creates], lambda: _create(c, f"probe{next(n)}"))
            _create(other, "elsewhere")  # other namespace: filtered out
            _create(c, "c1")
            c.containers.Update(cpb.UpdateContainerRequest(
                container=cpb.Container(id="c1", labels={"l": "v"}),
                update_mask={"paths": ["labels"]}), timeout=5)
            c.containers.Delete(cpb.DeleteContainerRequest(id="c1"), timeout=5)
            topics = [all_ns.get().topic for _ in range(3)]
            assert topics == ["/containers/create", "/containers/update", "/containers/delete"]
            env = creates.get()
            assert (env.topic, env.namespace) == ("/containers/create", ns)
            payload = evpb.ContainerCreate()
            assert env.event.Unpack(payload) and payload.id == "c1"
            assert env.timestamp.seconds > 0
            time.sleep(0.2)
            assert creates.q.empty() and all_ns.q.empty()
        finally:
            all_ns.close()
            creates.close()


def test_publish_and_regex_filter(managerd, ns):
    with managerd.client(ns) as c:
        sub = Collector(c, [f"topic~=^/custom/,namespace=={ns}"])
        try:
            payload = Any()
            payload.Pack(evpb.ContainerDelete(id="zz"))

            def ping(topic="/custom/ping"):
                c.events.Publish(pb.PublishRequest(topic=topic, event=payload), timeout=5)

            _wait_live([sub], ping)
            ping("/other/ping")  # filtered out
            ping()
            env = sub.get()
            assert env.topic == "/custom/ping"
            out = evpb.ContainerDelete()
            assert env.event.Unpack(out) and out.id == "zz"
        finally:
            sub.close()


def test_image_and_snapshot_events(managerd, ns):
    from dockyard.protos.events import image_pb2, snapshot_pb2
    from dockyard.protos.services.images.v1 import images_pb2 as ipb
    from dockyard.protos.services.snapshots.v1 import snapshots_pb2 as spb
    from dockyard.protos.types.descriptor_pb2 import Descriptor
    with managerd.client(ns) as c:
        sub = Collector(c, [f"namespace=={ns},topic~=^/(images|snapshot)/"])
        try:
            n = itertools.count()
            _wait_live([sub], lambda: c.snapshots.View(spb.ViewSnapshotRequest(
                key=f"probe{next(n)}"), timeout=5))
            c.images.Create(ipb.CreateImageRequest(image=ipb.Image(name="img", target=Descriptor(
                media_type="application/vnd.oci.image.manifest.v1+json",
                digest="sha256:" + "e" * 64, size=1))), timeout=5)
            c.images.Delete(ipb.DeleteImageRequest(name="img"), timeout=5)
            c.snapshots.Prepare(spb.PrepareSnapshotRequest(key="s"), timeout=5)
            c.snapshots.Commit(spb.CommitSnapshotRequest(name="s-done", key="s"), timeout=5)
            c.snapshots.Remove(spb.RemoveSnapshotRequest(key="s-done"), timeout=5)
            envs = [sub.get() for _ in range(5)]
            assert [e.topic for e in envs] == ["/images/create", "/images/delete",
                                               "/snapshot/prepare", "/snapshot/commit",
                                               "/snapshot/remove"]
            created = image_pb2.ImageCreate()
            assert envs[0].event.Unpack(created) and created.name == "img"
            commit = snapshot_pb2.SnapshotCommit()
            assert envs[3].event.Unpack(commit) and (commit.key, commit.name) == ("s", "s-done")
        finally:
            sub.close()
