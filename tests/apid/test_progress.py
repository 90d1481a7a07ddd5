"""apid/progress.py: Transfer progress -> Docker's pull/push JSON lines."""

from dockyard.apid.progress import PullRenderer, PushRenderer, bar, human_size
from dockyard.protos.services.transfer.v1 import transfer_pb2 as pb


def test_pull_lines_in_dockers_words():
    r = PullRenderer("127.0.0.1:5000/rf/probe:v1")
    out = r.render(pb.Progress(id="19c1d16ef350", status="downloading", current=36445,
                               total=3147001))
    assert out[0] == {"status": "Pulling from rf/probe", "id": "v1"}
    assert out[1] == {"status": "Pulling fs layer", "progressDetail": {}, "id": "19c1d16ef350"}
    assert out[2]["status"] == "Downloading" and out[2]["progressDetail"] == {
        "current": 36445, "total": 3147001}
    assert out[2]["progress"].endswith("36.45kB/3.147MB")
    assert r.render(pb.Progress(id="19c1d16ef350", status="pull complete"))[-1]["status"] == \
        "Pull complete"
    done = r.render(pb.Progress(status="done", pulled=pb.PullResult(digest="sha256:ab",
                                                                    up_to_date=True)))
    assert done == [{"status": "Digest: sha256:ab"},
                    {"status": "Status: Image is up to date for 127.0.0.1:5000/rf/probe:v1"}]
    assert PullRenderer("busybox").render(pb.Progress(status="resolving"))[0]["status"] == \
        "Pulling from library/busybox"


def test_push_final_status_and_aux_are_separate():
    r = PushRenderer("h:5000/a/b:v1")
    assert r.render(pb.Progress(id="abc", status="mounted", detail="busybox"))[1]["status"] == \
        "Mounted from busybox"
    out = r.render(pb.Progress(status="done", pushed=pb.PushResult(digest="sha256:d", size=5,
                                                                   tag="v1")))
    assert out[0] == {"status": "v1: digest: sha256:d size: 5"}
    assert out[1]["aux"] == {"Tag": "v1", "Digest": "sha256:d", "Size": 5}


def test_bar_and_sizes():
    assert human_size(3147001) == "3.147MB" and human_size(512) == "512B"
    assert bar(50, 100).startswith("[" + "=" * 24 + ">")
