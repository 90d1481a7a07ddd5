"""Content: streamed writes (resume, verify, mismatch, concurrency), reads, records per namespace."""

from __future__ import annotations

import hashlib
import threading

import pytest
from dockyard.managerd.content.store import ContentStore
from dockyard.protos.services.content.v1 import content_pb2 as pb

from dockyard import errdefs

pytestmark = pytest.mark.timeout(60)


def _d(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _write(client, reqs):
    return list(client.content.Write(iter(reqs), timeout=10))


def test_write_read_info_roundtrip(client):
    data = b"x" * (3 << 20) + b"tail"
    digest = client.write_content(data, labels={"k": "v"}, chunk=1 << 20)
    assert digest == _d(data)
    info = client.content.Info(pb.InfoRequest(digest=digest), timeout=5).info
    assert info.size == len(data) and info.labels == {"k": "v"}
    assert client.read_content(digest) == data
    assert client.read_content(digest, offset=10, size=5) == data[10:15]
    assert client.read_content(digest, offset=len(data) - 4) == b"tail"


def test_resume_after_interrupted_write(client):
    data = bytes(range(256)) * 1000
    ref, digest = "resume-1", _d(data)
    out = _write(client, [pb.WriteContentRequest(action=pb.WRITE, ref=ref, total=len(data),
                                                 expected=digest, data=data[:1000])])
    assert out[-1].offset == 1000
    st = client.content.Status(pb.StatusRequest(ref=ref), timeout=5).status
    assert (st.offset, st.total, st.expected) == (1000, len(data), digest)
    assert [s.ref for s in client.content.ListStatuses(pb.ListStatusesRequest(),
                                                        timeout=5).statuses] == [ref]
    # a new stream asks where to resume, then finishes from there
    out = _write(client, [pb.WriteContentRequest(action=pb.STAT, ref=ref)])
    assert out[0].offset == 1000
    out = _write(client, [pb.WriteContentRequest(action=pb.COMMIT, ref=ref, offset=1000,
                                                 data=data[1000:], total=len(data),
                                                 expected=digest)])
    assert out[-1].digest == digest
    assert client.read_content(digest) == data
    with pytest.raises(errdefs.NotFound):
        client.content.Status(pb.StatusRequest(ref=ref), timeout=5)


def test_wrong_offset_is_invalid_argument(client):
    ref = "offset-1"
    _write(client, [pb.WriteContentRequest(action=pb.WRITE, ref=ref, data=b"abc")])
    with pytest.raises(errdefs.InvalidArgument, match="offset"):
        _write(client, [pb.WriteContentRequest(action=pb.WRITE, ref=ref, offset=7, data=b"z")])
    client.content.Abort(pb.AbortRequest(ref=ref), timeout=5)
    with pytest.raises(errdefs.NotFound):
        client.content.Abort(pb.AbortRequest(ref=ref), timeout=5)


def test_digest_mismatch_is_invalid_argument_and_nothing_visible(client):
    bad = "sha256:" + "0" * 64
    with pytest.raises(errdefs.InvalidArgument, match="unexpected commit digest"):
        _write(client, [pb.WriteContentRequest(action=pb.COMMIT, ref="mm", data=b"hello",
                                               expected=bad)])
    with pytest.raises(errdefs.NotFound):
        client.content.Info(pb.InfoRequest(digest=bad), timeout=5)
    with pytest.raises(errdefs.NotFound):
        client.content.Info(pb.InfoRequest(digest=_d(b"hello")), timeout=5)
    client.content.Abort(pb.AbortRequest(ref="mm"), timeout=5)


def test_size_mismatch_is_invalid_argument(client):
    with pytest.raises(errdefs.InvalidArgument, match="size"):
        _write(client, [pb.WriteContentRequest(action=pb.COMMIT, ref="sz", data=b"hello",
                                               total=4)])
    client.content.Abort(pb.AbortRequest(ref="sz"), timeout=5)


def test_bad_digest_and_unknown_digest(client):
    with pytest.raises(errdefs.InvalidArgument, match="invalid digest"):
        client.content.Info(pb.InfoRequest(digest="md5:abc"), timeout=5)
    with pytest.raises(errdefs.NotFound, match="sha256:" + "1" * 64):
        client.content.Info(pb.InfoRequest(digest="sha256:" + "1" * 64), timeout=5)


def test_existing_blob_is_already_exists(client):
    data = b"twice"
    client.write_content(data)
    with pytest.raises(errdefs.AlreadyExists):
        _write(client, [pb.WriteContentRequest(action=pb.COMMIT, ref="again", data=data,
                                               expected=_d(data))])


def test_namespaces_isolate_records_but_share_blobs(managerd, ns):
    data = b"shared blob " + ns.encode()
    with managerd.client(ns) as a, managerd.client(ns + "-b") as b:
        digest = a.write_content(data)
        with pytest.raises(errdefs.NotFound):
            b.content.Info(pb.InfoRequest(digest=digest), timeout=5)
        assert not list(b.content.List(pb.ListContentRequest(), timeout=5))
        # writing it in b needs no bytes: the expected digest is on disk already
        with pytest.raises(errdefs.AlreadyExists):
            _write(b, [pb.WriteContentRequest(action=pb.STAT, ref="x", expected=digest)])
        assert b.content.Info(pb.InfoRequest(digest=digest), timeout=5).info.size == len(data)
        b.content.Delete(pb.DeleteContentRequest(digest=digest), timeout=5)
        assert a.read_content(digest) == data  # still recorded in a
        a.content.Delete(pb.DeleteContentRequest(digest=digest), timeout=5)
        assert not (managerd.root / "content/blobs/sha256" / digest[7:]).exists()


def test_update_labels_and_list_filters(client):
    d1 = client.write_content(b"one", labels={"kind": "a"})
    d2 = client.write_content(b"two", labels={"kind": "b", "x": "1"})
    got = [i.digest for r in client.content.List(pb.ListContentRequest(filters=["labels.kind==a"]),
                                                 timeout=5) for i in r.info]
    assert got == [d1]
    upd = client.content.Update(pb.UpdateRequest(
        info=pb.Info(digest=d2, labels={"kind": "a"}),
        update_mask={"paths": ["labels.kind", "labels.x"]}), timeout=5).info
    assert upd.labels == {"kind": "a"}
    got = {i.digest for r in client.content.List(pb.ListContentRequest(filters=["labels.kind==a"]),
                                                 timeout=5) for i in r.info}
    assert got == {d1, d2}


def test_concurrent_writers_same_digest(client):
    data = b"race" * 100000
    digest = _d(data)
    results: list[object] = []

    def run(i: int) -> None:
        try:
            results.append(client.write_content(data, ref=f"race-{i}", chunk=4096))
        except Exception as err:  # recorded and asserted below
            results.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [digest] * 4
    assert client.read_content(digest) == data
    assert not list(client.content.ListStatuses(pb.ListStatusesRequest(), timeout=5).statuses)


def test_same_ref_second_writer_unavailable(tmp_path):
    store = ContentStore(tmp_path)
    w = store.writer("r1")
    w.write(b"abc")
    with pytest.raises(errdefs.Unavailable, match="locked"):
        store.writer("r1")
    w.close()
    with store.writer("r1") as w2:  # resumes
        assert w2.offset == 3
        w2.write(b"def")
        assert w2.commit(6, _d(b"abcdef")) == _d(b"abcdef")
    assert store.read_all(_d(b"abcdef")) == b"abcdef"
    assert oct(store.info(_d(b"abcdef")).size) and not store.statuses()
    with pytest.raises(errdefs.AlreadyExists):
        store.writer("r2", expected_digest=_d(b"abcdef"))


def test_no_half_written_blob_visible(tmp_path):
    store = ContentStore(tmp_path)
    w = store.writer("big", expected_digest=_d(b"a" * 10), expected_size=10)
    w.write(b"a" * 5)
    assert list(store.list()) == []
    with pytest.raises(errdefs.InvalidArgument):
        w.write(b"a" * 6)  # beyond the expected size
    w.write(b"a" * 5)
    w.commit()
    assert [b.digest for b in store.list()] == [_d(b"a" * 10)]


def test_ingest_resumes_after_daemon_kill(managerd_factory, ns):
    data = b"0123456789" * 5000
    m = managerd_factory()
    with m.client(ns) as c:
        _write(c, [pb.WriteContentRequest(action=pb.WRITE, ref="survivor", total=len(data),
                                          expected=_d(data), data=data[:20000])])
    m.kill()
    m.start()
    with m.client(ns) as c:
        st = c.content.Status(pb.StatusRequest(ref="survivor"), timeout=5).status
        assert (st.offset, st.expected) == (20000, _d(data))
        out = _write(c, [pb.WriteContentRequest(action=pb.COMMIT, ref="survivor",
                                                offset=20000, data=data[20000:])])
        assert out[-1].digest == _d(data)
        assert c.read_content(_d(data)) == data


def test_read_out_of_range(client):
    digest = client.write_content(b"short")
    with pytest.raises(errdefs.InvalidArgument, match="offset 99"):
        client.read_content(digest, offset=99)
    assert client.read_content(digest, offset=5) == b""
    assert client.read_content(digest, offset=2, size=100) == b"ort"
