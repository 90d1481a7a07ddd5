"""The Transfer service through a real managerd and a gRPC client."""

from __future__ import annotations

import json
import os
import uuid

import grpc
import pytest
from dockyard.protos.services.transfer.v1 import transfer_pb2 as pb
from dockyard.protos.services.transfer.v1 import transfer_pb2_grpc as pb_grpc
from helpers import images as im
from helpers.managerd import ManagerdProcess

from dockyard.errdefs import NotFound

pytestmark = [pytest.mark.timeout(120), pytest.mark.privileged]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("managerd needs root")
    proc = ManagerdProcess(tmp_path_factory.mktemp("managerd-images"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def stub(daemon):
    with daemon.client(f"dy-{uuid.uuid4().hex[:10]}") as c:
        yield c.stub(pb_grpc.TransferStub)


def test_pull_inspect_tag_save_load_remove(stub, registry):
    img = im.busybox_image(Cmd=["sh"])
    name = f"g{uuid.uuid4().hex[:8]}"
    im.push(registry, name, "latest", img)
    ref = f"{registry.host}/{name}"
    msgs = list(stub.Pull(pb.PullRequest(reference=ref)))
    assert msgs[-1].WhichOneof("result") == "pulled"
    assert msgs[-1].pulled.id == img.id and msgs[-1].pulled.digest == img.digest
    assert {"downloading", "pull complete"} <= {m.status for m in msgs}
    info = json.loads(stub.Inspect(pb.InspectRequest(name=ref)).json)
    assert info["Id"] == img.id and info["RepoTags"] == [f"{ref}:latest"]
    assert stub.Tag(pb.TagRequest(source=img.id[7:19], target="other:1")).name == \
        "docker.io/library/other:1"
    listed = stub.List(pb.ListImagesRequest()).images
    assert [i.id for i in listed] == [img.id]
    assert sorted(listed[0].repo_tags) == sorted([f"{ref}:latest", "other:1"])
    hist = stub.History(pb.HistoryRequest(name="other:1")).entries
    assert hist[0].id == img.id
    # save, remove, load back
    data = b"".join(c.data for c in stub.Save(pb.SaveRequest(names=["other:1"])))
    res = stub.Remove(pb.RemoveRequest(name="other:1"))
    assert [i.untagged for i in res.items] == ["other:1"]
    res = stub.Remove(pb.RemoveRequest(name=ref))
    assert [i.untagged for i in res.items][0] == f"{ref}:latest"
    assert res.items[-1].deleted == img.id
    with pytest.raises(NotFound, match="No such image"):  # the client maps status codes
        stub.Inspect(pb.InspectRequest(name=ref))
    chunks = (pb.Chunk(data=data[i:i + 100000]) for i in range(0, len(data), 100000))
    msgs = list(stub.Load(chunks))
    assert list(msgs[-1].loaded.names) == ["docker.io/library/other:1"]
    assert json.loads(stub.Inspect(pb.InspectRequest(name="other:1")).json)["Id"] == img.id


def test_errors_are_status_codes(daemon, registry):
    # a raw channel (no mapping interceptor) sees the status codes themselves
    with grpc.insecure_channel(daemon.address) as ch:
        raw = pb_grpc.TransferStub(ch)
        md = (("dockyard-namespace", "dy-raw"),)
        with pytest.raises(grpc.RpcError) as err:
            list(raw.Pull(pb.PullRequest(reference="Bad Ref"), metadata=md))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as err:
            list(raw.Pull(pb.PullRequest(reference=f"{registry.host}/nope/nope:x"),
                          metadata=md))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as err:
            raw.Remove(pb.RemoveRequest(name="never:seen"), metadata=md)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_import(stub):
    data = im.busybox_tar()
    reqs = [pb.ImportRequest(reference="imp:1", changes=["CMD [\"sh\"]"])] + [
        pb.ImportRequest(data=data[i:i + 200000]) for i in range(0, len(data), 200000)]
    res = stub.Import(iter(reqs))
    assert res.name == "docker.io/library/imp:1"
    info = json.loads(stub.Inspect(pb.InspectRequest(name="imp:1")).json)
    assert info["Id"] == res.id and info["Config"]["Cmd"] == ["sh"]
