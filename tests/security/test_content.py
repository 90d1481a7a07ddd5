"""managerd's content store under bad and racing writers: a wrong digest or size never
leaves a blob (nor, for one-shot writes, an ingest), and racing writers of one
digest end with exactly one correct blob."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest
from dockyard.managerd import services
from dockyard.managerd.config import Config

from dockyard import errdefs

pytestmark = pytest.mark.timeout(60)
NS = "sec"


def d(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def content(tmp_path):
    ctx = services.build_context(Config(root=str(tmp_path / "root"),
                                        state=str(tmp_path / "state")))
    yield ctx.content
    ctx.gc.close()
    ctx.close()


def blobs(content) -> list[str]:
    return sorted(os.listdir(content.store.blobs))


def test_one_shot_write_with_wrong_digest_leaves_nothing(content):
    data = b"payload" * 1000
    wrong = d(b"something else")
    with pytest.raises(errdefs.InvalidArgument, match="digest"):
        content.write_blob(NS, "wrong-digest", data, expected_digest=wrong)
    assert blobs(content) == []
    assert content.statuses(NS) == [] and content.store.statuses() == []
    for digest in (wrong, d(data)):
        with pytest.raises(errdefs.NotFound):
            content.info(NS, digest)
    # the same ref is usable again afterwards
    assert content.write_blob(NS, "wrong-digest", data, expected_digest=d(data)).size == len(data)


def test_streamed_write_beyond_its_size_or_wrong_commit_publishes_nothing(content):
    data = b"0123456789"
    with content.writer(NS, "sized", expected_digest=d(data), expected_size=10) as w:
        w.write(data[:6])
        with pytest.raises(errdefs.InvalidArgument, match="exceed"):
            w.write(data[6:] + b"X")
        with pytest.raises(errdefs.InvalidArgument, match="size"):
            w.commit(11)
        with pytest.raises(errdefs.InvalidArgument, match="size"):
            w.commit()
        assert blobs(content) == []
        w.abort()
    assert blobs(content) == [] and content.statuses(NS) == []
    bad = b"0123456780"
    with content.writer(NS, "swapped", expected_digest=d(data), expected_size=10) as w:
        w.write(bad)
        with pytest.raises(errdefs.InvalidArgument, match="digest"):
            w.commit()
        w.abort()
    assert blobs(content) == [] and content.statuses(NS) == []


def test_racing_writers_of_one_digest_end_with_one_correct_blob(content):
    data = os.urandom(1 << 20)
    digest = d(data)
    forged = bytearray(data)
    forged[-1] ^= 1
    results: dict[int, object] = {}
    start = threading.Barrier(8)

    def write(i: int) -> None:
        payload = bytes(forged) if i % 4 == 3 else data  # two liars among eight
        start.wait(10)
        try:
            results[i] = content.write_blob(NS, f"race-{i}", payload, expected_digest=digest).digest
        except errdefs.EngineError as err:
            results[i] = err

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(not t.is_alive() for t in threads)
    for i, res in results.items():
        if i % 4 == 3:
            # refused, or told the (honest) blob exists already: its bytes never count
            assert isinstance(res, errdefs.InvalidArgument) or res == digest, (i, res)
        else:
            assert res == digest, (i, res)
    assert blobs(content) == [digest[7:]]
    assert content.read_all(NS, digest) == data
    assert os.stat(content.store.path(digest)).st_mode & 0o777 == 0o444
    assert content.statuses(NS) == [] and content.store.statuses() == []


def test_blobs_are_not_reachable_by_host_users(content):
    """Some directory between the managerd root and a blob denies others search."""
    info = content.write_blob(NS, "perm", b"private layer")
    path = os.path.dirname(content.store.path(info.digest))
    walk = []
    while path != os.path.dirname(content.store.root):
        walk.append((path, oct(os.stat(path).st_mode & 0o777)))
        path = os.path.dirname(path)
    assert any(not int(mode, 8) & 0o001 for _, mode in walk), walk


def test_metadata_db_is_private(content):
    """Container specs (env secrets) live in the metadata DB: root only, WAL files too."""
    db = content.db.path
    for path in (db, db + "-wal", db + "-shm"):
        if os.path.exists(path):
            assert os.stat(path).st_mode & 0o077 == 0, (path, oct(os.stat(path).st_mode))
